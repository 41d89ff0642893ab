"""Adadelta, one fused multi-tensor pass per step."""

from __future__ import annotations

from typing import Any

from . import functional
from ._optimizer import Optimizer
from ._registry import BOOL, BenchFamily, BowlCall, DemoPhase, Hyper, Rule, register

#: The registry entry of Adadelta (optbowl._registry).
RULE = Rule(
    name="adadelta",
    cls="Adadelta",
    hyper=(
        Hyper("lr", default=1.0, low=0.0),
        Hyper("rho", default=0.9, low=0.0, high=1.0),
        Hyper("eps", default=1e-6, low=0.0),
        Hyper("weight_decay", default=0.0, low=0.0),
        Hyper("maximize", BOOL, False),
    ),
    state=("square_avg", "acc_delta"),
    operands=("square_avgs", "acc_deltas"),
    layers=frozenset({"class", "functional", "bowl", "torch", "bench"}),
    low_precision=False,
    bowl=BowlCall(("lr", "rho", "eps", "weight_decay")),
    bench=(
        BenchFamily("adadelta", "Adadelta (torch.optim.Adadelta)", 2, {"lr": 1.0},
                    torch="Adadelta", torch_hyper={"lr": 1.0},
                    optax=lambda optax: optax.adadelta(1.0)),
    ),
    demo=(DemoPhase("Adadelta", {"lr": 1.0}),),
)


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler, 2012) with torch.optim.Adadelta's names, defaults and semantics.

    With :math:`g = \nabla f(p)` (``maximize`` negates it) and weight decay
    :math:`\lambda` added to it first (:math:`g \leftarrow g + \lambda p`):

    .. math::

        v \leftarrow \rho v + (1-\rho) g^2, \qquad
        \Delta = \frac{\sqrt{u + \epsilon}}{\sqrt{v + \epsilon}}\, g, \qquad
        u \leftarrow \rho u + (1-\rho) \Delta^2, \qquad
        p \leftarrow p - \eta\,\Delta

    The ratio of two running root mean squares, of the past updates and of the gradients,
    sets each element's step, so the units of :math:`\Delta` are those of :math:`p` and
    ``lr`` (default 1) only scales it. The rounding is torch's single-tensor path
    (``foreach=False``; torch has no fused kernel for Adadelta) with correctly rounded
    square roots: where torch is built with MKL, its CPU ``sqrt`` of float32 and float64
    tensors is within an ulp but not always correctly rounded, and results then differ
    from torch's by that last bit; with an IEEE square root in torch's place they agree
    bit for bit.

    Parameters
    ----------
    params : ndarray, sequence of ndarray, or list of dict
        Arrays to optimise in place, or torch-style param groups.
    lr : float
        The factor :math:`\eta \ge 0` on :math:`\Delta` (default 1.0).
    rho : float
        Decay :math:`\rho \in [0, 1]` of both running averages (default 0.9).
    eps : float
        Added under both square roots, >= 0 (default 1e-6).
    weight_decay : float
        L2 penalty :math:`\lambda \ge 0` (default 0).
    maximize : bool
        Follow the gradient uphill.

    Notes
    -----
    Each parameter keeps ``square_avg`` (:math:`v`) and ``acc_delta`` (:math:`u`), of the
    parameter's dtype.

    Examples
    --------
    >>> import numpy as np, optbowl as ob
    >>> x = np.array([1.0, -1.0])
    >>> opt = ob.Adadelta(x, eps=0.01)
    >>> opt.step(np.array([1.0, -1.0]))
    >>> x.round(4)
    array([ 0.6985, -0.6985])
    """

    rule = RULE

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        maximize: bool = False,
        *,
        state_dtype: Any = None,
    ) -> None:
        super().__init__(params, RULE.pick(locals()), state_dtype=state_dtype)


def adadelta(
    params,
    grads,
    square_avgs,
    acc_deltas,
    *,
    lr=1.0,
    rho=0.9,
    eps=1e-6,
    weight_decay=0.0,
    maximize=False,
) -> None:
    """One Adadelta step (see :class:`optbowl.Adadelta`).

    Examples
    --------
    >>> import numpy as np
    >>> from optbowl import functional as F
    >>> x, v, u = np.array([1.0]), np.zeros(1), np.zeros(1)
    >>> F.adadelta([x], [np.array([1.0])], [v], [u], eps=0.01)
    >>> x.round(4), v.round(4), u.round(4)
    (array([0.6985]), array([0.1]), array([0.0091]))
    """
    functional.run(RULE, params, grads, (square_avgs, acc_deltas), RULE.pick(locals()))


register(RULE, adadelta)
