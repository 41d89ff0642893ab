"""ASGD (averaged stochastic gradient descent), one fused multi-tensor pass per step."""

from __future__ import annotations

from typing import Any

from . import functional
from ._optimizer import Optimizer
from ._registry import BOOL, BenchFamily, BowlCall, DemoPhase, Hyper, Rule, ScalarState, register

#: The registry entry of ASGD (optbowl._registry).
RULE = Rule(
    name="asgd",
    cls="ASGD",
    hyper=(
        Hyper("lr", default=1e-2, low=0.0),
        Hyper("lambd", default=1e-4),
        Hyper("alpha", default=0.75),
        Hyper("t0", default=1e6),
        Hyper("weight_decay", default=0.0, low=0.0),
        Hyper("maximize", BOOL, False),
    ),
    state=("ax",),
    operands=("axs",),
    scalar_state=(ScalarState("eta", "lr"), ScalarState("mu", 1.0)),
    layers=frozenset({"class", "functional", "bowl", "torch", "bench"}),
    counts_steps=True,
    low_precision=False,
    bowl=BowlCall(("lr", "lambd", "alpha", "t0", "weight_decay")),
    bench=(
        BenchFamily("asgd", "ASGD (torch.optim.ASGD)", 1, {"lr": 1e-2}, torch="ASGD",
                    torch_hyper={"lr": 1e-2}),
    ),
    demo=(DemoPhase("ASGD", curvature_lr=True),),
)


class ASGD(Optimizer):
    r"""Averaged stochastic gradient descent (Polyak & Juditsky, 1992) with
    torch.optim.ASGD's names, defaults and semantics.

    At step :math:`t` (from 1), with :math:`g = \nabla f(p)` (``maximize`` negates it) and
    weight decay :math:`\lambda_w` added to it first (:math:`g \leftarrow g + \lambda_w p`),
    a step of decaying size :math:`\eta` and a running average :math:`\bar p` of the
    iterates from step :math:`t_0` on:

    .. math::

        p \leftarrow p\,(1 - \lambda\eta) - \eta\, g, \qquad
        \bar p \leftarrow \bar p + \mu\,(p - \bar p)\quad(\bar p \leftarrow p
        \text{ while } \mu = 1),

        \eta \leftarrow \frac{\eta_0}{(1 + \lambda\eta_0 t)^{\alpha}}, \qquad
        \mu \leftarrow \frac{1}{\max(1,\ t - t_0)}

    :math:`\eta` (starting at :math:`\eta_0`, ``lr``) and :math:`\mu` (starting at 1) are
    per-parameter scalars kept as torch keeps them, float32 values that a step uses and
    then recomputes: a learning rate changed between steps (a scheduler's) reaches
    :math:`\eta` one step late, as in torch. The step is a linear map of the gradient;
    the average :math:`\bar p` (``ax``), not :math:`p`, is the estimate the method's
    convergence theory is about. Bit for bit with torch's single-tensor path
    (``foreach=False``; torch has no fused kernel for ASGD) in float32 and float64.

    Parameters
    ----------
    params : ndarray, sequence of ndarray, or list of dict
        Arrays to optimise in place, or torch-style param groups.
    lr : float
        The first step size :math:`\eta_0 \ge 0` (default 1e-2).
    lambd : float
        The decay :math:`\lambda` of the step size (default 1e-4).
    alpha : float
        The power :math:`\alpha` of the step size's decay (default 0.75).
    t0 : float
        The step :math:`t_0` after which the averaging starts (default 1e6).
    weight_decay : float
        L2 penalty :math:`\lambda_w \ge 0` (default 0).
    maximize : bool
        Follow the gradient uphill.

    Notes
    -----
    Each parameter keeps ``ax`` (:math:`\bar p`, of the parameter's dtype), its step count,
    and ``eta`` and ``mu``, 0-d float32 arrays.

    Examples
    --------
    >>> import numpy as np, optbowl as ob
    >>> x = np.array([1.0, -1.0])
    >>> opt = ob.ASGD(x, lr=0.1, t0=0)
    >>> for _ in range(3):
    ...     opt.step(2 * x)
    >>> x.round(6), opt.state[0]["ax"].round(6), float(opt.state[0]["mu"])
    (array([ 0.511984, -0.511984]), array([ 0.575984, -0.575984]), 0.3333333432674408)
    """

    rule = RULE

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0.0,
        maximize: bool = False,
        *,
        state_dtype: Any = None,
    ) -> None:
        super().__init__(params, RULE.pick(locals()), state_dtype=state_dtype)


def asgd(
    params,
    grads,
    axs,
    mus,
    etas,
    *,
    step,
    lr=1e-2,
    lambd=1e-4,
    alpha=0.75,
    t0=1e6,
    weight_decay=0.0,
    maximize=False,
) -> None:
    """One ASGD step (see :class:`optbowl.ASGD`) in torch's functional order; ``step``
    counts this step (from 1), one number for every parameter or one per parameter;
    ``mus`` and ``etas``: each parameter's :math:`\\mu` and :math:`\\eta` from the step
    before (1 and ``lr`` before the first), 0-d float32 (as torch keeps them) or float64
    arrays, which the step replaces in place by this step's.

    Examples
    --------
    >>> import numpy as np
    >>> from optbowl import functional as F
    >>> x, ax = np.array([1.0, -1.0]), np.zeros(2)
    >>> mu, eta = np.array(1.0, np.float32), np.array(0.1, np.float32)
    >>> F.asgd([x], [2 * x], [ax], [mu], [eta], step=1, lr=0.1)
    >>> x.round(6), ax.round(6), round(float(eta), 6), float(mu)
    (array([ 0.79999, -0.79999]), array([ 0.79999, -0.79999]), 0.099999, 1.0)
    """
    hyper = RULE.pick(locals())
    functional.run(RULE, params, grads, (axs,), hyper, step, scalars={"eta": etas, "mu": mus})


register(RULE, asgd)
