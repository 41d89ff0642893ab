"""QuickProp: Fahlman's per-element secant (parabola-jump) rule, one fused pass per step."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import _check, _device
from ._optimizer import Optimizer


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

    _state_names = ("prev_grad", "prev_step")

    def __init__(
        self, params: Any, lr: float = 1e-2, max_growth: float = 1.75, maximize: bool = False
    ) -> None:
        super().__init__(params, {"lr": lr, "max_growth": max_growth, "maximize": maximize})

    def _add_param_group(self, group: Dict[str, Any]) -> None:
        # No CUDA kernel: device arrays are refused before the device checks look at them.
        if isinstance(group, dict) and "params" in group:
            arrays = group["params"]
            if isinstance(arrays, np.ndarray) or _device.is_device_array(arrays):
                arrays = [arrays]
            else:
                try:
                    arrays = list(arrays)
                except TypeError:  # not iterable: the base class says what is wrong
                    arrays = []
                else:
                    group = {**group, "params": arrays}
            _device.host_only("params", "QuickProp", arrays, start=len(self._params))
        super()._add_param_group(group)

    def _complex_refusal(self) -> Optional[str]:
        return "torch has no QuickProp"

    def _check_group(self, group: Dict[str, Any]) -> None:
        group["lr"] = _check.real("lr", group["lr"], low=0.0)
        group["max_growth"] = _check.real("max_growth", group["max_growth"], low=0.0, low_open=True)
        group["maximize"] = _check.boolean("maximize", group["maximize"])

    def _group_args(self, g: Dict[str, Any]) -> tuple:
        return (g["lr"], g["max_growth"], g["maximize"])

    def _call_layout(self) -> Tuple[str, tuple, int, Dict[str, Any]]:
        return "quickprop", (), 2, {}
