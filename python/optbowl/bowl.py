r"""Quadratic bowls: what each optimizer does on f(x) = ½xᵀAx − bᵀx + c, predicted and run.

On a bowl the gradient is linear, g = A(x − x*), so gradient descent, heavy-ball momentum,
Nesterov momentum and Newton's method are linear recurrences in the error e = x − x*. In
the eigenbasis of A (eigenvalues λ₁ ≤ … ≤ λₙ) every direction evolves on its own, and with
u = ηv (the velocity scaled by the learning rate) one direction's state (e, u) follows

=========  ===========================================  =================================
method     torch's update                               iteration matrix M(λ)
=========  ===========================================  =================================
gd         x −= η g                                     [[1 − ηλ]]
momentum   v = βv + (1 − δ)g;  x −= η v                 [[1 − aλ, −β], [aλ, β]],  a = η(1 − δ)
nesterov   v = βv + g;  x −= η(g + βv)                  [[1 − ηλ(1 + β), −β²], [ηλ, β]]
newton     x −= η A⁻¹g                                  [[1 − η]]
=========  ===========================================  =================================

(torch's first momentum step stores v = g undamped, so the first step uses a = η.) The
characteristic polynomial of M is z² − Tz + D, with T = 1 + β − aλ, D = β for momentum
and T = (1 + β)(1 − ηλ), D = β(1 − ηλ) for Nesterov; the asymptotic contraction per step
of the error along λ is the spectral radius ρ(λ) = ``max |z|``, and :meth:`QuadraticBowl.rate`
is its maximum over the eigenvalues. A weight decay w replaces A by A + wI.

:meth:`QuadraticBowl.run` runs the compiled loops of optbowl's optimizers on the bowl
instead (the gradient Ax − b and the update are computed in C++, by the same code the
optimizer classes call), and :func:`sweep` runs many configurations in one multi-threaded
call, so that the predictions can be checked against the kernels.
"""

from __future__ import annotations

import functools
import importlib
import math
import numbers
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from . import _check, _core

#: The linear methods, with the hyper-parameters each accepts.
LINEAR_METHODS: Dict[str, Tuple[str, ...]] = {
    "gd": ("lr", "weight_decay"),
    "momentum": ("lr", "momentum", "dampening", "weight_decay"),
    "nesterov": ("lr", "momentum", "weight_decay"),
    "newton": ("lr",),
}

#: Regime labels, per eigenvalue (see :meth:`QuadraticBowl.regime`).
REGIMES = ("monotone", "one-step", "oscillating", "non-convergent", "divergent", "ripple")

_TIE = 1e-12  # |T|, |D| and the stability margins closer than this count as equal


# ----------------------------------------------------------------------------- helpers
def _as_vector(name: str, x: Any, n: int) -> np.ndarray:
    try:
        v = np.array(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name}: expected a vector of {n} real numbers, got {type(x).__name__}"
        ) from None
    if v.ndim == 0 and n == 1:
        v = v.reshape(1)
    if v.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name}: must be finite")
    return v


def _spectral_radius(T: np.ndarray, D: np.ndarray) -> np.ndarray:
    """max |z| over the roots of z² − Tz + D, elementwise."""
    T = np.asarray(T, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    disc = T * T - 4.0 * D
    with np.errstate(invalid="ignore"):
        real = 0.5 * (np.abs(T) + np.sqrt(np.maximum(disc, 0.0)))
        cplx = np.sqrt(np.maximum(D, 0.0))
    return np.where(disc >= 0.0, real, cplx)


def _classify(T: np.ndarray, D: np.ndarray) -> Tuple[str, ...]:
    """Regime label of each recurrence z² − Tz + D (one per eigenvalue)."""
    labels = []
    for t, d in zip(np.atleast_1d(T).tolist(), np.atleast_1d(D).tolist()):
        margin = 1.0 + d - abs(t)  # > 0 and d < 1: both roots inside the unit circle (Jury)
        if d > 1.0 + _TIE or margin < -_TIE:
            labels.append("divergent")
        elif abs(d - 1.0) <= _TIE or abs(margin) <= _TIE:
            labels.append("non-convergent")
        elif t * t < 4.0 * d - _TIE:
            labels.append("ripple")
        elif abs(t) <= _TIE and abs(d) <= _TIE:
            labels.append("one-step")
        elif t > _TIE:
            labels.append("monotone")
        else:
            labels.append("oscillating")
    return tuple(labels)


def measured_rate(err_from: Any, err_to: Any, steps: Any) -> np.ndarray:
    r"""Measured contraction per step between two errors ``steps`` apart.

    .. math:: \hat\rho = \left(\frac{\lVert e_{k+m}\rVert}{\lVert e_k\rVert}\right)^{1/m}

    0 when the first error is already 0, ∞ when the second is not finite.
    """
    a = np.asarray(err_from, dtype=np.float64)
    b = np.asarray(err_to, dtype=np.float64)
    m = np.asarray(steps, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.where(a > 0, (b / np.where(a > 0, a, 1.0)) ** (1.0 / m), 0.0)
    return np.where(np.isfinite(b), r, np.inf)


# ----------------------------------------------------------------------------- Trajectory
class Trajectory:
    """The iterates of one method on a bowl, predicted or run.

    Attributes
    ----------
    x : ndarray, shape (steps + 1, n)
        The iterates x₀, x₁, …
    f : ndarray, shape (steps + 1,)
        f(xₖ).
    grad_norm : ndarray, shape (steps + 1,)
        ‖∇f(xₖ)‖ = ‖Axₖ − b‖.
    bowl : QuadraticBowl
    method : str
    hyper : dict
        The hyper-parameters, defaults filled in.
    source : str
        ``"predict"`` (the linear recurrence) or ``"run"`` (the compiled loop).
    """

    def __init__(self, x, f, grad_norm, *, bowl: "QuadraticBowl", method: str,
                 hyper: Dict[str, Any], source: str) -> None:
        self.x = np.asarray(x)
        self.f = np.asarray(f, dtype=np.float64)
        self.grad_norm = np.asarray(grad_norm, dtype=np.float64)
        for a in (self.x, self.f, self.grad_norm):
            a.setflags(write=False)
        self.bowl = bowl
        self.method = method
        self.hyper = dict(hyper)
        self.source = source

    @property
    def steps(self) -> int:
        return self.x.shape[0] - 1

    @property
    def error(self) -> np.ndarray:
        """‖xₖ − x*‖ for every k."""
        with np.errstate(over="ignore", invalid="ignore"):
            return np.linalg.norm(self.x.astype(np.float64) - self.bowl.minimizer, axis=1)

    @property
    def final_error(self) -> float:
        return float(self.error[-1])

    def measured_rate(self, start: Optional[int] = None) -> float:
        """Contraction per step of the error from step ``start`` (default steps // 2) to the end."""
        err = self.error
        k = self.steps // 2 if start is None else _check.integer("start", start, low=0)
        if not k < self.steps:
            raise ValueError(f"start: must be < steps ({self.steps}), got {k}")
        return float(measured_rate(err[k], err[-1], self.steps - k))

    def __len__(self) -> int:
        return self.x.shape[0]

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v!r}"
                       for k, v in self.hyper.items())
        err = self.error
        return (f"Trajectory({self.method!r}, {hp}; {self.source}, {self.steps} steps, "
                f"final error {err[-1]:.4g} (from {err[0]:.4g}), f = {self.f[-1]:.6g})")


