r"""Spectra behind two of deep learning's difficulties: powers of a matrix, and saddles.

* :func:`matrix_power_spectrum` — :math:`W^n = V\operatorname{diag}(\lambda)^n V^{-1}`:
  multiplying by the same matrix n times (a recurrent network unrolled over n steps)
  raises each eigenvalue to the n-th power, so components along eigenvalues with
  :math:`|\lambda| < 1` vanish and those with :math:`|\lambda| > 1` explode (Goodfellow
  et al. ch. 8, "long-term dependencies").
* :func:`product_gains` — the same for a product of n *different* random matrices (a deep
  linear network at initialisation): with entries of variance :math:`s^2/d` the gain
  :math:`\|W_n\cdots W_1 x\| / \|x\|` is about :math:`s^n`, so only the scale s = 1
  (LeCun's 1/d variance) keeps a signal alive through depth.
* :func:`goe_positive_fraction` — d2l's claim that in high dimension saddles outnumber
  minima, measured: the fraction of random symmetric Hessians (the Gaussian orthogonal
  ensemble) whose eigenvalues are all positive. It is 1/2 for d = 1,
  :math:`(2 - \sqrt2)/4` for d = 2 and falls like :math:`e^{-\theta d^2}`,
  :math:`\theta = \ln 3 / 4` (Dean & Majumdar 2006) — every other critical point of such
  a landscape is a saddle (or a maximum).
"""

from __future__ import annotations

from typing import Any, List, NamedTuple

import numpy as np

from . import _check

__all__ = ["GOEFraction", "goe_positive_fraction", "matrix_power_spectrum", "product_gains"]

#: Dean & Majumdar's rate: P(all d eigenvalues of a GOE matrix > 0) ≈ exp(−θd²)
DEAN_MAJUMDAR_THETA = float(np.log(3.0) / 4.0)


