"""RMSprop, one fused multi-tensor pass per step."""

from __future__ import annotations

from typing import Any, Dict, Tuple

from . import _check
from ._optimizer import Optimizer


class RMSprop(Optimizer):
    r"""RMSprop (Tieleman & Hinton, 2012) with torch.optim.RMSprop's names and semantics.

    With :math:`g = \nabla f(p) + \lambda p`:

    .. math::

        v \leftarrow \alpha v + (1-\alpha) g^2, \qquad
        \bar g \leftarrow \alpha \bar g + (1-\alpha) g \ \text{(centered)}, \qquad
        a = \sqrt{v - \bar g^2} + \epsilon \ \text{(centered) or } \sqrt{v} + \epsilon

    then :math:`b \leftarrow \mu b + g/a,\ p \leftarrow p - \eta b` with momentum
    :math:`\mu > 0`, else :math:`p \leftarrow p - \eta\, g / a`. The operations follow
    torch's order (torch has no fused CPU RMSprop); results agree with torch's
    single-tensor and foreach paths to an ulp or so per step.

    Parameters
    ----------
    params : ndarray, sequence of ndarray, or list of dict
        Arrays to optimise in place, or torch-style param groups.
    lr : float
        Learning rate :math:`\eta \ge 0`.
    alpha : float
        Smoothing constant :math:`\alpha \ge 0`.
    eps : float
        Added to the denominator, >= 0.
    weight_decay : float
        L2 penalty :math:`\lambda \ge 0`.
    momentum : float
        Momentum factor :math:`\mu \ge 0`.
    centered : bool
        Normalise by the estimated variance instead of the second moment.
    maximize : bool
        Follow the gradient uphill.

    Notes
    -----
    Each parameter keeps ``square_avg``, ``grad_avg`` and ``momentum_buffer`` arrays (the
    last two untouched zeros while not centered / momentum is 0).

    Examples
    --------
    >>> import numpy as np, optbowl as ob
    >>> x = np.array([1.0, -1.0])
    >>> opt = ob.RMSprop(x, lr=0.01, alpha=0.0)
    >>> opt.step(2 * x)
    >>> x.round(6)
    array([ 0.99, -0.99])
    """

    _state_names = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            {
                "lr": lr,
                "alpha": alpha,
                "eps": eps,
                "weight_decay": weight_decay,
                "momentum": momentum,
                "centered": centered,
                "maximize": maximize,
            },
        )

    def _check_group(self, group: Dict[str, Any]) -> None:
        for name in ("lr", "alpha", "eps", "weight_decay", "momentum"):
            group[name] = _check.real(name, group[name], low=0.0)
        group["centered"] = _check.boolean("centered", group["centered"])
        group["maximize"] = _check.boolean("maximize", group["maximize"])

    def _group_args(self, g: Dict[str, Any]) -> tuple:
        return (g["lr"], g["alpha"], g["eps"], g["weight_decay"], g["momentum"], g["centered"],
                g["maximize"])

    def _call_layout(self) -> Tuple[str, tuple, int, Dict[str, Any]]:
        return "rmsprop", (), 3, {}
