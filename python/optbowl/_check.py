"""Hyper-parameter and array checks shared by every optimizer.

Each check raises a TypeError (wrong kind of value) or a ValueError (right kind, bad
value) whose message starts with the argument's name, and returns the cleaned value.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

FLOAT64 = np.dtype(np.float64)
FLOAT32 = np.dtype(np.float32)
FLOAT16 = np.dtype(np.float16)
try:  # bfloat16 arrays: the dtype of the optional ml_dtypes package (the `bf16` extra)
    import ml_dtypes as _ml_dtypes

    BFLOAT16: Optional[np.dtype] = np.dtype(_ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes is installed with the test extra
    _ml_dtypes = None  # type: ignore[assignment]
    BFLOAT16 = None

#: The parameter dtypes the kernels take: float32 and float64 computed as themselves,
#: float16 and bfloat16 stored in 16 bits and computed in float32.
FLOAT_DTYPES = (FLOAT32, FLOAT64, FLOAT16) + ((BFLOAT16,) if BFLOAT16 is not None else ())
#: Complex dtypes, stepped as their real view (two reals of the matching float dtype each).
COMPLEX_DTYPES = (np.dtype(np.complex64), np.dtype(np.complex128))
#: The 16-bit ones.
HALF_DTYPES = (FLOAT16,) + ((BFLOAT16,) if BFLOAT16 is not None else ())

#: The largest step count: counts are handed to the kernels as float64, exact up to 2**53.
MAX_COUNT = 2**53


def _as_float(name: str, value: Any) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond float64's range, e.g. 10**400
        digits = len(str(abs(int(value)))) if isinstance(value, numbers.Integral) else None
        what = f"an integer of {digits} digits" if digits else repr(value)
        raise ValueError(f"{name}: {what} is beyond float64's range") from None


def real(
    name: str,
    value: Any,
    *,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
) -> float:
    """A real number within [low, high] (open ends where asked); NaN is always refused."""
    if type(value) is not float and (  # the common case skips the ABC checks
            isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    x = value if type(value) is float else _as_float(name, value)
    if math.isnan(x):
        raise ValueError(f"{name}: must not be NaN")
    if finite and math.isinf(x):
        raise ValueError(f"{name}: must be finite, got {x}")
    if low is not None and (x < low or (low_open and x == low)):
        raise ValueError(f"{name}: must be {'>' if low_open else '>='} {low}, got {x}")
    if high is not None and (x > high or (high_open and x == high)):
        raise ValueError(f"{name}: must be {'<' if high_open else '<='} {high}, got {x}")
    return x


def integer(name: str, value: Any, *, low: Optional[int] = None,
            high: Optional[int] = None) -> int:
    """An integer (not a bool) within [low, high]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    n = int(value)
    if low is not None and n < low:
        raise ValueError(f"{name}: must be >= {low}, got {n}")
    if high is not None and n > high:
        digits = len(str(n))
        shown = str(n) if digits <= 30 else f"an integer of {digits} digits"
        raise ValueError(f"{name}: must be <= {high}, got {shown}")
    return n


def count(name: str, value: Any, *, low: int = 0) -> int:
    """A step count: an integer in [low, 2**53] (float64 holds every count up to there)."""
    return integer(name, value, low=low, high=MAX_COUNT)


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def pair(name: str, value: Any) -> tuple:
    """A sequence of exactly two real numbers (checked for range by the caller)."""
    if type(value) is not tuple and (isinstance(value, (str, bytes))
                                     or not isinstance(value, Sequence)) \
            or len(value) != 2:
        raise TypeError(f"{name}: expected a pair of real numbers, got {value!r}")
    return (real(f"{name}[0]", value[0], finite=False), real(f"{name}[1]", value[1], finite=False))


