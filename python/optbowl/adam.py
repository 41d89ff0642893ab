"""Adam, AdamW and AMSGrad, one fused multi-tensor pass per step."""

from __future__ import annotations

from typing import Any, Dict, Tuple

from . import _core, _state_bits, functional
from ._optimizer import Optimizer
from ._registry import (BOOL, BenchFamily, BowlCall, CudaCall, DemoPhase, Hyper, Rule, betas,
                        register)
from ._state_bits import StateBitsMixin, new_state

#: The registry entry of Adam and AdamW (optbowl._registry).
RULE = Rule(
    name="adam",
    cls="Adam",
    classes=("Adam", "AdamW"),
    hyper=(
        Hyper("lr", default=1e-3, low=0.0),
        betas((0.9, 0.999)),
        Hyper("eps", default=1e-8, low=0.0),
        Hyper("weight_decay", default=0.0, low=0.0),
        Hyper("amsgrad", BOOL, False),
        Hyper("maximize", BOOL, False),
        Hyper("decoupled_weight_decay", BOOL, False),
    ),
    state=("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    operands=("exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"),
    layers=frozenset({"class", "functional", "bowl", "cuda", "torch", "bench"}),
    counts_steps=True,
    complex_as=("Adam", "AdamW"),
    low_precision=True,
    cuda=CudaCall(reads=((4, lambda groups: any(g[5] for g in groups)),), device_steps=True),
    bowl=BowlCall(("lr", "betas", "eps", "weight_decay", "amsgrad", "decoupled_weight_decay")),
    bench=(
        BenchFamily("adam", "Adam (torch.optim.Adam)", 2, {"lr": 1e-3}, torch="Adam",
                    torch_fused=True, optax=lambda optax: optax.adam(1e-3), low_precision="Adam",
                    bnb="Adam8bit", quick_dtype="bfloat16"),
        BenchFamily("amsgrad", "Adam, amsgrad", 3, {"lr": 1e-3, "amsgrad": True}, torch="Adam",
                    torch_fused=True, optax=lambda optax: optax.amsgrad(1e-3)),
        BenchFamily("adamw", "AdamW (torch.optim.AdamW)", 2, {"lr": 1e-3, "weight_decay": 1e-2},
                    cls="AdamW", torch="AdamW", torch_fused=True,
                    optax=lambda optax: optax.adamw(1e-3, weight_decay=1e-2),
                    low_precision="AdamW", bnb="AdamW8bit"),
    ),
    demo=(
        DemoPhase("Adam", {"lr": 1e-1}),
        DemoPhase("AdamW wd=1e-2", {"lr": 1e-1, "weight_decay": 1e-2}, cls="AdamW"),
        DemoPhase("Adam bfloat16", {"lr": 1e-1}, bfloat16=True),
    ),
)


class Adam(StateBitsMixin, Optimizer):
    r"""Adam (Kingma & Ba, 2015) with torch.optim.Adam's names, defaults and semantics.

    At step :math:`t` (from 1), with :math:`g = \nabla f(p)` (``maximize`` negates it):

    .. math::

        g \leftarrow g + \lambda p \ \text{(L2; or, decoupled: }
        p \leftarrow p(1 - \eta\lambda)), \quad
        m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2,

    .. math::

        \hat v = \max(\hat v, v) \text{ (amsgrad) or } v, \qquad
        p \leftarrow p - \frac{\eta}{1-\beta_1^t}\,
        \frac{m}{\sqrt{\hat v}/\sqrt{1-\beta_2^t} + \epsilon}

    rounded exactly as ``torch.optim.Adam(fused=True)`` rounds on the CPU (``m`` by torch's
    lerp, ``v = fma((1-β₂)g, g, β₂v)``, ``g = fma(p, λ, g)``), so the results are
    bit-identical to it in float32 and float64 on every array size: each array's last
    size mod 8 (float32) or mod 4 (float64) elements, which torch steps in a scalar loop,
    are rounded as that loop rounds them (``v = fma(v, β₂, ((1-β₂)g)g)``).

    Parameters
    ----------
    params : ndarray, sequence of ndarray, or list of dict
        Arrays to optimise in place, or torch-style param groups.
    lr : float
        Learning rate :math:`\eta \ge 0`.
    betas : (float, float)
        :math:`(\beta_1, \beta_2)`, each in [0, 1).
    eps : float
        Added to the denominator, >= 0.
    weight_decay : float
        :math:`\lambda \ge 0`.
    amsgrad : bool
        Use the running maximum of :math:`v` (Reddi et al., 2018).
    maximize : bool
        Follow the gradient uphill.
    decoupled_weight_decay : bool
        AdamW's decoupled weight decay (Loshchilov & Hutter, 2019) instead of an L2 term.
    state_bits : {32, 16, 8}
        How ``exp_avg``, ``exp_avg_sq`` and ``max_exp_avg_sq`` are kept. 32: in the
        parameter's dtype (the default, as torch). 8: blockwise-quantized, a ``uint8`` code
        per element and a float32 absmax per block of 256 elements (``<name>_absmax`` in
        the state); ``exp_avg`` has a signed code, the others an unsigned one (the format
        is in :doc:`/optimizers`, "Low-precision state"). 16: bfloat16 bits in ``uint16``
        arrays. Each step decodes the state, applies the same update in float32, and
        encodes it again, in one pass, every element rounded as the vectorised body (no
        torch scalar tail: torch has no such state). Float32 parameters only, CPU only.
    stochastic_rounding : bool
        With ``state_bits=16``: round to bfloat16 stochastically instead of to nearest
        even.
    seed : int, optional
        The seed of stochastic rounding's random bits (with ``stochastic_rounding``).

    Notes
    -----
    Each parameter keeps ``exp_avg``, ``exp_avg_sq`` and ``max_exp_avg_sq`` arrays (the
    last untouched zeros without amsgrad).

    Examples
    --------
    >>> import numpy as np, optbowl as ob
    >>> x = np.array([1.0, -1.0])
    >>> opt = ob.Adam(x, lr=0.1)
    >>> opt.step(2 * x)                    # the first step moves every element by about lr
    >>> x.round(6)
    array([ 0.9, -0.9])
    """

    rule = RULE

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        *,
        state_bits: int = 32,
        stochastic_rounding: bool = False,
        seed: Any = None,
        state_dtype: Any = None,
    ) -> None:
        self._set_state_bits(state_bits, stochastic_rounding, seed)
        super().__init__(params, RULE.pick(locals()), state_dtype=state_dtype)
        self._refuse_device()

    @classmethod
    def _derived_hyper(cls, group: Dict[str, Any]) -> Dict[str, float]:
        # the first step's step size is the largest: 1 - beta1**t grows with t
        out = {"lr / (1 - betas[0])": group["lr"] / (1.0 - group["betas"][0])}
        if group["decoupled_weight_decay"]:
            out["lr * weight_decay"] = group["lr"] * group["weight_decay"]
        return out

    _float_state = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _signed_state = (True, False, False)
    _quantized_call = "quantized_adam"

    def _new_state(self, p: Any, group: Dict[str, Any]) -> Dict[str, Any]:
        if self.state_bits != 32:
            return {"step": 0, **new_state(self._float_state, self._signed_state, p,
                                           self.state_bits)}
        return super()._new_state(p, group)

    def _call_layout(self) -> Tuple[str, tuple, int, Dict[str, Any]]:
        if self.state_bits != 32:
            return self._quantized_layout()
        return super()._call_layout()

    def _hyper_repr(self, group: Dict[str, Any]) -> str:
        return super()._hyper_repr(group) + self._state_bits_repr()


