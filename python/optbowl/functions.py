r"""The seeds' test functions, with analytic value, gradient and Hessian, and critical points.

Every function is a :class:`Function`. One-dimensional ones take a scalar or an array of
points and return, elementwise, f, f' (``grad``) and f'' (``hessian``); d-dimensional ones
take points of shape (..., d) and return f (...), ∇f (..., d) and ∇²f (..., d, d).

=========================  ==============================  ====================================
name                       f                               what it shows
=========================  ==============================  ====================================
``risk``                   x·cos(πx)                       local vs global minimum (d2l)
``empirical_risk``         x·cos(πx) + 0.2·cos(5πx)        its minimum moves (d2l)
``cubic``                  x³                              f' = f'' = 0 at 0: not a minimum
``saddle``                 x² − y²                         a saddle point
``tanh``                   tanh(x)                         vanishing gradient, f'(4) ≈ 0.0013
``x_plus_sin``             x + sin x                       a slope with flat inflections
``sin_minus_square``       25·sin x − x²                   many peaks (Danka)
``x_cos_cx(c)``            x·cos(cx), c = 0.15π            Newton heads for a maximum (d2l)
``cosh_cx(c)``             cosh(cx), c = 0.5               Newton converges (d2l)
``rosenbrock(a, b)``       (a − x)² + b(y − x²)²           a curved valley, minimum (a, a²)
``elliptic_bowl``          x₁² + 2x₂²                      d2l's 2-D gradient-descent bowl
``ill_conditioned_bowl``   0.1x₁² + 2x₂²                   d2l's momentum bowl
``huber(τ, L, μ)``         μx²/2 + (L − μ)·H_τ(x)          gradient descent's worst case
``double_well``            x² + y⁴/4 − y²/2                a saddle between two minima
=========================  ==============================  ====================================

``rosenbrock(a, b)`` is also a sum of squares, f = ‖r‖², r = (a − x, √b(y − x²)): its
``residuals(p)`` and ``residual_jacobian(p)`` serve least-squares solvers such as
Levenberg–Marquardt (:func:`optbowl.landscape.scipy_path`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import _check

__all__ = [
    "CriticalPoint",
    "Function",
    "ZOO",
    "classify_critical_point",
    "cosh_cx",
    "cubic",
    "double_well",
    "elliptic_bowl",
    "empirical_risk",
    "find_critical_points",
    "huber",
    "ill_conditioned_bowl",
    "risk",
    "rosenbrock",
    "saddle",
    "sin_minus_square",
    "tanh",
    "x_cos_cx",
    "x_plus_sin",
]

Bounds = Tuple[Tuple[float, float], ...]


class Function:
    """A function with its analytic gradient and Hessian.

    Attributes
    ----------
    name, formula : str
    dim : int
        Number of variables.
    bounds : tuple of (low, high) per variable
        The region the seeds plot, and where :func:`find_critical_points` looks by default.
    """

    def __init__(self, name: str, formula: str, dim: int, f: Callable, grad: Callable,
                 hessian: Callable, bounds: Sequence[Tuple[float, float]]) -> None:
        self.name, self.formula, self.dim = name, formula, dim
        self._f, self._grad, self._hessian = f, grad, hessian
        self.bounds: Bounds = tuple((float(lo), float(hi)) for lo, hi in bounds)

    def _point(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.dim > 1 and (x.ndim == 0 or x.shape[-1] != self.dim):
            raise ValueError(f"x: expected points of shape (..., {self.dim}), got {x.shape}")
        return x

    def f(self, x: Any) -> Any:
        return self._f(self._point(x))

    __call__ = f

    def grad(self, x: Any) -> Any:
        return self._grad(self._point(x))

    def hessian(self, x: Any) -> Any:
        return self._hessian(self._point(x))

    def __repr__(self) -> str:
        return f"Function({self.name!r}: {self.formula}, dim={self.dim})"


def _pairwise(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    return x[..., 0], x[..., 1]


def _matrix(a, b, c, d) -> np.ndarray:
    a, b, c, d = np.broadcast_arrays(a, b, c, d)
    return np.stack([np.stack([a, b], -1), np.stack([c, d], -1)], -2)


PI = math.pi

risk = Function(
    "risk", "x·cos(πx)", 1,
    lambda x: x * np.cos(PI * x),
    lambda x: np.cos(PI * x) - PI * x * np.sin(PI * x),
    lambda x: -2 * PI * np.sin(PI * x) - PI**2 * x * np.cos(PI * x),
    [(-1.0, 2.0)],
)

empirical_risk = Function(
    "empirical_risk", "x·cos(πx) + 0.2·cos(5πx)", 1,
    lambda x: x * np.cos(PI * x) + 0.2 * np.cos(5 * PI * x),
    lambda x: np.cos(PI * x) - PI * x * np.sin(PI * x) - PI * np.sin(5 * PI * x),
    lambda x: (-2 * PI * np.sin(PI * x) - PI**2 * x * np.cos(PI * x)
               - 5 * PI**2 * np.cos(5 * PI * x)),
    [(0.5, 1.5)],
)

cubic = Function("cubic", "x³", 1, lambda x: x**3, lambda x: 3 * x**2, lambda x: 6 * x,
                 [(-2.0, 2.0)])

saddle = Function(
    "saddle", "x² − y²", 2,
    lambda p: p[..., 0] ** 2 - p[..., 1] ** 2,
    lambda p: np.stack([2 * p[..., 0], -2 * p[..., 1]], -1),
    lambda p: _matrix(2.0, 0.0, 0.0, -2.0) * np.ones(p.shape[:-1] + (1, 1)),
    [(-1.0, 1.0), (-1.0, 1.0)],
)

tanh = Function(
    "tanh", "tanh(x)", 1,
    np.tanh,
    lambda x: 1 - np.tanh(x) ** 2,
    lambda x: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2),
    [(-2.0, 5.0)],
)

x_plus_sin = Function(
    "x_plus_sin", "x + sin x", 1,
    lambda x: x + np.sin(x), lambda x: 1 + np.cos(x), lambda x: -np.sin(x), [(-10.0, 10.0)],
)

sin_minus_square = Function(
    "sin_minus_square", "25·sin x − x²", 1,
    lambda x: 25 * np.sin(x) - x**2,
    lambda x: 25 * np.cos(x) - 2 * x,
    lambda x: -25 * np.sin(x) - 2.0,
    [(-10.0, 10.0)],
)


def x_cos_cx(c: float = 0.15 * PI) -> Function:
    """x·cos(cx) (d2l's non-convex example for Newton's method, c = 0.15π)."""
    c = _check.real("c", c)
    return Function(
        "x_cos_cx", f"x·cos({c:.6g}x)", 1,
        lambda x: x * np.cos(c * x),
        lambda x: np.cos(c * x) - c * x * np.sin(c * x),
        lambda x: -2 * c * np.sin(c * x) - c * c * x * np.cos(c * x),
        [(-20.0, 20.0)],
    )


def cosh_cx(c: float = 0.5) -> Function:
    """cosh(cx) (d2l's convex example for Newton's method, c = 0.5)."""
    c = _check.real("c", c)
    return Function(
        "cosh_cx", f"cosh({c:.6g}x)", 1,
        lambda x: np.cosh(c * x),
        lambda x: c * np.sinh(c * x),
        lambda x: c * c * np.cosh(c * x),
        [(-10.0, 10.0)],
    )


def rosenbrock(a: float = 1.0, b: float = 100.0) -> Function:
    """(a − x)² + b(y − x²)², minimum 0 at (a, a²).

    Also a sum of squares f = ‖r‖², r = (a − x, √b(y − x²)): ``residuals(p)`` returns r
    (shape (..., 2)) and ``residual_jacobian(p)`` ∂r/∂(x, y) (shape (..., 2, 2)), for
    least-squares solvers such as Levenberg–Marquardt.

    >>> import optbowl as ob
    >>> rosen = ob.functions.rosenbrock()
    >>> r = rosen.residuals([0.5, 0.5])
    >>> r.tolist(), float(rosen([0.5, 0.5])) == float(r @ r)
    ([0.5, 2.5], True)
    """
    a = _check.real("a", a)
    b = _check.real("b", b, low=0.0)

    def grad(p):
        x, y = _pairwise(p)
        return np.stack([-2 * (a - x) - 4 * b * x * (y - x * x), 2 * b * (y - x * x)], -1)

    def hessian(p):
        x, y = _pairwise(p)
        return _matrix(2 - 4 * b * (y - 3 * x * x), -4 * b * x, -4 * b * x, 2 * b + 0 * x)

    fn = Function(
        "rosenbrock", f"({a:g} − x)² + {b:g}(y − x²)²", 2,
        lambda p: (a - p[..., 0]) ** 2 + b * (p[..., 1] - p[..., 0] ** 2) ** 2,
        grad, hessian, [(-2.0, 2.0), (-1.0, 3.0)],
    )
    root_b = math.sqrt(b)

    def residuals(p):
        x, y = _pairwise(np.asarray(p, dtype=np.float64))
        return np.stack([a - x, root_b * (y - x * x)], -1)

    def residual_jacobian(p):
        x, _ = _pairwise(np.asarray(p, dtype=np.float64))
        return _matrix(-1.0 + 0 * x, 0 * x, -2 * root_b * x, root_b + 0 * x)

    # f = ‖r‖²: the sum of squares least-squares solvers (Levenberg–Marquardt) work on
    fn.residuals = residuals  # type: ignore[attr-defined]
    fn.residual_jacobian = residual_jacobian  # type: ignore[attr-defined]
    return fn


def huber(threshold: float, L: float = 1.0, mu: float = 0.0) -> Function:
    r"""μx²/2 + (L − μ)·H_τ(x): an L-smooth, μ-strongly convex Huber function.

    :math:`H_\tau(x) = x^2/2` for :math:`|x| \le \tau`, :math:`\tau|x| - \tau^2/2` beyond.

    .. math::

       f'(x) = \mu x + (L - \mu)\,\operatorname{clip}(x, -\tau, \tau), \qquad
       f''(x) = \mu + (L - \mu)\,[\,|x| \le \tau\,]

    Its minimum is 0 at 0. With μ = 0 and τ = 1/(2Nh + 1), h = ηL, N steps of gradient
    descent from x₀ = 1 stay on the linear part and end at f(x_N) = L/(2(2Nh + 1)):
    the worst case over all L-smooth convex functions (:func:`optbowl.worst_case`), which
    no quadratic reaches.

    >>> import optbowl as ob
    >>> f = ob.functions.huber(0.5, L=2.0)
    >>> float(f(3.0)), float(f.grad(3.0)), float(f.hessian(0.1))
    (2.75, 1.0, 2.0)
    """
    tau = _check.real("threshold", threshold, low=0.0, low_open=True)
    L = _check.real("L", L, low=0.0, low_open=True)
    mu = _check.real("mu", mu, low=0.0, high=L)
    bend = L - mu

    def f(x):
        a = np.abs(x)
        return 0.5 * mu * x * x + bend * np.where(a <= tau, 0.5 * x * x, tau * a - 0.5 * tau * tau)

    return Function(
        "huber", f"{mu:g}x²/2 + {bend:g}·H_{tau:g}(x)", 1, f,
        lambda x: mu * x + bend * np.clip(x, -tau, tau),
        lambda x: mu + bend * (np.abs(x) <= tau),
        [(-2.0, 2.0)],
    )


#: x² + y⁴/4 − y²/2: a saddle at (0, 0) (Hessian diag(2, −1)) between the minima (0, ±1)
#: (value −1/4). Newton's method from ``|y| < 1/√5`` (where y ← 2y³/(3y² − 1) shrinks ``|y|``)
#: runs to the saddle; gradient descent leaves it for a minimum.
double_well = Function(
    "double_well", "x² + y⁴/4 − y²/2", 2,
    lambda p: p[..., 0] ** 2 + p[..., 1] ** 4 / 4 - p[..., 1] ** 2 / 2,
    lambda p: np.stack([2 * p[..., 0], p[..., 1] ** 3 - p[..., 1]], -1),
    lambda p: _matrix(2.0 + 0 * p[..., 0], 0 * p[..., 0], 0 * p[..., 0], 3 * p[..., 1] ** 2 - 1),
    [(-1.5, 1.5), (-1.5, 1.5)],
)


def _from_bowl(name: str, formula: str, diagonal: Sequence[float]) -> Function:
    from .bowl import QuadraticBowl

    bowl = QuadraticBowl(np.diag(np.asarray(diagonal, dtype=np.float64)))
    fn = Function(name, formula, bowl.n, bowl.f, bowl.grad,
                  lambda p: np.broadcast_to(bowl.hessian, p.shape[:-1] + bowl.hessian.shape),
                  [(-5.5, 1.0), (-3.0, 1.0)])
    fn.bowl = bowl  # type: ignore[attr-defined]
    return fn


#: x₁² + 2x₂² = ½xᵀ diag(2, 4) x; ``elliptic_bowl.bowl`` is the QuadraticBowl.
elliptic_bowl = _from_bowl("elliptic_bowl", "x₁² + 2x₂²", [2.0, 4.0])
#: 0.1x₁² + 2x₂² = ½xᵀ diag(0.2, 4) x (κ = 20).
ill_conditioned_bowl = _from_bowl("ill_conditioned_bowl", "0.1x₁² + 2x₂²", [0.2, 4.0])

#: Every function of the zoo, with the seeds' parameters.
ZOO: Tuple[Function, ...] = (
    risk, empirical_risk, cubic, saddle, tanh, x_plus_sin, sin_minus_square, x_cos_cx(), cosh_cx(),
    rosenbrock(), elliptic_bowl, ill_conditioned_bowl,
)


# ----------------------------------------------------------------------------- critical points
def classify_critical_point(hessian: Any, tol: float = 1e-8) -> str:
    """What a point with zero gradient is, from the eigenvalues of its Hessian.

    ``"minimum"`` (all > 0), ``"maximum"`` (all < 0), ``"saddle"`` (some of each sign) or
    ``"degenerate"`` (the second-order test cannot tell: a zero eigenvalue and no sign
    change, e.g. x³ at 0). Eigenvalues within tol·max(1, max|λ|) of 0 count as zero.

    >>> import optbowl as ob
    >>> ob.classify_critical_point([[2, 0], [0, -2]]), ob.classify_critical_point(0.0)
    ('saddle', 'degenerate')
    """
    H = np.asarray(hessian, dtype=np.float64)
    if H.ndim == 0:
        H = H.reshape(1, 1)
    if H.ndim != 2 or H.shape[0] != H.shape[1] or H.size == 0:
        raise ValueError(f"hessian: expected a scalar or a square matrix, got shape {H.shape}")
    if not np.all(np.isfinite(H)):
        raise ValueError("hessian: must be finite")
    if np.max(np.abs(H - H.T)) > 1e-9 * max(1.0, float(np.max(np.abs(H)))):
        raise ValueError("hessian: must be symmetric")
    tol = _check.real("tol", tol, low=0.0)
    lam = np.linalg.eigvalsh(0.5 * (H + H.T))
    zero = tol * max(1.0, float(np.max(np.abs(lam))))
    pos, neg = bool(np.any(lam > zero)), bool(np.any(lam < -zero))
    if pos and neg:
        return "saddle"
    if np.any(np.abs(lam) <= zero):
        return "degenerate"
    return "minimum" if pos else "maximum"


class CriticalPoint(NamedTuple):
    x: Any  # float for one variable, else an ndarray
    value: float
    kind: str
    eigenvalues: np.ndarray


def _as_bounds(fn: Any, bounds: Any) -> Bounds:
    if bounds is None:
        if not hasattr(fn, "bounds"):
            raise ValueError("bounds: required for a function without default bounds")
        bounds = fn.bounds
    b = np.asarray(bounds, dtype=np.float64)
    if b.shape == (2,):
        b = b.reshape(1, 2)
    dim = getattr(fn, "dim", b.shape[0])
    if b.ndim != 2 or b.shape != (dim, 2) or not np.all(np.isfinite(b)) \
            or np.any(b[:, 0] >= b[:, 1]):
        raise ValueError(
            f"bounds: expected {dim} finite (low, high) pairs with low < high, got {bounds!r}"
        )
    return tuple((float(lo), float(hi)) for lo, hi in b)


def find_critical_points(f: Any, bounds: Any = None, *, starts: Optional[int] = None,
                         tol: float = 1e-9, flat: float = 1e-6,
                         max_iter: int = 200) -> List[CriticalPoint]:
    """Points in ``bounds`` where the gradient vanishes, each classified.

    Newton's method on ∇f = 0 (x ← x − H⁺∇f, the pseudo-inverse so that flat directions
    do not blow up, steps capped at a tenth of the box) from a grid of starts; it converges
    to minima, maxima and saddles alike (linearly at degenerate points, where H is
    singular). A point is kept when it lies in the box and ‖∇f‖ ≤ tol·max(1, largest ‖∇f‖
    on the grid); duplicates closer than 1e-6 of the box size are merged.

    Parameters
    ----------
    f : Function
        Anything with ``grad``, ``hessian``, ``f`` (or call) and ``dim``.
    bounds : (low, high) or sequence of them
        Default: ``f.bounds``.
    starts : int
        Starts per variable (default 400 for one variable, 40 for two, 12 otherwise).
    flat : float
        Hessian eigenvalues within flat·max(1, max|λ|) of 0 count as zero when classifying
        (:func:`classify_critical_point`'s tol). At a degenerate point the gradient vanishes
        to second order, so rounding leaves the point uncertain by about ``√ε·|x|`` and its
        Hessian by as much; the default leaves room for that.

    Returns
    -------
    list of CriticalPoint(x, value, kind, eigenvalues), sorted by position.
    """
    if not all(hasattr(f, a) for a in ("grad", "hessian")):
        raise TypeError(
            "f: expected a function with grad and hessian (an optbowl.functions.Function)"
        )
    box = np.array(_as_bounds(f, bounds))
    d = box.shape[0]
    per_axis = (_check.integer("starts", starts, low=2) if starts is not None
                else {1: 400, 2: 40}.get(d, 12))
    tol = _check.real("tol", tol, low=0.0, low_open=True)
    max_iter = _check.integer("max_iter", max_iter, low=1)
    axes = [np.linspace(lo, hi, per_axis) for lo, hi in box]
    X = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, d)
    width = box[:, 1] - box[:, 0]

    def derivatives(points):
        if d == 1 and getattr(f, "dim", 1) == 1:
            return (np.asarray(f.grad(points[:, 0]))[:, None],
                    np.asarray(f.hessian(points[:, 0]))[:, None, None])
        return np.asarray(f.grad(points)), np.asarray(f.hessian(points))

    with np.errstate(all="ignore"):
        g, _ = derivatives(X)
        scale = max(1.0, float(np.nanmax(np.linalg.norm(g, axis=1))))
        for _ in range(max_iter):
            g, H = derivatives(X)
            w, V = np.linalg.eigh(np.nan_to_num(H))
            big = np.abs(w) > 1e-13 * np.maximum(1.0, np.max(np.abs(w), axis=1, keepdims=True))
            coef = np.where(big,
                            np.einsum("mji,mj->mi", V, np.nan_to_num(g)) / np.where(big, w, 1.0),
                            0.0)
            step = np.einsum("mij,mj->mi", V, coef)
            length = np.linalg.norm(step / width, axis=1, keepdims=True)
            step = np.where(length > 0.1, step * (0.1 / np.maximum(length, 1e-300)), step)
            X = X - step
            if np.all(np.abs(step) <= 1e-15 * (1 + np.abs(X))):
                break
        g, H = derivatives(X)
        gnorm = np.linalg.norm(g, axis=1)
    inside = np.all((X >= box[:, 0]) & (X <= box[:, 1]), axis=1)
    ok = inside & np.isfinite(gnorm) & (gnorm <= tol * scale)
    found: List[np.ndarray] = []
    for i in np.argsort(np.where(ok, gnorm, np.inf)):
        if not ok[i]:
            break
        if all(np.max(np.abs(X[i] - y) / width) > 1e-6 for y in found):
            found.append(X[i])
    found.sort(key=lambda p: tuple(p))
    out = []
    for p in found:
        _, H = derivatives(p[None, :])
        value = float(f.f(p[0] if d == 1 else p)) if hasattr(f, "f") else float(f(p))
        out.append(CriticalPoint(float(p[0]) if d == 1 else p.copy(), value,
                                 classify_critical_point(H[0], flat),
                                 np.linalg.eigvalsh(H[0])))
    return out
