r"""Looking at a loss: landscapes along random directions, conditioning, Newton's method.

* :func:`loss_landscape` — Li et al. (2018), "Visualizing the Loss Landscape of Neural
  Nets": the loss on a grid L(θ + αδ + βη) along two random Gaussian directions δ, η with
  the shapes of the parameters, each *filter-normalised*: every filter (slice along the
  first axis) of a direction is rescaled to the norm of the same filter of θ, so that the
  picture does not depend on the scale of each layer.
* :func:`conditioning_trace` — Goodfellow et al. ch. 8: a gradient step −ηg changes the loss
  by about ½η²gᵀHg − ηgᵀg, so when gᵀHg outgrows gᵀg/η the step makes things worse even
  though g is a descent direction. Monitors gᵀg, gᵀHg, the predicted and the actual change
  along a trajectory.
* :func:`newton` — Newton's method x ← x − η H⁻¹∇f on any :class:`~optbowl.functions.Function`:
  one step on a bowl, fast on cosh(cx), and on x·cos(cx) it runs to a maximum (H < 0 there
  turns the step uphill), as d2l shows.
* :func:`descend` — drive one of optbowl's optimizers on a function and record the path.
* :func:`scipy_path` — the path of SciPy's quasi-Newton BFGS or of Levenberg–Marquardt
  (seed 004's second-order alternatives), to draw beside gradient descent and Newton.
"""

from __future__ import annotations

from typing import Any, Callable, List, NamedTuple, Optional, Sequence

import numpy as np

from . import _check


class Landscape(NamedTuple):
    alphas: np.ndarray  # grid along the first direction
    betas: np.ndarray  # grid along the second direction
    values: np.ndarray  # values[i, j] = loss(θ + alphas[i]·δ + betas[j]·η)
    directions: tuple  # (δ, η), each a list of arrays shaped like the parameters
    center: float  # loss(θ)


def _filter_normalise(d: np.ndarray, p: np.ndarray, normalization: str) -> np.ndarray:
    if normalization == "none":
        return d
    if normalization == "layer" or p.ndim < 2:
        nd = np.linalg.norm(d)
        return d * (np.linalg.norm(p) / nd) if nd > 0 else d
    axes = tuple(range(1, p.ndim))
    nd = np.sqrt(np.sum(d * d, axis=axes, keepdims=True))
    npar = np.sqrt(np.sum(p * p, axis=axes, keepdims=True))
    return d * np.where(nd > 0, npar / np.where(nd > 0, nd, 1.0), 0.0)


def random_directions(params: Sequence[np.ndarray], seed: Any = None, normalization: str = "filter",
                      ignore_1d: bool = True) -> tuple:
    """Two random directions shaped like ``params``, normalised as Li et al. do.

    ``normalization``: ``"filter"`` (each slice along axis 0 of an array with ≥ 2 axes gets
    the norm of the same slice of the parameter), ``"layer"`` (each array the norm of its
    parameter) or ``"none"``. ``ignore_1d``: biases and other 1-D arrays get a zero
    direction (Li et al. do not perturb them).
    """
    normalization = _check.choice("normalization", normalization, ("filter", "layer", "none"))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        dirs = []
        for p in params:
            p = np.asarray(p, dtype=np.float64)
            if ignore_1d and p.ndim <= 1:
                dirs.append(np.zeros_like(p))
            else:
                dirs.append(_filter_normalise(rng.standard_normal(p.shape), p, normalization))
        out.append(dirs)
    return tuple(out)