# ----------------------------------------------------------------------------- the bowl
class QuadraticBowl:
    r"""The quadratic :math:`f(x) = \tfrac12 x^\top A x - b^\top x + c` with A symmetric.

    Parameters
    ----------
    A : array_like, shape (n, n)
        Symmetric matrix (the Hessian). A scalar makes a 1-D bowl.
    b : array_like, shape (n,), optional
        Linear term (zeros by default, so the minimiser is 0).
    c : float
        Constant.

    Notes
    -----
    ∇f(x) = Ax − b, the minimiser solves Ax* = b, and the condition number is
    κ = λₙ/λ₁ (∞ unless A is positive definite). Seed 004: along eigenvalue λ the optimal
    gradient step is η = 1/λ, steps between 1/λ and 2/λ oscillate, 2/λ never converges and
    larger steps diverge.

    Examples
    --------
    >>> import optbowl as ob
    >>> bowl = ob.QuadraticBowl.from_eigenvalues([1, 100])
    >>> bowl
    QuadraticBowl(n=2, eigenvalues=[1, 100], κ=100)
    >>> (round(bowl.optimal("gd")["rate"] * 101, 12),
    ...  round(bowl.optimal("momentum")["rate"] * 11, 12))
    (99.0, 9.0)
    """

    def __init__(self, A: Any, b: Any = None, c: float = 0.0) -> None:
        try:
            M = np.array(A, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"A: expected a square matrix of real numbers, got {type(A).__name__}"
            ) from None
        if M.ndim == 0:
            M = M.reshape(1, 1)
        if M.ndim != 2 or M.shape[0] != M.shape[1] or M.shape[0] == 0:
            raise ValueError(f"A: expected a non-empty square matrix, got shape {M.shape}")
        if not np.all(np.isfinite(M)):
            raise ValueError("A: must be finite")
        asym = float(np.max(np.abs(M - M.T)))
        if asym > 1e-12 * max(1.0, float(np.max(np.abs(M)))):
            raise ValueError(
                "A: must be symmetric (f depends only on (A + Aᵀ)/2; pass that), "
                f"max |A − Aᵀ| = {asym:.3g}"
            )
        M = 0.5 * (M + M.T)
        n = M.shape[0]
        self._A = M
        self._b = np.zeros(n) if b is None else _as_vector("b", b, n)
        self._c = _check.real("c", c)
        lam, Q = np.linalg.eigh(M)
        self._eigenvalues, self._eigenvectors = lam, Q
        for a in (self._A, self._b, lam, Q):
            a.setflags(write=False)
        self._xstar: Optional[np.ndarray] = None
        self._optimal: Dict[str, Dict[str, float]] = {}
        self._eigenbasis: Optional[QuadraticBowl] = None
        self._axis_aligned: Optional[bool] = None

    @classmethod
    def from_eigenvalues(cls, eigenvalues: Sequence[float], rotate: bool = False, seed: Any = None,
                         minimizer: Any = None) -> "QuadraticBowl":
        """The bowl A = Q diag(eigenvalues) Qᵀ: axis-aligned (Q = I) or, with ``rotate``, Q a
        random orthogonal matrix (Haar, from ``seed``); b = A·minimizer (default 0)."""
        lam = np.array(eigenvalues, dtype=np.float64).reshape(-1)
        if lam.size == 0 or not np.all(np.isfinite(lam)):
            raise ValueError("eigenvalues: expected a non-empty sequence of finite numbers")
        n = lam.size
        if _check.boolean("rotate", rotate):
            rng = np.random.default_rng(seed)
            q, r = np.linalg.qr(rng.standard_normal((n, n)))
            Q = q * np.sign(np.diag(r))
            A = (Q * lam) @ Q.T
        else:
            A = np.diag(lam)
        b = None if minimizer is None else A @ _as_vector("minimizer", minimizer, n)
        return cls(A, b)

    # ------------------------------------------------------------------ properties
    @property
    def n(self) -> int:
        return self._A.shape[0]

    @property
    def A(self) -> np.ndarray:
        return self._A

    @property
    def b(self) -> np.ndarray:
        return self._b

    @property
    def c(self) -> float:
        return self._c

    @property
    def hessian(self) -> np.ndarray:
        return self._A

    @property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of A, ascending."""
        return self._eigenvalues

    @property
    def eigenvectors(self) -> np.ndarray:
        """Orthonormal eigenvectors of A, one per column, in the order of ``eigenvalues``."""
        return self._eigenvectors

    @property
    def condition_number(self) -> float:
        """κ = λₙ/λ₁ (∞ if A is not positive definite)."""
        lo, hi = float(self._eigenvalues[0]), float(self._eigenvalues[-1])
        return hi / lo if lo > 0 else math.inf

    @property
    def minimizer(self) -> np.ndarray:
        """x* = A⁻¹b (the stationary point; a minimiser when A is positive definite)."""
        if self._xstar is None:
            lam = np.abs(self._eigenvalues)
            if lam.min() <= self.n * np.finfo(float).eps * lam.max():
                raise ValueError("A: singular, the bowl has no unique stationary point")
            xs = self._eigenvectors @ ((self._eigenvectors.T @ self._b) / self._eigenvalues)
            xs.setflags(write=False)
            self._xstar = xs
        return self._xstar

    @property
    def is_axis_aligned(self) -> bool:
        if self._axis_aligned is None:
            self._axis_aligned = bool(np.count_nonzero(self._A - np.diag(np.diag(self._A))) == 0)
        return self._axis_aligned

    def to_eigenbasis(self) -> "QuadraticBowl":
        """The same bowl in the coordinates y = Qᵀx of its eigenvectors Q (:attr:`eigenvectors`):
        A = diag(eigenvalues), b = Qᵀb and the same c. The point x here is Qᵀx there, with the
        same f, the same distance to the minimiser and the gradient rotated alike.

        >>> import numpy as np, optbowl as ob
        >>> bowl = ob.QuadraticBowl.from_eigenvalues([1, 10], rotate=True, seed=0, minimizer=[1, 2])
        >>> eig = bowl.to_eigenbasis()
        >>> y = bowl.eigenvectors.T @ [3, 4]
        >>> eig.is_axis_aligned, bool(np.isclose(eig.f(y), bowl.f([3, 4])))
        (True, True)
        """
        if self._eigenbasis is None:
            Q = self._eigenvectors
            self._eigenbasis = QuadraticBowl(np.diag(self._eigenvalues), Q.T @ self._b, self._c)
        return self._eigenbasis

    def f(self, x: Any) -> Any:
        """½xᵀAx − bᵀx + c; x of shape (n,) or (..., n)."""
        x = np.asarray(x, dtype=np.float64)
        return 0.5 * np.einsum("...i,ij,...j->...", x, self._A, x) - x @ self._b + self._c

    def grad(self, x: Any) -> np.ndarray:
        """Ax − b; x of shape (n,) or (..., n)."""
        x = np.asarray(x, dtype=np.float64)
        return x @ self._A - self._b

    def __repr__(self) -> str:
        lam = self._eigenvalues
        shown = ", ".join(f"{v:.6g}" for v in (lam if lam.size <= 6 else (lam[0], lam[-1])))
        if lam.size > 6:
            shown = shown.replace(", ", ", …, ")
        return f"QuadraticBowl(n={self.n}, eigenvalues=[{shown}], κ={self.condition_number:.6g})"

    # ------------------------------------------------------------------ scaling (seed 004)
    @property
    def per_axis_lr(self) -> np.ndarray:
        """ηᵢ = 1/aᵢᵢ: the optimal step of every coordinate of an axis-aligned bowl (seed 004).

        With these per-coordinate steps gradient descent reaches the minimum of an
        axis-aligned bowl in one step; on a rotated bowl the axes are coupled and they are
        only the diagonal (Jacobi) preconditioner, see :meth:`diagonally_scaled`.
        """
        d = np.diag(self._A)
        if np.any(d <= 0):
            raise ValueError("A: per-axis learning rates need a positive diagonal")
        return 1.0 / d

    def diagonally_scaled(self) -> "QuadraticBowl":
        """The bowl in coordinates y = D⁻¹x with D = diag(aᵢᵢ)^(−½): A' = DAD, b' = Db.

        Gradient descent with step ηᵢ = η/aᵢᵢ per coordinate on this bowl is plain gradient
        descent with step η on the returned one; its ``condition_number`` is κ after diagonal
        scaling (1 for an axis-aligned bowl, in general anything from 1 up).
        """
        d = np.sqrt(self.per_axis_lr)
        return QuadraticBowl((self._A * d).T * d, self._b * d, self._c)

    # ------------------------------------------------------------------ hyper-parameters
    def _hyper(self, method: str, hp: Dict[str, Any]) -> Dict[str, float]:
        """Checked hyper-parameters of a linear method, defaults filled; none given: optimal."""
        method = _check.choice("method", method, tuple(LINEAR_METHODS))
        allowed = LINEAR_METHODS[method]
        unknown = sorted(set(hp) - set(allowed))
        if unknown:
            raise ValueError(f"{unknown[0]}: not a hyper-parameter of {method!r} "
                             f"(it takes {', '.join(allowed)})")
        if not hp and method != "newton":
            best = self.optimal(method)
            hp = {k: v for k, v in best.items() if k != "rate"}
        out = {"lr": 1.0} if method == "newton" else {}
        for name in ("lr", "momentum"):
            if name in allowed and name not in hp and name not in out:
                raise ValueError(f"{name}: {method!r} needs {name}= "
                                 "(or no hyper-parameters at all for the optimal ones)")
        for name in allowed:
            if name in hp:
                if name == "dampening":
                    out[name] = _check.real(name, hp[name], low=0.0, high=1.0)
                else:
                    out[name] = _check.real(name, hp[name], low=0.0)
        for name in ("momentum", "dampening", "weight_decay"):
            if name in allowed:
                out.setdefault(name, 0.0)
        return out

    def _lambdas(self, hp: Dict[str, float]) -> np.ndarray:
        return self._eigenvalues + hp.get("weight_decay", 0.0)

    def _matrices(self, method: str, hp: Dict[str, float]) -> Tuple[np.ndarray, np.ndarray]:
        """Iteration matrices per eigenvalue on (e, u = ηv): (steady (n, 2, 2), first step)."""
        lam = self._lambdas(hp)
        eta = hp["lr"]
        beta = hp.get("momentum", 0.0)
        M = np.zeros((lam.size, 2, 2))
        if method == "newton":
            M[:, 0, 0], M[:, 1, 0] = 1.0 - eta, eta
            return M, M
        if method == "nesterov":
            M[:, 0, 0] = 1.0 - eta * lam * (1.0 + beta)
            M[:, 0, 1] = -beta * beta
            M[:, 1, 0] = eta * lam
            M[:, 1, 1] = beta
            return M, M

        def heavy_ball(a: float) -> np.ndarray:
            m = np.zeros((lam.size, 2, 2))
            m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = 1.0 - a * lam, -beta, a * lam, beta
            return m

        steady = heavy_ball(eta * (1.0 - hp.get("dampening", 0.0)))
        return steady, heavy_ball(eta)

    def _trace_det(self, method: str, hp: Dict[str, float]) -> Tuple[np.ndarray, np.ndarray]:
        M, _ = self._matrices(method, hp)
        T = M[:, 0, 0] + M[:, 1, 1]
        D = M[:, 0, 0] * M[:, 1, 1] - M[:, 0, 1] * M[:, 1, 0]
        if method in ("gd", "newton"):
            D = np.zeros_like(D)  # one-dimensional recurrence: z = T
        return T, D

    # ------------------------------------------------------------------ theory
    def rates(self, method: str, **hyper: float) -> np.ndarray:
        """ρ(λᵢ) for every eigenvalue (ascending): the contraction per step along it."""
        hp = self._hyper(method, hyper)
        return _spectral_radius(*self._trace_det(method, hp))

    def rate(self, method: str, **hyper: float) -> float:
        r"""Asymptotic contraction of the error per step: the spectral radius of the iteration.

        gd: ``maxᵢ |1 − ηλᵢ|``; momentum/nesterov: the largest root modulus of z² − Tz + D over
        the eigenvalues (see the module docstring); newton: ``|1 − η|``. Below 1 the method
        converges, ‖eₖ‖ ≈ C·rateᵏ. Hyper-parameters use torch's names (``lr``,
        ``momentum``, ``dampening``, ``weight_decay``); none at all means the optimal ones.
        """
        return float(np.max(self.rates(method, **hyper)))

    def regime(self, method: str, **hyper: float) -> Tuple[str, ...]:
        """One label per eigenvalue (ascending), from the roots of z² − Tz + D.

        gd (seed 004, η_opt = 1/λ): ``"monotone"`` (η < η_opt), ``"one-step"`` (η = η_opt),
        ``"oscillating"`` (η_opt < η < 2η_opt), ``"non-convergent"`` (η = 2η_opt),
        ``"divergent"`` (η > 2η_opt). momentum/nesterov add ``"ripple"``: complex roots, the
        error spirals in with modulus √D per step; ``"monotone"``/``"oscillating"``: real
        roots, the dominant one positive/negative.
        """
        hp = self._hyper(method, hyper)
        return _classify(*self._trace_det(method, hp))

    def lr_boundaries(self, method: str, momentum: float = 0.0, dampening: float = 0.0,
                      weight_decay: float = 0.0) -> Dict[str, np.ndarray]:
        """Learning rates at which the regime along each eigenvalue changes (ascending λ).

        gd: ``one-step`` 1/λ, ``non-convergent`` 2/λ. momentum (a = η(1 − δ)): ripple for
        aλ in ((1 − √β)², (1 + √β)²), non-convergent at aλ = 2(1 + β). nesterov: ripple for
        ηλ in (1 − 4β/(1 + β)², 1), non-convergent at ηλ = 2(1 + β)/(1 + 2β). Eigenvalues
        ≤ 0 give NaN (no step converges along them).
        """
        method = _check.choice("method", method, ("gd", "momentum", "nesterov"))
        beta = _check.real("momentum", momentum, low=0.0)
        damp = _check.real("dampening", dampening, low=0.0, high=1.0, high_open=True)
        lam = self._eigenvalues + _check.real("weight_decay", weight_decay, low=0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(lam > 0, 1.0 / lam, np.nan)
        if method == "gd":
            return {"one-step": inv, "non-convergent": 2.0 * inv}
        if method == "momentum":
            s = math.sqrt(beta)
            k = inv / (1.0 - damp)
            return {"ripple-start": (1 - s) ** 2 * k, "ripple-end": (1 + s) ** 2 * k,
                    "non-convergent": 2 * (1 + beta) * k}
        return {"ripple-start": (1 - 4 * beta / (1 + beta) ** 2) * inv, "ripple-end": inv,
                "non-convergent": 2 * (1 + beta) / (1 + 2 * beta) * inv}

    def optimal(self, method: str) -> Dict[str, float]:
        """The hyper-parameters with the smallest rate, and that rate.

        gd: η = 2/(λ₁ + λₙ), rate (κ − 1)/(κ + 1). momentum (Polyak's heavy ball, which is
        torch's v = βv + g, x −= ηv with step η): η = (2/(√λ₁ + √λₙ))², β = ((√κ − 1)/(√κ + 1))²,
        rate √β. nesterov: computed, see :meth:`_optimal_nesterov`. newton: η = 1, rate 0.
        """
        method = _check.choice("method", method, tuple(LINEAR_METHODS))
        if method not in self._optimal:
            self._optimal[method] = self._compute_optimal(method)
        return dict(self._optimal[method])

    def _compute_optimal(self, method: str) -> Dict[str, float]:
        if method == "newton":
            return {"lr": 1.0, "rate": 0.0}
        lo, hi = float(self._eigenvalues[0]), float(self._eigenvalues[-1])
        if not lo > 0:
            raise ValueError("A: optimal step sizes need a positive definite bowl")
        if method == "gd":
            return {"lr": 2.0 / (lo + hi), "rate": (hi - lo) / (hi + lo)}
        if method == "momentum":
            s_lo, s_hi = math.sqrt(lo), math.sqrt(hi)
            root_beta = (s_hi - s_lo) / (s_hi + s_lo)
            return {"lr": (2.0 / (s_lo + s_hi)) ** 2, "momentum": root_beta**2, "rate": root_beta}
        return self._optimal_nesterov(lo, hi)

    @staticmethod
    def _optimal_nesterov(lo: float, hi: float) -> Dict[str, float]:
        """Minimise max(ρ(λ₁), ρ(λₙ)) over (η, β) numerically.

        ρ(λ) is unimodal in λ (zero at λ = 1/η), so the rate over the spectrum is the larger
        of its values at λ₁ and λₙ. For a fixed β the best η balances them (bisection on
        [1/λₙ, 1/λ₁], where ρ(λ₁) falls and ρ(λₙ) rises); the best β then comes from a grid
        in log(1 − β), refined by zooming in around its best point.
        """

        def rho(lam, eta, beta):
            u = 1.0 - eta * lam
            return _spectral_radius((1.0 + beta) * u, beta * u)

        def balanced(beta):
            beta = np.asarray(beta, dtype=np.float64)
            a = np.full_like(beta, 1.0 / hi)
            b = np.full_like(beta, 1.0 / lo)
            for _ in range(64):
                m = 0.5 * (a + b)
                high = rho(lo, m, beta) > rho(hi, m, beta)
                a, b = np.where(high, m, a), np.where(high, b, m)
            eta = 0.5 * (a + b)
            return eta, np.maximum(rho(lo, eta, beta), rho(hi, eta, beta))

        def beta_of(t):
            return -np.expm1(-np.asarray(t, dtype=np.float64) * math.log(10.0))  # 1 − 10^(−t)

        grid = np.linspace(0.0, 16.0, 3201)
        values = balanced(beta_of(grid))[1]
        best_t, best_value = grid[int(np.argmin(values))], float(np.min(values))
        step = grid[1] - grid[0]
        for _ in range(10):  # zoom in around the best point, 20x finer each round
            fine = np.clip(np.linspace(best_t - step, best_t + step, 41), 0.0, 16.0)
            values = balanced(beta_of(fine))[1]
            k = int(np.argmin(values))
            if values[k] <= best_value:
                best_t, best_value = fine[k], float(values[k])
            step /= 20.0
        beta = float(beta_of(best_t))
        eta, r = balanced(beta)
        return {"lr": float(eta), "momentum": beta, "rate": float(r)}

    # ------------------------------------------------------------------ trajectories
    def _error_coordinates(self, hp: Dict[str, float],
                           x0: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(x* of the effective bowl A + wI, the start error in the eigenbasis)."""
        lam = self._lambdas(hp)
        if np.min(np.abs(lam)) <= self.n * np.finfo(float).eps * np.max(np.abs(lam)):
            raise ValueError("A: singular, the bowl has no unique stationary point to converge to")
        Q = self._eigenvectors
        xstar = Q @ ((Q.T @ self._b) / lam)
        return xstar, Q.T @ (x0 - xstar)

    def predict(self, method: str, x0: Any, steps: int, **hyper: float) -> Trajectory:
        """The exact trajectory from the linear recurrence, in the eigenbasis of A.

        Starts with zero velocity, as torch does. Returns a :class:`Trajectory`.
        """
        hp = self._hyper(method, hyper)
        x0 = _as_vector("x0", x0, self.n)
        steps = _check.integer("steps", steps, low=0)
        M, first = self._matrices(method, hp)
        xstar, e0 = self._error_coordinates(hp, x0)
        E = np.empty((steps + 1, self.n))
        E[0] = e0
        s = np.stack([e0, np.zeros_like(e0)], axis=1)
        with np.errstate(over="ignore", invalid="ignore"):
            for k in range(1, steps + 1):
                s = np.einsum("nij,nj->ni", first if k == 1 else M, s)
                E[k] = s[:, 0]
            x = xstar + E @ self._eigenvectors.T
            f = self.f(x)
            gn = np.linalg.norm(self.grad(x), axis=1)
        return Trajectory(x, f, gn, bowl=self, method=method, hyper=hp, source="predict")

    def iterations_to(self, eps: float, method: str, x0: Any = None, *, max_steps: int = 10_000_000,
                      **hyper: float) -> float:
        r"""Steps after which ‖xₖ − x*‖ ≤ eps·‖x₀ − x*‖ holds for good.

        With ``x0`` the count is exact for that start (the last step above the threshold,
        plus one); without, it is the worst case over all starts, i.e. over the
        eigen-directions. Returns ``math.inf`` when the method does not converge.

        For gd and newton the error falls monotonically, and the count comes from
        bisection on k. For the two-step methods the recurrence is iterated until a bound on
        the rest of the sequence guarantees it stays below: for a 2×2 iteration matrix with
        Schur form [[z₁, w], [0, z₂]], ``‖Mʲ‖ ≤ ρʲ + |w|·jρʲ⁻¹``.
        """
        eps = _check.real("eps", eps, low=0.0, low_open=True)
        hp = self._hyper(method, hyper)
        max_steps = _check.integer("max_steps", max_steps, low=1)
        if eps >= 1.0:
            return 0
        if x0 is None:
            weights = np.ones(self.n)
        else:
            _, weights = self._error_coordinates(hp, _as_vector("x0", x0, self.n))
            if not np.any(weights):
                return 0
        keep = weights != 0
        M, first = self._matrices(method, hp)
        M, first, weights = M[keep], first[keep], weights[keep]
        T, D = self._trace_det(method, hp)
        rho = _spectral_radius(T, D)[keep]
        if np.max(rho) >= 1.0:
            return math.inf

        def error(e: np.ndarray) -> float:
            return float(np.linalg.norm(e)) if x0 is not None else float(np.max(np.abs(e)))

        target = eps * error(weights)
        if method in ("gd", "newton"):
            r = M[:, 0, 0]

            def above(k: int) -> bool:
                return error(weights * r**k) > target

            lo, hi = 0, 1
            while above(hi):
                lo, hi = hi, 2 * hi
                if hi > 4 * max_steps:
                    raise RuntimeError(f"max_steps: more than {max_steps} steps needed")
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if above(mid) else (lo, mid)
            return hi

        T, D = T[keep], D[keep]
        z2 = np.where(T * T >= 4.0 * D, T * T - 2.0 * D, 2.0 * D)  # |z₁|² + |z₂|²
        frob2 = np.sum(M**2, axis=(1, 2))
        w = np.sqrt(np.maximum(frob2 - z2, 0.0))
        with np.errstate(divide="ignore"):
            peak = np.where(rho > 0,
                            1.0 / (math.e * rho * np.abs(np.log(np.where(rho > 0, rho, 0.5)))),
                            1.0)
        bound = 1.0 + w * np.maximum(1.0, peak)  # ≥ sup_j ‖Mʲ‖
        s = np.stack([weights, np.zeros_like(weights)], axis=1)
        last_above = 0
        for k in range(1, max_steps + 1):
            s = np.einsum("nij,nj->ni", first if k == 1 else M, s)
            if error(s[:, 0]) > target:
                last_above = k
            tail = bound * np.linalg.norm(s, axis=1)
            if (np.linalg.norm(tail) if x0 is not None else np.max(tail)) <= target:
                return last_above + 1
        raise RuntimeError(f"max_steps: more than {max_steps} steps needed")

    # ------------------------------------------------------------------ gradient noise
    def stationary_variance(self, method: str, sigma: Any, **hyper: float) -> np.ndarray:
        r"""Stationary variance of the error along each eigenvector under gradient noise.

        The gradient is Ax − b + ξ with ξ independent N(0, σᵢ²) along eigenvector i (σ a
        scalar or one value per eigenvalue, ascending). Returns Var(eᵢ) for every i::

            gd:        η σ² / (λ (2 − ηλ))
            momentum:  (1 + β) a σ² / ((1 − β) λ (2(1 + β) − aλ)),  a = η(1 − δ)
            newton:    η σ² / (λ² (2 − η))
            nesterov:  the (e, e) entry of the solution Σ of Σ = MΣMᵀ + σ²qqᵀ,
                       q = (−η(1 + β), η) on (e, u = ηv) (for momentum q = (−a, a)
                       gives the formula above)

        (momentum with β = 0 is gd; λ includes the weight decay). ∞ where the iteration is
        not stable. The expected excess loss is E[f − f*] = ½ Σᵢ λᵢ Var(eᵢ).
        """
        hp = self._hyper(method, hyper)
        sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (self.n,))
        if not np.all(np.isfinite(sig)) or np.any(sig < 0):
            raise ValueError("sigma: expected finite values >= 0")
        lam = self._lambdas(hp)
        eta, beta = hp["lr"], hp.get("momentum", 0.0)
        stable = self.rates(method, **hyper) < 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            if method == "gd":
                var = eta * sig**2 / (lam * (2.0 - eta * lam))
            elif method == "momentum":
                a = eta * (1.0 - hp["dampening"])
                var = (1 + beta) * a * sig**2 / ((1 - beta) * lam * (2 * (1 + beta) - a * lam))
            elif method == "newton":
                var = eta * sig**2 / (lam**2 * (2.0 - eta))
            else:
                var = self._lyapunov(method, hp, sig)
        return np.where(stable, var, np.inf)

    def _lyapunov(self, method: str, hp: Dict[str, float], sig: np.ndarray) -> np.ndarray:
        M, _ = self._matrices(method, hp)
        eta, beta = hp["lr"], hp.get("momentum", 0.0)
        if method == "nesterov":
            q = np.array([-eta * (1.0 + beta), eta])
        else:  # momentum: u' = βu + a(λe + ξ), e' = e − u'
            a = eta * (1.0 - hp.get("dampening", 0.0))
            q = np.array([-a, a])
        n = M.shape[0]
        kron = np.einsum("nij,nkl->nikjl", M, M).reshape(n, 4, 4)
        rhs = np.broadcast_to(np.outer(q, q).reshape(4), (n, 4)) * (sig**2)[:, None]
        return np.linalg.solve(np.eye(4) - kron, rhs[..., None])[:, 0, 0]

    # ------------------------------------------------------------------ the compiled loops
    def run(self, method: str, x0: Any, steps: int, *, dtype: Any = np.float64,
            **hyper: Any) -> Trajectory:
        """Run the compiled loop of an optimizer on this bowl; returns a :class:`Trajectory`.

        Every step computes g = Ax − b in C++ and applies the optimizer's own loop to it
        (Newton: the SGD step applied to A⁻¹g). ``method`` is one of ``"rprop"`` (with
        ``variant=``, ``lr``, ``etas``, ``step_sizes`` as :class:`optbowl.Rprop`),
        ``"adagrad"``, ``"quickprop"``, ``"rmsprop"``, ``"adam"`` (hyper-parameters as
        :class:`optbowl.Adagrad`, :class:`optbowl.QuickProp`, :class:`optbowl.RMSprop`,
        :class:`optbowl.Adam`; ``decoupled_weight_decay=True`` is AdamW), or ``"gd"``,
        ``"momentum"``, ``"nesterov"``, ``"newton"`` (torch.optim.SGD's loop; hyper-parameters
        as in :meth:`rate`). ``dtype``: float64 or float32 iterates and state.
        """
        x0 = _as_vector("x0", x0, self.n)
        steps = _check.integer("steps", steps, low=0)
        dt = _dtype_name(dtype)
        rule = _rule(method)
        core, row, shown = rule(self, dict(hyper))
        names = list(row)
        xs, f, gn = _core.bowl_run(core, self._A, self._b, self._c, x0, steps, names,
                                   np.array([row[k] for k in names], dtype=np.float64), dt)
        return Trajectory(xs, f, gn, bowl=self, method=method, hyper=shown, source="run")


