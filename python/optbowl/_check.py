"""Hyper-parameter and array checks shared by every optimizer.

Each check raises a TypeError (wrong kind of value) or a ValueError (right kind, bad
value) whose message starts with the argument's name, and returns the cleaned value.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


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
    x = float(value)
    if math.isnan(x):
        raise ValueError(f"{name}: must not be NaN")
    if finite and math.isinf(x):
        raise ValueError(f"{name}: must be finite, got {x}")
    if low is not None and (x < low or (low_open and x == low)):
        raise ValueError(f"{name}: must be {'>' if low_open else '>='} {low}, got {x}")
    if high is not None and (x > high or (high_open and x == high)):
        raise ValueError(f"{name}: must be {'<' if high_open else '<='} {high}, got {x}")
    return x


def integer(name: str, value: Any, *, low: Optional[int] = None) -> int:
    """An integer (not a bool) >= low."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    n = int(value)
    if low is not None and n < low:
        raise ValueError(f"{name}: must be >= {low}, got {n}")
    return n


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


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def float_array(name: str, a: Any, *, writable: bool) -> np.ndarray:
    """A C-contiguous, aligned, native float32/float64 ndarray (writeable if asked)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name}: expected a float32 or float64 array in native byte order, got dtype {a.dtype}"
        )
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: must be C-contiguous")
    if not a.flags.aligned:
        raise ValueError(f"{name}: must be aligned to its dtype")
    if writable and not a.flags.writeable:
        raise ValueError(f"{name}: is read-only")
    return a


def no_shared_memory(name: str, arrays: Sequence[np.ndarray]) -> None:
    """Refuse arrays whose memory ranges overlap (the same array twice, views of one buffer)."""
    spans = []
    for i, a in enumerate(arrays):
        if a.nbytes:
            start = a.__array_interface__["data"][0]
            spans.append((start, start + a.nbytes, i))
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