def loss_landscape(loss: Callable[[List[np.ndarray]], float], params: Any, *,
                   span: Any = (-1.0, 1.0), resolution: int = 41,
                   directions: Optional[tuple] = None, seed: Any = None,
                   normalization: str = "filter", ignore_1d: bool = True) -> Landscape:
    """The loss on a 2-D grid through ``params`` along two random filter-normalised directions.

    Parameters
    ----------
    loss : callable
        ``loss(list_of_arrays) -> float``, the arrays shaped like ``params``. Never given
        ``params`` themselves: every point is a fresh list.
    params : ndarray or sequence of ndarray
        The centre θ.
    span : (low, high)
        Range of α and β.
    resolution : int
        Grid points per axis.
    directions : (δ, η), optional
        Your own directions (lists of arrays); default :func:`random_directions`.
    """
    plist = [np.asarray(params, dtype=np.float64)] if isinstance(params, np.ndarray) else \
        [np.asarray(p, dtype=np.float64) for p in params]
    if not plist:
        raise ValueError("params: expected at least one array")
    lo, hi = _check.pair("span", span)
    resolution = _check.integer("resolution", resolution, low=2)
    if directions is None:
        directions = random_directions(plist, seed, normalization, ignore_1d)
    else:
        if len(directions) != 2:
            raise ValueError("directions: expected two directions")
        directions = tuple([np.asarray(d, dtype=np.float64) for d in dirs] for dirs in directions)
        for k, dirs in enumerate(directions):
            if [d.shape for d in dirs] != [p.shape for p in plist]:
                raise ValueError(f"directions[{k}]: shapes do not match params")
    alphas = np.linspace(lo, hi, resolution)
    betas = np.linspace(lo, hi, resolution)
    values = np.empty((resolution, resolution))
    d1, d2 = directions
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            point = [p + a * u + b * v for p, u, v in zip(plist, d1, d2)]
            values[i, j] = float(loss(point))
    center = float(loss([p.copy() for p in plist]))
    return Landscape(alphas, betas, values, directions, center)


class ConditioningTrace(NamedTuple):
    gTg: np.ndarray  # ‖g‖² at every point
    gTHg: np.ndarray  # gᵀHg
    predicted_change: np.ndarray  # ½η²gᵀHg − ηgᵀg
    actual_change: np.ndarray  # f(x − ηg) − f(x)

    @property
    def ill_conditioned(self) -> np.ndarray:
        """Points where the second-order term wins: ½η²gᵀHg > ηgᵀg (the step raises f)."""
        return self.predicted_change > 0


def conditioning_trace(f: Any, points: Any, lr: float) -> ConditioningTrace:
    """gᵀg, gᵀHg and the change of f a gradient step of size ``lr`` predicts and makes.

    ``f`` is a :class:`~optbowl.functions.Function` or a :class:`~optbowl.QuadraticBowl`;
    ``points`` an array of points (steps, d) (or (steps,) for one variable), or a
    :class:`~optbowl.Trajectory`.
    """
    lr = _check.real("lr", lr, low=0.0)
    X = np.asarray(getattr(points, "x", points), dtype=np.float64)
    one_d = getattr(f, "dim", None) == 1 and (X.ndim == 1 or X.shape[-1] != 1)
    P = X.reshape(-1, 1) if one_d or X.ndim == 1 else X
    if one_d:
        g = np.asarray(f.grad(P[:, 0]), dtype=np.float64)[:, None]
        H = np.asarray(f.hessian(P[:, 0]), dtype=np.float64)[:, None, None]
        step = P[:, 0] - lr * g[:, 0]
        f0, f1 = f.f(P[:, 0]), f.f(step)
    else:
        g = np.asarray(f.grad(P), dtype=np.float64)
        H = np.broadcast_to(_hessian_at(f, P), P.shape + P.shape[-1:])
        f0, f1 = f.f(P), f.f(P - lr * g)
    gTg = np.einsum("mi,mi->m", g, g)
    gTHg = np.einsum("mi,mij,mj->m", g, H, g)
    return ConditioningTrace(gTg, gTHg, 0.5 * lr * lr * gTHg - lr * gTg,
                             np.asarray(f1 - f0, dtype=np.float64))


def _hessian_at(f: Any, x: np.ndarray) -> np.ndarray:
    """f.hessian(x) for a Function; a QuadraticBowl's Hessian is the constant A."""
    H = f.hessian(x) if callable(f.hessian) else f.hessian
    return np.asarray(H, dtype=np.float64)


def newton(f: Any, x0: Any, steps: int, lr: float = 1.0) -> np.ndarray:
    """Newton's method x ← x − η H(x)⁻¹∇f(x); returns the iterates (steps + 1, ...).

    It looks for a zero of the gradient and is blind to which kind: where the Hessian is
    negative the step goes uphill. On d2l's x·cos(0.15πx) from x = 10 it ends near the
    maximum at 26.83 rather than the minimum it started next to.
    """
    steps = _check.integer("steps", steps, low=0)
    lr = _check.real("lr", lr)
    x = np.array(x0, dtype=np.float64)
    out = [x.copy()]
    with np.errstate(all="ignore"):
        for _ in range(steps):
            g, H = np.asarray(f.grad(x)), _hessian_at(f, x)
            x = x - lr * (g / H if x.ndim == 0 else np.linalg.solve(H, g))
            out.append(np.array(x))
    return np.array(out)