# ----------------------------------------------------------------------------- run/sweep rules
def _dtype_name(dtype: Any) -> str:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype: expected float32 or float64, got {dt}")
    return dt.name


_Rule = Callable[[QuadraticBowl, Dict[str, Any]], Tuple[str, Dict[str, float], Dict[str, Any]]]


def _optimizer_rule(cls_name: str, allowed: Tuple[str, ...], core: Optional[str] = None,
                    ctor_only: Tuple[str, ...] = ()) -> _Rule:
    """Check hyper-parameters with the optimizer class itself (same defaults and messages).

    The simulator gets one row of floats: pairs split by _PAIRS, booleans as 0 or 1;
    ``core`` is the simulator's name of the method (Rprop: its variant); ``ctor_only``
    the arguments that are the constructor's, not a param group's.
    """

    made: Dict[tuple, Any] = {}

    def rule(bowl: QuadraticBowl, hp: Dict[str, Any]):
        unknown = sorted(set(hp) - set(allowed))
        if unknown:
            raise ValueError(f"{unknown[0]}: not a hyper-parameter of {cls_name.lower()!r} "
                             f"(it takes {', '.join(allowed)})")
        # One optimizer per set of constructor-only arguments (Rprop's variant); each row's
        # group is checked by its _check_group, with the constructor's messages.
        ctor = {k: v for k, v in hp.items() if k in ctor_only}
        key = tuple(sorted(ctor.items()))
        opt = made.get(key)
        if opt is None:
            opt = made[key] = getattr(importlib.import_module(__package__), cls_name)(
                np.zeros(1), **ctor
            )
        g = {**opt.defaults, **{k: v for k, v in hp.items() if k not in ctor_only}}
        opt._check_group(g)
        shown = {k: g[k] for k in allowed if k in g}
        row: Dict[str, float] = {}
        for k in allowed:
            if k in ctor_only:
                continue
            if k in _PAIRS:
                row.update(zip(_PAIRS[k], map(float, g[k])))
            else:
                row[k] = float(g[k])
        if cls_name == "Rprop":
            shown["variant"] = opt.variant
            return opt.variant, row, shown
        return core, row, shown

    return rule


