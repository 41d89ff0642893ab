"""The optimizer base class: param groups, lazy state, validation, state_dict.

Each subclass carries its rule's registry entry (``rule``, an :class:`optbowl._registry.Rule`),
from which the base class derives the hyper-parameters' checks (``_check_group``), the
state's names (``_state_names``), whether steps are counted (``_takes_steps``), a group's
tuple for the compiled call (``_group_args``) and how that call is made
(``_call_layout``); a subclass overrides one of them only where its rule needs more (a
check across hyper-parameters, a constructor choice such as a variant), and makes a
parameter's state (``_new_state``). The base class does the rest, in an order that keeps
a rejected call harmless: every hyper-parameter is checked, new state is made on the
side, and the compiled call validates every array before it writes any; only after it
returns is new state kept and the step counters advanced.

An optimizer is not shared between threads: ``step``, ``state_dict``,
``load_state_dict`` and ``add_param_group`` take a non-blocking lock, and a call that
overlaps another one on the same optimizer raises a RuntimeError instead of racing on
the arrays. Different optimizers step in parallel (the compiled step releases the GIL)
as long as they share no array: a step whose arrays overlap those of a step running in
another thread, where either writes them, raises a RuntimeError and writes nothing (the
README's "Threads" section says what is and is not detected).
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
import weakref
from collections import abc
from operator import itemgetter
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _check, _core, _device
from ._registry import Rule, scalar_runs

ArrayList = Union[np.ndarray, Sequence[np.ndarray]]

#: Every optimizer alive, for _free_locks_after_fork.
_LIVE: "weakref.WeakSet[Optimizer]" = weakref.WeakSet()


def _free_locks_after_fork() -> None:
    """In a forked child, free the optimizers' locks that threads of the parent held at the
    fork: those threads are not in the child, and their calls never end there."""
    for opt in list(_LIVE):
        if opt._busy.locked():
            opt._busy = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_free_locks_after_fork)


#: The ``state_dtype`` entry of every optimizer's Parameters section (added to each class's
#: docstring by :func:`add_parameter_doc`).
STATE_DTYPE_DOC = """\
state_dtype : None or numpy.float32, keyword-only
    None (default): a parameter's state has the parameter's dtype, as torch keeps it.
    ``np.float32`` (or ``"float32"``): a bfloat16 or float16 parameter keeps float32
    state, and each element is computed as the float32 rule computes it, from the
    widened parameter and gradient and the state as it is, the parameter rounded to its
    16-bit dtype (to nearest even) once when stored; the state is never rounded, and
    torch's intermediate 16-bit roundings do not apply (a departure from torch, which
    keeps 16-bit state). A float32 parameter's state is float32 anyway; a float64 or
    complex128 parameter is refused (ValueError), as are ``state_bits=8|16`` and Rprop's
    ``compact_state=True`` beside it. ``load_state_dict`` loads a saved 16-bit state into float32
    state (exactly) and refuses float32 state for an optimizer without ``state_dtype``.
