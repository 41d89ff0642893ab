r"""Worst cases over a function class: performance estimation (PEP), closed forms, quadratics.

The quadratic bowl answers "how fast on *this* bowl". Performance estimation (Drori &
Teboulle 2014; Taylor, Hendrickx & Glineur 2017) answers "how slow on the *worst*
function of a class": the largest :math:`f(x_N) - f_*` that N steps of a method can leave
over every L-smooth, μ-strongly convex function (μ = 0: merely convex) and every start
with :math:`\|x_0 - x_*\| \le 1`. That maximum is the value of a small semidefinite
program, which `PEPit <https://pepit.readthedocs.io>`_ builds and solves (install it with
``pip install "optbowl[pep]"``; it brings cvxpy and its solvers).

* :func:`worst_case` — the tight bound: the proved closed form where one exists, PEPit
  otherwise.
* :func:`pep_bound` — always PEPit (the SDP; accurate to about 1e-6 relative).
* :func:`closed_form_bound` — gradient descent's exact worst case (proved):

  .. math::

     \frac{f(x_N) - f_*}{\|x_0 - x_*\|^2} \le \frac{L}{2}\max\left(
     \frac{\kappa}{\kappa - 1 + (1 - \kappa h)^{-2N}},\ (1 - h)^{2N}\right),
     \qquad h = \eta L \in (0, 2),\ \kappa = \mu / L,

  which for μ = 0 (κ → 0) is :math:`\frac{L}{2}\max\left(\frac{1}{2Nh + 1},
  (1 - h)^{2N}\right)`. Drori & Teboulle (2014) proved it for h ≤ 1, μ = 0, and
  conjectured it for h < 2; Taylor, Hendrickx & Glineur (2017) conjectured the μ > 0
  form; J. Kim (2024, arXiv:2412.04427) proved both for every h ∈ (0, 2). The first term
  is attained by a Huber function (:func:`optbowl.functions.huber`), the second by the
  quadratic :math:`\frac{L}{2}x^2`.
* :func:`worst_quadratic` — the same maximum over quadratics only (the bowl): on a
  quadratic every eigen-direction evolves alone, so the worst one puts the whole start on
  one eigenvalue λ ∈ [μ, L] and is :math:`\max_\lambda \tfrac12\lambda\,c_N(\lambda)^2`,
  with :math:`c_N(\lambda)` the factor N steps multiply that direction's error by
  (:meth:`optbowl.QuadraticBowl.predict`). Quadratics understate the worst case: for
  gradient descent with η = 1/L and N = 4 the class's worst is 1/18 of L, the worst
  quadratic's 0.02165 L, 2.6 times less.

Methods, with torch.optim's plain gradient rule's conventions (``v₀ = 0``, dampening 0):

==================================  ===========================================================
``"gd"``                            :math:`x_{k+1} = x_k - \eta\nabla f(x_k)`
``"momentum"``, ``"heavy_ball"``    :math:`v_{k+1} = \beta v_k + \nabla f(x_k)`,
                                    :math:`x_{k+1} = x_k - \eta v_{k+1}` — Polyak's heavy ball
                                    :math:`x_{k+1} = x_k - \eta\nabla f(x_k) + \beta(x_k - x_{k-1})`
                                    with :math:`x_{-1} = x_0`
``"nesterov"``                      :math:`v_{k+1} = \beta v_k + \nabla f(x_k)`,
                                    :math:`x_{k+1} = x_k - \eta(\nabla f(x_k) + \beta v_{k+1})`
==================================  ===========================================================

Rules whose step depends on the gradient's sign or on running statistics (the
element-wise adaptive rules of optbowl) or on the Hessian (Newton) are not fixed-step
first-order methods, and a PEP of this form cannot bound them: they are refused with a
ValueError.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple, Optional, Tuple

import numpy as np

from . import _check

__all__ = ["WorstQuadratic", "closed_form_bound", "pep_bound", "worst_case", "worst_quadratic"]

#: the methods a PEP can model here, each with its canonical name
METHODS = {"gd": "gd", "momentum": "momentum", "heavy_ball": "momentum", "nesterov": "nesterov"}


def _not_fixed_step() -> Tuple[str, ...]:
    """The names of the registered rules (and classes) that are no fixed-step method."""
    from . import _registry

    adaptive = [r for r in _registry.rules() if not r.fixed_step]
    names = [r.name for r in adaptive] + [c.lower() for r in adaptive for c in r.classes]
    return (*dict.fromkeys(names), "newton")
PEP_EXTRA = 'PEPit and cvxpy (pip install "optbowl[pep]")'


def _arguments(method: Any, L: Any, mu: Any, lr: Any, steps: Any,
               momentum: Any) -> Tuple[str, float, float, float, int, float]:
    """Checked (method, L, mu, lr, steps, momentum); momentum 0.0 for gd."""
    if not isinstance(method, str):
        raise TypeError(f"method: expected a string, got {type(method).__name__}")
    if method not in METHODS:
        why = (" is not a fixed-step first-order method, and a performance estimation "
               "problem cannot bound it" if method in _not_fixed_step() else " is unknown")
        raise ValueError(f"method: {method!r}{why}; expected one of "
                         f"{', '.join(map(repr, METHODS))}")
    name = METHODS[method]
    L = _check.real("L", L, low=0.0, low_open=True)
    mu = _check.real("mu", mu, low=0.0, high=L)
    lr = _check.real("lr", lr, low=0.0, low_open=True)
    steps = _check.integer("steps", steps, low=0)
    if name == "gd":
        if momentum is not None:
            raise ValueError("momentum: gd has none; use method='momentum' or 'nesterov'")
        beta = 0.0
    else:
        if momentum is None:
            raise ValueError(f"momentum: required for method={method!r}")
        beta = _check.real("momentum", momentum, low=0.0)
    return name, L, mu, lr, steps, beta


def _gd_closed_form(L: float, mu: float, lr: float, steps: int) -> float:
    h, kappa, N = lr * L, mu / L, steps
    if kappa == 0.0:
        first = 1.0 / (2 * N * h + 1)
    elif kappa * h < 1.0:
        # κ/(κ − 1 + (1 − κh)^(−2N)) = κq / (1 − q + κq), q = (1 − κh)^(2N), without the
        # cancellation of 1 − q for small κ
        log_q = 2 * N * math.log1p(-kappa * h)
        q = math.exp(log_q)
        first = kappa * q / (-math.expm1(log_q) + kappa * q)
    else:
        q = (1.0 - kappa * h) ** (2 * N)
        first = kappa * q / (1.0 - (1.0 - kappa) * q)
    return 0.5 * L * max(first, (1.0 - h) ** (2 * N))


def closed_form_bound(method: str, *, L: float, mu: float = 0.0, lr: float, steps: int,
                      momentum: Optional[float] = None) -> float:
    r"""The proved exact worst case of ``f(x_N) − f*`` over the class, where one is known.

    Gradient descent with h = ηL ∈ (0, 2) (momentum methods with β = 0 are gradient
    descent):

    .. math::

       \tau = \frac{L}{2}\max\left(\frac{\kappa}{\kappa - 1 + (1 - \kappa h)^{-2N}},\
       (1 - h)^{2N}\right), \quad \kappa = \frac{\mu}{L};\qquad
       \mu = 0:\ \tau = \frac{L}{2}\max\left(\frac{1}{2Nh + 1}, (1 - h)^{2N}\right)

    (Drori & Teboulle 2014; Taylor, Hendrickx & Glineur 2017; proved for all h ∈ (0, 2)
    by J. Kim 2024). Raises ValueError where no closed form is proved (momentum β > 0,
    h ≥ 2).

    >>> import optbowl as ob
    >>> ob.closed_form_bound("gd", L=3.0, lr=1 / 3, steps=4)  # PEPit's own example: 1/6
    0.16666666666666666
    """
    name, L, mu, lr, steps, beta = _arguments(method, L, mu, lr, steps, momentum)
    if beta != 0.0:
        raise ValueError(f"momentum: no closed form is proved for {method} with momentum > 0; "
                         "use pep_bound (PEPit)")
    if lr * L >= 2.0:
        raise ValueError(f"lr: the closed form is proved for lr·L in (0, 2), got {lr * L:g}; "
                         "use pep_bound (PEPit)")
    return _gd_closed_form(L, mu, lr, steps)


def _has_closed_form(L: float, lr: float, beta: float) -> bool:
    return beta == 0.0 and lr * L < 2.0


def _require_pepit() -> Any:
    try:
        import cvxpy
        import PEPit  # type: ignore[import-untyped]
    except ImportError as err:
        raise ImportError(f"performance estimation needs {PEP_EXTRA}: {err}") from err
    return PEPit, cvxpy


def pep_bound(method: str, *, L: float, mu: float = 0.0, lr: float, steps: int,
              momentum: Optional[float] = None, solver: Optional[str] = None) -> float:
    r"""The worst case of ``f(x_N) − f*`` over the class, solved as a PEP by PEPit.

    Declares an L-smooth (μ-strongly) convex function, a start with
    :math:`\|x_0 - x_*\|^2 \le 1`, writes the N steps of ``method`` (see the module
    docstring for the momentum conventions) and maximises :math:`f(x_N) - f_*`; the SDP
    is solved through cvxpy (``solver``: a cvxpy solver name; default CLARABEL where
    installed, else cvxpy's choice). Returns the dual value, an upper bound accurate to
    about 1e-6 relative (a little less for N in the tens, where the solver reports an
    inaccurate optimum). The SDP grows as N², and takes about a second at N = 20. For
    μ = L the class holds only :math:`\tfrac L2\|x - x_*\|^2 + f_*`, and the value is that
    quadratic's (:func:`worst_quadratic`).

    Needs PEPit and cvxpy: ``pip install "optbowl[pep]"`` (ImportError otherwise).

    >>> import optbowl as ob
    >>> round(ob.pep_bound("gd", L=3.0, lr=1 / 3, steps=4), 6)
    0.166667
    """
    name, L, mu, lr, steps, beta = _arguments(method, L, mu, lr, steps, momentum)
    if solver is not None and not isinstance(solver, str):
        raise TypeError(f"solver: expected a cvxpy solver name, got {type(solver).__name__}")
    _, cvxpy = _require_pepit()
    if mu == L:  # the class is L‖x − x*‖²/2 + f* alone (PEPit's interpolation divides by L − μ)
        return worst_quadratic(method, L=L, mu=mu, lr=lr, steps=steps, momentum=momentum).value
    from PEPit import PEP  # type: ignore[import-untyped]
    from PEPit.functions import (  # type: ignore[import-untyped]
        SmoothConvexFunction, SmoothStronglyConvexFunction)

    installed = cvxpy.installed_solvers()
    if solver is None:
        solver = "CLARABEL" if "CLARABEL" in installed else None
    elif solver.upper() not in installed:
        raise ValueError(f"solver: {solver!r} is not installed; cvxpy has {installed}")

    problem = PEP()
    if mu > 0.0:
        func = problem.declare_function(SmoothStronglyConvexFunction, L=L, mu=mu)
    else:
        func = problem.declare_function(SmoothConvexFunction, L=L)
    x_star = func.stationary_point()
    f_star = func(x_star)
    x0 = problem.set_initial_point()
    problem.set_initial_condition((x0 - x_star) ** 2 <= 1)
    x, v = x0, None
    for _ in range(steps):
        g = func.gradient(x)
        if name == "gd":
            x = x - lr * g
            continue
        v = g if v is None else beta * v + g  # torch: the first buffer is the gradient
        x = x - lr * (g + beta * v) if name == "nesterov" else x - lr * v
    problem.set_performance_metric(func(x) - f_star)
    with warnings.catch_warnings():
        # cvxpy warns "Solution may be inaccurate" for long runs; the status is checked below
        warnings.simplefilter("ignore")
        value = problem.solve(wrapper="cvxpy", solver=solver, verbose=0)
    status = getattr(getattr(problem.wrapper, "prob", None), "status", "optimal")
    if status not in ("optimal", "optimal_inaccurate") or value is None \
            or not math.isfinite(value):
        raise RuntimeError(f"PEPit: the SDP solver ended with status {status!r}")
    return float(value)


def worst_case(method: str, *, L: float, mu: float = 0.0, lr: float, steps: int,
               momentum: Optional[float] = None) -> float:
    r"""The tight bound on :math:`f(x_N) - f_*` over every L-smooth, μ-strongly convex f.

    The largest value N steps of ``method`` from any :math:`x_0` with
    :math:`\|x_0 - x_*\| \le 1` can leave, over every L-smooth convex function
    (μ-strongly convex when μ > 0), in any dimension: for every such f and start,

    .. math:: f(x_N) - f_* \le \tau\,\|x_0 - x_*\|^2,

    and some f attains it. Where a closed form is proved (gradient descent, or a momentum
    method with β = 0, with ηL < 2) it is that, exactly (:func:`closed_form_bound`);
    otherwise it is the performance estimation problem solved by PEPit
    (:func:`pep_bound`), which needs ``pip install "optbowl[pep]"``: without PEPit those
    cases raise an ImportError naming the extra.

    Parameters
    ----------
    method : str
        ``"gd"``, ``"momentum"`` (alias ``"heavy_ball"``) or ``"nesterov"``, with
        torch.optim's conventions (module docstring). Element-wise adaptive rules and
        Newton raise a ValueError.
    L : float
        Smoothness: :math:`\|\nabla f(x) - \nabla f(y)\| \le L\|x - y\|`, L > 0.
    mu : float
        Strong convexity, 0 ≤ μ ≤ L (0: convex).
    lr : float
        Step size η > 0.
    steps : int
        N ≥ 0.
    momentum : float
        β ≥ 0 for ``"momentum"`` and ``"nesterov"``; must be None for ``"gd"``.

    Returns
    -------
    float
        τ, for :math:`\|x_0 - x_*\| \le 1`.

    Examples
    --------
    PEPit's own example (L = 3, η = 1/L, N = 4) is 1/6; the worst quadratic is 2.6
    times smaller:

    >>> import optbowl as ob
    >>> ob.worst_case("gd", L=3.0, lr=1 / 3, steps=4)
    0.16666666666666666
    >>> round(ob.worst_quadratic("gd", L=3.0, lr=1 / 3, steps=4).value, 6)
    0.064957
    """
    name, L, mu, lr, steps, beta = _arguments(method, L, mu, lr, steps, momentum)
    if _has_closed_form(L, lr, beta):
        return _gd_closed_form(L, mu, lr, steps)
    try:
        _require_pepit()
    except ImportError as err:
        raise ImportError(f"worst_case({method!r}, lr·L = {lr * L:g}, momentum = {beta:g}) "
                          f"has no proved closed form and needs {PEP_EXTRA}") from err
    return pep_bound(method, L=L, mu=mu, lr=lr, steps=steps, momentum=momentum)


class WorstQuadratic(NamedTuple):
    value: float  # max over quadratics of f(x_N) − f*, ‖x0 − x*‖ ≤ 1
    eigenvalue: float  # the eigenvalue λ ∈ [μ, L] that attains it


def worst_quadratic(method: str, *, L: float, mu: float = 0.0, lr: float, steps: int,
                    momentum: Optional[float] = None) -> WorstQuadratic:
    r"""The worst case of ``f(x_N) − f*`` over quadratics only: the worst bowl of the class.

    On :math:`f = \tfrac12 x^\top A x` with spectrum in [μ, L] each eigen-direction's
    error is multiplied by :math:`c_N(\lambda)` after N steps, so
    :math:`f(x_N) - f_* = \tfrac12\sum_i \lambda_i c_N(\lambda_i)^2 e_{0,i}^2`; with
    :math:`\sum_i e_{0,i}^2 \le 1` the largest is a single direction:

    .. math:: \max_{\mu \le \lambda \le L}\ \tfrac12\,\lambda\,c_N(\lambda)^2 .

    :math:`c_N` is the exact error recurrence of :meth:`optbowl.QuadraticBowl.predict`
    (torch's momentum conventions), evaluated on a grid of eigenvalues and refined twice
    around the largest value (relative accuracy about 1e-9). The arguments are those of
    :func:`worst_case`; this needs no PEPit.

    Returns
    -------
    WorstQuadratic(value, eigenvalue)

    >>> import optbowl as ob
    >>> wq = ob.worst_quadratic("gd", L=1.0, lr=1.0, steps=4)
    >>> round(wq.value, 6), round(wq.eigenvalue, 6)        # λ = 1/(2N + 1) = 1/9
    (0.021652, 0.111111)
    """
    name, L, mu, lr, steps, beta = _arguments(method, L, mu, lr, steps, momentum)
    def values(lams: np.ndarray) -> np.ndarray:
        # the error recurrence of QuadraticBowl.predict, one eigenvalue per entry:
        # v' = βv + λe, e' = e − η(v' or λe + βv'), from e = 1, v = 0
        e, v = np.ones_like(lams), np.zeros_like(lams)
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(steps):
                g = lams * e
                v = beta * v + g
                e = e - lr * (g + beta * v if name == "nesterov" else v)
            return 0.5 * lams * e * e

    low = mu if mu > 0 else L * 1e-12  # λ = 0 gives 0
    grid = np.unique(np.concatenate([np.linspace(low, L, 2001), np.geomspace(low, L, 2001)]))
    best = -np.inf
    lam = L
    for _ in range(3):
        vals = values(grid)
        i = int(np.nanargmax(vals))
        if vals[i] > best:
            best, lam = float(vals[i]), float(grid[i])
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        grid = np.linspace(lo, hi, 401)
    return WorstQuadratic(best, lam)