def _linear_rule(method: str) -> _Rule:
    def rule(bowl: QuadraticBowl, hp: Dict[str, Any]):
        h = bowl._hyper(method, hp)
        row = {"lr": h["lr"], "momentum": h.get("momentum", 0.0),
               "dampening": h.get("dampening", 0.0),
               "weight_decay": h.get("weight_decay", 0.0), "nesterov": float(method == "nesterov")}
        return method, row, h

    return rule


#: How run() and sweep() check each method's hyper-parameters and name it for the simulator.
_RULES: Dict[str, _Rule] = {
    "rprop": _optimizer_rule("Rprop", ("lr", "etas", "step_sizes", "variant"),
                             ctor_only=("variant",)),
    "adagrad": _optimizer_rule("Adagrad", ("lr", "lr_decay", "weight_decay",
                                           "initial_accumulator_value", "eps"),
                               "adagrad"),
    "quickprop": _optimizer_rule("QuickProp", ("lr", "max_growth"), "quickprop"),
    "rmsprop": _optimizer_rule("RMSprop", ("lr", "alpha", "eps", "weight_decay", "momentum",
                                           "centered"),
                               "rmsprop"),
    "adam": _optimizer_rule("Adam", ("lr", "betas", "eps", "weight_decay", "amsgrad",
                                     "decoupled_weight_decay"),
                            "adam"),
    **{m: _linear_rule(m) for m in LINEAR_METHODS},
}

