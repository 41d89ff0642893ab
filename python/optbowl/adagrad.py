"""AdaGrad, one fused multi-tensor pass per step."""

from __future__ import annotations

from itertools import repeat
from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import _core, _state_bits, functional
from ._optimizer import Optimizer
from ._registry import BOOL, BenchFamily, BowlCall, CudaCall, DemoPhase, Hyper, Rule, register
from ._state_bits import StateBitsMixin, new_state
from .sparse import SparseRows


def _host_step(params, grads, sums, steps, groups, group_sizes):
    """Dense gradients through the dense kernel; any SparseRows: all through the sparse one."""
    if not any(map(isinstance, grads, repeat(SparseRows))):
        _core.adagrad(params, grads, sums, steps, groups, group_sizes)
        return
    owner = [k for k, size in enumerate(group_sizes) for _ in range(size)]
    for i, g in enumerate(grads):
        if isinstance(g, SparseRows) and groups[owner[i]][2] != 0.0:
            raise ValueError(
                f"weight_decay: not compatible with sparse gradients (grads[{i}] is SparseRows), "
                "as in torch"
            )
    _core.sparse_adagrad(
        params,
        [g.values if isinstance(g, SparseRows) else g for g in grads],
        sums,
        [g.indices if isinstance(g, SparseRows) else None for g in grads],
        steps,
        groups,
        group_sizes,
    )


# The vectorised NumPy competitor the demo and the benchmarks time beside the compiled step:
# what a user would write without optbowl (whole-array expressions, one temporary per
# operation). The optimizers never call it; tests check that it agrees with the kernels.
def numpy_adagrad_step(p, g, state_sum, clr, eps=1e-10):
    """AdaGrad's update in NumPy, in place (no weight decay)."""
    state_sum += g * g
    p -= np.asarray(clr, dtype=p.dtype) * g / (np.sqrt(state_sum) + np.asarray(eps, dtype=p.dtype))


def _numpy_steps(params: Any, hyper: Optional[Dict[str, Any]] = None) -> Any:
    """The vectorised NumPy AdaGrad the benchmark and the demo time beside the compiled
    step (``hyper``: its ``lr``, default 1e-2)."""
    lr = (hyper or {}).get("lr", 1e-2)
    sums = [np.zeros_like(p) for p in params]

    def step(grads: Any) -> None:
        for p, g, s in zip(params, grads, sums):
            numpy_adagrad_step(p, g, s, lr)

    return step


#: The registry entry of Adagrad (optbowl._registry).
RULE = Rule(
    name="adagrad",
    cls="Adagrad",
    hyper=(
        Hyper("lr", default=1e-2, low=0.0),
        Hyper("lr_decay", default=0.0, low=0.0),
        Hyper("weight_decay", default=0.0, low=0.0),
        Hyper("initial_accumulator_value", default=0.0, low=0.0, in_group=False),
        Hyper("eps", default=1e-10, low=0.0),
        Hyper("maximize", BOOL, False),
    ),
    state=("sum",),
    operands=("sums",),
    layers=frozenset({"class", "functional", "bowl", "cuda", "torch", "bench"}),
    counts_steps=True,
    complex_as=("Adagrad",),
    low_precision=True,
    cuda=CudaCall(device_steps=True, dense_only=True),
    bowl=BowlCall(("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")),
    call=_host_step,
    bench=(
        BenchFamily("adagrad", "AdaGrad (torch.optim.Adagrad)", 1, {"lr": 1e-2},
                    torch="Adagrad", torch_fused=True, numpy=_numpy_steps,
                    optax=lambda optax: optax.adagrad(1e-2, initial_accumulator_value=0.0,
                                                      eps=1e-10),
                    low_precision="AdaGrad", default=True, quick=True),
    ),
    demo=(DemoPhase("AdaGrad", {"lr": 0.5}, numpy=_numpy_steps),),
)


