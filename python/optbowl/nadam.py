"""NAdam, one fused multi-tensor pass per step."""

from __future__ import annotations

from typing import Any

from . import functional
from ._optimizer import Optimizer
from ._registry import (BOOL, BenchFamily, BowlCall, DemoPhase, Hyper, Rule, ScalarState, betas,
                        register)

#: The registry entry of NAdam (optbowl._registry).
RULE = Rule(
    name="nadam",
    cls="NAdam",
    hyper=(
        Hyper("lr", default=2e-3, low=0.0),
        betas((0.9, 0.999)),
        Hyper("eps", default=1e-8, low=0.0),
        Hyper("weight_decay", default=0.0, low=0.0),
        Hyper("momentum_decay", default=4e-3, low=0.0),
        Hyper("decoupled_weight_decay", BOOL, False),
        Hyper("maximize", BOOL, False),
    ),
    state=("exp_avg", "exp_avg_sq"),
    operands=("exp_avgs", "exp_avg_sqs"),
    scalar_state=(ScalarState("mu_product", 1.0),),
    layers=frozenset({"class", "functional", "bowl", "torch", "bench"}),
    counts_steps=True,
    low_precision=False,
    bowl=BowlCall(("lr", "betas", "eps", "weight_decay", "momentum_decay",
                   "decoupled_weight_decay")),
    bench=(
        BenchFamily("nadam", "NAdam (torch.optim.NAdam)", 2, {"lr": 2e-3}, torch="NAdam",
                    torch_hyper={"lr": 2e-3},
                    optax=lambda optax: optax.nadam(2e-3)),
    ),
    demo=(DemoPhase("NAdam", {"lr": 1e-1}),),
)


class NAdam(Optimizer):
    r"""NAdam (Dozat, 2016): adaptive moment estimation with Nesterov momentum, with
    torch.optim.NAdam's names, defaults and semantics.

    At step :math:`t` (from 1), with :math:`g = \nabla f(p)` (``maximize`` negates it),
    weight decay :math:`\lambda` added to it first (:math:`g \leftarrow g + \lambda p`;
    with ``decoupled_weight_decay``, :math:`p \leftarrow p\,(1 - \eta\lambda)` instead) and
    the momentum schedule :math:`\mu_t = \beta_1 (1 - \tfrac12\, 0.96^{t\psi})`:

    .. math::

        \Pi_t = \Pi_{t-1}\,\mu_t, \qquad
        m \leftarrow \beta_1 m + (1-\beta_1) g, \qquad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2,

        p \leftarrow p - \eta\left(\frac{(1-\mu_t)\, g}{1-\Pi_t}
            + \frac{\mu_{t+1}\, m}{1-\Pi_t\,\mu_{t+1}}\right)
            \Big/ \left(\sqrt{\frac{v}{1-\beta_2^t}} + \epsilon\right)

    :math:`\Pi_t` (``mu_product``, :math:`\Pi_0 = 1`) is a per-parameter scalar kept as
    torch keeps it, a float32 that each step multiplies by :math:`\mu_t`: it is state, not
    a function of :math:`t` alone, as the schedule's :math:`\beta_1` and
    :math:`\psi` (``momentum_decay``) may change between steps. The rounding is torch's
    single-tensor path (``foreach=False``; torch has no fused kernel for NAdam) with
    correctly rounded square roots: where torch is built with MKL, its CPU ``sqrt`` of
    float32 and float64 tensors is within an ulp but not always correctly rounded, and
    results then differ from torch's by that last bit; with an IEEE square root in torch's
    place they agree bit for bit.

    Parameters
    ----------
    params : ndarray, sequence of ndarray, or list of dict
        Arrays to optimise in place, or torch-style param groups.
    lr : float
        Learning rate :math:`\eta \ge 0` (default 2e-3).
    betas : (float, float)
        :math:`(\beta_1, \beta_2)`, each in [0, 1) (default (0.9, 0.999)).
    eps : float
        Added to the root mean square, >= 0 (default 1e-8).
    weight_decay : float
        :math:`\lambda \ge 0` (default 0).
    momentum_decay : float
        :math:`\psi \ge 0` of the momentum schedule (default 4e-3).
    decoupled_weight_decay : bool
        Decay the parameter (as AdamW does) instead of adding :math:`\lambda p` to the
        gradient.
    maximize : bool
        Follow the gradient uphill.

    Notes
    -----
    Each parameter keeps ``exp_avg`` (:math:`m`) and ``exp_avg_sq`` (:math:`v`), of the
    parameter's dtype, its step count and ``mu_product``, a 0-d float32 array.

    Examples
    --------
    >>> import numpy as np, optbowl as ob
    >>> x = np.array([1.0, -1.0, 0.0])
    >>> opt = ob.NAdam(x, lr=0.1)
    >>> opt.step(np.array([0.5, -2.0, 0.0]))
    >>> x.round(6)
    array([ 0.894355, -0.894355,  0.      ])
    >>> opt.state[0]["mu_product"].dtype, round(float(opt.state[0]["mu_product"]), 6)
    (dtype('float32'), 0.450073)
    """

    rule = RULE

    def __init__(
        self,
        params: Any,
        lr: float = 2e-3,
        betas: Any = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        *,
        state_dtype: Any = None,
    ) -> None:
        super().__init__(params, RULE.pick(locals()), state_dtype=state_dtype)


def nadam(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    mu_products,
    *,
    step,
    lr=2e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    momentum_decay=4e-3,
    decoupled_weight_decay=False,
    maximize=False,
) -> None:
    """One NAdam step (see :class:`optbowl.NAdam`); ``step`` counts this step (from 1), one
    number for every parameter or one per parameter; ``mu_products``: each parameter's
    :math:`\\Pi_{t-1}`, a 0-d float32 (as torch keeps it) or float64 array, multiplied by
    :math:`\\mu_t` in place.

    Examples
    --------
    >>> import numpy as np
    >>> from optbowl import functional as F
    >>> x, m, v = np.array([1.0, -1.0]), np.zeros(2), np.zeros(2)
    >>> mu_product = np.array(1.0, np.float32)
    >>> F.nadam([x], [2 * x], [m], [v], [mu_product], step=1, lr=0.1)
    >>> x.round(6), round(float(mu_product), 6)
    (array([ 0.894355, -0.894355]), 0.450073)
    """
    hyper = RULE.pick(locals())
    functional.run(RULE, params, grads, (exp_avgs, exp_avg_sqs), hyper, step,
                   scalars={"mu_product": mu_products})


register(RULE, nadam)
