r"""Stateless update rules: each call is one compiled multi-tensor step.

As ``torch.optim``'s functional API, these take the parameters, their gradients and the
optimizer state arrays explicitly, and update all of them in place; the classes keep the
state and call the same compiled step. Every hyper-parameter is either one value for every
tensor or a list with one value per tensor (for a pair-valued one: a list of pairs), and
is checked exactly as the classes check it. ``step`` is the step count :math:`t` of each
tensor *including* this step (1 on the first call).

There is one function per registered rule, named as the rule (``optbowl.functional.__all__``
lists them); each one's docstring has an example.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import _check, _registry
from .sparse import SparseRows

#: The functions, one per rule: each rule module registers its own (optbowl._registry).
__all__: List[str] = []

Groups = List[tuple]


# --------------------------------------------------------------------------- helpers
def _as_list(name: str, arrays: Any) -> Any:
    """An ndarray alone means a list of one; None stays None; lists/tuples pass as they are."""
    if arrays is None or isinstance(arrays, (list, tuple)):
        return arrays
    if isinstance(arrays, (np.ndarray, SparseRows)):
        return [arrays]
    if _check.is_torch_tensor(arrays):
        raise _check.not_an_array(name, arrays)
    raise TypeError(f"{name}: expected a list of arrays, got {type(arrays).__name__}")


def _key(value: Any) -> Any:
    """A hyper-parameter as it tells runs of tensors apart: with its type, so that values
    that compare equal but are not the same (``0`` and ``False``, ``True`` and ``1.0``) are
    each checked."""
    if isinstance(value, (list, tuple)):
        return (type(value), tuple(map(_key, value)))
    return (type(value), value)


def _is_per_tensor(value: Any, pair: bool) -> bool:
    if pair:
        return isinstance(value, list) and bool(value) and not isinstance(value[0], numbers.Real)
    return isinstance(value, (list, tuple, np.ndarray))


def _groups(
    params: Sequence[Any],
    hyper: Dict[str, Any],
    rule: Any,
    names: Optional[Dict[str, str]] = None,
) -> Tuple[Groups, List[int], List[Dict[str, Any]]]:
    """Per-tensor hyper-parameters -> (kernel group tuples, group sizes, checked group dicts).

    Runs of tensors with equal hyper-parameters share one group; each distinct group is
    checked once by the check of the rule's class (so the rules and messages agree),
    in float64 and then as the kernel rounds it for the run's arrays (the narrowest dtype
    among them decides). ``rule``: the rule's registry entry (its class, its pairs, its
    group tuple's order). ``names``: the function's name of a hyper-parameter the class
    calls otherwise (a function's ``step_size_bounds`` may be its class's ``step_sizes``),
    for the messages.
    """
    try:
        return _checked_groups(params, hyper, rule)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        for theirs, ours in (names or {}).items():
            if message.startswith((f"{theirs}:", f"{theirs}[")):
                raise type(exc)(ours + message[len(theirs):]) from None
        raise


def _checked_groups(
    params: Sequence[Any],
    hyper: Dict[str, Any],
    rule: Any,
) -> Tuple[Groups, List[int], List[Dict[str, Any]]]:
    n = len(params)
    cls = _class(rule.cls)
    pairs = rule.pairs
    columns = {}
    for name, value in hyper.items():
        if _is_per_tensor(value, name in pairs):
            if len(value) != n:
                raise ValueError(f"{name}: expected one value per tensor ({n}), got {len(value)}")
            columns[name] = list(value)
        else:
            columns[name] = [value] * n
    dicts: List[Dict[str, Any]] = []
    sizes: List[int] = []
    previous = None
    for i in range(n):
        raw = {name: columns[name][i] for name in hyper}
        key = tuple(_key(v) for v in raw.values())
        if key == previous:
            sizes[-1] += 1
            continue
        previous = key
        cls._check_group(cls, raw)
        dicts.append(raw)
        sizes.append(1)
    start = 0
    for d, size in zip(dicts, sizes):
        dtypes: Dict[Any, str] = {}
        for j in range(start, start + size):  # arrays the compiled call will refuse: not here
            p = params[j]
            if isinstance(p, np.ndarray) and (p.dtype in _check.FLOAT_DTYPES
                                              or p.dtype in _check.COMPLEX_DTYPES):
                dtypes.setdefault(_check.real_dtype(p.dtype), f"params[{j}]")
        cls._check_in_dtypes(d, dtypes)
        start += size
    tuples = [rule.group_args(d) for d in dicts]
    return tuples, sizes, dicts


def _no_complex(params: Sequence[Any], why: str) -> None:
    """Refuse complex parameters for a rule torch does not step them with (``why``), as the
    classes do (their ``_complex_refusal``)."""
    for j, p in enumerate(params):
        if isinstance(p, np.ndarray) and p.dtype in _check.COMPLEX_DTYPES:
            raise _check.complex_refused(f"params[{j}]", p.dtype, why)


def _steps(step: Any, n: int) -> List[float]:
    per_tensor = isinstance(step, (list, tuple, np.ndarray))
    values = list(step) if per_tensor else [step] * n
    if len(values) != n:
        raise ValueError(f"step: expected one step count per tensor ({n}), got {len(values)}")
    out = []
    for i, t in enumerate(values):
        name = f"step[{i}]" if per_tensor else "step"
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Integral):
            raise TypeError(
                f"{name}: expected an integer >= 1 (this step included), got {type(t).__name__}"
            )
        out.append(float(_check.count(name, t, low=1)))
    return out


def _check_grads(params: Sequence[Any], grads: Any) -> Any:
    """``grads`` as a list, one per parameter."""
    grads = _as_list("grads", grads)
    if len(grads) != len(params):
        raise ValueError(
            f"grads: expected {len(params)} arrays (one per entry of params), got {len(grads)}"
        )
    return grads


def _class(cls_name: str) -> Any:
    """The class ``cls_name`` (imported late: the classes import us)."""
    import optbowl

    return getattr(optbowl, cls_name)


def run(
    rule: Any,
    params: Any,
    grads: Any,
    states: Sequence[Any],
    hyper: Dict[str, Any],
    step: Any = None,
    *,
    names: Optional[Dict[str, str]] = None,
    lead: tuple = (),
    tail: tuple = (),
    complex_refusal: Optional[str] = None,
    grads_match: bool = False,
    scalars: Optional[Dict[str, Any]] = None,
) -> None:
    """The body of every rule's functional form: check and group ``hyper`` (see
    :func:`_groups`), then make the rule's one compiled call
    ``fn(*lead, params, grads, *states, [steps], groups, group_sizes, *tail)``, the
    state lists named by the rule's ``operands`` and the step counts there if the rule
    counts steps. ``complex_refusal``: why complex parameters are refused (None: they are
    stepped as their real view); ``grads_match``: check here that there is one gradient
    per parameter (where the call sorts the gradients before its own checks);
    ``scalars``: for a rule with scalar state, its name -> the list of 0-d arrays (one per
    parameter), which the compiled step reads and which are updated in place after it
    (``_registry.scalar_runs``)."""
    params = _as_list("params", params)
    groups, sizes, _ = _groups(params, hyper, rule, names)
    if complex_refusal is not None:
        _no_complex(params, complex_refusal)
    grads = _check_grads(params, grads) if grads_match else _as_list("grads", grads)
    lists = [_as_list(name, arrays) for name, arrays in zip(rule.operands, states)]
    counts = _steps(step, len(params)) if rule.counts_steps else []
    steps = (counts,) if rule.counts_steps else ()
    store = None
    if rule.scalar_state:  # (such a rule counts steps: its next values depend on them)
        per_tensor = _scalar_lists(rule, scalars or {}, len(params))
        groups, sizes, store = _registry.scalar_runs(rule, groups, sizes, per_tensor, counts)
    rule.host_call(*lead, params, grads, *lists, *steps, groups, sizes, *tail)
    if store is not None:
        store()


def _scalar_lists(rule: Any, scalars: Dict[str, Any], n: int) -> List[Tuple[np.ndarray, ...]]:
    """The scalar state lists, checked: per parameter a tuple of 0-d, writable float32 or
    float64 arrays (one dtype for the parameter's), in the entry's order."""
    columns = []
    for name in rule.scalar_names:
        label = f"{name}s"
        arrays = _as_list(label, scalars.get(name))
        if arrays is None or len(arrays) != n:
            got = "None" if arrays is None else len(arrays)
            raise ValueError(f"{label}: expected one 0-d array per parameter ({n}), got {got}")
        for j, a in enumerate(arrays):
            if not isinstance(a, np.ndarray) or a.ndim != 0:
                what = f"shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
                raise TypeError(f"{label}[{j}]: expected a 0-d float32 or float64 array, got "
                                f"{what}")
            if a.dtype not in (np.float32, np.float64):
                raise TypeError(f"{label}[{j}]: expected a 0-d float32 or float64 array, got "
                                f"dtype {a.dtype}")
            if not a.flags.writeable:
                raise ValueError(f"{label}[{j}]: is read-only; the step updates it in place")
        columns.append(list(arrays))
    per_tensor = list(zip(*columns))
    for j, arrays in enumerate(per_tensor):
        for name, a in zip(rule.scalar_names[1:], arrays[1:]):
            if a.dtype != arrays[0].dtype:
                raise TypeError(f"{name}s[{j}]: dtype {a.dtype} differs from that of "
                                f"{rule.scalar_names[0]}s[{j}] ({arrays[0].dtype}); a "
                                "parameter's scalar state has one dtype")
    return per_tensor
