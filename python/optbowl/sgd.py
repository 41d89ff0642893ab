"""SGD: plain gradient descent, heavy-ball momentum and Nesterov, one fused pass per step."""

from __future__ import annotations

from typing import Any, Dict, Tuple

from . import _check
from ._optimizer import Optimizer


class SGD(Optimizer):
    r"""Stochastic gradient descent with torch.optim.SGD's semantics.

    With :math:`g = \nabla f(p) + \lambda p` (``maximize`` negates the gradient):

    .. math::

        b_1 = g, \qquad b_t = \mu\, b_{t-1} + (1 - \tau)\, g \quad (t > 1), \qquad
        p \leftarrow p - \eta \cdot \begin{cases} g + \mu\, b_t & \text{nesterov} \\
        b_t & \text{momentum } \mu \ne 0 \\ g & \mu = 0 \end{cases}

    rounded exactly as torch 2.13 rounds it on the CPU (every ``a*b + c`` one fused
    multiply-add), so the results are bit-identical to ``torch.optim.SGD`` with
    ``foreach=True`` and the single-tensor loop (torch's default paths), in float32 and
    float64, and to ``fused=True`` but for each array's last size mod 8 (float32) or mod 4
    (float64) elements, whose momentum buffer torch's fused kernel rounds its own way
    (``optbowl.torch.SGD(..., fused=True)`` rounds them as it does).

    Parameters
    ----------
    params : ndarray, sequence of ndarray, or list of dict
        Arrays to optimise in place, or torch-style param groups.
    lr : float
        Learning rate :math:`\eta \ge 0`.
    momentum : float
        Momentum factor :math:`\mu \ge 0` (0: plain gradient descent).
    dampening : float
        Dampening :math:`\tau` of the gradient in the buffer.
    nesterov : bool
        Nesterov momentum (needs momentum > 0 and dampening = 0).
    weight_decay : float
        L2 penalty :math:`\lambda \ge 0`.
    maximize : bool
        Follow the gradient uphill.

    Notes
    -----
    Each parameter keeps a ``momentum_buffer`` array (zeros and untouched while momentum
    is 0), so that a group's momentum can change between steps. The buffer starts as the
    gradient on a parameter's first step; momentum switched on later starts from the zero
    buffer (:math:`b = (1-\tau) g`), where torch would start from :math:`b = g` (the same
    unless ``dampening`` is set).

    Examples
    --------
    >>> import numpy as np, optbowl as ob
    >>> x = np.array([1.0, -2.0])
    >>> opt = ob.SGD(x, lr=0.25)
    >>> opt.step(2 * x)                # gradient of |x|^2
    >>> x
    array([ 0.5, -1. ])
    """

    _state_names = ("momentum_buffer",)

    def __init__(
        self,
        params: Any,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            {
                "lr": lr,
                "momentum": momentum,
                "dampening": dampening,
                "nesterov": nesterov,
                "weight_decay": weight_decay,
                "maximize": maximize,
            },
        )

    def _check_group(self, group: Dict[str, Any]) -> None:
        group["lr"] = _check.real("lr", group["lr"], low=0.0)
        group["momentum"] = _check.real("momentum", group["momentum"], low=0.0)
        group["dampening"] = _check.real("dampening", group["dampening"])
        group["weight_decay"] = _check.real("weight_decay", group["weight_decay"], low=0.0)
        group["nesterov"] = _check.boolean("nesterov", group["nesterov"])
        group["maximize"] = _check.boolean("maximize", group["maximize"])
        if group["nesterov"] and (group["momentum"] <= 0.0 or group["dampening"] != 0.0):
            raise ValueError(
                "nesterov: Nesterov momentum requires a momentum > 0 and zero dampening, got "
                f"momentum={group['momentum']}, dampening={group['dampening']}"
            )

    _takes_steps = True

    def _group_args(self, g: Dict[str, Any]) -> tuple:
        return (g["lr"], g["momentum"], g["dampening"], g["weight_decay"], g["nesterov"],
                g["maximize"])

    def _call_layout(self) -> Tuple[str, tuple, int, Dict[str, Any]]:
        return "sgd", (), 1, {}