class Adagrad(StateBitsMixin, Optimizer):
    r"""AdaGrad (Duchi et al., 2011) with torch.optim.Adagrad's semantics.

    At step :math:`t` (counting from 1), for every element:

    .. math::

        \eta_t = \frac{\text{lr}}{1 + (t-1)\,\text{lr\_decay}}, \qquad
        g \leftarrow g + \lambda p, \qquad
        s \leftarrow s + g^2, \qquad
        p \leftarrow p - \eta_t \frac{g}{\sqrt{s} + \epsilon}

    rounded exactly as ``torch.optim.Adagrad(fused=True)`` rounds on the CPU
    (``g = fma(p, λ, g)``, ``s = fma(g, g, s)``, every operation in the array's dtype),
    so the results are bit-identical to it in float32 and float64.

    Parameters
    ----------
    params : ndarray, sequence of ndarray, or list of dict
        Arrays to optimise in place, or torch-style param groups.
    lr : float
        Learning rate, >= 0.
    lr_decay : float
        Learning-rate decay, >= 0.
    weight_decay : float
        L2 penalty :math:`\lambda`, >= 0.
    initial_accumulator_value : float
        Starting value of the sum of squares :math:`s`, >= 0.
    eps : float
        Added to the denominator, >= 0.
    maximize : bool
        Follow the gradient uphill.
    state_bits : {32, 16, 8}
        How the sum :math:`s` is kept. 32: in the parameter's dtype (the default, as
        torch). 8: blockwise-quantized, a ``uint8`` code per element and a float32 absmax
        per block of 256 elements (``sum`` and ``sum_absmax`` in the state; the format is in
        :doc:`/optimizers`, "Low-precision state"). 16: bfloat16 bits in a ``uint16`` array.
        Each step decodes the sum, applies the same update in float32, and encodes it
        again, in one pass. Float32 parameters only (float64 ones are refused), CPU only.
    stochastic_rounding : bool
        With ``state_bits=16``: round the sum to bfloat16 stochastically instead of to
        nearest even.
    seed : int, optional
        The seed of stochastic rounding's random bits (with ``stochastic_rounding``).

    Examples
    --------
    >>> import numpy as np, optbowl as ob
    >>> x = np.array([1.0, -1.0])
    >>> opt = ob.Adagrad(x, lr=0.5)
    >>> opt.step(2 * x)
    >>> x
    array([ 0.5, -0.5])
    """

    rule = RULE
    _stored_hyper = ("initial_accumulator_value",)

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        maximize: bool = False,
        *,
        state_bits: int = 32,
        stochastic_rounding: bool = False,
        seed: Any = None,
        state_dtype: Any = None,
    ) -> None:
        self._set_state_bits(state_bits, stochastic_rounding, seed)
        super().__init__(params, RULE.pick(locals()), state_dtype=state_dtype)
        self._refuse_device()

    _float_state = ("sum",)
    _signed_state = (False,)
    _quantized_call = "quantized_adagrad"

    def _new_state(self, p: np.ndarray, group: Dict[str, Any]) -> Dict[str, Any]:
        if self.state_bits != 32:
            return {"step": 0, **new_state(self._float_state, self._signed_state, p,
                                           self.state_bits, group["initial_accumulator_value"])}
        return {"step": 0, "sum": self._state_like(p, group["initial_accumulator_value"])}

    def _call_layout(self) -> Tuple[str, tuple, int, Dict[str, Any]]:
        if self.state_bits != 32:
            return self._quantized_layout()
        return super()._call_layout()

    def _hyper_repr(self, group: Dict[str, Any]) -> str:
        return super()._hyper_repr(group) + self._state_bits_repr()


def adagrad(
    params, grads, sums, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
    maximize=False, state_bits=32, sum_absmaxes=None, stochastic_rounding=False, seed=None,
) -> None:
    """One AdaGrad step (see :class:`optbowl.Adagrad`); a gradient may be :class:`SparseRows`
    (float state only).

    ``state_bits=8``: ``sums`` are ``uint8`` codes and ``sum_absmaxes`` their float32
    absmaxes (one per block of 256 elements); ``state_bits=16``: ``sums`` are bfloat16 bits
    (``uint16``), rounded to nearest even or, with ``stochastic_rounding=True``,
    stochastically (``seed``). Float32 parameters only; the format is the class's.

    Examples
    --------
    >>> import numpy as np
    >>> from optbowl import functional as F
    >>> x, total = np.array([1.0, -1.0]), np.zeros(2)
    >>> F.adagrad([x], [2 * x], [total], step=1, lr=0.5)
    >>> x
    array([ 0.5, -0.5])
    """
    bits, stochastic, seed_value = _state_bits.check_options(state_bits, stochastic_rounding,
                                                             seed)
    hyper = {**RULE.pick(locals()), "initial_accumulator_value": 0.0}
    if bits == 32:
        functional.run(RULE, params, grads, (sums,), hyper, step, grads_match=True)
        return
    params = functional._as_list("params", params)
    groups, sizes, _ = functional._groups(params, hyper, RULE)
    grads = functional._check_grads(params, grads)
    _core.quantized_adagrad(bits, stochastic, seed_value, params, grads,
                            functional._as_list("sums", sums),
                            functional._as_list("sum_absmaxes", sum_absmaxes) if bits == 8
                            else None,
                            functional._steps(step, len(params)), groups, sizes)


register(RULE, adagrad)
