"""Low-precision optimizer state (``state_bits=8|16``) for the rules that offer it.

The formats (the compiled code is the definition: ``cpp/include/optbowl/quant.hpp``):

* ``state_bits=8``: each state array is a ``uint8`` array of codes with the parameter's
  shape, and a ``float32`` array ``<name>_absmax`` with one absmax per block of 256
  consecutive elements (of the flattened array; the last block may be shorter). Element
  *i* is ``decode(code[i]) * absmax[i // 256]``. Unsigned states (running sums and second
  moments) use a float-like code E5M3 anchored at 1.0: code
  ``c`` in 1..255 is the float32 whose bit pattern is ``0x3F800000 - (255 - c) << 20``
  (1.0 down to 1.25·2⁻³²), code 0 is 0. A signed state (a first moment) has bit 7 the sign,
  bits 0-6 a magnitude on the same grid from 1.0 down to 1.25·2⁻¹⁶ (E4M3), 0 a zero.
* ``state_bits=16``: bfloat16 bit patterns as ``uint16`` arrays (the upper half of the
  float32), rounded to nearest even, or stochastically (``stochastic_rounding=True``).

Python does no arithmetic on these arrays: making, converting and reading them goes
through ``_core.quantize`` and ``_core.dequantize``.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Tuple

import numpy as np

from . import _check, _core

BITS = (8, 16, 32)
#: Elements per absmax of the 8-bit state.
BLOCK = int(_core.quantization_block)


def check_options(state_bits: Any, stochastic_rounding: Any, seed: Any) -> Tuple[int, bool, int]:
    """The checked ``(state_bits, stochastic_rounding, seed)``."""
    if isinstance(state_bits, bool) or not isinstance(state_bits, (int, np.integer)) \
            or int(state_bits) not in BITS:
        raise ValueError(f"state_bits: expected 8, 16 or 32, got {state_bits!r}")
    bits = int(state_bits)
    stochastic = _check.boolean("stochastic_rounding", stochastic_rounding)
    if stochastic and bits != 16:
        raise ValueError("stochastic_rounding: only for state_bits=16 (bfloat16 state); "
                         f"got state_bits={bits}")
    if seed is None:
        seed_value = 0
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed: expected an integer in [0, 2**64) or None, got {seed!r}")
    else:
        seed_value = int(seed)
    if seed is not None and not stochastic:
        raise ValueError("seed: given without stochastic_rounding=True (it seeds the rounding)")
    return bits, stochastic, seed_value


def state_names(names: Iterable[str], bits: int) -> Tuple[str, ...]:
    """The state arrays' names: ``names``, then (8 bits) each one's ``_absmax``."""
    names = tuple(names)
    return names + tuple(f"{n}_absmax" for n in names) if bits == 8 else names


def check_params(arrays: Iterable[Any], start: int, bits: int) -> None:
    """Refuse parameters other than float32 NumPy arrays when the state is quantized."""
    if bits == 32:
        return
    for j, a in enumerate(arrays):
        if isinstance(a, np.ndarray) and a.dtype != np.float32:
            raise TypeError(f"params[{start + j}]: state_bits={bits} keeps the state of float32 "
                            f"parameters only, got {a.dtype} (use state_bits=32)")


def encode(values: np.ndarray, bits: int, signed: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(codes, absmax or None) of float32 ``values``."""
    codes, absmax = _core.quantize(np.ascontiguousarray(values, dtype=np.float32), bits, signed)
    return codes, absmax


def decode(codes: np.ndarray, absmax: Optional[np.ndarray], bits: int, signed: bool) -> np.ndarray:
    """float32 values of a state array."""
    return _core.dequantize(np.ascontiguousarray(codes), absmax, bits, signed)


def new_state(names: Iterable[str], signed: Iterable[bool], p: np.ndarray, bits: int,
              value: float = 0.0) -> Dict[str, Any]:
    """Every state array of one parameter, each filled with ``value``."""
    out: Dict[str, Any] = {}
    full = np.full(p.shape, value, dtype=np.float32)
    for name, sign in zip(names, signed):
        codes, absmax = encode(full, bits, sign)
        out[name] = codes
        if bits == 8:
            out[f"{name}_absmax"] = absmax
    return out


def saved_format(st: Dict[str, Any], first: str) -> int:
    """The state_bits a saved state was written with, from its arrays."""
    if f"{first}_absmax" in st:
        return 8
    a = st.get(first)
    if isinstance(a, np.ndarray) and a.dtype == np.uint16:
        return 16
    return 32