def pair_within(name: str, value: Any, *, low: Optional[float] = None,
                high: Optional[float] = None, low_open: bool = False,
                high_open: bool = False) -> tuple:
    """A pair of real numbers, each within [low, high] (open ends where asked), named
    ``name[0]`` and ``name[1]`` in the messages."""
    first, second = pair(name, value)
    for k, x in enumerate((first, second)):
        real(f"{name}[{k}]", x, low=low, high=high, low_open=low_open, high_open=high_open)
    return (first, second)


def betas(name: str, value: Any) -> tuple:
    """The ``betas`` of a rule with two exponential averages: each in [0, 1)."""
    return pair_within(name, value, low=0.0, high=1.0, high_open=True)


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def is_torch_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (told without importing torch)."""
    return type(x).__module__.startswith("torch") and hasattr(type(x), "__torch_function__")


def not_an_array(name: str, a: Any) -> TypeError:
    """The error for something that is not a NumPy array; a torch tensor is told where to go."""
    msg = f"{name}: expected a numpy.ndarray, got {type(a).__name__}"
    if is_torch_tensor(a):
        msg += (" (a torch tensor: optbowl.torch's optimizers take tensors, the NumPy API "
                "takes ndarrays, e.g. t.numpy())")
    return TypeError(msg)


def not_masked(name: str, a: Any) -> None:
    """Refuse a ``numpy.ma.MaskedArray``: the kernels would update its masked elements too."""
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(
            f"{name}: a numpy.ma.MaskedArray, whose mask optbowl would ignore (it updates every "
            "element); pass np.ma.getdata(a) to use every element, or a.filled(value)"
        )


def float_array(name: str, a: Any, *, writable: bool) -> np.ndarray:
    """A dense (:func:`is_dense`), aligned, native float32/float64/float16/bfloat16 ndarray,
    or a complex64/complex128 one (stepped as its real view), writeable if asked, not
    masked."""
    if not isinstance(a, np.ndarray):
        raise not_an_array(name, a)
    not_masked(name, a)
    if a.dtype not in FLOAT_DTYPES and a.dtype not in COMPLEX_DTYPES:
        raise TypeError(
            f"{name}: expected a float32, float64, float16, bfloat16, complex64 or complex128 "
            f"array in native byte order, got dtype {a.dtype}"
        )
    if not is_dense(a):
        raise ValueError(f"{name}: {NOT_DENSE}, got strides {element_strides(a)} (in elements) "
                         f"for shape {a.shape}")
    if not a.flags.aligned:
        raise ValueError(f"{name}: must be aligned to its dtype")
    if writable and not a.flags.writeable:
        raise ValueError(f"{name}: is read-only")
    return a


# --------------------------------------------------------------------------- layouts
#: What a layout check asks of an array (the compiled checks say the same).
NOT_DENSE = ("must be contiguous in some order of its axes (C- or F-ordered, or an axis "
             "permutation of such an array, e.g. a transposed view)")


def is_dense(a: np.ndarray) -> bool:
    """Whether ``a``'s elements fill its memory with neither gaps nor overlaps: C- or
    F-ordered, or an axis permutation of such an array (a transposed view), as torch's
    ``is_non_overlapping_and_dense``. Such an array is stepped as the flat run over its
    memory. Axes of length 1 may have any stride; negative strides are refused."""
    flags = a.flags
    if flags.c_contiguous or flags.f_contiguous:
        return True
    if a.size == 0:
        return True
    expected = a.itemsize
    for stride, length in sorted((s, n) for s, n in zip(a.strides, a.shape) if n > 1):
        if stride != expected:
            return False
        expected *= length
    return True


def element_strides(a: np.ndarray) -> tuple:
    """``a``'s strides in elements (as torch's ``Tensor.stride()``)."""
    return tuple(s // a.itemsize for s in a.strides)


def same_layout(a: np.ndarray, ref: np.ndarray) -> bool:
    """Whether dense arrays ``a`` and ``ref`` of one shape order their elements alike in
    memory: the same strides in elements on every axis longer than 1."""
    if (a.flags.c_contiguous and ref.flags.c_contiguous) or a.size == 0:
        return True
    return all(n == 1 or s // a.itemsize == r // ref.itemsize
               for n, s, r in zip(a.shape, a.strides, ref.strides))


def storage_span(a: np.ndarray) -> Tuple[int, int]:
    """The memory ``a``'s elements occupy, ``(first byte, one past the last)``, from its
    strides (for a dense array: ``nbytes`` from its data pointer, in any axis order)."""
    start = end = a.__array_interface__["data"][0]
    end += a.itemsize
    for n, s in zip(a.shape, a.strides):
        if s < 0:
            start += (n - 1) * s
        else:
            end += (n - 1) * s
    return start, end


def complex_refused(who: str, dtype: np.dtype, why: str) -> TypeError:
    """The error for a complex array given to a rule torch has no complex form of (``why``)."""
    from . import _registry

    # the registry's words for the rules torch steps complex parameters with: those that
    # name a variant first, then the classes in alphabetical order
    words = sorted((w for r in _registry.rules() for w in r.complex_as),
                   key=lambda w: ("'" not in w, w))
    return TypeError(
        f"{who}: a {dtype} array; complex parameters are stepped as their real view only by "
        f"the rules torch steps them with ({', '.join(words)}), and {why}; to step the real "
        f"view with it, pass a[..., None].view(np.{real_dtype(dtype)})"
    )


def real_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype the kernels step an array of ``dtype`` as: a complex dtype's real part."""
    return dtype if dtype.kind != "c" else np.dtype(dtype.char.lower())


