"""SGD: plain gradient descent, heavy-ball momentum and Nesterov, one fused pass per step."""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np

from . import functional
from ._optimizer import Optimizer
from ._registry import BOOL, BenchFamily, CudaCall, DemoPhase, Hyper, Rule, register


# The vectorised NumPy competitor the demo and the benchmarks time beside the compiled step:
# what a user would write without optbowl (whole-array expressions, one temporary per
# operation). The optimizers never call it; tests check that it agrees with the kernels.
def numpy_momentum_step(p, g, buf, lr, momentum):
    """SGD with heavy-ball momentum (torch's v = βv + g; p −= ηv) in NumPy, in place; ``buf``
    starts at zero, so the first step sets it to g, as torch does."""
    buf *= np.asarray(momentum, dtype=p.dtype)
    buf += g
    p -= np.asarray(lr, dtype=p.dtype) * buf


def _numpy_momentum(params: Any, hyper: Optional[Dict[str, Any]] = None) -> Any:
    """The vectorised NumPy heavy ball the benchmark and the demo time beside the compiled
    step (``hyper``: its ``lr`` and ``momentum``, default 1e-2 and 0.9)."""
    lr, momentum = (hyper or {}).get("lr", 1e-2), (hyper or {}).get("momentum", 0.9)
    bufs = [np.zeros_like(p) for p in params]

    def step(grads: Any) -> None:
        for p, g, b in zip(params, grads, bufs):
            numpy_momentum_step(p, g, b, lr, momentum)

    return step


#: The registry entry of SGD (optbowl._registry).
RULE = Rule(
    name="sgd",
    cls="SGD",
    hyper=(
        Hyper("lr", low=0.0),
        Hyper("momentum", default=0.0, low=0.0),
        Hyper("dampening", default=0.0),
        Hyper("weight_decay", default=0.0, low=0.0),
        Hyper("nesterov", BOOL, False),
        Hyper("maximize", BOOL, False),
    ),
    state=("momentum_buffer",),
    operands=("momentum_buffers",),
    layers=frozenset({"class", "functional", "cuda", "torch", "bench"}),
    counts_steps=True,
    complex_as=("SGD",),
    fixed_step=True,
    cuda=CudaCall(reads=((2, lambda groups: any(g[1] != 0.0 for g in groups)),)),
    bench=(
        BenchFamily("sgd", "SGD, plain (torch.optim.SGD)", 0, {"lr": 1e-2}, torch="SGD",
                    torch_fused=True, optax=lambda optax: optax.sgd(1e-2)),
        BenchFamily("momentum", "SGD, momentum 0.9 (torch.optim.SGD)", 1,
                    {"lr": 1e-2, "momentum": 0.9}, torch="SGD", torch_fused=True,
                    numpy=_numpy_momentum, optax=lambda optax: optax.sgd(1e-2, momentum=0.9)),
        BenchFamily("nesterov", "SGD, Nesterov momentum 0.9", 1,
                    {"lr": 1e-2, "momentum": 0.9, "nesterov": True}, torch="SGD",
                    torch_fused=True,
                    optax=lambda optax: optax.sgd(1e-2, momentum=0.9, nesterov=True)),
    ),
    demo=(
        DemoPhase("SGD lr={lr:.3g}", theory="gd"),
        DemoPhase("SGD momentum={momentum:.3g}", theory="momentum", numpy=_numpy_momentum),
        DemoPhase("SGD Nesterov={momentum:.3g}", {"nesterov": True}, theory="nesterov"),
    ),
)


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

    rule = RULE

    def __init__(
        self,
        params: Any,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        maximize: bool = False,
        *,
        state_dtype: Any = None,
    ) -> None:
        super().__init__(params, RULE.pick(locals()), state_dtype=state_dtype)

    def _check_group(self, group: Dict[str, Any]) -> None:
        self.rule.check(group)
        if group["nesterov"] and (group["momentum"] <= 0.0 or group["dampening"] != 0.0):
            raise ValueError(
                "nesterov: Nesterov momentum requires a momentum > 0 and zero dampening, got "
                f"momentum={group['momentum']}, dampening={group['dampening']}"
            )


def sgd(
    params,
    grads,
    momentum_buffers=None,
    *,
    step,
    lr,
    momentum=0.0,
    dampening=0.0,
    nesterov=False,
    weight_decay=0.0,
    maximize=False,
) -> None:
    """One SGD step (see :class:`optbowl.SGD`). ``momentum_buffers`` may be None when
    momentum is 0 everywhere; on ``step == 1`` a buffer starts as the gradient.

    Examples
    --------
    >>> import numpy as np
    >>> from optbowl import functional as F
    >>> x, buf = np.array([1.0, -2.0]), np.zeros(2)
    >>> F.sgd([x], [2 * x], [buf], step=1, lr=0.1, momentum=0.9)
    >>> x
    array([ 0.8, -1.6])
    """
    functional.run(RULE, params, grads, (momentum_buffers,), RULE.pick(locals()), step)


register(RULE, sgd)
