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

A may be positive semi-definite (f convex, not strongly convex) when b lies in the range
of A: the component of the error in the null space of A never moves, the theory
(:meth:`QuadraticBowl.rate`, :meth:`~QuadraticBowl.regime`, :meth:`~QuadraticBowl.optimal`)
acts on the range of A, and a trajectory's error is measured from the minimiser nearest
its start, :meth:`QuadraticBowl.minimizer_nearest`.
"""

from __future__ import annotations

import functools
import importlib
import math
import numbers
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from . import _check, _core, _registry

#: The linear methods, with the hyper-parameters each accepts.
LINEAR_METHODS: Dict[str, Tuple[str, ...]] = {
    "gd": ("lr", "weight_decay"),
    "momentum": ("lr", "momentum", "dampening", "weight_decay"),
    "nesterov": ("lr", "momentum", "weight_decay"),
    "newton": ("lr",),
}

#: The methods that choose their own step each iteration from the whole vector (line search,
#: conjugate gradient, Polyak's step), with the hyper-parameters each accepts.
LINE_SEARCH_METHODS: Dict[str, Tuple[str, ...]] = {
    "steepest": (),
    "cg": (),
    "polyak": ("f_star",),
}

#: Regime labels, per eigenvalue (see :meth:`QuadraticBowl.regime`).
REGIMES = ("monotone", "one-step", "oscillating", "non-convergent", "divergent", "ripple",
           "critically-damped", "null")

_TIE = 1e-12  # |T|, |D| and the stability margins closer than this count as equal


# ----------------------------------------------------------------------------- helpers
def _not_complex(name: str, x: Any) -> None:
    """Refuse complex values, which a cast to float64 would drop the imaginary part of."""
    if not isinstance(x, str) and np.iscomplexobj(x):
        raise TypeError(f"{name}: complex values; the bowl is real (f over real vectors), "
                        "pass real arrays")


def _as_vector(name: str, x: Any, n: int) -> np.ndarray:
    _not_complex(name, x)
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


def _norms(d: np.ndarray) -> np.ndarray:
    """Euclidean norm of every row of d, scaled by its largest entry first, so that no
    square underflows or overflows (NaN if a row has a NaN, ∞ if it has an ∞)."""
    d = np.asarray(d, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        scale = np.max(np.abs(d), axis=-1)
        ok = (scale > 0) & np.isfinite(scale)
        safe = np.where(ok, scale, 1.0)
        inner = np.sqrt(np.sum((d / safe[..., None]) ** 2, axis=-1))
        out = np.where(ok, safe * inner, scale)
    return np.where(np.any(np.isnan(d), axis=-1), np.nan, out)


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
        if not (math.isfinite(t) and math.isfinite(d)) or d > 1.0 + _TIE or margin < -_TIE:
            labels.append("divergent")
        elif abs(d - 1.0) <= _TIE or abs(margin) <= _TIE:
            labels.append("non-convergent")
        elif d > _TIE and abs(t * t - 4.0 * d) <= _TIE:
            labels.append("critically-damped")
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
              = \exp\frac{\log\lVert e_{k+m}\rVert - \log\lVert e_k\rVert}{m}

    computed in the log domain, so that a ratio below the smallest double (errors of 1e-300
    after 1e10) still gives the rate. 0 when the first or the second error is 0 (no
    contraction left to measure, or reached exactly), ∞ when the second is not finite.
    """
    a = np.asarray(err_from, dtype=np.float64)
    b = np.asarray(err_to, dtype=np.float64)
    m = np.asarray(steps, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ok = (a > 0) & (b > 0)
        r = np.exp((np.log(np.where(ok, b, 1.0)) - np.log(np.where(ok, a, 1.0))) / m)
        r = np.where(ok, r, 0.0)
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
    xstar : ndarray, shape (n,)
        The minimiser the errors are measured from: ``bowl.minimizer_nearest(x₀)`` (the
        minimiser itself when A is positive definite).
    noise : float
        σ of the gradient noise of a run (0: none).

    Norms are taken with each row scaled by its largest entry, so errors from the smallest
    subnormal to the largest double are exact to rounding (no underflow to 0, no overflow
    to ∞ while x is finite).
    """

    def __init__(self, x, f, grad_norm, *, bowl: "QuadraticBowl", method: str,
                 hyper: Dict[str, Any], source: str, noise: float = 0.0,
                 eigen_error: Optional[np.ndarray] = None) -> None:
        self.x = np.asarray(x)
        self.f = np.asarray(f, dtype=np.float64)
        self.grad_norm = np.asarray(grad_norm, dtype=np.float64)
        for a in (self.x, self.f, self.grad_norm):
            a.setflags(write=False)
        self.bowl = bowl
        self.method = method
        self.hyper = dict(hyper)
        self.source = source
        self.noise = float(noise)
        self.xstar = bowl.minimizer_nearest(self.x[0])
        if eigen_error is not None:  # exact, not rounded against x* (predict)
            eigen_error = np.asarray(eigen_error, dtype=np.float64)
            eigen_error.setflags(write=False)
            self.__dict__["eigen_error"] = eigen_error

    @property
    def steps(self) -> int:
        return self.x.shape[0] - 1

    @functools.cached_property
    def error(self) -> np.ndarray:
        """‖xₖ − x*‖ for every k (scaled: exact from subnormals to the largest doubles)."""
        with np.errstate(over="ignore", invalid="ignore"):
            if "eigen_error" in self.__dict__:
                out = _norms(self.__dict__["eigen_error"])
            else:
                out = _norms(self.x.astype(np.float64) - self.xstar)
        out.setflags(write=False)
        return out

    @functools.cached_property
    def eigen_error(self) -> np.ndarray:
        """Qᵀ(xₖ − x*), shape (steps + 1, n): the error along every eigenvector of A
        (Q = ``bowl.eigenvectors``, ascending eigenvalues). For gd along eigenvalue λᵢ it is
        (1 − ηλᵢ)ᵏ times its start, which :meth:`QuadraticBowl.predict` gives exactly.

        >>> import optbowl as ob
        >>> bowl = ob.QuadraticBowl.from_eigenvalues([1, 10])
        >>> bowl.predict("gd", [1, 1], 2, lr=0.15).eigen_error.round(4).tolist()
        [[1.0, 1.0], [0.85, -0.5], [0.7225, 0.25]]
        """
        with np.errstate(over="ignore", invalid="ignore"):
            out = (self.x.astype(np.float64) - self.xstar) @ self.bowl.eigenvectors
        out.setflags(write=False)
        return out

    @property
    def final_error(self) -> float:
        return float(self.error[-1])

    def measured_rate(self, start: Optional[int] = None) -> float:
        """Contraction per step of the error from step ``start`` (default steps // 2) to the end.

        Near a double root of the iteration (the critically-damped regime, e.g. momentum at
        Goh's optimum along λ₁ and λₙ) the error goes like k·ρᵏ, and a finite window reads
        (k₁/k₀)^(1/(k₁−k₀))·ρ > ρ: compare with :meth:`QuadraticBowl.predict`'s trajectory
        over the same window (:meth:`predicted_rate`), not with ``bowl.rate``.
        """
        err = self.error
        k = self.steps // 2 if start is None else _check.integer("start", start, low=0)
        if not k < self.steps:
            raise ValueError(f"start: must be < steps ({self.steps}), got {k}")
        return float(measured_rate(err[k], err[-1], self.steps - k))

    def predicted_rate(self, start: Optional[int] = None) -> float:
        """The contraction that :meth:`measured_rate` reads, over the same window, of the exact
        predicted trajectory (:meth:`QuadraticBowl.predict` from the same start with the same
        hyper-parameters; linear methods). Unlike ``bowl.rate``, it includes the transient
        and the k·ρᵏ of a double root, so a run agrees with it to rounding."""
        if self.method not in LINEAR_METHODS:
            raise ValueError(f"method: {self.method!r} has no predicted trajectory")
        pred = self.bowl.predict(self.method, self.x[0], self.steps, **self.hyper)
        return pred.measured_rate(start)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v!r}"
                       for k, v in self.hyper.items())
        err = self.error
        noise = f", noise σ = {self.noise:.4g}" if self.noise else ""
        return (f"Trajectory({self.method!r}, {hp}; {self.source}{noise}, {self.steps} steps, "
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

    Raises
    ------
    ValueError
        A not finite, not symmetric, or with eigenvalues that are not finite (entries near
        the largest double overflow the eigen-decomposition); b not in the range of a
        singular A (f is then linear along the null space of A: unbounded below).

    Notes
    -----
    ∇f(x) = Ax − b, the minimiser solves Ax* = b, and the condition number is
    κ = λₙ/λ₁ (∞ unless A is positive definite). A positive semi-definite A (convex, not
    strongly convex: ``mu`` = 0) has a whole affine set of minimisers x* + null(A); the
    theory acts on the range of A, where the eigenvalues are ``mu_range`` … ``L``.

    Seed 004: along eigenvalue λ the optimal
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
        _not_complex("A", A)
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
        M = 0.5 * M + 0.5 * M.T  # halves first: no overflow near the largest double
        n = M.shape[0]
        self._A = M
        self._b = np.zeros(n) if b is None else _as_vector("b", b, n)
        self._c = _check.real("c", c)
        with np.errstate(over="ignore", invalid="ignore"):
            try:
                lam, Q = np.linalg.eigh(M)
            except np.linalg.LinAlgError:
                lam, Q = np.full(n, np.nan), np.full((n, n), np.nan)
        if not (np.all(np.isfinite(lam)) and np.all(np.isfinite(Q))):
            raise ValueError(
                "A: its eigenvalues are not finite in double precision (entries of "
                f"{float(np.max(np.abs(M))):.3g} overflow the eigen-decomposition); scale A down"
            )
        self._null = self._null_mask(lam)
        lam = np.where(self._null, 0.0, lam)  # 0 up to rounding: 0 (singular A, mu = 0)
        self._eigenvalues, self._eigenvectors = lam, Q
        if np.any(self._null):
            along = Q[:, self._null].T @ self._b
            if _norms(along[None])[0] > 1e-10 * max(float(_norms(self._b[None])[0]), 1e-300):
                raise ValueError(
                    "b: not in the range of A (A is singular): f is linear along the null space "
                    "of A, so it is unbounded below and has no minimiser"
                )
        for a in (self._A, self._b, lam, Q, self._null):
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
        """Eigenvalues of A, ascending (those within n·ε·max|λ| of 0 are 0)."""
        return self._eigenvalues

    @property
    def eigenvectors(self) -> np.ndarray:
        """Orthonormal eigenvectors of A, one per column, in the order of ``eigenvalues``."""
        return self._eigenvectors

    @property
    def condition_number(self) -> float:
        """κ = λₙ/λ₁ (∞ if A is not positive definite)."""
        lo, hi = float(self._eigenvalues[0]), float(self._eigenvalues[-1])
        return hi / lo if lo > 0 and not self._null[0] else math.inf

    @staticmethod
    def _null_mask(lam: np.ndarray) -> np.ndarray:
        """The eigenvalues that are 0 up to the rounding of the eigen-decomposition."""
        top = float(np.max(np.abs(lam)))
        return np.abs(lam) <= lam.size * np.finfo(float).eps * top

    @property
    def mu(self) -> float:
        """μ = λ₁, the smallest eigenvalue (0 when A is singular): f is μ-strongly convex when
        μ > 0, convex when μ = 0."""
        return 0.0 if self._null[0] else float(self._eigenvalues[0])

    @property
    def L(self) -> float:
        """L = λₙ, the largest eigenvalue: ∇f is L-Lipschitz (f is L-smooth)."""
        return float(self._eigenvalues[-1])

    @property
    def mu_range(self) -> float:
        """The smallest eigenvalue on the range of A (the smallest non-zero one): the μ of the
        directions that move."""
        return float(self._eigenvalues[~self._null][0]) if not np.all(self._null) else 0.0

    @property
    def null_space(self) -> np.ndarray:
        """Orthonormal basis of the null space of A, one vector per column (n × 0 if none)."""
        return self._eigenvectors[:, self._null]

    @property
    def minimizer(self) -> np.ndarray:
        """x* = A⁺b: the minimiser when A is positive definite (the stationary point when
        A is indefinite); when A is singular, the minimiser (stationary point) of least
        norm, see :meth:`minimizer_nearest`."""
        if self._xstar is None:
            lam = self._eigenvalues
            inv = np.where(self._null, 0.0, 1.0 / np.where(self._null, 1.0, lam))
            xs = self._eigenvectors @ ((self._eigenvectors.T @ self._b) * inv)
            xs.setflags(write=False)
            self._xstar = xs
        return self._xstar

    def minimizer_nearest(self, x: Any) -> np.ndarray:
        """The minimiser (stationary point) nearest x: A⁺b plus the null-space part of x.

        Gradient methods never move the component of x in the null space of A (the
        gradient Ax − b has none), so this is where they converge to from x.

        >>> import optbowl as ob
        >>> bowl = ob.QuadraticBowl.from_eigenvalues([0, 2], minimizer=[0, 1])
        >>> bowl.minimizer.tolist(), bowl.minimizer_nearest([5, 7]).tolist()
        ([0.0, 1.0], [5.0, 1.0])
        """
        x = _as_vector("x", x, self.n)
        if not np.any(self._null):
            return self.minimizer
        Z = self.null_space
        out = self.minimizer + Z @ (Z.T @ x)
        out.setflags(write=False)
        return out

    @property
    def min_value(self) -> float:
        """f* = f(x*) = c − ½bᵀx*, the minimum of f (the value at the stationary point when A
        is indefinite)."""
        return float(self._c - 0.5 * (self._b @ self.minimizer))

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
        if method == "newton" and np.any(self._null):
            raise ValueError("A: singular, Newton's direction A⁻¹g does not exist")
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

    def _moving(self, hp: Dict[str, float]) -> np.ndarray:
        """The eigen-directions that move: the range of A + wI (all of them once w > 0)."""
        if hp.get("weight_decay", 0.0) > 0.0:
            return np.ones(self.n, dtype=bool)
        return ~self._null

    def _matrices(self, method: str, hp: Dict[str, float]) -> Tuple[np.ndarray, np.ndarray]:
        """Iteration matrices per eigenvalue on (e, u = ηv): (steady (n, 2, 2), first step).
        Entries that overflow (a learning rate near the largest double) are ±∞: diverging."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self._matrices_unchecked(method, hp)

    def _matrices_unchecked(self, method: str,
                            hp: Dict[str, float]) -> Tuple[np.ndarray, np.ndarray]:
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
        """ρ(λᵢ) for every eigenvalue (ascending): the contraction per step along it (1 along
        the null space of a singular A: that component never moves)."""
        hp = self._hyper(method, hyper)
        with np.errstate(over="ignore", invalid="ignore"):
            rho = _spectral_radius(*self._trace_det(method, hp))
        # A product that overflowed (lr near the largest double) diverges: ∞, never NaN.
        return np.where(np.isnan(rho), np.inf, rho)

    def rate(self, method: str, *, on: str = "x", **hyper: float) -> float:
        r"""Asymptotic contraction per step: the spectral radius of the iteration.

        gd: ``maxᵢ |1 − ηλᵢ|``; momentum/nesterov: the largest root modulus of z² − Tz + D over
        the eigenvalues (see the module docstring); newton: ``|1 − η|``. Below 1 the method
        converges, ‖eₖ‖ ≈ C·rateᵏ. Hyper-parameters use torch's names (``lr``,
        ``momentum``, ``dampening``, ``weight_decay``); none at all means the optimal ones.
        On a singular (positive semi-definite) A the maximum is over the range of A: the
        null-space component of the error is 0 from the minimiser nearest the start.

        ``on="x"`` (default): the rate of the error ‖xₖ − x*‖. ``on="f"``: the rate of
        f(xₖ) − f*, ρ² (seed 004 defines linear convergence on f; f − f* = ½eᵀAe is
        quadratic in the error, so f(xₖ) − f* ≈ C·ρ²ᵏ).

        >>> import optbowl as ob
        >>> bowl = ob.QuadraticBowl.from_eigenvalues([1, 3])
        >>> bowl.rate("gd", lr=0.25), bowl.rate("gd", lr=0.25, on="f")
        (0.75, 0.5625)
        """
        on = _check.choice("on", on, ("x", "f"))
        hp = self._hyper(method, hyper)
        rho = self.rates(method, **hyper)[self._moving(hp)]
        r = float(np.max(rho)) if rho.size else 0.0
        return r * r if on == "f" else r

    def regime(self, method: str, **hyper: float) -> Tuple[str, ...]:
        """One label per eigenvalue (ascending), from the roots of z² − Tz + D.

        gd (seed 004, η_opt = 1/λ): ``"monotone"`` (η < η_opt), ``"one-step"`` (η = η_opt),
        ``"oscillating"`` (η_opt < η < 2η_opt), ``"non-convergent"`` (η = 2η_opt),
        ``"divergent"`` (η > 2η_opt). momentum/nesterov add ``"ripple"``: complex roots, the
        error spirals in with modulus √D per step; ``"monotone"``/``"oscillating"``: real
        roots, the dominant one positive/negative; ``"critically-damped"``: a double root
        (T² = 4D, the edge of the ripple: momentum at Goh's optimum along λ₁ and λₙ), where
        the error goes like k·ρᵏ. ``"null"``: an eigenvalue 0 of a singular A (and no
        weight decay), along which nothing moves.
        """
        hp = self._hyper(method, hyper)
        with np.errstate(over="ignore", invalid="ignore"):
            labels = _classify(*self._trace_det(method, hp))
        moving = self._moving(hp)
        return tuple(lab if moving[i] else "null" for i, lab in enumerate(labels))

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

        On a singular positive semi-definite A, λ₁ is the smallest non-zero eigenvalue
        (:attr:`mu_range`): the optimum of the directions that move.

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
            if np.any(self._null):
                raise ValueError("A: singular, Newton's direction A⁻¹g does not exist")
            return {"lr": 1.0, "rate": 0.0}
        lo, hi = self.mu_range, float(self._eigenvalues[-1])
        if not lo > 0:
            raise ValueError("A: optimal step sizes need a positive semi-definite bowl "
                             "(its non-zero eigenvalues > 0)")
        if method == "gd":  # halves first: λ₁ + λₙ may overflow near the largest double
            mean = 0.5 * lo + 0.5 * hi
            return {"lr": 1.0 / mean, "rate": (0.5 * hi - 0.5 * lo) / mean}
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
        """(x* of the effective bowl A + wI nearest x0, the start error in the eigenbasis);
        along the null space of a singular A the error is 0 (that component never moves)."""
        lam = self._lambdas(hp)
        moving = self._moving(hp)
        Q = self._eigenvectors
        coords = np.where(moving, (Q.T @ self._b) / np.where(moving, lam, 1.0), Q.T @ x0)
        xstar = Q @ coords
        return xstar, np.where(moving, Q.T @ (x0 - xstar), 0.0)

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
            gn = _norms(self.grad(x))
        exact = E if hp.get("weight_decay", 0.0) == 0.0 else None
        return Trajectory(x, f, gn, bowl=self, method=method, hyper=hp, source="predict",
                          eigen_error=exact)

    def iterations_to(self, eps: float, method: str, x0: Any = None, *, max_steps: int = 10_000_000,
                      **hyper: float) -> float:
        r"""Steps after which ‖xₖ − x*‖ ≤ eps·‖x₀ − x*‖ holds for good.

        With ``x0`` the count is exact for that start (the last step above the threshold,
        plus one); without, it is the worst case over all starts, i.e. over the
        eigen-directions (of the range of A, when it is singular). Returns ``math.inf`` at
        once when the method does not converge, including hyper-parameters so large that
        the iteration matrix overflows.

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
            weights = self._moving(hp).astype(np.float64)
        else:
            _, weights = self._error_coordinates(hp, _as_vector("x0", x0, self.n))
            if not np.any(weights):
                return 0
        keep = weights != 0
        with np.errstate(over="ignore", invalid="ignore"):
            M, first = self._matrices(method, hp)
            M, first, weights = M[keep], first[keep], weights[keep]
            T, D = self._trace_det(method, hp)
            rho = _spectral_radius(T, D)[keep]
        if not np.max(rho) < 1.0:  # diverges, or the iteration overflowed (NaN): at once
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
            noise: float = 0.0, seed: Any = None, state_bits: int = 32,
            **hyper: Any) -> Trajectory:
        """Run the compiled loop of an optimizer on this bowl; returns a :class:`Trajectory`.

        Every step computes g = Ax − b in C++ and applies the optimizer's own loop to it
        (Newton: the plain gradient step applied to A⁻¹g). ``method`` is the name of a
        registered element-wise rule that the simulator runs (``optbowl.functional``'s name
        of it; hyper-parameters and their checks as its class's, and a constructor choice
        such as a variant where the class has one; :doc:`/bowl` lists them), or ``"gd"``,
        ``"momentum"``, ``"nesterov"``, ``"newton"`` (torch.optim's plain gradient loop;
        hyper-parameters as in :meth:`rate`). ``dtype``: float64 or float32 iterates and
        state.

        Three methods choose their step from the whole vector each iteration, so they are no
        element-wise rule; the simulator computes the step (in C++, with scaled sums) and
        hands the plain gradient loop x −= α·d:

        * ``"steepest"``: exact line search along the gradient, α = gᵀg / gᵀAg. Kantorovich:
          f(xₖ₊₁) − f* ≤ ((κ − 1)/(κ + 1))² (f(xₖ) − f*).
        * ``"cg"``: conjugate gradient (Fletcher–Reeves), d = g + (‖g‖²/‖g_prev‖²)·d_prev,
          α = gᵀd / dᵀAd. Exact in at most as many steps as A has distinct eigenvalues, and
          ‖eₖ‖_A ≤ 2((√κ − 1)/(√κ + 1))ᵏ ‖e₀‖_A.
        * ``"polyak"``: Polyak's step with known f*, α = (f(x) − f*) / ‖g‖² (``f_star=``,
          default :attr:`min_value`).

        ``noise=σ`` adds independent N(0, σ²) draws to every coordinate of every gradient
        (before Newton's solve or the line search), drawn by ``numpy.random.default_rng(seed)``
        as one (steps, n) array: a k-step run is the first k steps of a longer run with the
        same seed. :meth:`stationary_variance` predicts the error it leaves.

        ``state_bits=8`` or ``16`` (the rules whose class has that option, float32
        iterates): the optimizer keeps its state 8-bit blockwise-quantized or in bfloat16
        (rounded to nearest even), as its class does with that option: the same compiled
        loops.

        >>> import optbowl as ob
        >>> bowl = ob.QuadraticBowl.from_eigenvalues([1, 4, 9], rotate=True, seed=0)
        >>> bool(bowl.run("cg", [1, 1, 1], 3).final_error < 1e-12)
        True
        """
        x0 = _as_vector("x0", x0, self.n)
        steps = _check.integer("steps", steps, low=0)
        dt = _dtype_name(dtype)
        sigma = _check.real("noise", noise, low=0.0)  # finite, >= 0
        rule = _rule(method)
        core, row, shown = rule(self, dict(hyper))
        draws = None
        if sigma > 0.0:
            try:
                rng = np.random.default_rng(seed)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"seed: not a seed of numpy.random.default_rng ({exc})") from None
            draws = rng.standard_normal((steps, self.n))
        elif seed is not None:
            raise ValueError("seed: given without noise= (it seeds the gradient noise)")
        names = list(row)
        values = np.array([row[k] for k in names], dtype=np.float64)
        bits = _check_state_bits(state_bits, method, dt)
        if bits != 32:
            xs, f, gn = _core.bowl_run_quantized(core, self._A, self._b, self._c, x0, steps,
                                                 names, values, bits, False, 0, draws, sigma)
            shown = {**shown, "state_bits": bits}
        else:
            xs, f, gn = _core.bowl_run(core, self._A, self._b, self._c, x0, steps, names,
                                       values, dt, draws, sigma)
        return Trajectory(xs, f, gn, bowl=self, method=method, hyper=shown, source="run",
                          noise=sigma)

    # ------------------------------------------------------------------ bounds and diagrams
    def f_bound(self, method: str, x0: Any, steps: int, *,
                lr: Optional[float] = None) -> np.ndarray:
        r"""An upper bound on f(xₖ) − f*, k = 0 … steps, from the start x0.

        ``"gd"`` (needs ``lr`` = η ∈ (0, 1/L]): the convex bound, true with or without strong
        convexity, f(xₖ) − f* ≤ ‖x₀ − x*‖² / (2ηk) with x* the minimiser nearest x0 (k = 0:
        f(x₀) − f*). ``"steepest"``: Kantorovich, ((κ − 1)/(κ + 1))²ᵏ (f(x₀) − f*).
        ``"cg"``: ‖eₖ‖_A ≤ 2((√κ − 1)/(√κ + 1))ᵏ ‖e₀‖_A, i.e. f(xₖ) − f* ≤
        4((√κ − 1)/(√κ + 1))²ᵏ (f(x₀) − f*) (and at most f(x₀) − f*). κ is that of the range
        of A (L / :attr:`mu_range`).

        >>> import optbowl as ob
        >>> bowl = ob.QuadraticBowl.from_eigenvalues([0, 1])   # convex, not strongly
        >>> bowl.f_bound("gd", [1, 1], 2, lr=1.0).tolist()
        [0.5, 0.5, 0.25]
        """
        method = _check.choice("method", method, ("gd", "steepest", "cg"))
        x0 = _as_vector("x0", x0, self.n)
        steps = _check.integer("steps", steps, low=0)
        k = np.arange(steps + 1, dtype=np.float64)
        gap0 = max(float(self.f(x0)) - self.min_value, 0.0)
        if method == "gd":
            if lr is None:
                raise ValueError("lr: the gd bound needs lr= (0 < lr <= 1/L)")
            eta = _check.real("lr", lr, low=0.0, low_open=True)
            if eta > 1.0 / self.L * (1.0 + 1e-12):
                raise ValueError(f"lr: the O(1/k) bound holds for lr <= 1/L = {1.0 / self.L:.6g}, "
                                 f"got {eta:.6g}")
            dist = float(_norms((x0 - self.minimizer_nearest(x0))[None])[0])
            with np.errstate(divide="ignore"):
                out = dist**2 / (2.0 * eta * k)
            out[0] = gap0
            return out
        if lr is not None:
            raise ValueError(f"lr: {method!r} chooses its own steps")
        lo = self.mu_range
        if not lo > 0:
            raise ValueError("A: the bound needs a positive semi-definite bowl")
        kappa = self.L / lo
        if method == "steepest":
            q = ((kappa - 1.0) / (kappa + 1.0)) ** 2
            return gap0 * q**k
        r = (math.sqrt(kappa) - 1.0) / (math.sqrt(kappa) + 1.0)
        return gap0 * np.minimum(4.0 * r ** (2.0 * k), 1.0)

    def phase_diagram(self, method: str, *, lr: Any, momentum: Any,
                      dampening: float = 0.0) -> "PhaseDiagram":
        """Regime and rate of momentum or Nesterov on a grid of (lr, momentum).

        ``lr`` and ``momentum``: 1-D arrays (ascending or not). Every cell gets the rate
        (:meth:`rate`) and the regime of the slowest eigen-direction, the one whose ρ(λ) is
        the rate (:meth:`regime`'s labels). On a 1-D bowl this is Goh's diagram: ripple
        inside ((1 − √β)² < ηλ < (1 + √β)², heavy ball), real roots outside, divergence
        beyond ηλ = 2(1 + β). Returns a :class:`PhaseDiagram`.

        >>> import numpy as np, optbowl as ob
        >>> pd = ob.QuadraticBowl([[1.0]]).phase_diagram("momentum", lr=[0.5, 5.0],
        ...                                                momentum=[0.0, 0.5])
        >>> pd.regime.tolist()
        [['monotone', 'divergent'], ['ripple', 'divergent']]
        """
        method = _check.choice("method", method, ("momentum", "nesterov"))
        etas = _grid_axis("lr", lr, low=0.0)
        betas = _grid_axis("momentum", momentum, low=0.0)
        damp = _check.real("dampening", dampening, low=0.0, high=1.0, high_open=True)
        lam = self._eigenvalues[self._moving({})]
        if lam.size == 0:
            raise ValueError("A: every eigenvalue is 0; nothing moves")
        E, B, Lm = np.meshgrid(etas, betas, lam, indexing="ij")  # (lr, momentum, λ)
        with np.errstate(over="ignore", invalid="ignore"):
            if method == "momentum":
                a = E * (1.0 - damp)
                T, D = 1.0 + B - a * Lm, B
            else:
                u = 1.0 - E * Lm
                T, D = (1.0 + B) * u, B * u
            rho = _spectral_radius(T, D)
        rho = np.where(np.isnan(rho), np.inf, rho)
        worst = np.argmax(rho, axis=-1)
        pick = np.take_along_axis
        Tw = pick(T, worst[..., None], -1)[..., 0]
        Dw = pick(D, worst[..., None], -1)[..., 0]
        with np.errstate(over="ignore", invalid="ignore"):
            labels = np.array(_classify(Tw.ravel(), Dw.ravel()), dtype=object)
        rate = np.max(rho, axis=-1).T  # rows: momentum, columns: lr
        return PhaseDiagram(self, method, etas, betas, rate,
                            labels.reshape(Tw.shape).T.astype(str))


def _grid_axis(name: str, values: Any, low: float) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).reshape(-1) if not isinstance(values, str) else None
    if a is None or a.size == 0:
        raise TypeError(f"{name}: expected a non-empty 1-D array of numbers")
    if not np.all(np.isfinite(a)) or np.any(a < low):
        raise ValueError(f"{name}: expected finite values >= {low:g}")
    return a


class PhaseDiagram:
    """Rate and regime of a two-step method over a grid of (lr, momentum).

    Attributes
    ----------
    lr : ndarray, shape (l,)
    momentum : ndarray, shape (m,)
    rate : ndarray, shape (m, l)
        ``bowl.rate(method, lr=lr[j], momentum=momentum[i])`` at row i, column j.
    regime : ndarray of str, shape (m, l)
        The regime of the slowest eigen-direction (the one attaining the rate).
    """

    def __init__(self, bowl, method, lr, momentum, rate, regime) -> None:
        self.bowl = bowl
        self.method = method
        self.lr = lr
        self.momentum = momentum
        self.rate = rate
        self.regime = regime
        for a in (lr, momentum, rate, regime):
            a.setflags(write=False)

    def __repr__(self) -> str:
        conv = self.rate < 1.0
        if conv.any():
            i, j = np.unravel_index(np.argmin(self.rate), self.rate.shape)
            best = (f", best rate {self.rate[i, j]:.4g} at lr={self.lr[j]:.4g}, "
                    f"momentum={self.momentum[i]:.4g}")
        else:
            best = ", nothing converges"
        return (f"PhaseDiagram({self.method!r}, {self.momentum.size} x {self.lr.size} cells, "
                f"{int(conv.sum())} converge{best})")


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


def _check_state_bits(state_bits: Any, method: str, dtype: str) -> int:
    """run()'s state_bits: 32, or 8/16 on float32 iterates for the rules that have it."""
    if isinstance(state_bits, bool) or not isinstance(state_bits, (int, np.integer)) \
            or int(state_bits) not in (8, 16, 32):
        raise ValueError(f"state_bits: expected 8, 16 or 32, got {state_bits!r}")
    bits = int(state_bits)
    low = tuple(r.name for r in _registry.rules("bowl") if r.low_precision)
    if bits != 32 and method not in low:
        raise ValueError(f"state_bits: {bits}-bit state is for "
                         f"{_registry.prose(tuple(map(repr, low)))}, not {method!r}")
    if bits != 32 and dtype != "float32":
        raise TypeError(f"dtype: state_bits={bits} runs float32 iterates, got {dtype}")
    return bits


def _optimizer_rule(entry: _registry.Rule) -> _Rule:
    """Check hyper-parameters with the optimizer class itself (same defaults and messages).

    The simulator gets one row of floats: pairs split into their two names, booleans as 0
    or 1; its name of the method is the rule's, or the constructor's choice where the
    entry says so (its variant); ``ctor_only`` are the arguments that are the
    constructor's, not a param group's.
    """
    assert entry.bowl is not None
    cls_name, core, by_variant = entry.cls, entry.name, entry.bowl.by_variant
    allowed, ctor_only = entry.bowl.takes, entry.bowl.ctor_only
    pairs = {h.name: h.pair for h in entry.hyper if h.pair}

    made: Dict[tuple, Any] = {}

    def rule(bowl: QuadraticBowl, hp: Dict[str, Any]):
        unknown = sorted(set(hp) - set(allowed))
        if unknown:
            raise ValueError(f"{unknown[0]}: not a hyper-parameter of {cls_name.lower()!r} "
                             f"(it takes {', '.join(allowed)})")
        # One optimizer per set of constructor-only arguments (a variant); each row's
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
            if k in pairs:
                row.update(zip(pairs[k], map(float, g[k])))
            else:
                row[k] = float(g[k])
        if by_variant:
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


def _line_search_rule(method: str) -> _Rule:
    def rule(bowl: QuadraticBowl, hp: Dict[str, Any]):
        allowed = LINE_SEARCH_METHODS[method]
        unknown = sorted(set(hp) - set(allowed))
        if unknown:
            takes = f"it takes {', '.join(allowed)}" if allowed else "it takes none"
            raise ValueError(f"{unknown[0]}: not a hyper-parameter of {method!r} ({takes})")
        row = {"lr": 0.0, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0,
               "nesterov": 0.0}
        shown: Dict[str, Any] = {}
        if method == "polyak":
            f_star = bowl.min_value if hp.get("f_star") is None else hp["f_star"]
            row["f_star"] = shown["f_star"] = _check.real("f_star", f_star)
            if not math.isfinite(row["f_star"]):
                raise ValueError("f_star: must be finite")
        return method, row, shown

    return rule


#: How run() and sweep() check each method's hyper-parameters and name it for the simulator.
_RULES: Dict[str, _Rule] = {
    **{r.name: _optimizer_rule(r) for r in _registry.rules("bowl")},
    **{m: _linear_rule(m) for m in LINEAR_METHODS},
    **{m: _line_search_rule(m) for m in LINE_SEARCH_METHODS},
}

#: The pair-valued hyper-parameters of the rules and the names of their two values.
_PAIRS = {h.name: h.pair for r in _registry.rules("bowl") for h in r.hyper if h.pair}



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
        ‖x_steps − x*‖ (x*: the minimiser nearest x0; scaled, so no underflow to 0 or
        overflow to ∞ while x is finite).
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
        first read, in the log domain: right for errors down to the smallest subnormal)."""
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
    >>> res = ob.sweep(bowl, "gd", [1.0, 1.0], 200, lr=np.array([0.01, 0.1, 0.15]))
    >>> res.final_error.shape, bool(res.final_error[2] < res.final_error[0])
    ((3,), True)
    """
    if not isinstance(bowl, QuadraticBowl):
        raise TypeError(f"bowl: expected a QuadraticBowl, got {type(bowl).__name__}")
    rule = _rule(method)
    if method in LINE_SEARCH_METHODS:
        raise ValueError(f"method: {method!r} chooses its own step every iteration; "
                         "it has no hyper-parameters to sweep (use QuadraticBowl.run)")
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
    xstar = on.minimizer_nearest(x0)
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
