"""RMSprop, one fused multi-tensor pass per step."""

from __future__ import annotations

from typing import Any

from . import functional
from ._optimizer import Optimizer
from ._registry import (BOOL, BenchFamily, BowlCall, CudaCall, DemoPhase, Hyper, Rule,
                        register)


#: The registry entry of RMSprop (optbowl._registry).
RULE = Rule(
    name="rmsprop",
    cls="RMSprop",
    hyper=(
        Hyper("lr", default=1e-2, low=0.0),
        Hyper("alpha", default=0.99, low=0.0),
        Hyper("eps", default=1e-8, low=0.0),
        Hyper("weight_decay", default=0.0, low=0.0),
        Hyper("momentum", default=0.0, low=0.0),
        Hyper("centered", BOOL, False),
        Hyper("maximize", BOOL, False),
    ),
    state=("square_avg", "grad_avg", "momentum_buffer"),
    operands=("square_avgs", "grad_avgs", "momentum_buffers"),
    layers=frozenset({"class", "functional", "bowl", "cuda", "torch", "bench"}),
    complex_as=("RMSprop",),
    cuda=CudaCall(reads=((3, lambda groups: any(g[5] for g in groups)),
                         (4, lambda groups: any(g[4] > 0.0 for g in groups)))),
    bowl=BowlCall(("lr", "alpha", "eps", "weight_decay", "momentum", "centered")),
    bench=(
        BenchFamily("rmsprop", "RMSprop (torch.optim.RMSprop)", 1, {"lr": 1e-2},
                    torch="RMSprop", optax=lambda optax: optax.rmsprop(1e-2, decay=0.99, eps=1e-8)),
        BenchFamily("rmsprop/centered", "RMSprop, centered, momentum 0.9", 3,
                    {"lr": 1e-2, "centered": True, "momentum": 0.9}, torch="RMSprop",
                    optax=lambda optax: optax.rmsprop(1e-2, decay=0.99, eps=1e-8, centered=True,
                                                      momentum=0.9)),
    ),
    demo=(DemoPhase("RMSprop", {"lr": 1e-2}),),
)


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

    rule = RULE

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
        *,
        state_dtype: Any = None,
    ) -> None:
        super().__init__(params, RULE.pick(locals()), state_dtype=state_dtype)


def rmsprop(
    params,
    grads,
    square_avgs,
    grad_avgs=None,
    momentum_buffers=None,
    *,
    lr=1e-2,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
    centered=False,
    maximize=False,
) -> None:
    """One RMSprop step (see :class:`optbowl.RMSprop`). ``grad_avgs`` may be None unless
    centered, ``momentum_buffers`` unless momentum > 0.

    Examples
    --------
    >>> import numpy as np
    >>> from optbowl import functional as F
    >>> x, v = np.array([1.0, -1.0]), np.zeros(2)
    >>> F.rmsprop([x], [2 * x], [v], lr=0.01, alpha=0.0)
    >>> x.round(6)
    array([ 0.99, -0.99])
    """
    functional.run(RULE, params, grads, (square_avgs, grad_avgs, momentum_buffers),
                   RULE.pick(locals()))


register(RULE, rmsprop)
