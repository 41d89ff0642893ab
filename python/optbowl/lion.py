"""Lion, one fused multi-tensor pass per step."""

from __future__ import annotations

from typing import Any

from . import functional
from ._optimizer import Optimizer
from ._registry import (BOOL, BenchFamily, BowlCall, CudaCall, DemoPhase, Hyper, Rule, betas,
                        register)

#: The registry entry of Lion (optbowl._registry).
RULE = Rule(
    name="lion",
    cls="Lion",
    hyper=(
        Hyper("lr", default=1e-4, low=0.0),
        betas((0.9, 0.99)),
        Hyper("weight_decay", default=0.0, low=0.0),
        Hyper("maximize", BOOL, False),
    ),
    state=("exp_avg",),
    operands=("exp_avgs",),
    layers=frozenset({"class", "functional", "bowl", "cuda", "torch", "bench"}),
    low_precision=False,
    cuda=CudaCall(),
    bowl=BowlCall(("lr", "betas", "weight_decay")),
    bench=(
        BenchFamily("lion", "Lion (Chen et al., 2023)", 1, {"lr": 1e-4},
                    optax=lambda optax: optax.lion(1e-4, b1=0.9, b2=0.99)),
    ),
    demo=(DemoPhase("Lion", {"lr": 1e-2}),),
)


class Lion(Optimizer):
    r"""Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms").

    With :math:`g = \nabla f(p)` (``maximize`` negates it), one sign step and one
    exponential average per step:

    .. math::

        c = \beta_1 m + (1-\beta_1) g, \qquad
        p \leftarrow p\,(1 - \eta\lambda) - \eta\,\operatorname{sign}(c), \qquad
        m \leftarrow \beta_2 m + (1-\beta_2) g

    Every element moves by exactly :math:`\eta` (or not at all where :math:`c = 0`), so ``lr`` is
    typically 3-10x smaller than for the adaptive-moment rules and ``weight_decay`` as much larger.
    The interpolations are torch's ``lerp`` and the decay factor :math:`1 - \eta\lambda` is computed
    in double and rounded once, the order of the reference implementation (``p.mul_(1 - lr*wd);
    p.add_(m.lerp(g, 1-β1).sign_(), alpha=-lr); m.lerp_(g, 1-β2)``), with which results agree bit
    for bit in float32 and float64. One difference: a NaN in :math:`c` reaches :math:`p` (torch's
    ``sign`` gives 0 for NaN and would leave the element frozen).

    Parameters
    ----------
    params : ndarray, sequence of ndarray, or list of dict
        Arrays to optimise in place, or torch-style param groups.
    lr : float
        Learning rate :math:`\eta \ge 0` (default 1e-4).
    betas : (float, float)
        :math:`(\beta_1, \beta_2)`, each in [0, 1): the interpolation of the step's sign
        and the decay of the momentum (default (0.9, 0.99)).
    weight_decay : float
        Decoupled weight decay :math:`\lambda \ge 0` (default 0).
    maximize : bool
        Follow the gradient uphill.

    Notes
    -----
    Each parameter keeps one ``exp_avg`` array (:math:`m`), of the parameter's dtype:
    half the state of a two-moment rule.

    Examples
    --------
    >>> import numpy as np, optbowl as ob
    >>> x = np.array([1.0, -1.0, 0.0])
    >>> opt = ob.Lion(x, lr=0.1)
    >>> opt.step(np.array([0.5, -2.0, 0.0]))
    >>> x
    array([ 0.9, -0.9,  0. ])
    """

    rule = RULE

    def __init__(
        self,
        params: Any,
        lr: float = 1e-4,
        betas: Any = (0.9, 0.99),
        weight_decay: float = 0.0,
        maximize: bool = False,
        *,
        state_dtype: Any = None,
    ) -> None:
        super().__init__(params, RULE.pick(locals()), state_dtype=state_dtype)


def lion(
    params,
    grads,
    exp_avgs,
    *,
    lr=1e-4,
    betas=(0.9, 0.99),
    weight_decay=0.0,
    maximize=False,
) -> None:
    """One Lion step (see :class:`optbowl.Lion`).

    Examples
    --------
    >>> import numpy as np
    >>> from optbowl import functional as F
    >>> x, m = np.array([1.0, -1.0]), np.zeros(2)
    >>> F.lion([x], [2 * x], [m], lr=0.1)
    >>> x, m
    (array([ 0.9, -0.9]), array([ 0.02, -0.02]))
    """
    functional.run(RULE, params, grads, (exp_avgs,), RULE.pick(locals()))


register(RULE, lion)
