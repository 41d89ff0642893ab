"""Checkpoints of optimizer (and schedule) state in ``.npz`` files, exactly.

A ``state_dict()`` is a nested structure of dicts (with int or str keys), lists,
tuples, Python scalars, ``None``, strings and NumPy arrays. ``np.savez`` takes only a
flat mapping of names to arrays, and loading with ``allow_pickle=False`` (the safe
way) refuses object arrays. :func:`flatten_state` turns the nested state into such a
flat mapping — every array under its own name ``"a0"``, ``"a1"``, ..., and the rest of
the structure as JSON text in the 0-d string array ``"__optbowl_state__"`` — and
:func:`unflatten_state` turns it back: the result equals the original bit for bit
(array dtypes, shapes and NaN payloads; float scalars exactly, through their shortest
round-tripping repr; int/float/bool/None/str kept apart; tuples stay tuples; int keys
stay ints).

>>> import io, numpy as np, optbowl as ob
>>> x = np.ones(3)
>>> opt = ob.Rprop(x, lr=0.1)
>>> opt.step(np.ones(3))
>>> f = io.BytesIO()
>>> ob.save_state(f, opt.state_dict())
>>> _ = f.seek(0)
>>> opt2 = ob.Rprop(x.copy(), lr=0.1)
>>> opt2.load_state_dict(ob.load_state(f))
>>> bool(np.array_equal(opt2.state[0]["step_size"], opt.state[0]["step_size"]))
True
"""

from __future__ import annotations

import json
import os
from typing import Any, BinaryIO, Dict, List, Union

import numpy as np

__all__ = ["flatten_state", "unflatten_state", "save_state", "load_state"]

SCHEMA_KEY = "__optbowl_state__"
_FORMAT = 1


def flatten_state(state: Any) -> Dict[str, np.ndarray]:
    """A nested state (e.g. ``opt.state_dict()``) as a flat dict of arrays for ``np.savez``.

    Parameters
    ----------
    state : dict, list, tuple, ndarray, NumPy or Python scalar, str or None, nested
        Dict keys must be str, int or bool (or NumPy integers).

    Returns
    -------
    dict of str to ndarray
        ``"__optbowl_state__"``: the structure as JSON in a 0-d string array;
        ``"a0"``, ``"a1"``, ...: the arrays (NumPy scalars as 0-d arrays), in the order
        they occur. None of them holds Python objects, so ``np.load(...,
        allow_pickle=False)`` reads them back.

    Raises
    ------
    TypeError
        For anything else (an object array, a set, a custom class), naming where it is.
    """
    arrays: List[np.ndarray] = []
    tree = _encode(state, arrays, "state")
    flat = {SCHEMA_KEY: np.array(json.dumps({"format": _FORMAT, "tree": tree}, allow_nan=True))}
    for i, a in enumerate(arrays):
        flat[f"a{i}"] = a
    return flat


def unflatten_state(flat: Any) -> Any:
    """The nested state back from :func:`flatten_state`'s mapping (or an ``np.load`` result).

    Arrays are copied out, so the result does not depend on an open ``.npz`` file.
    """
    try:
        text = str(np.asarray(flat[SCHEMA_KEY])[()])
    except KeyError:
        raise ValueError(f"flat: no {SCHEMA_KEY!r} entry; not written by flatten_state") from None
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise ValueError(f"flat: unknown {SCHEMA_KEY!r} format")
    return _decode(doc["tree"], flat)


def save_state(file: Union[str, os.PathLike, BinaryIO], state: Any) -> None:
    """Write a state_dict to an ``.npz`` file (``np.savez``; see :func:`flatten_state`)."""
    # Keys are 'a0', 'a1', ... and the schema's: none is savez's own allow_pickle.
    arrays: Dict[str, Any] = flatten_state(state)
    np.savez(file, **arrays)


def load_state(file: Union[str, os.PathLike, BinaryIO]) -> Any:
    """Read a state_dict written by :func:`save_state` (never unpickles anything)."""
    with np.load(file, allow_pickle=False) as z:
        return unflatten_state(z)


# ----------------------------------------------------------------------------- encoding
# JSON values: a list is a list; every other container or typed leaf is a one-key object.
def _encode(x: Any, arrays: List[np.ndarray], where: str) -> Any:
    if isinstance(x, (np.ndarray, np.generic)):  # first: np.float64 is a float
        a = np.asarray(x)
        if a.dtype.hasobject:
            raise TypeError(f"{where}: an object array cannot be saved without pickling")
        arrays.append(np.array(a, copy=True))
        return {"array" if isinstance(x, np.ndarray) else "scalar": len(arrays) - 1}
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return {"int": str(x)}  # str: no precision limit in any JSON reader
    if isinstance(x, float):
        return {"float": repr(x)}  # repr round-trips exactly, nan/inf included
    if isinstance(x, tuple):
        return {"tuple": [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(x)]}
    if isinstance(x, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(x)]
    if isinstance(x, dict):
        items = []
        for k, v in x.items():
            if not isinstance(k, (str, int, np.integer)):
                raise TypeError(f"{where}: dict key {k!r} is not a str or an int")
            key = k if isinstance(k, (str, bool)) else int(k)
            items.append([_encode(key, arrays, where), _encode(v, arrays, f"{where}[{k!r}]")])
        return {"dict": items}
    raise TypeError(f"{where}: cannot save a {type(x).__name__} in an .npz checkpoint")


def _decode(t: Any, flat: Any) -> Any:
    if t is None or isinstance(t, (bool, str)):
        return t
    if isinstance(t, list):
        return [_decode(v, flat) for v in t]
    ((kind, v),) = t.items()
    if kind == "int":
        return int(v)
    if kind == "float":
        return float(v)
    if kind == "array":
        return np.array(flat[f"a{v}"], copy=True)
    if kind == "scalar":
        return np.asarray(flat[f"a{v}"])[()]
    if kind == "tuple":
        return tuple(_decode(x, flat) for x in v)
    if kind == "dict":
        return {_decode(k, flat): _decode(x, flat) for k, x in v}
    raise ValueError(f"flat: unknown entry kind {kind!r}")