def no_shared_memory(name: str, arrays: Sequence[np.ndarray]) -> None:
    """Refuse arrays whose memory ranges overlap (the same array twice, views of one buffer)."""
    spans = []
    for i, a in enumerate(arrays):
        if a.size:
            start, end = storage_span(a)
            spans.append((start, end, i))
    spans.sort()
    far = None
    for span in spans:
        if far is not None and span[0] < far[1]:
            raise ValueError(
                f"{name}[{span[2]}] shares memory with {name}[{far[2]}]; "
                "every array must be a separate buffer"
            )
        if far is None or span[1] > far[1]:
            far = span


# --------------------------------------------------------------------------- dtypes
def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype the kernels compute an array of ``dtype`` in: float64 for float64, float32
    for everything narrower (float16 and bfloat16 are stored narrow, computed in float32)."""
    return FLOAT64 if dtype == FLOAT64 else FLOAT32


#: Per dtype: its scalar type and its largest finite value, as a float.
_LIMITS: Dict[np.dtype, Any] = {}


class _Overflow(Exception):
    """A finite value beyond the dtype's range (``args[0]``: its index in a pair, or None)."""


def _rounded(value: Any, limits: Any) -> Any:
    """``value`` (a real, or a tuple/list of reals) as a dtype rounds it (``limits``: its
    scalar type and largest finite value); _Overflow if a finite value overflows.
    Anything else (bools, strings) is returned as it is."""
    kind = type(value)
    if kind is not float:  # the common case skips the ABC checks
        if kind is bool or isinstance(value, np.bool_):
            return value
        if kind is tuple or kind is list:
            out = []
            for k, v in enumerate(value):
                try:
                    out.append(_rounded(v, limits))
                except _Overflow:
                    raise _Overflow(k) from None
            return kind(out)
        if not isinstance(value, numbers.Real):
            return value
    x = float(value)
    scalar, largest = limits
    if -largest <= x <= largest or x != x or x in (math.inf, -math.inf):
        return float(scalar(x))  # within range (or inf/NaN, the range checks' to refuse)
    with np.errstate(over="ignore"):
        y = float(scalar(x))
    if y in (math.inf, -math.inf):
        raise _Overflow(None)
    return y  # just beyond the largest value, rounded down to it


