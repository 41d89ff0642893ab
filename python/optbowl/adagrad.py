"""AdaGrad, one fused multi-tensor pass per step."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from . import _check, _device
from ._optimizer import Optimizer
from ._state_bits import StateBitsMixin, new_state


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

    _state_names = ("sum",)
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
    ) -> None:
        self._set_state_bits(state_bits, stochastic_rounding, seed)
        super().__init__(
            params,
            {
                "lr": lr,
                "lr_decay": lr_decay,
                "weight_decay": weight_decay,
                "initial_accumulator_value": initial_accumulator_value,
                "eps": eps,
                "maximize": maximize,
            },
        )
        self._refuse_device()

    def _check_group(self, group: Dict[str, Any]) -> None:
        for name in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            group[name] = _check.real(name, group[name], low=0.0)
        group["maximize"] = _check.boolean("maximize", group["maximize"])

    _float_state = ("sum",)
    _signed_state = (False,)
    _quantized_call = "quantized_adagrad"

    def _new_state(self, p: np.ndarray, group: Dict[str, Any]) -> Dict[str, Any]:
        if self.state_bits != 32:
            return {"step": 0, **new_state(self._float_state, self._signed_state, p,
                                           self.state_bits, group["initial_accumulator_value"])}
        return {"step": 0, "sum": _device.full_like(p, group["initial_accumulator_value"])}

    _takes_steps = True

    def _group_args(self, g: Dict[str, Any]) -> tuple:
        return (g["lr"], g["lr_decay"], g["weight_decay"], g["eps"], g["maximize"])

    def _call_layout(self) -> Tuple[str, tuple, int, Dict[str, Any]]:
        if self.state_bits != 32:
            return self._quantized_layout()
        return "adagrad", (), 1, {}

    def _hyper_repr(self, group: Dict[str, Any]) -> str:
        return super()._hyper_repr(group) + self._state_bits_repr()
