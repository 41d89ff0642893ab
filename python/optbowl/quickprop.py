"""QuickProp: Fahlman's per-element secant (parabola-jump) rule, one fused pass per step."""

from __future__ import annotations

from typing import Any, Optional

from . import functional
from ._optimizer import Optimizer
from ._registry import BOOL, BenchFamily, BowlCall, DemoPhase, Hyper, Rule, register


#: The registry entry of QuickProp (optbowl._registry).
RULE = Rule(
    name="quickprop",
    cls="QuickProp",
    hyper=(
        Hyper("lr", default=1e-2, low=0.0),
        Hyper("max_growth", default=1.75, low=0.0, low_open=True),
        Hyper("maximize", BOOL, False),
    ),
    state=("prev_grad", "prev_step"),
    operands=("prev_grads", "prev_steps"),
    layers=frozenset({"class", "functional", "bowl", "torch", "bench"}),
    bowl=BowlCall(("lr", "max_growth")),
    bench=(BenchFamily("quickprop", "QuickProp (Fahlman)", 2, {"lr": 1e-2}),),
    demo=(DemoPhase("QuickProp", curvature_lr=True),),
)


class QuickProp(Optimizer):
    r"""QuickProp (Fahlman, 1988), as on seed 004's slides 118–119.

    Every element fits a parabola through its last two gradients (a finite-difference
    estimate of the second derivative) and jumps to its minimum:

    .. math::

        \Delta w_t = \Delta w_{t-1}\,\frac{g_t}{g_{t-1} - g_t}, \qquad w \leftarrow w + \Delta w_t

    with :math:`|\Delta w_t| \le \mu\,|\Delta w_{t-1}|` (``max_growth`` :math:`\mu`), and:

    - no previous step (the first step, or :math:`\Delta w_{t-1} = 0`): a plain gradient
      step :math:`\Delta w_t = -\eta\, g_t`;
    - :math:`g_t = 0`: no move (:math:`\Delta w_t = 0`, so the next step is a gradient step);
    - :math:`g_t` and :math:`g_{t-1}` of the same sign with :math:`|g_t| \ge |g_{t-1}|`
      (the slope did not flatten, :math:`g_t = g_{t-1}` included: the secant parabola has
      no minimum ahead): the maximum-growth step in the previous direction,
      :math:`\Delta w_t = \mu\,\Delta w_{t-1}`.

    On a separable quadratic (an axis-aligned bowl, curvature :math:`a` along the element)
    the first two steps land on the minimum exactly (up to rounding) when the secant step
    is not capped: the second step is :math:`(1 - \eta a)/(\eta a)` times the first, so
    it needs :math:`|1 - \eta a| \le \mu\,\eta a`, i.e.
    :math:`\eta a \ge 1/(1 + \mu)` (and :math:`\eta a \le 1/(1 - \mu)` when
    :math:`\mu < 1`). With Fahlman's :math:`\mu = 1.75`, :math:`\eta a \ge 1/2.75
    \approx 0.364`; a smaller step is capped at :math:`\mu` times the previous one and
    the element approaches the minimum over more steps. On a rotated bowl the elements are
    coupled and each secant sees a mix of curvatures.

    Parameters
    ----------
    params : ndarray, sequence of ndarray, or list of dict
        Arrays to optimise in place, or param groups.
    lr : float
        Step size :math:`\eta \ge 0` of the gradient steps.
    max_growth : float
        :math:`\mu > 0`, the largest factor by which a step may grow (Fahlman: 1.75).
    maximize : bool
        Follow the gradient uphill.

    Examples
    --------
    >>> import numpy as np, optbowl as ob
    >>> x = np.array([3.0])
    >>> opt = ob.QuickProp(x, lr=0.3)
    >>> opt.step(2 * x); opt.step(2 * x)   # f(x) = x^2
    >>> x
    array([0.])
    """

    rule = RULE

    def __init__(
        self, params: Any, lr: float = 1e-2, max_growth: float = 1.75, maximize: bool = False,
        *,
        state_dtype: Any = None,
    ) -> None:
        super().__init__(params, RULE.pick(locals()), state_dtype=state_dtype)

    def _complex_refusal(self) -> Optional[str]:
        return "torch has no QuickProp"


def quickprop(
    params, grads, prev_grads, prev_steps, *, lr=1e-2, max_growth=1.75, maximize=False
) -> None:
    """One QuickProp step (see :class:`optbowl.QuickProp`); ``prev_grads`` and ``prev_steps``
    start as zeros.

    Examples
    --------
    >>> import numpy as np
    >>> from optbowl import functional as F
    >>> x, prev_grad, prev_step = np.array([3.0]), np.zeros(1), np.zeros(1)
    >>> for _ in range(2):                 # f(x) = x^2
    ...     F.quickprop([x], [2 * x], [prev_grad], [prev_step], lr=0.3)
    >>> x
    array([0.])
    """
    functional.run(RULE, params, grads, (prev_grads, prev_steps), RULE.pick(locals()),
                   complex_refusal="torch has no QuickProp")


register(RULE, quickprop)
