r"""Stateless update rules: each call is one compiled multi-tensor step.

As ``torch.optim``'s functional API, these take the parameters, their gradients and the
optimizer state arrays explicitly, and update all of them in place; the classes
(:class:`optbowl.SGD`, :class:`optbowl.Adam`, ...) keep the state and call the same compiled
step. Every hyper-parameter is either one value for every tensor or a list with one value per
tensor (for the pair-valued ``etas``, ``step_size_bounds`` and ``betas``: a list of pairs), and
is checked exactly as the classes check it. ``step`` is the step count :math:`t` of each
tensor *including* this step (1 on the first call).

>>> import numpy as np
>>> from optbowl import functional as F
>>> x, buf = np.array([1.0, -2.0]), np.zeros(2)
>>> F.sgd([x], [2 * x], [buf], step=1, lr=0.1, momentum=0.9)
>>> x
array([ 0.8, -1.6])
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from itertools import repeat
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import _check, _core, _state_bits
from .sparse import SparseRows

__all__ = ["adagrad", "adam", "quickprop", "rmsprop", "rprop", "sgd"]

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
    cls_name: str,
    order: Sequence[str],
    pairs: Sequence[str] = (),
    names: Optional[Dict[str, str]] = None,
) -> Tuple[Groups, List[int], List[Dict[str, Any]]]:
    """Per-tensor hyper-parameters -> (kernel group tuples, group sizes, checked group dicts).

    Runs of tensors with equal hyper-parameters share one group; each distinct group is
    checked once by the check of the class ``cls_name`` (so the rules and messages agree),
    in float64 and then as the kernel rounds it for the run's arrays (the narrowest dtype
    among them decides). ``names``: the function's name of a hyper-parameter the class
    calls otherwise (functional.rprop's ``step_size_bounds`` is Rprop's ``step_sizes``),
    for the messages.
    """
    try:
        return _checked_groups(params, hyper, cls_name, order, pairs)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        for theirs, ours in (names or {}).items():
            if message.startswith((f"{theirs}:", f"{theirs}[")):
                raise type(exc)(ours + message[len(theirs):]) from None
        raise


def _checked_groups(
    params: Sequence[Any],
    hyper: Dict[str, Any],
    cls_name: str,
    order: Sequence[str],
    pairs: Sequence[str],
) -> Tuple[Groups, List[int], List[Dict[str, Any]]]:
    n = len(params)
    check = _checker(cls_name)
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
        check(raw)
        dicts.append(raw)
        sizes.append(1)
    start = 0
    cls = _class(cls_name)
    for d, size in zip(dicts, sizes):
        dtypes: Dict[Any, str] = {}
        for j in range(start, start + size):  # arrays the compiled call will refuse: not here
            p = params[j]
            if isinstance(p, np.ndarray) and (p.dtype in _check.FLOAT_DTYPES
                                              or p.dtype in _check.COMPLEX_DTYPES):
                dtypes.setdefault(_check.real_dtype(p.dtype), f"params[{j}]")
        cls._check_in_dtypes(d, dtypes)
        start += size
    tuples = [tuple(_flatten(d[name] for name in order)) for d in dicts]
    return tuples, sizes, dicts


def _flatten(values):
    for v in values:
        if isinstance(v, tuple):
            yield from v
        else:
            yield v


def _no_complex(params: Sequence[Any], why: str) -> None:
    """Refuse complex parameters for a rule torch does not step them with (``why``), as the
    classes do (:meth:`optbowl.Rprop._complex_refusal`)."""
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


def _class(cls_name: str) -> Any:
    """The class ``cls_name`` (imported late: the classes import us)."""
    import optbowl

    return getattr(optbowl, cls_name)


def _checker(cls_name: str) -> Callable[[Dict[str, Any]], None]:
    """The hyper-parameter check of the class ``cls_name``."""
    cls = _class(cls_name)
    return lambda group: cls._check_group(None, group)


# --------------------------------------------------------------------------- compiled calls
# The classes call these with groups they have already checked; the public functions below
# check and group their arguments, then call them. Each is one compiled call.
_rprop_call = _core.rprop
_sgd_call = _core.sgd
_quickprop_call = _core.quickprop
_rmsprop_call = _core.rmsprop
_adam_call = _core.adam
# low-precision state (state_bits=8|16): fn(state_bits, stochastic_rounding, seed, params,
# grads, *state arrays, *absmaxes, steps, groups, group_sizes)
_quantized_adagrad_call = _core.quantized_adagrad
_quantized_adam_call = _core.quantized_adam


def _adagrad_call(params, grads, sums, steps, groups, group_sizes):
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


# --------------------------------------------------------------------------- public API
def rprop(
    params,
    grads,
    prevs,
    step_sizes,
    updates=None,
    *,
    etas=(0.5, 1.2),
    step_size_bounds=(1e-6, 50.0),
    variant: str = "irprop-",
    maximize=False,
    loss_increased: bool = True,
) -> None:
    """One Rprop step (see :class:`optbowl.Rprop`). ``prevs``: previous gradients (the
    direction for ``"backtrack"``); ``step_sizes``: per-element step sizes; ``updates``: the
    last moves (``"rprop+"``/``"irprop+"`` only); ``step_size_bounds``: the class's
    ``step_sizes`` pair :math:`(\\Delta_{\\min}, \\Delta_{\\max})`; ``loss_increased``: whether
    iRprop+ reverts on a sign change."""
    params = _as_list("params", params)
    hyper = {"lr": 0.0, "etas": etas, "step_sizes": step_size_bounds, "maximize": maximize}
    groups, sizes, _ = _groups(
        params,
        hyper,
        "Rprop",
        ("etas", "step_sizes", "maximize"),
        pairs=("etas", "step_sizes"),
        names={"step_sizes": "step_size_bounds"},
    )
    if variant != "irprop-":
        _no_complex(params, f"variant {variant!r} is not torch's")
    _rprop_call(
        variant,
        params,
        _as_list("grads", grads),
        _as_list("prevs", prevs),
        _as_list("step_sizes", step_sizes),
        _as_list("updates", updates),
        groups,
        sizes,
        bool(loss_increased),
    )


def adagrad(
    params, grads, sums, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
    maximize=False, state_bits=32, sum_absmaxes=None, stochastic_rounding=False, seed=None,
) -> None:
    """One AdaGrad step (see :class:`optbowl.Adagrad`); a gradient may be :class:`SparseRows`
    (float state only).

    ``state_bits=8``: ``sums`` are ``uint8`` codes and ``sum_absmaxes`` their float32
    absmaxes (one per block of 256 elements); ``state_bits=16``: ``sums`` are bfloat16 bits
    (``uint16``), rounded to nearest even or, with ``stochastic_rounding=True``,
    stochastically (``seed``). Float32 parameters only; the format is the class's."""
    bits, stochastic, seed_value = _state_bits.check_options(state_bits, stochastic_rounding,
                                                             seed)
    params = _as_list("params", params)
    hyper = {
        "lr": lr,
        "lr_decay": lr_decay,
        "weight_decay": weight_decay,
        "initial_accumulator_value": 0.0,
        "eps": eps,
        "maximize": maximize,
    }
    groups, sizes, _ = _groups(
        params,
        hyper,
        "Adagrad",
        ("lr", "lr_decay", "weight_decay", "eps", "maximize"),
    )
    grads = _as_list("grads", grads)
    if len(grads) != len(params):
        raise ValueError(
            f"grads: expected {len(params)} arrays (one per entry of params), got {len(grads)}"
        )
    if bits != 32:
        _quantized_adagrad_call(bits, stochastic, seed_value, params, grads, _as_list("sums", sums),
                                _as_list("sum_absmaxes", sum_absmaxes) if bits == 8 else None,
                                _steps(step, len(params)), groups, sizes)
        return
    _adagrad_call(params, grads, _as_list("sums", sums), _steps(step, len(params)), groups, sizes)


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
    momentum is 0 everywhere; on ``step == 1`` a buffer starts as the gradient."""
    params = _as_list("params", params)
    hyper = {
        "lr": lr,
        "momentum": momentum,
        "dampening": dampening,
        "weight_decay": weight_decay,
        "nesterov": nesterov,
        "maximize": maximize,
    }
    groups, sizes, _ = _groups(
        params,
        hyper,
        "SGD",
        ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"),
    )
    _sgd_call(
        params,
        _as_list("grads", grads),
        _as_list("momentum_buffers", momentum_buffers),
        _steps(step, len(params)),
        groups,
        sizes,
    )


def quickprop(
    params, grads, prev_grads, prev_steps, *, lr=1e-2, max_growth=1.75, maximize=False
) -> None:
    """One QuickProp step (see :class:`optbowl.QuickProp`); ``prev_grads`` and ``prev_steps``
    start as zeros."""
    params = _as_list("params", params)
    hyper = {"lr": lr, "max_growth": max_growth, "maximize": maximize}
    groups, sizes, _ = _groups(params, hyper, "QuickProp", ("lr", "max_growth", "maximize"))
    _no_complex(params, "torch has no QuickProp")
    _quickprop_call(
        params,
        _as_list("grads", grads),
        _as_list("prev_grads", prev_grads),
        _as_list("prev_steps", prev_steps),
        groups,
        sizes,
    )


def rmsprop(
    params,
    grads,
    square_avgs,
    grad_avgs=None,
    momentum_buffers=None,
    *,
    lr=1e-2,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
    centered=False,
    maximize=False,
) -> None:
    """One RMSprop step (see :class:`optbowl.RMSprop`). ``grad_avgs`` may be None unless
    centered, ``momentum_buffers`` unless momentum > 0."""
    params = _as_list("params", params)
    hyper = {
        "lr": lr,
        "alpha": alpha,
        "eps": eps,
        "weight_decay": weight_decay,
        "momentum": momentum,
        "centered": centered,
        "maximize": maximize,
    }
    groups, sizes, _ = _groups(
        params,
        hyper,
        "RMSprop",
        ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize"),
    )
    _rmsprop_call(
        params,
        _as_list("grads", grads),
        _as_list("square_avgs", square_avgs),
        _as_list("grad_avgs", grad_avgs),
        _as_list("momentum_buffers", momentum_buffers),
        groups,
        sizes,
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
    with ``stochastic_rounding=True``, stochastically (``seed``). Float32 parameters only."""
    bits, stochastic, seed_value = _state_bits.check_options(state_bits, stochastic_rounding,
                                                             seed)
    params = _as_list("params", params)
    hyper = {
        "lr": lr,
        "betas": betas,
        "eps": eps,
        "weight_decay": weight_decay,
        "amsgrad": amsgrad,
        "maximize": maximize,
        "decoupled_weight_decay": decoupled_weight_decay,
    }
    groups, sizes, _ = _groups(
        params,
        hyper,
        "Adam",
        ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay"),
        pairs=("betas",),
    )
    if bits != 32:
        eight = bits == 8
        _quantized_adam_call(
            bits, stochastic, seed_value, params, _as_list("grads", grads),
            _as_list("exp_avgs", exp_avgs), _as_list("exp_avg_sqs", exp_avg_sqs),
            _as_list("max_exp_avg_sqs", max_exp_avg_sqs),
            _as_list("exp_avg_absmaxes", exp_avg_absmaxes) if eight else None,
            _as_list("exp_avg_sq_absmaxes", exp_avg_sq_absmaxes) if eight else None,
            _as_list("max_exp_avg_sq_absmaxes", max_exp_avg_sq_absmaxes) if eight else None,
            _steps(step, len(params)), groups, sizes,
        )
        return
    _adam_call(
        params,
        _as_list("grads", grads),
        _as_list("exp_avgs", exp_avgs),
        _as_list("exp_avg_sqs", exp_avg_sqs),
        _as_list("max_exp_avg_sqs", max_exp_avg_sqs),
        _steps(step, len(params)),
        groups,
        sizes,
    )
