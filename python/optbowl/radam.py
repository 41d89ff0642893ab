"""RAdam, one fused multi-tensor pass per step."""

from __future__ import annotations

from typing import Any

from . import functional
from ._optimizer import Optimizer
from ._registry import BOOL, BenchFamily, BowlCall, DemoPhase, Hyper, Rule, betas, register

#: The registry entry of RAdam (optbowl._registry).
RULE = Rule(
    name="radam",
    cls="RAdam",
    hyper=(
        Hyper("lr", default=1e-3, low=0.0),
        betas((0.9, 0.999)),
        Hyper("eps", default=1e-8, low=0.0),
        Hyper("weight_decay", default=0.0, low=0.0),
        Hyper("decoupled_weight_decay", BOOL, False),
        Hyper("maximize", BOOL, False),
    ),
    state=("exp_avg", "exp_avg_sq"),
    operands=("exp_avgs", "exp_avg_sqs"),
    layers=frozenset({"class", "functional", "bowl", "torch", "bench"}),
    counts_steps=True,
    low_precision=False,
    bowl=BowlCall(("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay")),
    bench=(
        BenchFamily("radam", "RAdam (torch.optim.RAdam)", 2, {"lr": 1e-3}, torch="RAdam",
                    torch_hyper={"lr": 1e-3},
                    optax=lambda optax: optax.radam(1e-3)),
    ),
    demo=(DemoPhase("RAdam", {"lr": 1e-1}),),
)


class RAdam(Optimizer):
    r"""RAdam, the rectified adaptive-moment method of Liu et al. (2020), with
    torch.optim.RAdam's names, defaults and semantics.

    At step :math:`t` (from 1), with :math:`g = \nabla f(p)` (``maximize`` negates it) and
    weight decay :math:`\lambda` either added to it (:math:`g \leftarrow g + \lambda p`) or,
    with ``decoupled_weight_decay``, applied to the parameter
    (:math:`p \leftarrow p\,(1 - \eta\lambda)`):

    .. math::

        m \leftarrow \beta_1 m + (1-\beta_1) g, \qquad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2,

    .. math::

        \rho_\infty = \frac{2}{1-\beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1-\beta_2^t}, \qquad
        r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\,\rho_\infty}
                         {(\rho_\infty - 4)(\rho_\infty - 2)\,\rho_t}}

    and then, where the variance of the adaptive step is tractable (:math:`\rho_t > 5`),
    the rectified adaptive step, else the plain momentum step:

    .. math::

        p \leftarrow p - \frac{\eta}{1-\beta_1^t}\, m \cdot
        \frac{\sqrt{1-\beta_2^t}}{\sqrt{v} + \epsilon}\, r_t
        \quad (\rho_t > 5), \qquad
        p \leftarrow p - \frac{\eta}{1-\beta_1^t}\, m \quad (\rho_t \le 5).

    With the default :math:`\beta_2 = 0.999` the first five steps are momentum steps. The
    rounding is torch's single-tensor path (``foreach=False``; torch has no fused kernel
    for RAdam) with a correctly rounded square root: where torch is built with MKL, its CPU
    ``sqrt`` of float32 and float64 tensors is within an ulp but not always correctly
    rounded, and results then differ from torch's by that last bit and what follows from
    it; with an IEEE square root in torch's place they agree bit for bit.

    Parameters
    ----------
    params : ndarray, sequence of ndarray, or list of dict
        Arrays to optimise in place, or torch-style param groups.
    lr : float
        Learning rate :math:`\eta \ge 0` (default 1e-3).
    betas : (float, float)
        :math:`(\beta_1, \beta_2)`, each in [0, 1): the decay of the average and of the
        squared average (default (0.9, 0.999)).
    eps : float
        Added to :math:`\sqrt{v}`, >= 0 (default 1e-8).
    weight_decay : float
        :math:`\lambda \ge 0` (default 0).
    decoupled_weight_decay : bool
        Decay the parameter itself (as AdamW does) instead of adding an L2 term.
    maximize : bool
        Follow the gradient uphill.

    Notes
    -----
    Each parameter keeps ``exp_avg`` (:math:`m`) and ``exp_avg_sq`` (:math:`v`), of the
    parameter's dtype, and its step count.

    Examples
    --------
    >>> import numpy as np, optbowl as ob
    >>> x = np.array([1.0, -1.0, 0.0])
    >>> opt = ob.RAdam(x, lr=0.1)
    >>> opt.step(np.array([0.5, -2.0, 0.0]))
    >>> x.round(6)
    array([ 0.95, -0.8 ,  0.  ])
    """

    rule = RULE

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: Any = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        *,
        state_dtype: Any = None,
    ) -> None:
        super().__init__(params, RULE.pick(locals()), state_dtype=state_dtype)


def radam(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    *,
    step,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    decoupled_weight_decay=False,
    maximize=False,
) -> None:
    """One RAdam step (see :class:`optbowl.RAdam`); ``step`` counts this step (from 1),
    one number for every parameter or one per parameter: the step is rectified where
    :math:`\\rho_t > 5`.

    Examples
    --------
    >>> import numpy as np
    >>> from optbowl import functional as F
    >>> x, m, v = np.array([1.0, -1.0]), np.zeros(2), np.zeros(2)
    >>> F.radam([x], [2 * x], [m], [v], step=1, lr=0.1)
    >>> x.round(6), m
    (array([ 0.8, -0.8]), array([ 0.2, -0.2]))
    """
    hyper = RULE.pick(locals())
    functional.run(RULE, params, grads, (exp_avgs, exp_avg_sqs), hyper, step)


register(RULE, radam)