"""

_SECTIONS = ("Raises", "Returns", "Notes", "Examples", "See Also", "References", "Attributes")


def add_parameter_doc(doc: Optional[str], entry: str) -> Optional[str]:
    """``doc`` with ``entry`` (a NumPy-style parameter, unindented) at the end of its
    Parameters section, indented as that section; ``doc`` as it is without one."""
    if not doc or "Parameters\n" not in doc or entry.split(" ", 1)[0] + " :" in doc:
        return doc
    lines = doc.split("\n")
    start = next(i for i, line in enumerate(lines) if line.strip() == "Parameters")
    indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
    end = len(lines)
    for i in range(start + 2, len(lines) - 1):
        if lines[i].strip() in _SECTIONS and set(lines[i + 1].strip()) == {"-"}:
            end = i
            break
    while end > start and not lines[end - 1].strip():
        end -= 1
    text = [indent + line if line else line for line in entry.rstrip("\n").split("\n")]
    return "\n".join(lines[:end] + text + lines[end:])


class Optimizer:
    """Base class of optbowl's NumPy optimizers: a subclass carries its rule's entry."""

    #: The rule's registry entry (hyper-parameters, state, compiled call).
    rule: Rule
    #: Names of the per-parameter state arrays, in the order the kernel takes them.
    _state_names: tuple = ()
    #: Optimizer-wide scalar state saved by state_dict (name -> initial value).
    _global_defaults: Dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__doc__" in cls.__dict__ and not cls.__name__.startswith("_"):
            cls.__doc__ = add_parameter_doc(cls.__doc__, STATE_DTYPE_DOC)
        rule = cls.__dict__.get("rule")
        if rule is not None:  # the entry says what the class would otherwise repeat
            cls._state_names = rule.state
            cls._takes_steps = rule.counts_steps

    #: ``state_dtype``: None (state of the parameter's dtype) or float32 (float32 state
    #: for the bfloat16/float16 parameters).
    _state_dtype: Optional[np.dtype] = None

    def __init__(self, params: Any, defaults: Dict[str, Any], state_dtype: Any = None) -> None:
        self._busy = threading.Lock()
        _LIVE.add(self)
        self._state_dtype = _check.state_dtype(state_dtype)
        if self._state_dtype is not None:
            bits = getattr(self, "state_bits", 32)
            if bits != 32:
                raise ValueError(f"state_dtype: float32 state cannot be combined with "
                                 f"state_bits={bits} (quantized state of float32 parameters)")
            if getattr(self, "compact_state", False):
                raise ValueError("state_dtype: float32 state cannot be combined with "
                                 "compact_state=True (int8 signs)")
        self.defaults = dict(defaults)
        self.param_groups: List[Dict[str, Any]] = []
        self.state: Dict[int, Dict[str, Any]] = {}
        self._global: Dict[str, Any] = dict(self._global_defaults)
        self._params: List[np.ndarray] = []  # every group's, in order
        self._group_sizes: List[int] = []
        self._placement: Optional[_device.Placement] = None  # None: host NumPy arrays
        self._fast_init()
        for group in _as_groups(params):
            self.add_param_group(group)

    def _fast_init(self) -> None:
        # what the step's short path looks up: the hyper-parameter names, each state's
        # getter, and the groups' values and tuples for the compiled call, as last checked
        self._default_keys = tuple(self.defaults)
        self._state_getters = tuple(map(itemgetter, self._state_names))
        self._checked_groups: Dict[int, tuple] = {}
        # the compiled short step's layout (_core.short_step), once the parameters are known
        self._short = self._short_call() if self._params else None

    # ------------------------------------------------------------------ groups
    def add_param_group(self, group: Dict[str, Any]) -> None:
        """Add a group of parameters with its own hyper-parameters (as torch.optim does)."""
        with self._exclusive("add_param_group"):
            self._add_param_group(group)

    def _add_param_group(self, group: Dict[str, Any]) -> None:
        if "cuda" not in self.rule.layers and isinstance(group, dict) and "params" in group:
            # No CUDA kernel: device arrays are refused before the device checks see them.
            arrays = group["params"]
            if isinstance(arrays, np.ndarray) or _device.is_device_array(arrays):
                arrays = [arrays]
            else:
                try:
                    arrays = list(arrays)
                except TypeError:  # not iterable: the checks below say what is wrong
                    arrays = []
                else:
                    group = {**group, "params": arrays}
            _device.host_only("params", type(self).__name__, arrays, start=len(self._params))
        self._sync_params()
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("param_group: expected a dict with a 'params' entry")
        arrays = group["params"]
        single = isinstance(arrays, np.ndarray) or _device.is_device_array(arrays)
        arrays = [arrays] if single else list(arrays)
        if not arrays:
            raise ValueError("params: an optimizer got an empty list of parameters")
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"param_group: unknown hyper-parameter(s) {sorted(unknown)}")
        start = len(self._params)
        # -- device hook: CUDA arrays are checked by _device, host arrays as NumPy arrays
        placement = _device.place("params", self._params, arrays, self._placement)
        if placement is not None and self._state_dtype is not None:
            raise ValueError("state_dtype: float32 state is for NumPy arrays (and CPU tensors); "
                             "CUDA arrays keep state of their own dtype")
        if placement is None:
            for j, a in enumerate(arrays):
                _check.float_array(f"params[{start + j}]", a, writable=True)
                self._check_complex(f"params[{start + j}]", a)
                if self._state_dtype is not None:
                    _check.state_dtype_params(f"params[{start + j}]", a.dtype)
            _check.no_shared_memory("params", self._params + arrays)
        new = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        self._check_group_for(new, arrays, start)
        new["params"] = arrays
        self.param_groups.append(new)
        self._params.extend(arrays)
        self._group_sizes.append(len(arrays))
        self._placement = placement
        self._short = self._short_call()

    def _sync_params(self) -> None:
        """Take the parameters from ``param_groups``, where a torch-style script swaps one
        (``opt.param_groups[0]["params"][0] = new``): steps, ``state_dict`` and
        ``load_state_dict`` follow ``param_groups``. State belongs to a position, so a
        parameter put in another's place keeps that place's state (its step count too) and
        must have the shape and dtype of the one it replaces; a parameter with another
        shape or dtype, an array that is no parameter (read-only, non-contiguous, another
        kind), memory shared with another parameter, and a group list of another length
        are refused, naming ``param_groups[g]["params"][i]``, with nothing changed."""
        groups, sizes, params = self.param_groups, self._group_sizes, self._params
        if type(groups) is not list or len(groups) != len(sizes):
            raise ValueError(
                f"param_groups: expected a list of the optimizer's {len(sizes)} groups, got "
                f"{len(groups) if isinstance(groups, list) else type(groups).__name__}; "
                "add a group with add_param_group"
            )
        swapped = []
        at = 0
        for g, (group, size) in enumerate(zip(groups, sizes)):
            arrays = group.get("params") if isinstance(group, dict) else None
            if arrays is None or not isinstance(arrays, (list, tuple)):
                raise TypeError(f'param_groups[{g}]["params"]: expected a list of arrays, got '
                                f"{type(arrays).__name__}")
            if len(arrays) != size:
                raise ValueError(
                    f'param_groups[{g}]["params"]: holds {len(arrays)} arrays, the group has '
                    f"{size} (state belongs to positions); add parameters with add_param_group"
                )
            for j, a in enumerate(arrays):
                if a is not params[at + j]:
                    swapped.append((f'param_groups[{g}]["params"][{j}]', at + j, a))
            at += size
        if not swapped:
            return
        new = list(params)
        shape: Any
        dtype: Any
        old_shape: Any
        old_dtype: Any
        for who, i, a in swapped:
            old = params[i]
            if self._placement is None:
                _check.float_array(who, a, writable=True)
                self._check_complex(who, a)
                shape, dtype, old_shape, old_dtype = a.shape, a.dtype, old.shape, old.dtype
                if shape == old_shape and not _check.same_layout(a, old):
                    raise ValueError(
                        f"{who}: strides {_check.element_strides(a)} (in elements) differ from "
                        f"those of the parameter it replaces {_check.element_strides(old)}; its "
                        "state, kept by position, has that memory layout"
                    )
            else:
                if not _device.is_device_array(a):
                    raise TypeError(f"{who}: expected a CUDA device array like the parameter it "
                                    f"replaces, got {type(a).__name__}")
                view, was = _device.describe(a, who), _device.describe(old, who)
                if view.device != was.device or view.readonly:
                    raise ValueError(f"{who}: must be a writable array on CUDA device "
                                     f"{was.device}, the parameters' device")
                shape, dtype, old_shape, old_dtype = view.shape, view.dtype, was.shape, was.dtype
            if dtype != old_dtype:
                raise TypeError(f"{who}: dtype {dtype} differs from that of the parameter it "
                                f"replaces ({old_dtype}); its state, kept by position, is "
                                f"{old_dtype}")
            if shape != old_shape:
                raise ValueError(f"{who}: shape {tuple(shape)} differs from that of the parameter "
                                 f"it replaces {tuple(old_shape)}; its state, kept by position, "
                                 "has that shape")
            new[i] = a
        if self._placement is None:
            _check.no_shared_memory("params", new)
        else:
            _device.place("params", [], new, None)
        self._params = new

    def _complex_refusal(self) -> Optional[str]:
        """Why this optimizer does not step complex arrays as their real view (None: it
        does). The rules torch steps complex parameters with do (each element of the real
        view, ``a[..., None].view(float dtype)``, stepped as a real element); the others
        refuse them, as there is no torch rule to follow."""
        return None

    def _check_complex(self, who: str, a: np.ndarray) -> None:
        """Refuse a complex array where :meth:`_complex_refusal` says why."""
        if a.dtype.kind != "c":
            return
        why = self._complex_refusal()
        if why is not None:
            raise _check.complex_refused(who, a.dtype, why)

    @property
    def _backend(self) -> Any:
        """The compiled step functions: ``_core`` for NumPy arrays, the CUDA backend else."""
        return _core if self._placement is None else _device.CUDA_BACKEND

    def _check_group(self, group: Dict[str, Any]) -> None:
        """Check and convert a group's hyper-parameters in place, as the rule's entry
        describes them. ``self`` may be the class itself (the functional layer and the
        dtype checks use no instance): an override uses nothing but ``self.rule``."""
        self.rule.check(group)

    #: Hyper-parameters that become state of the parameters' own dtype (e.g. a first
    #: step size); the others are rounded to the dtype the kernel computes in.
    _stored_hyper: tuple = ()

    @classmethod
    def _derived_hyper(cls, group: Dict[str, Any]) -> Dict[str, float]:
        """Constants the kernel derives from a checked group and rounds to the arrays'
        dtype (named as in a message), each of which must be finite there."""
        return {}

    @classmethod
    def _check_in_dtypes(cls, group: Dict[str, Any], dtypes: Dict[Any, str],
                         check: Any = None) -> None:
        """Check a checked group's values again as the kernels round them for arrays of
        ``dtypes`` (each dtype -> where it is first found, e.g. ``"params[3]"``) with
        ``check`` (default: the class's ``_check_group``, which uses no instance)."""
        if check is None:
            def check(g: Dict[str, Any]) -> None:
                cls._check_group(cls, g)  # type: ignore[arg-type]
        _check.in_dtypes(check, group, dtypes, cls._stored_hyper, cls._derived_hyper(group))

    def _check_group_for(self, group: Dict[str, Any], arrays: Sequence[Any], start: int) -> None:
        """``_check_group``, then the values as the kernels round them for the group's
        arrays (``params[start]`` onwards): the narrowest dtype among them decides."""
        for name in self._default_keys:
            if name not in group:
                raise ValueError(
                    f"{name}: missing from the param group of params[{start}]; every group "
                    f"holds {', '.join(self._default_keys)}"
                )
        self._check_group(group)
        self._check_in_dtypes(group, _array_dtypes(arrays, start), self._check_group)

    def _checked_group_args(self) -> List[tuple]:
        """Every group's tuple of hyper-parameters for the compiled call (``_group_args``).

        Validation costs more than a small step: a group's values (and their types) are
        remembered with its tuple after a successful ``_check_group``, and a group whose
        values changed is checked again.
        """
        checked, keys = self._checked_groups, self._default_keys
        out = []
        start = 0
        for group in self.param_groups:
            start += len(group["params"])
            values = tuple(map(group.get, keys))
            seen = checked.get(id(group))
            if seen is not None and seen[0] is group and seen[2] == tuple(map(type, values)):
                try:
                    if bool(seen[1] == values):
                        out.append(seen[3])
                        continue
                except (TypeError, ValueError):  # e.g. an array compared element-wise
                    pass
            self._check_group_for(group, group["params"], start - len(group["params"]))
            values = copy.deepcopy(tuple(map(group.get, keys)))  # immune to in-place edits
            args = self._group_args(group)
            checked[id(group)] = (group, values, tuple(map(type, values)), args)
            out.append(args)
        return out

    def _state_like(self, p: Any, value: float) -> Any:
        """A state array like ``p`` (on its device, in its memory layout) filled with
        ``value``: of ``p``'s dtype, or float32 for a bfloat16/float16 ``p`` under
        ``state_dtype=float32``."""
        if self._state_dtype is not None and isinstance(p, np.ndarray) \
                and p.dtype in _check.HALF_DTYPES:
            return _device.host_full_like(p, value, self._state_dtype)
        return _device.full_like(p, value)

    def _new_state(self, p: np.ndarray, group: Dict[str, Any]) -> Dict[str, Any]:
        """A parameter's first state: a step count, one zero array per ``_state_names``
        entry, like ``p`` and on its device (:meth:`_state_like`), and the rule's scalar
        state (0-d arrays)."""
        state = {"step": 0, **{name: self._state_like(p, 0.0) for name in self._state_names}}
        for scalar in self.rule.scalar_state:  # 0-d float32 arrays, as torch's 0-d tensors
            state[scalar.name] = np.array(scalar.start_value(group), np.float32)
        return state

    def _compiled(self, name: str) -> Any:
        """The compiled step ``name`` (the rule's, or another ``_call_layout`` names):
        host (NumPy) arrays go through the entry's host call, device arrays through the
        CUDA backend's."""
        if self._placement is None:
            return self.rule.host_call if name == self.rule.name else getattr(_core, name)
        return getattr(self._backend, name)

    #: Whether ``_launch`` takes the step counts (the rules whose update depends on them).
    _takes_steps = False

    def _group_args(self, group: Dict[str, Any]) -> tuple:
        """A checked group's hyper-parameters as the compiled call takes them: the entry's
        group-tuple order, pairs spread."""
        return self.rule.group_args(group)

    def _call_layout(self) -> Tuple[str, tuple, int, Dict[str, Any]]:
        """How the compiled step is called: ``(name, lead, width, options)`` for
        ``fn(*lead, params, grads, *columns, [steps], group_args, group_sizes, **options)``,
        ``fn`` the function ``name`` of the backend, ``columns`` padded with None to
        ``width`` lists and ``steps`` there only if ``_takes_steps``."""
        return self.rule.name, (), self.rule.width, {}

    def _launch(self, params, grads, columns, group_args, group_sizes, steps, states=(),
                **kw) -> None:
        """One compiled multi-tensor step: ``columns[k]`` lists the ``_state_names[k]``
        arrays, ``group_args`` and ``group_sizes`` the stepped groups, ``steps`` the step
        counts this step makes (floats; None unless ``_takes_steps``), ``states`` the
        parameters' state dicts (read for a rule with scalar state, whose values are stored
        there once the call has run: ``_registry.scalar_runs``), ``kw`` the
        ``_step_extras`` and the device's flag."""
        name, lead, width, options = self._call_layout()
        store = None
        if self.rule.scalar_state:
            names = self.rule.scalar_names
            group_args, group_sizes, store = scalar_runs(
                self.rule, group_args, group_sizes,
                [tuple(st[n] for n in names) for st in states], steps)
        self._compiled(name)(*lead, params, grads, *columns, *(None,) * (width - len(columns)),
                             *((steps,) if self._takes_steps else ()), group_args, group_sizes,
                             **options, **kw)
        if store is not None:
            store()

    def _short_call(self) -> Optional[tuple]:
        """The layout ``_core.short_step`` takes the step with (host arrays; None: the step
        always goes through Python). Its items, in the order the C code reads them: the
        compiled function, the leading arguments, the state columns' width, whether it takes
        the step counts, its keyword options, the state names, the hyper-parameter names."""
        if self._placement is not None or self.rule.scalar_state:
            return None  # scalar state is stored after the call, in Python (_launch)
        name, lead, width, options = self._call_layout()
        return (getattr(_core, name), lead, width, self._takes_steps, options,
                tuple(self._state_names), self._default_keys)

    # ------------------------------------------------------------------ step
    def step(self, grads: Any, loss: Optional[float] = None, *, found_inf: Any = None) -> None:
        """Update every parameter in place from its gradient.

        Parameters
        ----------
        grads : ndarray or sequence of ndarray (or None)
            One gradient per parameter, aligned with the parameters in group order (an
            ndarray alone for a single parameter). ``None`` in place of a gradient skips
            that parameter, its state untouched and its step not counted, as torch.optim
            skips a parameter whose ``.grad`` is None; so ``step(None)`` on an optimizer of
            one parameter changes nothing (of several, it is refused: pass one ``None``
            per parameter to skip them all).
        loss : float, optional
            The loss at the current parameters, for the rules that read it (their
            class says so).
        found_inf : bool or device array, optional
            Skip the step when non-zero (a gradient scaler found inf/NaN): nothing changes,
            no step is counted. For CUDA parameters, a one-element float32 array on their
            device that the kernels read; the step counters then wait for its value.

        Raises
        ------
        RuntimeError
            If another thread is inside a call on this optimizer at the same time, or
            inside a step that uses one of its arrays (nothing is written then).
        """
        short = self._short
        if short is not None and found_inf is None and _core.short_step(self, short, grads):
            # The common step in C: gradients as given, every state there, the groups as
            # last checked (see cpp/bindings/register_step.cpp). A step from memory left
            # every object on the Python path below out of the caches, and there each line
            # cost about a microsecond. False: nothing done, the step goes on below.
            return
        # _exclusive("step") written out: the context manager cost a small step 0.8 µs
        if not self._busy.acquire(False):
            raise self._busy_error("step")
        try:
            self._step(grads, loss, found_inf)
        finally:
            self._busy.release()

    def _step(self, grads: Any, loss: Optional[float], found_inf: Any) -> None:
        self._sync_params()
        group_args = self._checked_group_args()
        kw = self._step_extras(loss)
        n = len(self._params)
        given = grads if type(grads) is list else (
            list(grads) if type(grads) is tuple else [grads] if type(grads) is np.ndarray else None)
        if found_inf is None and given is not None and len(given) == n \
                and self._placement is None:
            # The common step, kept short: every parameter has its state, and the compiled
            # call is handed the gradients as they are. It checks every array before it
            # writes any; a gradient it refuses (None, a NumPy scalar, or bad input) sends
            # the step down the general path below, which skips, converts or raises.
            states: List[Any] = list(map(self.state.get, range(n)))  # None: no state yet
            if None not in states:
                columns = [list(map(get, states)) for get in self._state_getters]
                steps = [st["step"] + 1.0 for st in states] if self._takes_steps else None
                try:
                    self._launch(self._params, given, columns, group_args, self._group_sizes,
                                 steps, states, **kw)
                except (TypeError, ValueError):
                    pass
                else:
                    for st in states:
                        st["step"] += 1
                    self._after_step(loss)
                    return
        grads = self._grad_list(grads)
        skip, device_flag = _device.skip_flag(found_inf, self._placement)
        if skip:
            return
        if device_flag is not None:
            kw["found_inf"] = device_flag
        if self._step_some(grads, group_args, kw, device_flag, found_inf):
            self._after_step(loss)

    def _step_some(self, grads, group_args, kw, device_flag, found_inf) -> bool:
        """The step of the parameters that have a gradient (not None), new state made for
        those without; False if nothing was stepped."""
        params: List[np.ndarray] = []
        active_grads: List[np.ndarray] = []
        columns: List[List[np.ndarray]] = [[] for _ in self._state_names]
        args: List[tuple] = []
        group_sizes: List[int] = []
        steps: List[float] = []
        states: List[Dict[str, Any]] = []
        fresh: Dict[int, Dict[str, Any]] = {}
        index = 0
        for group, group_arg in zip(self.param_groups, group_args):
            count = 0
            for p in group["params"]:
                g = grads[index]
                if g is not None:
                    st = self.state.get(index)
                    if st is None:
                        st = fresh[index] = self._new_state(p, group)
                    params.append(p)
                    active_grads.append(g)
                    for col, name in zip(columns, self._state_names):
                        col.append(st[name])
                    steps.append(st["step"] + 1.0)
                    states.append(st)
                    count += 1
                index += 1
            if count:
                args.append(group_arg)
                group_sizes.append(count)
        if not params:
            return False
        self._launch(params, active_grads, columns, args, group_sizes,
                     steps if self._takes_steps else None, states, **kw)
        if device_flag is not None and _device.read_flag(found_inf):
            return False
        self.state.update(fresh)
        for st in states:
            st["step"] += 1
        return True

    def _grad_list(self, grads: Any) -> List[Optional[np.ndarray]]:
        n = len(self._params)
        if type(grads) not in (list, tuple):  # lists and tuples: the common case, checked below
            if isinstance(grads, np.floating):  # a NumPy scalar: the gradient of a 0-d parameter
                grads = np.asarray(grads)
            if isinstance(grads, np.ndarray) or grads is None or _device.is_device_array(grads):
                if n != 1:
                    raise ValueError(
                        f"grads: expected a sequence of {n} arrays (one per parameter; None "
                        f"skips one), got a single {'array' if grads is not None else 'None'}"
                    )
                return [grads]
            if _check.is_torch_tensor(grads):  # iterable, but not a list of gradients
                raise _check.not_an_array("grads", grads)
            if isinstance(grads, (str, bytes, abc.Mapping, abc.Set)) \
                    or not isinstance(grads, abc.Iterable):
                # an unordered collection cannot line up with the parameters
                raise TypeError(f"grads: expected a sequence of arrays, got {type(grads).__name__}")
        grads = [np.asarray(g) if isinstance(g, np.floating) else g for g in grads]
        if len(grads) != n:
            raise ValueError(f"grads: expected {_plural(n, 'array')} (one per parameter), "
                             f"got {len(grads)}")
        return grads

    def _step_extras(self, loss: Optional[float]) -> Dict[str, Any]:
        return {}

    def _after_step(self, loss: Optional[float]) -> None:
        pass

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        """Copy of the state: NumPy arrays and Python scalars, parameters by index."""
        with self._exclusive("state_dict"):
            return self._state_dict()

    def _state_dict(self) -> Dict[str, Any]:
        self._sync_params()
        groups = []
        index = 0
        for group in self.param_groups:
            g = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            g["params"] = list(range(index, index + len(group["params"])))
            index += len(group["params"])
            groups.append(g)
        return {
            "optimizer": type(self).__name__,
            **self._state_dict_extras(),
            "state": {
                i: {k: _device.host_copy(v) for k, v in st.items()}
                for i, st in self.state.items()
            },
            "param_groups": groups,
            **copy.deepcopy(self._global),
        }

    def _state_dict_extras(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore a state_dict() of an optimizer of the same kind over the same shapes.

        Everything is checked before anything is replaced; arrays are copied in.
        """
        with self._exclusive("load_state_dict"):
            self._load_state_dict(state_dict)

    def _load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._sync_params()
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        expected = {"optimizer", "state", "param_groups", *self._global, *self._state_dict_extras()}
        if set(state_dict) != expected:
            raise ValueError(
                f"state_dict: expected keys {sorted(expected)}, got {sorted(map(str, state_dict))}"
            )
        if state_dict["optimizer"] != type(self).__name__:
            raise ValueError(
                f"state_dict: holds the state of {state_dict['optimizer']!r}, "
                f"not {type(self).__name__!r}"
            )
        for key, value in self._state_dict_extras().items():
            if state_dict[key] != value:
                raise ValueError(
                    f"state_dict: {key} is {state_dict[key]!r}, this optimizer's is {value!r}"
                )
        groups = state_dict["param_groups"]
        if not isinstance(groups, (list, tuple)) or len(groups) != len(self.param_groups):
            raise ValueError(
                f"state_dict: expected {len(self.param_groups)} param_groups, got "
                f"{len(groups) if isinstance(groups, (list, tuple)) else type(groups).__name__}"
            )
        new_groups = []
        index = 0
        for k, (saved, mine) in enumerate(zip(groups, self.param_groups)):
            n = len(mine["params"])
            if not isinstance(saved, dict) \
                    or list(saved.get("params", ())) != list(range(index, index + n)):
                raise ValueError(
                    f"state_dict: param_groups[{k}] does not hold parameters "
                    f"{index}..{index + n - 1}"
                )
            if set(saved) != set(mine):
                raise ValueError(
                    f"state_dict: param_groups[{k}] has keys {sorted(saved)}, "
                    f"expected {sorted(mine)}"
                )
            g = {key: copy.deepcopy(v) for key, v in saved.items() if key != "params"}
            self._check_group_for(g, mine["params"], index)
            g["params"] = mine["params"]
            new_groups.append(g)
            index += n
        new_state = self._load_states(state_dict["state"], new_groups)
        new_global = {}
        for key in self._global:
            v = state_dict[key]
            new_global[key] = (_check.real(f"state_dict[{key!r}]", v, finite=False)
                               if v is not None else v)
        self.param_groups = new_groups
        self.state = new_state
        self._global = new_global

    def _load_states(self, saved: Any, groups: List[Dict[str, Any]]) -> Dict[int, Dict[str, Any]]:
        if not isinstance(saved, dict):
            raise TypeError("state_dict['state']: expected a dict of per-parameter states")
        out: Dict[int, Dict[str, Any]] = {}
        owner = [g for g in groups for _ in g["params"]]
        for key, st in saved.items():
            i = (int(key)
                 if isinstance(key, (int, np.integer, str)) and str(key).lstrip("-").isdigit()
                 else -1)
            if not 0 <= i < len(self._params):
                raise ValueError(f"state_dict['state']: no parameter with index {key!r}")
            p = self._params[i]
            template = self._new_state(p, owner[i])
            where = f"state_dict['state'][{i}]"
            if not isinstance(st, dict) or set(st) != set(template):
                got = sorted(st) if isinstance(st, dict) else type(st).__name__
                raise ValueError(f"{where}: expected keys {sorted(template)}, got {got}")
            new: Dict[str, Any] = {}
            for name, ref in template.items():
                v = st[name]
                if self._placement is not None and not isinstance(ref, (int, np.integer)):
                    new[name] = _device.load_like(f"{where}[{name!r}]", v, ref)
                elif isinstance(ref, np.ndarray):
                    _check.not_masked(f"{where}[{name!r}]", v)
                    v = np.asarray(v)
                    if v.shape != ref.shape:
                        raise ValueError(f"{where}[{name!r}]: shape {v.shape} "
                                         f"does not match the parameter's {ref.shape}")
                    if v.dtype != ref.dtype and not (
                            ref.dtype == _check.FLOAT32 and v.dtype == p.dtype
                            and p.dtype in _check.HALF_DTYPES):
                        if v.dtype == _check.FLOAT32 and p.dtype in _check.HALF_DTYPES:
                            raise TypeError(
                                f"{where}[{name!r}]: a float32 state (saved with "
                                f"state_dtype=float32) does not load into {p.dtype} state, "
                                "which would round it; build the optimizer with "
                                "state_dtype=np.float32")
                        raise TypeError(f"{where}[{name!r}]: dtype {v.dtype} "
                                        f"does not match the parameter's {ref.dtype}")
                    # (a 16-bit state loads into float32 state exactly: state_dtype=float32)
                    # into the new state array, which starts where p does in its cache line
                    ref[...] = v
                    new[name] = ref
                else:
                    new[name] = _check.count(f"{where}[{name!r}]", v)
            out[i] = new
        return out

    # ------------------------------------------------------------------ threads
    @contextlib.contextmanager
    def _exclusive(self, what: str):
        """Hold the optimizer for one call; refuse (never wait) if another thread holds it."""
        if not self._busy.acquire(False):
            raise self._busy_error(what)
        try:
            yield
        finally:
            self._busy.release()

    def _busy_error(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"{what}: this {type(self).__name__} is already in a call from another thread; "
            "an optimizer must not be used by two threads at once (give each thread its "
            "own optimizer, or serialise the calls with a lock)"
        )

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        del state["_busy"]  # a lock is neither picklable nor meaningful in a copy
        for name in ("_default_keys", "_state_getters", "_checked_groups", "_short"):
            del state[name]  # made again by __setstate__
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._busy = threading.Lock()
        _LIVE.add(self)
        self._fast_init()

    # ------------------------------------------------------------------ repr
    def _hyper_repr(self, group: Dict[str, Any]) -> str:
        return ", ".join(f"{k}={group[k]!r}" for k in self.defaults)

    def __repr__(self) -> str:
        n = len(self._params)
        size = sum(_device.numel(p) for p in self._params)
        where = f"{_plural(n, 'array')}, {_plural(size, 'parameter')}"
        if len(self.param_groups) == 1:
            return f"{type(self).__name__}({self._hyper_repr(self.param_groups[0])}; {where})"
        lines = [f"{type(self).__name__}({where}"]
        for k, g in enumerate(self.param_groups):
            lines.append(f"  group {k} ({_plural(len(g['params']), 'array')}): "
                         f"{self._hyper_repr(g)}")
        return "\n".join(lines) + ")"


def _plural(n: int, noun: str) -> str:
    """``"1 array"``, ``"2 arrays"``, ``"1,024 parameters"``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _array_dtypes(arrays: Sequence[Any], start: int) -> Dict[Any, str]:
    """Each dtype among ``arrays`` (host or device), with the name of its first array
    (``params[start + j]``); the dtype a device array appears as on the host."""
    out: Dict[Any, str] = {}
    for j, a in enumerate(arrays):
        if isinstance(a, np.ndarray):
            dtype = a.dtype
        elif _device.is_device_array(a):
            dtype = _device.HOST_DTYPES.get(_device.describe(a, f"params[{start + j}]").dtype)
        else:
            continue
        if dtype is not None and dtype.kind in "fc":  # complex: as its real view
            out.setdefault(_check.real_dtype(dtype), f"params[{start + j}]")
    return out


def _as_groups(params: Any) -> List[Dict[str, Any]]:
    """One ndarray, a sequence of ndarrays, or a list of param-group dicts."""
    if isinstance(params, np.ndarray) or _device.is_device_array(params):
        return [{"params": [params]}]
    if _check.is_torch_tensor(params):  # iterable, but not a list of parameters
        raise _check.not_an_array("params", params)
    if isinstance(params, dict):
        raise TypeError("params: expected an array, a sequence of arrays or a list of "
                        "param-group dicts, got a dict")
    if isinstance(params, (str, bytes)) or not isinstance(params, abc.Iterable):
        raise TypeError(
            "params: expected an array, a sequence of arrays or a list of param-group dicts, "
            f"got {type(params).__name__}"
        )
    items = list(params)
    if not items:
        raise ValueError("params: an optimizer got an empty list of parameters")
    if all(isinstance(x, dict) for x in items):
        return [dict(x) for x in items]
    if any(isinstance(x, dict) for x in items):
        raise TypeError("params: mixes arrays and param-group dicts")
    for i, a in enumerate(items):
        if not isinstance(a, np.ndarray) and not _device.is_device_array(a):
            raise _check.not_an_array(f"params[{i}]", a)
    return [{"params": items}]