_PAIRS = {"etas": ("eta_minus", "eta_plus"), "step_sizes": ("step_min", "step_max"),
          "betas": ("beta1", "beta2")}


def _rule(method: Any) -> _Rule:
    return _RULES[_check.choice("method", method, tuple(_RULES))]


# ----------------------------------------------------------------------------- sweep
class SweepResult:
    """What :func:`sweep` measured, one entry per configuration (arrays of ``shape``).

    Attributes
    ----------
    hyper : dict of ndarray
        The swept hyper-parameters, broadcast to ``shape``.
    final_error : ndarray
        ‖x_steps − x*‖.
    diverged : ndarray of bool
        The run ended no closer than it started, or left the finite numbers.
    initial_error : float

    The measured rate is :attr:`rate`, computed when first read.
    """

    def __init__(self, bowl, method, steps, hyper, initial_error, err_mid, err_end, diverged):
        self.bowl = bowl
        self.method = method
        self.steps = steps
        self.hyper = hyper
        self.initial_error = float(initial_error)
        self.final_error = err_end
        self.diverged = diverged
        self._err_mid = err_mid

    @functools.cached_property
    def rate(self) -> np.ndarray:
        """Measured contraction per step over the second half of each run,
        ``measured_rate(err[steps // 2], err[steps], steps − steps // 2)`` (computed when
        first read)."""
        return measured_rate(self._err_mid, self.final_error, self.steps - self.steps // 2)

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.final_error.shape

    def predicted_rate(self) -> np.ndarray:
        """``bowl.rate(method, **hyper)`` per configuration (linear methods only)."""
        if self.method not in LINEAR_METHODS:
            raise ValueError(f"method: {self.method!r} has no predicted rate")
        out = np.empty(self.shape)
        for idx in np.ndindex(*self.shape):
            out[idx] = self.bowl.rate(self.method,
                                      **{k: float(v[idx]) for k, v in self.hyper.items()})
        return out

    def __repr__(self) -> str:
        ok = ~self.diverged
        best = float(np.min(self.final_error[ok])) if ok.any() else math.nan
        return (f"SweepResult({self.method!r}, {self.final_error.size} configurations "
                f"of shape {self.shape}, {self.steps} steps: "
                f"{int(self.diverged.sum())} diverged, best final error {best:.4g})")


def sweep(bowl: QuadraticBowl, method: str, x0: Any, steps: int, *, dtype: Any = np.float64,
          **hyper: Any) -> SweepResult:
    """Run many configurations of one method on a bowl in one multi-threaded C++ call.

    Every numeric hyper-parameter may be a scalar or an array (pairs such as ``etas`` a pair
    of them); they are broadcast together and each combination runs from ``x0`` for
    ``steps`` steps on the compiled loop. The configurations run side by side, one per SIMD
    lane, in blocks shared among the threads (see :func:`optbowl.set_num_threads`), each
    with exactly the arithmetic of :meth:`QuadraticBowl.run`. The linear methods
    (``LINEAR_METHODS``: their update is linear and the same for every coordinate) run in
    the bowl's eigenbasis, :meth:`QuadraticBowl.to_eigenbasis`, where A is diagonal and a
    step costs O(n) instead of O(n²): their results are exactly those of
    ``bowl.to_eigenbasis().run`` from Qᵀx0, and those of ``bowl.run`` up to rounding.
    Returns a :class:`SweepResult` with the final error, whether each run diverged, and
    the measured rate. Booleans (``centered``, ``amsgrad``, ...) are fixed for the whole
    sweep.

    >>> import numpy as np, optbowl as ob
    >>> bowl = ob.QuadraticBowl.from_eigenvalues([1, 10])
    >>> res = ob.sweep(bowl, "adagrad", [1.0, 1.0], 200, lr=np.array([0.01, 0.1, 1.0]))
    >>> res.final_error.shape, bool(res.final_error[2] < res.final_error[0])
    ((3,), True)
    """
    if not isinstance(bowl, QuadraticBowl):
        raise TypeError(f"bowl: expected a QuadraticBowl, got {type(bowl).__name__}")
    rule = _rule(method)
    x0 = _as_vector("x0", x0, bowl.n)
    steps = _check.integer("steps", steps, low=1)
    dt = _dtype_name(dtype)
    fixed: Dict[str, Any] = {}
    flat: Dict[str, np.ndarray] = {}
    for name, value in hyper.items():
        if isinstance(value, (str, bool, np.bool_)):
            fixed[name] = value
        elif name in _PAIRS:
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) \
                    or len(value) != 2:
                raise TypeError(f"{name}: expected a pair (each a number or an array)")
            for part, v in zip(_PAIRS[name], value):
                flat[part] = _numeric(name, v)
        else:
            flat[name] = _numeric(name, value)
    try:
        arrays = np.broadcast_arrays(*flat.values()) if flat else []
    except ValueError:
        raise ValueError("hyper: the hyper-parameter arrays do not broadcast together: "
                         + ", ".join(f"{k} {v.shape}" for k, v in flat.items())) from None
    shape = arrays[0].shape if arrays else ()
    grid = {k: np.array(a) for k, a in zip(flat, arrays)}  # copies, 0-d kept 0-d
    size = math.prod(shape)
    if size == 0:
        raise ValueError("hyper: no configuration to run (a hyper-parameter array is empty)")

    def checked(values: Dict[str, float]):
        hp: Dict[str, Any] = dict(fixed, **values)
        for pair, (lo, hi) in _PAIRS.items():
            if lo in hp:
                hp[pair] = (hp.pop(lo), hp.pop(hi))
        return rule(bowl, hp)

    first = {k: float(a.flat[0]) for k, a in grid.items()}
    core, row0, _ = checked(first)
    # Every constraint of the optimizers is on one hyper-parameter, or between the two
    # halves of a pair. Each one-parameter constraint accepts an interval of values (lr >= 0,
    # 0 <= beta < 1, ...; NaN never), so a swept hyper-parameter is checked at a NaN if it
    # has one, else at its smallest and largest values (the others at their first value).
    # A pair's halves may also be ordered (step_min <= step_max): a pair is checked at the
    # rows where a half is NaN, smallest or largest, and where their difference is. Each
    # check is one configuration of the sweep, and each constraint is then met by every
    # configuration if met at these: tests/test_bowl_simulator.py probes every method's
    # hyper-parameters and pairs to keep that true.
    halves = {part for parts in _PAIRS.values() for part in parts}
    for k, a in grid.items():
        if k in halves:
            continue
        lo, hi = float(a.min()), float(a.max())  # NaN if the column has one
        for v in ((lo,) if math.isnan(lo) or lo == hi else (lo, hi)):
            checked({**first, k: v})
    for pair in _PAIRS.values():
        if pair[0] in grid:
            lows, highs = (grid[c].ravel() for c in pair)
            for r in _pair_extremes(lows, highs):
                checked({**first, pair[0]: float(lows[r]), pair[1]: float(highs[r])})
    names = list(row0)
    table = np.empty((size, len(names)))
    for j, name in enumerate(names):
        table[:, j] = grid[name].ravel() if name in grid else row0[name]
    on = bowl
    if core in LINEAR_METHODS and not bowl.is_axis_aligned:
        on, x0 = bowl.to_eigenbasis(), bowl.eigenvectors.T @ x0
    try:
        xstar = on.minimizer
    except ValueError:
        raise ValueError(
            "bowl: sweep measures the distance to the minimiser; A is singular"
        ) from None
    err0, err_mid, err_end, diverged = _core.bowl_sweep(core, on.A, on.b, x0, xstar, steps, names,
                                                        table, dt)
    return SweepResult(bowl, method, steps, grid, err0, err_mid.reshape(shape),
                       err_end.reshape(shape), diverged.reshape(shape))


def _pair_extremes(lo: np.ndarray, hi: np.ndarray) -> list:
    """The rows a pair of hyper-parameter columns is checked at: the first NaN of each half
    if it has one, else where each half and their difference hi - lo are smallest and
    largest (a row breaking an interval of one half, or an order between the halves, makes
    one of these break it too)."""
    rows = []
    with np.errstate(invalid="ignore"):
        diff = hi - lo  # NaN only where a half is NaN, or both are the same infinity
    for col in (lo, hi, diff):
        nan = np.isnan(col)
        if not nan.any():
            rows += [int(col.argmin()), int(col.argmax())]
        elif nan.all():
            rows.append(0)
        elif col is not diff:
            rows.append(int(nan.argmax()))
        else:
            rows += [int(np.nanargmin(col)), int(np.nanargmax(col))]
    return sorted(set(rows))


def _numeric(name: str, value: Any) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "biuf" \
            or (a.ndim == 0 and not isinstance(value, (numbers.Real, np.ndarray))):
        raise TypeError(
            f"{name}: expected a number or an array of numbers, got {type(value).__name__}"
        )
    return a.astype(np.float64)