def _rounded_or_error(name: str, value: Any, dtype: np.dtype, where: str) -> Any:
    """``_rounded``, an overflow told as a ValueError naming the value."""
    limits = _LIMITS.get(dtype)
    if limits is None:
        info = _ml_dtypes.finfo(dtype) if dtype == BFLOAT16 else np.finfo(dtype)
        limits = _LIMITS[dtype] = (dtype.type, float(info.max))
    try:
        return _rounded(value, limits)
    except _Overflow as exc:
        k = exc.args[0]
        if k is not None:
            name, value = f"{name}[{k}]", value[k]
        raise ValueError(
            f"{name}: {float(value)!r} overflows {dtype.name}, the dtype of {where} (largest "
            f"finite {limits[1]!r})"
        ) from None


def in_dtypes(
    check: Callable[[Dict[str, Any]], None],
    group: Mapping[str, Any],
    dtypes: Mapping[np.dtype, str],
    stored: Sequence[str] = (),
    derived: Optional[Mapping[str, float]] = None,
) -> None:
    """Check a group's hyper-parameters again as the kernels round them for its arrays.

    ``group`` has passed ``check`` in float64. The kernels round every value to the dtype
    they compute in (:func:`compute_dtype`), and the values in ``stored`` (those written
    into state arrays, e.g. a first step size) to the arrays' own dtype: each value
    must still be finite there, and ``check`` must still pass on the rounded values (a
    ``beta`` of 0.99999999999 is 1.0 in float32). ``dtypes`` maps each dtype of the
    group's arrays to where it is first found (e.g. ``"params[3]"``); every one is checked,
    so the narrowest decides. ``derived``: constants the kernel computes from the values
    and rounds the same way (e.g. ``lr * weight_decay``), which must be finite too.
    """
    for dtype, where in dtypes.items():
        compute = compute_dtype(dtype)
        for name, value in (derived or {}).items():
            if not math.isfinite(_rounded_or_error(name, value, compute, where)):
                raise ValueError(
                    f"{name}: {value!r} is beyond {compute.name}'s range, the dtype the "
                    f"kernels compute {where} in"
                )
        if compute == FLOAT64 and (dtype == FLOAT64 or not stored):
            continue  # the float64 check was this one
        rounded = {}
        for name, value in group.items():
            if name != "params":
                rounded[name] = _rounded_or_error(name, value, dtype if name in stored else compute,
                                                  where)
        try:
            check(rounded)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{exc}, once rounded for {where} ({dtype.name})") from None


#: What ``state_dtype`` means, for the messages.
STATE_DTYPE_CHOICES = "None (state of the parameter's dtype) or float32 (float32 state for " \
    "bfloat16 and float16 parameters)"


def state_dtype(value: Any) -> Optional[np.dtype]:
    """The checked ``state_dtype`` of a NumPy optimizer: None, or float32 (``np.float32``,
    ``"float32"``, ``np.dtype("float32")``)."""
    if value is None:
        return None
    if isinstance(value, (bool, numbers.Number)) or not isinstance(value, (str, type, np.dtype)):
        raise TypeError(f"state_dtype: expected {STATE_DTYPE_CHOICES}, got {value!r}")
    try:
        dt = np.dtype(value)
    except TypeError:
        raise TypeError(f"state_dtype: expected {STATE_DTYPE_CHOICES}, got {value!r}") from None
    if dt != FLOAT32:
        raise ValueError(f"state_dtype: expected {STATE_DTYPE_CHOICES}, got {dt}")
    return dt


def state_dtype_params(who: str, dtype: np.dtype) -> None:
    """Refuse a parameter of ``dtype`` under ``state_dtype=float32``: float64 (and complex128)
    parameters keep float64 state, which float32 state would round."""
    if real_dtype(dtype) == FLOAT64:
        raise ValueError(
            f"state_dtype: float32 state is for bfloat16 and float16 parameters (a float32 "
            f"parameter's state is float32 already); {who} is {dtype}, whose state would be "
            "rounded: leave state_dtype=None"
        )