def convert(st: Any, names: Tuple[str, ...], signed: Tuple[bool, ...], to_bits: int,
            where: str) -> Any:
    """A saved per-parameter state in this optimizer's format (``to_bits``): an 8-bit or
    bfloat16 state is decoded, a float32 state encoded. Refuses arrays of the wrong kind
    (TypeError/ValueError naming them); a state already in the format is returned as is."""
    if not isinstance(st, dict) or names[0] not in st:
        return st  # the caller's check names what is missing
    from_bits = saved_format(st, names[0])
    if from_bits == to_bits:
        return st
    out = {k: v for k, v in st.items()
           if k not in names and not (from_bits == 8 and k in {f"{n}_absmax" for n in names})}
    for name, sign in zip(names, signed):
        who = f"{where}[{name!r}]"
        if name not in st:
            raise ValueError(f"{who}: missing")
        v = st[name]
        _check.not_masked(who, v)
        if from_bits == 32:
            v = np.asarray(v)
            if v.dtype != np.float32:
                raise TypeError(f"{who}: a float state loads into state_bits={to_bits} from "
                                f"float32 only, got {v.dtype}")
            values = v
        else:
            v = np.asarray(v)
            want = np.uint8 if from_bits == 8 else np.uint16
            if v.dtype != want:
                raise TypeError(f"{who}: expected {np.dtype(want).name} codes "
                                f"(state_bits={from_bits}), got {v.dtype}")
            absmax = None
            if from_bits == 8:
                absmax = np.asarray(st.get(f"{name}_absmax"))
                blocks = -(-v.size // BLOCK)
                if absmax.dtype != np.float32 or absmax.shape != (blocks,):
                    raise ValueError(f"{where}[{name + '_absmax'!r}]: expected a float32 array of "
                                     f"shape ({blocks},), got {absmax.dtype} {absmax.shape}")
            values = decode(v, absmax, from_bits, sign)
        if to_bits == 32:
            out[name] = values
        else:
            codes, absmax2 = encode(values, to_bits, sign)
            out[name] = codes
            if to_bits == 8:
                out[f"{name}_absmax"] = absmax2
    return out


class StateBitsMixin:
    """What an optimizer with a ``state_bits`` option adds to :class:`Optimizer`: the
    format's state arrays, the compiled quantized call, float32-only parameters,
    conversions on ``load_state_dict`` and ``state_bits`` in the state_dict."""

    #: the float state's names and whether each is signed (a first moment)
    _float_state: Tuple[str, ...] = ()
    _signed_state: Tuple[bool, ...] = ()
    _quantized_call = ""
    state_bits = 32
    stochastic_rounding = False
    seed: Optional[int] = None

    def _set_state_bits(self, state_bits: Any, stochastic_rounding: Any, seed: Any) -> None:
        bits, stochastic, seed_value = check_options(state_bits, stochastic_rounding, seed)
        self.state_bits, self.stochastic_rounding = bits, stochastic
        self.seed = seed if seed is None else int(seed)
        self._seed_value = seed_value
        if bits != 32:
            self._state_names = state_names(self._float_state, bits)

    def _refuse_device(self) -> None:
        if self.state_bits != 32 and self._placement is not None:  # type: ignore[attr-defined]
            raise ValueError(f"state_bits: {self.state_bits}-bit state is for NumPy arrays and "
                             "CPU tensors; CUDA arrays keep float state (state_bits=32)")

    def _add_param_group(self, group: Dict[str, Any]) -> None:
        if isinstance(group, dict) and "params" in group:
            arrays = group["params"]
            arrays = [arrays] if isinstance(arrays, np.ndarray) else arrays
            if isinstance(arrays, (list, tuple)):
                check_params(arrays, len(self._params), self.state_bits)  # type: ignore
        super()._add_param_group(group)  # type: ignore[misc]

    def _short_call(self) -> Optional[tuple]:
        # the compiled short step takes at most three state arrays: six 8-bit ones
        # (codes and absmaxes) go through Python
        if len(self._state_names) > 3:  # type: ignore[attr-defined]
            return None
        return super()._short_call()  # type: ignore[misc]

    def _quantized_layout(self) -> Tuple[str, tuple, int, Dict[str, Any]]:
        width = 2 * len(self._float_state)
        return (self._quantized_call, (self.state_bits, self.stochastic_rounding,
                                       self._seed_value), width, {})

    def _state_dict_extras(self) -> Dict[str, Any]:
        extras = super()._state_dict_extras()  # type: ignore[misc]
        if self.state_bits != 32:
            extras = {**extras, "state_bits": self.state_bits}
        return extras

    def _load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        if isinstance(state_dict, dict) and "state_bits" in state_dict:
            saved = state_dict["state_bits"]
            if isinstance(saved, bool) or not isinstance(saved, (int, np.integer)) \
                    or int(saved) not in (8, 16):
                raise ValueError(f"state_dict: state_bits is {saved!r}, expected 8 or 16 "
                                 "(a float state has no state_bits)")
            state_dict = {k: v for k, v in state_dict.items() if k != "state_bits"}
        if self.state_bits != 32:
            state_dict = {**state_dict, "state_bits": self.state_bits} \
                if isinstance(state_dict, dict) else state_dict
        super()._load_state_dict(state_dict)  # type: ignore[misc]

    def _load_states(self, saved: Any, groups: Any) -> Any:
        if isinstance(saved, dict):
            saved = {key: convert(st, self._float_state, self._signed_state, self.state_bits,
                                  f"state_dict['state'][{key}]")
                     for key, st in saved.items()}
        return super()._load_states(saved, groups)  # type: ignore[misc]

    def _state_bits_repr(self) -> str:
        if self.state_bits == 32:
            return ""
        extra = f", state_bits={self.state_bits}"
        if self.stochastic_rounding:
            extra += f", stochastic_rounding=True, seed={self.seed!r}"
        return extra
