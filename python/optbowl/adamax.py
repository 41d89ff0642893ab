"""Adamax, one fused multi-tensor pass per step."""

from __future__ import annotations

from typing import Any

from . import functional
from ._optimizer import Optimizer
from ._registry import BOOL, BenchFamily, BowlCall, DemoPhase, Hyper, Rule, betas, register

#: The registry entry of Adamax (optbowl._registry).
RULE = Rule(
    name="adamax",
    cls="Adamax",
    hyper=(
        Hyper("lr", default=2e-3, low=0.0),
        betas((0.9, 0.999)),
        Hyper("eps", default=1e-8, low=0.0),
        Hyper("weight_decay", default=0.0, low=0.0),
        Hyper("maximize", BOOL, False),
    ),
    state=("exp_avg", "exp_inf"),
    operands=("exp_avgs", "exp_infs"),
    layers=frozenset({"class", "functional", "bowl", "torch", "bench"}),
    counts_steps=True,
    low_precision=False,
    bowl=BowlCall(("lr", "betas", "eps", "weight_decay")),
    bench=(
        BenchFamily("adamax", "Adamax (torch.optim.Adamax)", 2, {"lr": 2e-3}, torch="Adamax",
                    torch_hyper={"lr": 2e-3},
                    optax=lambda optax: optax.adamax(2e-3)),
    ),
    demo=(DemoPhase("Adamax", {"lr": 1e-1}),),
)


class Adamax(Optimizer):
    r"""Adamax (Kingma & Ba, 2015, section 7.1) with torch.optim.Adamax's names, defaults
    and semantics.

    At step :math:`t` (from 1), with :math:`g = \nabla f(p)` (``maximize`` negates it) and
    weight decay :math:`\lambda` added to it first (:math:`g \leftarrow g + \lambda p`):

    .. math::

        m \leftarrow \beta_1 m + (1-\beta_1) g, \qquad
        u \leftarrow \max(\beta_2 u,\ |g| + \epsilon), \qquad
        p \leftarrow p - \frac{\eta}{1-\beta_1^t}\,\frac{m}{u}

    The infinity norm in place of the root mean square of the gradients: ``u`` is a decaying
    maximum of the gradient's magnitude, so no square root is taken. The rounding is
    torch's single-tensor path (``foreach=False``; torch has no fused kernel for Adamax):
    ``lerp`` for :math:`m`, ``maximum`` (a NaN wins) for :math:`u`, the step size
    :math:`\eta/(1-\beta_1^t)` computed in double and rounded once; bit for bit with it in
    float32 and float64.

    Parameters
    ----------
    params : ndarray, sequence of ndarray, or list of dict
        Arrays to optimise in place, or torch-style param groups.
    lr : float
        Learning rate :math:`\eta \ge 0` (default 2e-3).
    betas : (float, float)
        :math:`(\beta_1, \beta_2)`, each in [0, 1): the decay of the average and of the
        maximum (default (0.9, 0.999)).
    eps : float
        Added to :math:`|g|`, >= 0 (default 1e-8).
    weight_decay : float
        L2 penalty :math:`\lambda \ge 0` (default 0).
    maximize : bool
        Follow the gradient uphill.

    Notes
    -----
    Each parameter keeps ``exp_avg`` (:math:`m`) and ``exp_inf`` (:math:`u`), of the
    parameter's dtype, and its step count.

    Examples
    --------
    >>> import numpy as np, optbowl as ob
    >>> x = np.array([1.0, -1.0, 0.0])
    >>> opt = ob.Adamax(x, lr=0.1)
    >>> opt.step(np.array([0.5, -2.0, 0.0]))
    >>> x.round(6)
    array([ 0.9, -0.9,  0. ])
    """

    rule = RULE

    def __init__(
        self,
        params: Any,
        lr: float = 2e-3,
        betas: Any = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        maximize: bool = False,
        *,
        state_dtype: Any = None,
    ) -> None:
        super().__init__(params, RULE.pick(locals()), state_dtype=state_dtype)


def adamax(
    params,
    grads,
    exp_avgs,
    exp_infs,
    *,
    step,
    lr=2e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    maximize=False,
) -> None:
    """One Adamax step (see :class:`optbowl.Adamax`); ``step`` counts this step (from 1),
    one number for every parameter or one per parameter.

    Examples
    --------
    >>> import numpy as np
    >>> from optbowl import functional as F
    >>> x, m, u = np.array([1.0, -1.0]), np.zeros(2), np.zeros(2)
    >>> F.adamax([x], [2 * x], [m], [u], step=1, lr=0.1)
    >>> x.round(6), m
    (array([ 0.9, -0.9]), array([ 0.2, -0.2]))
    """
    hyper = RULE.pick(locals())
    functional.run(RULE, params, grads, (exp_avgs, exp_infs), hyper, step)


register(RULE, adamax)