class AdamW(Adam):
    r"""AdamW: :class:`Adam` with decoupled weight decay, as torch.optim.AdamW.

    .. math:: p \leftarrow p\,(1 - \eta\lambda) \quad\text{before the Adam step}

    Same parameters as :class:`Adam` except that ``weight_decay`` defaults to ``1e-2`` and
    ``decoupled_weight_decay`` is always True. Bit-identical to
    ``torch.optim.AdamW(fused=True)`` in float32 and float64.

    Examples
    --------
    >>> import numpy as np, optbowl as ob
    >>> x = np.array([1.0, -1.0])
    >>> opt = ob.AdamW(x, lr=0.1, weight_decay=0.5)
    >>> opt.step(np.zeros(2))              # no gradient: only the decay p *= 1 - 0.1 * 0.5
    >>> x
    array([ 0.95, -0.95])
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
        *,
        state_bits: int = 32,
        stochastic_rounding: bool = False,
        seed: Any = None,
        state_dtype: Any = None,
    ) -> None:
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay=True,
            state_bits=state_bits, stochastic_rounding=stochastic_rounding, seed=seed,
            state_dtype=state_dtype,
        )

    def _check_group(self, group: Dict[str, Any]) -> None:
        self.rule.check(group)
        if not group["decoupled_weight_decay"]:
            raise ValueError(
                "decoupled_weight_decay: AdamW always decouples weight decay; use Adam for L2"
            )


def adam(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    max_exp_avg_sqs=None,
    *,
    step,
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    amsgrad=False,
    maximize=False,
    decoupled_weight_decay=False,
    state_bits=32,
    exp_avg_absmaxes=None,
    exp_avg_sq_absmaxes=None,
    max_exp_avg_sq_absmaxes=None,
    stochastic_rounding=False,
    seed=None,
) -> None:
    """One Adam step (see :class:`optbowl.Adam`; AdamW with ``decoupled_weight_decay=True``).
    ``max_exp_avg_sqs`` may be None unless amsgrad.

    ``state_bits=8``: the state lists are ``uint8`` codes (``exp_avgs`` signed, the others
    unsigned) and the ``*_absmaxes`` their float32 absmaxes (one per block of 256
    elements); ``state_bits=16``: bfloat16 bits (``uint16``), rounded to nearest even or,
    with ``stochastic_rounding=True``, stochastically (``seed``). Float32 parameters only.

    Examples
    --------
    >>> import numpy as np
    >>> from optbowl import functional as F
    >>> x, m, v = np.array([1.0, -1.0]), np.zeros(2), np.zeros(2)
    >>> F.adam([x], [2 * x], [m], [v], step=1, lr=0.1)
    >>> x.round(6)
    array([ 0.9, -0.9])
    """
    bits, stochastic, seed_value = _state_bits.check_options(state_bits, stochastic_rounding,
                                                             seed)
    hyper = RULE.pick(locals())
    if bits == 32:
        functional.run(RULE, params, grads, (exp_avgs, exp_avg_sqs, max_exp_avg_sqs), hyper,
                       step)
        return
    as_list = functional._as_list
    params = as_list("params", params)
    groups, sizes, _ = functional._groups(params, hyper, RULE)
    eight = bits == 8
    _core.quantized_adam(
        bits, stochastic, seed_value, params, as_list("grads", grads),
        as_list("exp_avgs", exp_avgs), as_list("exp_avg_sqs", exp_avg_sqs),
        as_list("max_exp_avg_sqs", max_exp_avg_sqs),
        as_list("exp_avg_absmaxes", exp_avg_absmaxes) if eight else None,
        as_list("exp_avg_sq_absmaxes", exp_avg_sq_absmaxes) if eight else None,
        as_list("max_exp_avg_sq_absmaxes", max_exp_avg_sq_absmaxes) if eight else None,
        functional._steps(step, len(params)), groups, sizes,
    )


register(RULE, adam)