def descend(f: Any, x0: Any, steps: int, optimizer: Any, **hyper: Any) -> np.ndarray:
    """Run one of optbowl's optimizer classes on ``f`` from x0.

    The optimizer updates x in place from ``f.grad(x)`` (and the loss, where its rule reads it);
    returns the iterates, shape (steps + 1, ...).
    """
    steps = _check.integer("steps", steps, low=0)
    x = np.array(x0, dtype=np.float64).reshape(-1)
    shape = np.shape(x0)
    opt = optimizer(x, **hyper)
    out = [x.reshape(shape).copy()]
    for _ in range(steps):
        g = np.asarray(f.grad(x.reshape(shape)), dtype=np.float64).reshape(-1)
        opt.step(g, loss=float(f.f(x.reshape(shape)))) if _wants_loss(opt) else opt.step(g)
        out.append(x.reshape(shape).copy())
    return np.array(out)


def _wants_loss(opt: Any) -> bool:
    rule = getattr(opt, "rule", None)
    return bool(rule is not None and rule.reads_loss)


def scipy_path(f: Any, x0: Any, method: str = "BFGS", *, max_iter: int = 100) -> np.ndarray:
    r"""The iterates of SciPy's BFGS or Levenberg–Marquardt on ``f``, shape (k + 1, d).

    ``"BFGS"``: ``scipy.optimize.minimize(f.f, x0, jac=f.grad, method="BFGS")``, the
    quasi-Newton method that builds an inverse-Hessian estimate :math:`H_k` from gradient
    differences (:math:`s_k = x_{k+1} - x_k`, :math:`y_k = g_{k+1} - g_k`,
    :math:`H_{k+1} = (I - \rho s y^\top) H_k (I - \rho y s^\top) + \rho s s^\top`,
    :math:`\rho = 1/y^\top s`) and steps :math:`-H_k g_k` with a line search; the path is
    recorded by its callback. ``"lm"``: ``scipy.optimize.least_squares(f.residuals, x0,
    jac=f.residual_jacobian, method="lm")`` for f = ‖r‖², steps
    :math:`-(J^\top J + \lambda D)^{-1}J^\top r` with λ adapted per step (MINPACK); MINPACK
    reports no iterates, so the path is the solution after 1, 2, ... residual
    evaluations (each a fresh, deterministic run), repeated points dropped.

    Needs SciPy. Iterates until SciPy's own convergence test or ``max_iter``.

    >>> import optbowl as ob
    >>> from optbowl.landscape import scipy_path
    >>> rosen = ob.functions.rosenbrock()
    >>> path = scipy_path(rosen, [-1.2, 1.0], "lm")
    >>> path[0].tolist(), bool(abs(path[-1] - 1).max() < 1e-8)
    ([-1.2, 1.0], True)
    """
    method = _check.choice("method", method, ("BFGS", "lm"))
    max_iter = _check.integer("max_iter", max_iter, low=1)
    x = np.array(x0, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise ValueError("x0: must be finite")
    try:
        from scipy import optimize  # type: ignore[import-untyped]
    except ImportError as err:  # pragma: no cover - scipy comes with the examples extra
        raise ImportError("scipy_path needs SciPy (pip install scipy)") from err
    if method == "lm":
        if not hasattr(f, "residuals"):
            raise TypeError("f: Levenberg–Marquardt needs a sum of squares, a function with "
                            "residuals (e.g. optbowl.functions.rosenbrock())")
        jac = getattr(f, "residual_jacobian", None)
        path = [x.copy()]
        final = optimize.least_squares(f.residuals, x, jac=jac if jac else "2-point",
                                       method="lm")
        for n in range(1, max_iter + 1):
            xi = optimize.least_squares(f.residuals, x, jac=jac if jac else "2-point",
                                        method="lm", max_nfev=n).x
            if not np.array_equal(xi, path[-1]):
                path.append(xi)
            if np.array_equal(xi, final.x):
                break
        return np.array(path)
    shape = np.shape(x0)
    points = [x.copy()]
    optimize.minimize(lambda p: float(f.f(p.reshape(shape))), x,
                      jac=lambda p: np.asarray(f.grad(p.reshape(shape)), float).reshape(-1),
                      method="BFGS", options={"maxiter": max_iter, "gtol": 1e-10},
                      callback=lambda p: points.append(np.array(p)))
    return np.array(points)


__all__: List[str] = ["ConditioningTrace", "Landscape", "conditioning_trace", "descend",
                      "loss_landscape", "newton", "random_directions", "scipy_path"]
