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
import zipfile
import zlib
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
    return _flatten(state, copy=True)


def _flatten(state: Any, copy: bool) -> Dict[str, np.ndarray]:
    """``copy``: the arrays are copied (False: the caller writes them out at once)."""
    arrays: List[np.ndarray] = []
    tree = _encode(state, arrays, "state", copy)
    flat = {SCHEMA_KEY: np.array(json.dumps({"format": _FORMAT, "tree": tree}, allow_nan=True))}
    for i, a in enumerate(arrays):
        flat[f"a{i}"] = a
    return flat


#: The deepest nesting a checkpoint may have (a state_dict is a few levels deep).
MAX_DEPTH = 64


def unflatten_state(flat: Any) -> Any:
    """The nested state back from :func:`flatten_state`'s mapping (or an ``np.load`` result).

    Arrays are copied out, so the result does not depend on an open ``.npz`` file.

    Raises
    ------
    ValueError
        For anything :func:`flatten_state` did not write (a missing or malformed
        structure, an entry naming an array that is not there, nesting deeper than
        ``MAX_DEPTH``), saying where.
    """
    return _unflatten(flat, fresh=False)


def _unflatten(flat: Any, fresh: bool) -> Any:
    """``fresh``: each ``flat[name]`` is a new array (``np.load``'s), so it is not copied."""
    try:
        schema = flat[SCHEMA_KEY]
    except KeyError:
        raise ValueError(f"flat: no {SCHEMA_KEY!r} entry; not written by flatten_state") from None
    schema = np.asarray(schema)
    if schema.shape != () or schema.dtype.kind != "U":
        raise ValueError(f"flat[{SCHEMA_KEY!r}]: expected a 0-d string array")
    try:
        doc = json.loads(str(schema[()]))
    except RecursionError:
        raise ValueError(f"flat[{SCHEMA_KEY!r}]: nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError, and an over-long int
        raise ValueError(f"flat[{SCHEMA_KEY!r}]: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT or set(doc) != {"format", "tree"}:
        raise ValueError(f"flat: unknown {SCHEMA_KEY!r} format")
    return _Decoder(flat, fresh).decode(doc["tree"], "state", 0)


def save_state(file: Union[str, os.PathLike, BinaryIO], state: Any) -> None:
    """Write a state_dict to an ``.npz`` file (``np.savez``; see :func:`flatten_state`)."""
    # Keys are 'a0', 'a1', ... and the schema's: none is savez's own allow_pickle.
    arrays: Dict[str, Any] = _flatten(state, copy=False)  # written at once: no copies
    np.savez(file, **arrays)


def load_state(file: Union[str, os.PathLike, BinaryIO]) -> Any:
    """Read a state_dict written by :func:`save_state` (never unpickles anything).

    Each array is read once, into the array returned (no second copy).

    Raises
    ------
    ValueError
        If the file is not an ``.npz`` archive or not one :func:`save_state` wrote
        (see :func:`unflatten_state`); OSError if it cannot be read.
    """
    try:
        z = np.load(file, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:  # ValueError: not NumPy's format
        raise ValueError(f"file: not a readable .npz archive ({exc})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError("file: an .npy array, not an .npz archive written by save_state")
    with z:
        try:
            return _unflatten(z, fresh=True)
        except (zipfile.BadZipFile, zlib.error, EOFError, KeyError) as exc:  # a damaged member
            raise ValueError(f"file: a damaged .npz archive ({exc!r})") from None


# ----------------------------------------------------------------------------- encoding
# JSON values: a list is a list; every other container or typed leaf is a one-key object.
def _encode(x: Any, arrays: List[np.ndarray], where: str, copy: bool = True) -> Any:
    if isinstance(x, (np.ndarray, np.generic)):  # first: np.float64 is a float
        a = np.asarray(x)
        if a.dtype.hasobject:
            raise TypeError(f"{where}: an object array cannot be saved without pickling")
        arrays.append(np.array(a, copy=True) if copy else a)
        return {"array" if isinstance(x, np.ndarray) else "scalar": len(arrays) - 1}
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return {"int": str(x)}  # str: no precision limit in any JSON reader
    if isinstance(x, float):
        return {"float": repr(x)}  # repr round-trips exactly, nan/inf included
    if isinstance(x, tuple):
        return {"tuple": [_encode(v, arrays, f"{where}[{i}]", copy) for i, v in enumerate(x)]}
    if isinstance(x, list):
        return [_encode(v, arrays, f"{where}[{i}]", copy) for i, v in enumerate(x)]
    if isinstance(x, dict):
        items = []
        for k, v in x.items():
            if not isinstance(k, (str, int, np.integer)):
                raise TypeError(f"{where}: dict key {k!r} is not a str or an int")
            key = k if isinstance(k, (str, bool)) else int(k)
            items.append([_encode(key, arrays, where, copy),
                          _encode(v, arrays, f"{where}[{k!r}]", copy)])
        return {"dict": items}
    raise TypeError(f"{where}: cannot save a {type(x).__name__} in an .npz checkpoint")


class _Decoder:
    """The inverse of ``_encode``, checking every entry: a malformed one is a ValueError
    that says where it is (``state[3]['lr']``), never a KeyError, TypeError or recursion."""

    def __init__(self, flat: Any, fresh: bool) -> None:
        self.flat = flat
        self.fresh = fresh

    def decode(self, t: Any, where: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ValueError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if t is None or isinstance(t, (bool, str)):
            return t
        if isinstance(t, list):
            return [self.decode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(t)]
        if not isinstance(t, dict) or len(t) != 1:
            raise ValueError(f"{where}: malformed entry {_short(t)}")
        ((kind, v),) = t.items()
        if kind == "int":
            if not isinstance(v, str):
                raise ValueError(f"{where}: an int entry holds {_short(v)}, not its digits")
            try:
                return int(v)
            except ValueError:  # not digits, or more digits than Python converts
                raise ValueError(f"{where}: malformed int {_short(v)}") from None
        if kind == "float":
            if not isinstance(v, str):
                raise ValueError(f"{where}: a float entry holds {_short(v)}, not its repr")
            try:
                return float(v)
            except ValueError:
                raise ValueError(f"{where}: malformed float {_short(v)}") from None
        if kind in ("array", "scalar"):
            a = self.array(v, where)
            if kind == "array":
                return a
            if a.shape != ():
                raise ValueError(f"{where}: a scalar entry names an array of shape {a.shape}")
            return a[()]
        if kind == "tuple":
            if not isinstance(v, list):
                raise ValueError(f"{where}: a tuple entry holds {_short(v)}, not a list")
            return tuple(self.decode(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(v))
        if kind == "dict":
            if not isinstance(v, list):
                raise ValueError(f"{where}: a dict entry holds {_short(v)}, not a list")
            out = {}
            for item in v:
                if not isinstance(item, list) or len(item) != 2:
                    raise ValueError(f"{where}: a dict item {_short(item)} is not a [key, value]")
                key = self.decode(item[0], where, depth + 1)
                if not isinstance(key, (str, int)):  # bool is an int
                    raise ValueError(f"{where}: a dict key {_short(key)} is not a str or an int")
                out[key] = self.decode(item[1], f"{where}[{key!r}]", depth + 1)
            return out
        raise ValueError(f"{where}: unknown entry kind {_short(kind)}")

    def array(self, index: Any, where: str) -> np.ndarray:
        if type(index) is not int or index < 0:
            raise ValueError(f"{where}: an array entry holds {_short(index)}, not an index")
        try:
            a = self.flat[f"a{index}"]
        except KeyError:
            raise ValueError(f"{where}: names array 'a{index}', which is not there") from None
        # np.load reads a new array: kept as it is, with no second full-size copy
        return a if self.fresh and isinstance(a, np.ndarray) else np.array(a, copy=True)


def _short(x: Any) -> str:
    """A value in a message, cut short (a crafted one may be long)."""
    try:
        text = repr(x)
    except RecursionError:
        return "a deeply nested value"
    return text if len(text) <= 60 else text[:57] + "..."