def _square(name: str, W: Any) -> np.ndarray:
    A = np.asarray(W)
    if A.dtype.kind not in "biufc":
        raise TypeError(f"{name}: expected a numeric square matrix, got dtype {A.dtype}")
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.size == 0:
        raise ValueError(f"{name}: expected a square matrix, got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise ValueError(f"{name}: must be finite")
    return A.astype(np.complex128 if A.dtype.kind == "c" else np.float64)


def matrix_power_spectrum(W: Any, n: Any) -> np.ndarray:
    r"""Wⁿ from the eigen-decomposition: :math:`W^n = V\,\operatorname{diag}(\lambda_i^n)\,V^{-1}`.

    With :math:`W = V\operatorname{diag}(\lambda)V^{-1}` (W diagonalisable),
    :math:`W^n x = \sum_i \lambda_i^n (V^{-1}x)_i\, v_i`: after n products the component
    of x along :math:`v_i` is scaled by :math:`\lambda_i^n`, which vanishes for
    :math:`|\lambda_i| < 1` and explodes for :math:`|\lambda_i| > 1`; ‖Wⁿ‖ grows or decays
    like :math:`\rho(W)^n`, ρ the spectral radius. In floating point Wⁿ carries an
    absolute error of about :math:`\epsilon\,\|V\|\|V^{-1}\|\rho(W)^n` (as
    ``numpy.linalg.matrix_power`` does), so a vanishing component is resolved only down
    to that level beside an exploding one.

    Parameters
    ----------
    W : (d, d) array_like
        A real or complex diagonalisable matrix (for a defective one V is singular and a
        ValueError says so).
    n : int or array of int
        The power(s), n ≥ 0 (negative powers need an invertible W: allowed when no
        eigenvalue is 0).

    Returns
    -------
    ndarray
        Wⁿ, shape (d, d), or (len(n), d, d) for an array of powers; real when W is real.

    Examples
    --------
    >>> import numpy as np, optbowl as ob
    >>> W = np.array([[0.5, 1.0], [0.0, 1.1]])       # eigenvalues 0.5 and 1.1
    >>> np.allclose(ob.matrix_power_spectrum(W, 10), np.linalg.matrix_power(W, 10))
    True
    >>> np.round(ob.matrix_power_spectrum(W, [0, 50]) @ [1.0, 0.0], 12).tolist()
    [[1.0, 0.0], [0.0, 0.0]]
    """
    A = _square("W", W)
    powers = np.asarray(n)
    if powers.dtype.kind not in "iu" and not (powers.dtype.kind == "O" and powers.size == 0):
        raise TypeError(f"n: expected an integer or an array of integers, got {powers.dtype}")
    lam, V = np.linalg.eig(A)
    cond = np.linalg.cond(V)
    if not np.isfinite(cond) or cond > 1e12:
        raise ValueError(f"W: not diagonalisable (eigenvector matrix condition {cond:.3g})")
    if np.any(powers < 0) and np.any(lam == 0):
        raise ValueError("n: negative powers of a singular W")
    Vinv = np.linalg.inv(V)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = lam[None, :] ** powers.reshape(-1, 1).astype(np.float64)  # (k, d)
        out = np.einsum("ij,kj,jl->kil", V, scaled, Vinv)
    if A.dtype.kind != "c":
        out = out.real
    return out[0] if powers.ndim == 0 else out.reshape(powers.shape + A.shape)


def product_gains(dim: int, depth: int, scale: float = 1.0, *, samples: int = 1,
                  seed: Any = None) -> np.ndarray:
    r"""‖W_k⋯W_1 x‖ / ‖x‖ for k = 0..depth: a signal through a deep linear network at init.

    Each :math:`W_j` has independent :math:`\mathcal N(0, s^2/d)` entries (s = ``scale``),
    x is a random unit vector; :math:`\mathbb E\,\|W x\|^2 = s^2\|x\|^2`, so the gain after k
    layers is about :math:`s^k` (its logarithm is a sum of k independent terms): it
    vanishes for s < 1 and explodes for s > 1, exponentially in depth.

    Returns
    -------
    ndarray, shape (samples, depth + 1)
        Column 0 is 1.

    >>> import optbowl as ob
    >>> g = ob.product_gains(200, 50, scale=0.8, samples=4, seed=0)
    >>> g.shape, bool(abs(g[:, -1].mean() / 0.8**50 - 1) < 0.5)
    ((4, 51), True)
    """
    dim = _check.integer("dim", dim, low=1)
    depth = _check.integer("depth", depth, low=0)
    scale = _check.real("scale", scale, low=0.0)
    samples = _check.integer("samples", samples, low=1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    gains = np.ones((samples, depth + 1))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        for k in range(1, depth + 1):
            W = rng.standard_normal((samples, dim, dim)) * (scale / np.sqrt(dim))
            x = np.einsum("sij,sj->si", W, x)
            norm = np.linalg.norm(x, axis=1)
            gains[:, k] = gains[:, k - 1] * norm  # renormalise: no under/overflow of x
            x /= np.where(norm > 0, norm, 1.0)[:, None]
    return gains


class GOEFraction(NamedTuple):
    dims: np.ndarray  # the dimensions d
    fraction: np.ndarray  # measured P(all eigenvalues > 0)
    stderr: np.ndarray  # its binomial standard error √(p(1 − p)/samples)
    positive: np.ndarray  # how many matrices had all eigenvalues > 0
    negative: np.ndarray  # how many had all eigenvalues < 0 (as likely, by symmetry)
    samples: int  # matrices drawn per dimension

    @property
    def saddle_fraction(self) -> np.ndarray:
        """Measured fraction with eigenvalues of both signs (saddles): about 1 − 2p."""
        return 1.0 - (self.positive + self.negative) / self.samples

    @property
    def asymptotic(self) -> np.ndarray:
        """Dean & Majumdar's leading order exp(−(ln 3/4)·d²), for comparison."""
        return np.exp(-DEAN_MAJUMDAR_THETA * self.dims.astype(float) ** 2)


def goe_positive_fraction(dims: Any, samples: int = 100_000, *, seed: Any = None) -> GOEFraction:
    r"""The fraction of random symmetric matrices (GOE) with all eigenvalues positive.

    Draws ``samples`` matrices :math:`H = (G + G^\top)/\sqrt2`, G with independent standard
    normal entries (the Gaussian orthogonal ensemble: diagonal variance 2, off-diagonal
    1), for every d in ``dims``, and counts those that are positive definite: the
    Hessians at which a critical point would be a minimum. If the Hessian at a critical
    point of a high-dimensional loss were such a matrix, minima would be a fraction
    :math:`p_d \approx e^{-\theta d^2}` (θ = ln 3/4) of the critical points, and saddles
    :math:`1 - 2p_d` — d2l's "saddle points are more likely than local minima".
    Exact: :math:`p_1 = 1/2`, :math:`p_2 = (2 - \sqrt2)/4 \approx 0.146`.

    Returns
    -------
    GOEFraction(dims, fraction, stderr, positive, negative, samples)
        ``.saddle_fraction`` (measured, about 1 − 2p) and ``.asymptotic`` (exp(−θd²)).

    >>> import optbowl as ob
    >>> r = ob.goe_positive_fraction([1, 2, 3], samples=20_000, seed=1)
    >>> r.fraction.round(2).tolist(), bool(abs(r.fraction[1] - 0.1464) < 4 * r.stderr[1])
    ([0.5, 0.15, 0.03], True)
    """
    d_arr = np.atleast_1d(np.asarray(dims))
    if d_arr.dtype.kind not in "iu" or d_arr.ndim != 1 or d_arr.size == 0:
        raise TypeError(f"dims: expected a dimension or a list of them, got {dims!r}")
    if np.any(d_arr < 1):
        raise ValueError(f"dims: must be >= 1, got {d_arr.tolist()}")
    samples = _check.integer("samples", samples, low=1)
    rng = np.random.default_rng(seed)
    counts: List[int] = []
    negatives: List[int] = []
    for d in d_arr.tolist():
        count, negative, left = 0, 0, samples
        batch = max(1, 2_000_000 // (d * d))  # about 16 MB of matrices at a time
        while left:
            m = min(batch, left)
            G = rng.standard_normal((m, d, d))
            lam = np.linalg.eigvalsh((G + np.swapaxes(G, 1, 2)) / np.sqrt(2.0))
            count += int(np.count_nonzero(lam[:, 0] > 0))
            negative += int(np.count_nonzero(lam[:, -1] < 0))
            left -= m
        counts.append(count)
        negatives.append(negative)
    count_arr = np.array(counts)
    p = count_arr / samples
    return GOEFraction(d_arr.astype(int), p, np.sqrt(p * (1 - p) / samples), count_arr,
                       np.array(negatives), samples)
