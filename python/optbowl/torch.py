r"""Drop-in replacements for ``torch.optim`` optimizers, on optbowl's fused kernels.

Change one import and keep the rest of a training script::

    import optbowl.torch
    opt = optbowl.torch.Rprop(model.parameters(), lr=1e-2)   # was torch.optim.Rprop

:class:`Rprop`, :class:`Adagrad`, :class:`SGD`, :class:`RMSprop`, :class:`Adam` and
:class:`AdamW` are subclasses of :class:`torch.optim.Optimizer` with torch's constructor
signatures and defaults, so ``param_groups``, ``zero_grad``, step hooks,
``add_param_group`` and learning-rate schedulers work as with torch; state is kept per
tensor as torch keeps it, so a tensor swapped into ``param_groups`` is stepped, with fresh
state of its own. ``state_dict()`` is in
torch's own format (the same state keys and tensors, optional ones absent where torch
leaves them out), so a checkpoint written by ``torch.optim.Rprop`` loads into
:class:`optbowl.torch.Rprop` and the other way round, and training continues with the same
parameters (bit for bit where the class says so; RMSprop to an ulp or so, as torch has no
fused RMSprop to match). :class:`QuickProp`, which torch lacks, has the state names of
:class:`optbowl.QuickProp`.

Each ``step()`` makes one compiled call per device (and per state layout, when param groups
differ in optional state such as momentum buffers) for all parameters that have a gradient,
and checks the arrays of every call before the first one runs, so that a refused step
changes nothing (arrays of different calls that share memory are refused too):

- CPU tensors (float32, float64, bfloat16, float16, or complex64/complex128 stepped as
  their ``view_as_real``, as torch steps them; any non-overlapping dense layout, e.g.
  ``channels_last``, whose gradient and state have the parameter's strides; dense
  gradients of the parameter's dtype) are handed to the C++ kernels of ``optbowl._core``
  as NumPy views of their memory, without copies, each stepped as the flat run over its
  memory (bfloat16 as ``ml_dtypes.bfloat16``: the ``bf16`` extra). A 16-bit parameter
  keeps its state in its dtype and is computed in float32, as torch steps it: Adam, AdamW
  and Adagrad bit-identical to ``fused=True``, Rprop, RMSprop and SGD to the single-tensor
  loop (``foreach=False``); with ``state_dtype=torch.float32`` (a keyword torch does not
  have) it keeps float32 state instead and is stepped as the float32 rule, the parameter
  rounded once when stored (a departure from torch);
- CUDA tensors go to optbowl's CUDA module (``optbowl._cuda``); an installation without
  it, or whose build lacks the optimizer's entry, refuses CUDA tensors with a RuntimeError
  that says what is missing. With ``fused=True`` the ``step`` counters live on the device
  and the kernels read them there, so a step never waits for the GPU; an optimizer whose
  parameters are all CUDA tensors and whose counters (if it counts steps) are on the
  device takes ``torch.amp.GradScaler``'s scale and found_inf into its kernels, as torch's
  fused optimizers do;
- anything else (a sparse gradient, float16 on the CPU, a parameter with gaps or overlaps
  in its memory, a gradient or state with other strides than its parameter, another
  device) raises a TypeError or ValueError naming the parameter, before anything is
  written.

There is never a silent fallback to torch's own implementation, and an option the kernels
cannot honour (``differentiable=True``, ``capturable=True``, Adagrad's and Adam's non-fused
rounding) is refused with a ValueError rather than ignored. A one-element tensor ``lr`` is
read as its value on every step.

``import optbowl`` does not import torch; only ``import optbowl.torch`` does (torch >= 2.5,
the extra ``optbowl[torch]``).
"""

from __future__ import annotations

import importlib
import math
import numbers
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.autograd.graph import increment_version

import optbowl as optbowl_numpy  # the NumPy classes (Rprop, Adam, ...): their dtype rules

from . import _check, _core, _registry, _state_bits
from ._optimizer import add_parameter_doc

#: The ``state_dtype`` entry of every class's Parameters section.
STATE_DTYPE_DOC = """\
state_dtype : None or torch.float32, keyword-only
    A keyword torch does not have. None (default): a parameter's state has the
    parameter's dtype, as torch keeps it. ``torch.float32``: a bfloat16 or float16 CPU
    parameter keeps float32 state, and each element is computed as the float32 rule
    computes it, from the widened parameter and gradient and the state as it is, the
    parameter rounded to its 16-bit dtype (to nearest even) once when stored; the state is
    never rounded, and torch's intermediate 16-bit roundings do not apply, so results
    depart from torch's. A float32 parameter's state is float32 anyway; a float64 or
    complex128 parameter, a CUDA tensor and ``state_bits=8|16`` are refused (ValueError).
    ``load_state_dict`` keeps such float32 state float32 (a 16-bit state is widened
    exactly); an optimizer without ``state_dtype`` casts it to the parameter's dtype, as
    torch's ``load_state_dict`` does.
"""

__all__ = ["ASGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "Lion", "NAdam", "QuickProp",
           "RAdam", "RMSprop", "Rprop", "SGD"]

#: Parameter dtypes the CPU kernels take (bfloat16 and float16: stored in 16 bits,
#: computed in float32, rounded as torch rounds them; bfloat16 needs ml_dtypes).
CPU_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _np(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of a (detached) CPU tensor's memory: bfloat16 as ml_dtypes.bfloat16."""
    if t.dtype is torch.bfloat16:
        if _check.BFLOAT16 is None:
            raise TypeError(
                "params: bfloat16 tensors need the ml_dtypes package (pip install "
                "'optbowl[bf16]'), through which optbowl's kernels see their memory"
            )
        return t.view(torch.int16).numpy().view(_check.BFLOAT16)
    return t.numpy()


#: Complex parameter dtypes the CPU kernels step as their ``view_as_real`` (as torch does).
COMPLEX_DTYPES = (torch.complex64, torch.complex128)


def _dense(t: torch.Tensor) -> bool:
    """Whether ``t``'s elements fill its memory with neither gaps nor overlaps, in some
    order of its axes (torch's ``is_non_overlapping_and_dense``): such a tensor is stepped
    as the flat run over its memory."""
    if t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)):
        return True
    if t.numel() == 0:
        return True
    expected = 1
    for stride, length in sorted((s, n) for s, n in zip(t.stride(), t.shape) if n > 1):
        if stride != expected:
            return False
        expected *= length
    return True


def _same_layout(t: torch.Tensor, p: torch.Tensor) -> bool:
    """Whether dense ``t`` orders its elements in memory as ``p`` of its shape does: the
    same strides on every axis longer than 1."""
    return t.stride() == p.stride() or p.numel() == 0 or all(
        n == 1 or a == b for n, a, b in zip(p.shape, t.stride(), p.stride()))


def _state_in_param_layouts(opt: torch.optim.Optimizer) -> None:
    """After ``load_state_dict``: a state tensor saved with another memory layout than its
    parameter's (a checkpoint from before ``model.to(memory_format=...)``) is copied into
    the parameter's layout, as the kernels step each element's state where its parameter
    is in memory. Its values are kept bit for bit."""
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p)
            if not state:
                continue
            for name in getattr(opt, "_state_names", ()):
                t = state.get(name)
                if isinstance(t, torch.Tensor) and t.layout == torch.strided \
                        and t.shape == p.shape and _dense(p) and not _same_layout(t, p):
                    state[name] = torch.empty_like(p, dtype=t.dtype, device=t.device).copy_(t)


def _keep_scalar_state(opt: torch.optim.Optimizer, state_dict: Dict[str, Any]) -> None:
    """Before ``load_state_dict``: remember a rule's per-parameter scalar state (NAdam's
    ``mu_product``, ASGD's ``eta`` and ``mu``) as the state_dict holds it. torch's load
    casts every floating-point state tensor but ``step`` to its parameter's dtype, which
    would round a bfloat16 or float16 parameter's scalar state to 16 bits; the values
    loaded are then put back (:func:`_restore_scalar_state`), in the float32 or float64
    torch keeps them in. Under ``state_dtype=torch.float32`` the state tensors are kept
    the same way, so that a 16-bit parameter's float32 state loads as float32."""
    names = tuple(opt._rule.scalar_names)  # type: ignore[attr-defined]
    if getattr(opt, "_state_dtype", None) is not None:  # float32 state beside 16-bit params
        names += tuple(opt._state_names)  # type: ignore[attr-defined]
    saved = state_dict.get("state", {})
    opt._loading_scalars = [  # type: ignore[attr-defined]
        [{n: saved[i][n] for n in names if isinstance(saved.get(i), dict) and n in saved[i]}
         for i in group["params"]]
        for group in state_dict.get("param_groups", [])
    ]


def _restore_scalar_state(opt: torch.optim.Optimizer) -> None:
    """After ``load_state_dict``: the scalar state :func:`_keep_scalar_state` remembered,
    copied onto the CPU (a 16-bit value saved by torch itself becomes float32); under
    ``state_dtype=torch.float32``, a 16-bit parameter's state tensors as saved, in float32
    (a 16-bit state widened exactly) and in the parameter's memory layout."""
    loading = getattr(opt, "_loading_scalars", None)
    opt._loading_scalars = None  # type: ignore[attr-defined]
    if loading is None:
        return
    scalars = set(opt._rule.scalar_names)  # type: ignore[attr-defined]
    for group, saved in zip(opt.param_groups, loading):
        for p, values in zip(group["params"], saved):
            state = opt.state.get(p)
            for name, value in values.items():
                if state is None or not isinstance(value, torch.Tensor):
                    continue
                if name not in scalars:  # a state tensor of state_dtype=torch.float32
                    if opt._wide(p) and value.shape == p.shape:  # type: ignore[attr-defined]
                        # float32 as saved, a 16-bit state widened (exactly), in p's layout
                        state[name] = torch.empty_like(p, dtype=torch.float32).copy_(value)
                    continue
                dtype = value.dtype if value.dtype in (torch.float32, torch.float64) \
                    else torch.float32
                state[name] = value.detach().to(device="cpu", dtype=dtype, copy=True)


def _scalar_dtype() -> torch.dtype:
    """dtype of a ``step`` counter, as torch.optim makes it (float64 only under that default)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _new_step(p: torch.Tensor, group: Dict[str, Any], value: float = 0.0) -> torch.Tensor:
    """A ``step`` counter as torch.optim makes it: float32 on the parameter's device for
    ``fused``/``capturable`` groups, else a CPU scalar of :func:`_scalar_dtype`."""
    if group.get("fused") or group.get("capturable"):
        return torch.tensor(value, dtype=torch.float32, device=p.device)
    return torch.tensor(value, dtype=_scalar_dtype())


def _cuda_kernels() -> Any:
    """The CUDA twin of ``optbowl._core`` (entries with the same arguments, plus
    ``found_inf``), over optbowl's CUDA module; a RuntimeError if that module cannot run."""
    device = importlib.import_module("optbowl._device")
    reason = device.unavailable_reason()
    if reason is not None:
        raise RuntimeError(
            f"params: CUDA tensors need optbowl's CUDA module (optbowl._cuda), but {reason}; "
            "keep the model on the CPU or rebuild optbowl with a CUDA compiler"
        )
    return device.CUDA_BACKEND


def _cuda_entry(backend: Any, name: str, optimizer: str) -> Callable[..., Any]:
    """The CUDA entry ``name``, or a RuntimeError naming it when this build lacks it."""
    module = importlib.import_module("optbowl._device")._cuda
    entry = getattr(backend, name, None)
    if entry is None or not hasattr(module, name):
        raise RuntimeError(
            f"params: {optimizer} on CUDA tensors needs the entry {name!r} of optbowl's CUDA "
            f"module (optbowl._cuda.{name}), which this build of it lacks; rebuild optbowl or "
            "keep the model on the CPU"
        )
    return entry


def _real(name: str, value: Any, low: float = 0.0) -> float:
    """A hyper-parameter as a finite float (a one-element tensor is accepted, as torch
    does), >= low."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name}: a tensor {name} must have exactly one element")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    x = _check.real(name, value, finite=False)  # named errors for NaN and 10**400
    if x < low:
        raise ValueError(f"{name}: must be >= {low}, got {x}")
    if math.isinf(x):
        raise ValueError(f"{name}: must be finite, got {x}")
    return x


#: The NumPy dtype the kernels round a hyper-parameter to for tensors of a torch dtype
#: (bfloat16 has float32's range).
_ROUNDED_AS = {
    torch.float32: np.dtype(np.float32),
    torch.float64: np.dtype(np.float64),
    torch.complex64: np.dtype(np.float32),  # as its real view
    torch.complex128: np.dtype(np.float64),
    torch.float16: np.dtype(np.float16),
    torch.bfloat16: np.dtype(np.float32),
}


def _as_number(value: Any) -> Any:
    """A group value with one-element tensors (also inside a pair) read as numbers."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (tuple, list)):
        return type(value)(map(_as_number, value))
    return value


def _pair(name: str, value: Any) -> Tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name}: expected a pair of real numbers, got {value!r}")
    return (_real(f"{name}[0]", value[0], -math.inf), _real(f"{name}[1]", value[1], -math.inf))


def _check_entry(h: _registry.Hyper, value: Any) -> None:
    """One hyper-parameter as its registry entry describes it (see ``_real``)."""
    if h.kind == _registry.BOOL:
        _bool(h.name, value)
        return
    if h.pair:
        for k, x in enumerate(_pair(h.name, value)):
            if not h.condition and not _within(h, x):
                raise ValueError(f"{h.name}[{k}]: must be in {h.range}, got {x}")
        return
    x = _real(h.name, value, -math.inf if h.low is None else h.low)
    if not _within(h, x):
        raise ValueError(f"{h.name}: must be {'>' if h.low_open else '>='} "
                         f"{_registry._number(h.low or 0.0)}, got {x}")


def _within(h: _registry.Hyper, x: float) -> bool:
    if h.low is not None and (x < h.low or (h.low_open and x == h.low)):
        return False
    return h.high is None or (x < h.high if h.high_open else x <= h.high)


def _options(arguments: Dict[str, Any]) -> Dict[str, Any]:
    """A constructor's arguments (its ``locals()``) as torch's ``defaults`` dict."""
    return {k: v for k, v in arguments.items()
            if k not in ("self", "params", "__class__", "state_dtype")}


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return value


def _flag(name: str, value: Any, allowed: Sequence[Any], why: str) -> None:
    """Refuse an implementation option the kernels cannot honour, saying why."""
    if not any(value is a for a in allowed):
        raise ValueError(f"{name}={value!r} is not supported by optbowl.torch: {why}")


#: Options that name torch's implementation, and the values each optimizer takes.
ANY_IMPLEMENTATION = ((None, True, False), "expected None, True or False")
NOT_CAPTURABLE = ((False,), "CUDA-graph capture is not supported")
NOT_DIFFERENTIABLE = ((False,), "the fused update is not recorded by autograd")
#: foreach=None and foreach=False are torch's single-tensor path on the CPU, the only one
#: the rules without a fused torch kernel reproduce; its foreach path rounds otherwise.
SINGLE_TENSOR = ((None, False), "the update is torch's single-tensor path (foreach=False), "
                 "which its foreach path (foreach=True) rounds otherwise")
FUSED_ROUNDING = "the update is always the fused kernel's, which rounds as torch's fused=True"
ONLY_FUSED = ((None, True), FUSED_ROUNDING)
#: foreach=False asks for torch's single-tensor loop, True for its foreach path: both round
#: otherwise than its fused kernel, the only one these optimizers compute.
NOT_FOREACH = ((None,), "torch's foreach and single-tensor paths (foreach=True, foreach=False) "
               "round otherwise than its fused kernel, the only update these optimizers compute; "
               "leave foreach=None (or pass fused=True) for results bit-identical to "
               "fused=True")


class _Batch:
    """The tensors of one device and one state layout that take part in a step, in the
    kernel's layout; a column of state that the layout lacks is None."""

    def __init__(self, layout: Tuple[bool, ...]) -> None:
        self.params: List[Any] = []
        self.grads: List[Any] = []
        self.states: List[Optional[List[Any]]] = [[] if present else None for present in layout]
        self.steps: List[float] = []  # each tensor's step count after this step
        self.groups: List[Dict[str, Any]] = []
        self.group_sizes: List[int] = []
        self.index: List[int] = []  # each tensor's position in param_groups (for messages)
        self.scalars: List[tuple] = []  # each tensor's scalar state (0-d), for rules with one

    def add(self, p, grad, state_tensors, step, group, index) -> None:
        self.params.append(p)
        self.index.append(index)
        self.grads.append(grad)
        for column, t in zip(self.states, state_tensors):
            if column is not None:
                column.append(t)
        self.steps.append(step)
        if self.groups and self.groups[-1] is group:
            self.group_sizes[-1] += 1
        else:
            self.groups.append(group)
            self.group_sizes.append(1)

    def as_numpy(self) -> "_Batch":
        """The same batch with every tensor replaced by a NumPy view of its memory."""
        out = _Batch(())
        out.params = [_np(t.detach()) for t in self.params]
        out.grads = [_np(t.detach()) for t in self.grads]
        out.states = [
            None if column is None else [_np(t.detach()) for t in column]
            for column in self.states
        ]
        out.steps, out.groups, out.group_sizes = self.steps, self.groups, self.group_sizes
        out.index = self.index
        out.scalars = [tuple(t.detach().numpy() for t in ts) for ts in self.scalars]
        return out


def _remembered(value: Any) -> Any:
    """A group value as the plan remembers it: a list copied (it may change in place)."""
    return list(value) if isinstance(value, list) else value


def _plain(value: Any) -> bool:
    """Whether a group value can be remembered by equality: no tensor (whose value can
    change in place), also not inside a pair."""
    if isinstance(value, (tuple, list)):
        return all(not isinstance(v, torch.Tensor) for v in value)
    return not isinstance(value, torch.Tensor)


def _same(a: Any, b: Any) -> bool:
    """Whether a group value is still the one remembered (any value a user keeps in a
    group, an array's too: unequal unless its comparison says True)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    try:
        return bool(a == b)
    except Exception:  # an array of several elements, a value that cannot compare
        return False


_ABSENT = object()


class _Plan:
    """A step on CPU tensors as the last one left everything, for the next step to reuse.

    On ResNet-18's 62 tensors the general path of ``step()`` cost about 1.1 ms a step in
    Python (checks, state look-ups, NumPy views, the counters' ``torch._foreach_add_``)
    beside a 5 ms kernel. The plan keeps the NumPy views of the parameters and states, each
    group's kernel tuple, the batches and the step counters' views, and a step checks what
    can change between steps:

    - each gradient (a new tensor after ``zero_grad()``): there or absent as before, and of
      the parameter's dtype, shape and memory layout, dense, on the CPU;
    - each parameter: the same object over the same memory (``p.data = ...``, as
      ``Module.to()`` does, moves it);
    - the groups, their parameter lists, ``state`` and each parameter's state dict: the same
      objects, the dicts holding the same tensors;
    - each group's values: those last checked. A changed value (a learning-rate scheduler's)
      is checked as the general path checks it, and its kernel tuple remade.

    Anything else sends the step to the general path, which checks, raises or rebuilds
    the plan; nothing is written before. (A state tensor given new memory in place,
    ``state[p]["exp_avg"].data = ...``, is not seen.) Only optimizers whose parameters
    with a gradient are all on the CPU make one.
    """

    def __init__(self, opt: "_FusedOptimizer") -> None:
        if opt._rule.scalar_state:
            # The group tuples carry the scalar state, new after every step, and the state
            # is stored in Python after the kernel: the general path takes every step.
            raise _NoPlan
        self.param_groups = opt.param_groups
        self.state = opt.state
        # Per group: [group, its params list, its size, its values, its state layout, rows].
        # A row per parameter: (p, data_ptr, dtype, shape, state dict or None,
        # ((name, state tensor), ...), its batch), or (p, None) for one without a gradient.
        self.groups: List[List[Any]] = []
        self.tuples: List[tuple] = []  # each group's kernel tuple
        # The batches as the general path makes them (NumPy views, gradients filled in by
        # each step), each with its groups' indices and its counters' views.
        self.batches: List[Tuple[_Batch, List[int], List[Any]]] = []
        self.counters: List[torch.Tensor] = []
        self.counter_views: List[Any] = []
        self.params: List[torch.Tensor] = []
        by_layout: Dict[Tuple[bool, ...], Tuple[_Batch, List[int], List[Any]]] = {}
        index = -1
        for k, group in enumerate(opt.param_groups):
            values = {key: _remembered(v) for key, v in group.items() if key != "params"}
            if not all(_plain(v) for v in values.values()):
                raise _NoPlan
            layout = tuple(opt._present(name, group) for name in opt._state_names)
            rows: List[Tuple[Any, ...]] = []
            self.groups.append([group, group["params"], len(group["params"]), values, layout, rows])
            self.tuples.append(opt._kernel_group(group))
            for p in group["params"]:
                index += 1
                if p.grad is None:
                    rows.append((p, None))
                    continue
                if not p.is_cpu:
                    raise _NoPlan
                # None where torch keeps no state (SGD without momentum)
                sd: Any = opt.state.get(p)
                names = [name for name, present in zip(opt._state_names, layout) if present]
                tensors = [sd[name] for name in names]
                entry = by_layout.get(layout)
                if entry is None:
                    entry = by_layout[layout] = (_Batch(layout), [], [])
                    self.batches.append(entry)
                batch, indices, views = entry
                if not batch.groups or batch.groups[-1] is not group:
                    indices.append(k)
                batch.add(_np(p.detach()), None,
                          [_np(sd[name].detach()) if present else None
                           for name, present in zip(opt._state_names, layout)],
                          opt._step_count(sd or {}, group), group, index)
                if opt._has_step:
                    counter = sd["step"]
                    if not (isinstance(counter, torch.Tensor) and counter.is_cpu
                            and counter.numel() == 1
                            and counter.dtype in (torch.float32, torch.float64)):
                        raise _NoPlan  # _core.add_one takes float32 and float64 views
                    view = counter.detach().numpy()
                    self.counters.append(counter)
                    self.counter_views.append(view)
                    views.append(view)
                    names.append("step")
                    tensors.append(counter)
                self.params.append(p)
                rows.append((p, p.data_ptr(), p.dtype, p.shape, sd, tuple(zip(names, tensors)),
                             batch, p.stride()))
        for batch, _, _ in self.batches:
            batch.grads.clear()  # filled by each step
        # Several batches (param groups of different state layouts) are several calls: all
        # their arrays are checked before the first runs (_core.check_calls), over the
        # batches' own lists, which each step refills.
        self.calls = opt._calls([batch for batch, _, _ in self.batches]) \
            if len(self.batches) > 1 else None
        # Counts read from the counters on every step (the others, SGD's, are the state's)
        self.reads_counters = opt._has_step and opt._counts_steps
        self.entry = getattr(_core, opt._entry)

    def step(self, opt: "_FusedOptimizer") -> bool:
        """Take the step as the general path would; False, having written nothing, if
        anything the plan relies on changed."""
        groups = opt.param_groups
        if groups is not self.param_groups or opt.state is not self.state \
                or len(groups) != len(self.groups):
            return False
        for k, (group, kept) in enumerate(zip(groups, self.groups)):
            params, values = group["params"], kept[3]
            if group is not kept[0] or params is not kept[1] or len(params) != kept[2]:
                return False
            if len(group) == len(values) + 1 and all(
                    _same(group.get(key, _ABSENT), v) for key, v in values.items()):
                continue
            try:  # changed values are checked as the general path checks them
                opt._check_group(group)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"param_groups[{k}]: {exc}") from None
            values = {key: _remembered(v) for key, v in group.items() if key != "params"}
            layout = tuple(opt._present(name, group) for name in opt._state_names)
            if layout != kept[4] or not all(_plain(v) for v in values.values()):
                return False
            kept[3] = values
            self.tuples[k] = opt._kernel_group(group)
        try:
            return self._run(opt)
        finally:  # the gradients' memory is not kept past the step
            for batch, _, _ in self.batches:
                batch.grads.clear()

    def _run(self, opt: "_FusedOptimizer") -> bool:
        strided = torch.strided
        state_get: Any = self.state.get
        for kept in self.groups:
            for p, row in zip(kept[1], kept[5]):
                if p is not row[0]:
                    return False
                g = p.grad
                if row[1] is None:
                    if g is not None:
                        return False
                    continue
                _, ptr, dtype, shape, sd, tensors, batch, stride = row
                if g is None or p.data_ptr() != ptr \
                        or g.layout is not strided or g.dtype is not dtype or not g.is_cpu \
                        or g.shape != shape or state_get(p) is not sd \
                        or (g.stride() != stride and not (_dense(g) and _same_layout(g, p))):
                    return False
                for name, t in tensors:  # tensors only where sd is a dict
                    if sd.get(name) is not t:
                        return False
                batch.grads.append(_np(g.detach()) if g.requires_grad else _np(g))
        if self.calls is not None:
            try:
                _core.check_calls(self.calls)
            except (TypeError, ValueError):
                return False  # nothing written: the general path raises it
        first = True
        for batch, indices, views in self.batches:
            if self.reads_counters:
                batch.steps = [float(v) + 1.0 for v in views]
            try:
                opt._launch(self.entry, batch, [self.tuples[k] for k in indices])
            except (TypeError, ValueError):
                if not first:  # checked above: only a change from another thread gets here
                    raise
                return False  # nothing written: the general path raises it
            first = False
        if self.counter_views:
            _core.add_one(self.counter_views)
            increment_version(self.counters)
        increment_version(self.params)
        return True


def _check_device_batches(batches: Sequence[_Batch], state_names: Sequence[str]) -> None:
    """The checks the CUDA module makes of each batch's arrays (``_device._gather``), and
    that no array of one batch shares memory with an array of another on its device."""
    device_module = importlib.import_module("optbowl._device")
    by_device: Dict[int, List[Any]] = {}
    for batch in batches:
        operands = [("params", batch.params, True), ("grads", batch.grads, False),
                    *[(name, column, True) for name, column in zip(state_names, batch.states)]]
        device = device_module.describe(batch.params[0], f"params[{batch.index[0]}]").device
        device_module._gather(operands, device)
        entries = by_device.setdefault(device, [])
        for name, arrays, _ in operands:
            if arrays is not None:
                entries.extend((name, i, device_module.describe(a, f"{name}[{i}]"))
                               for i, a in zip(batch.index, arrays))
    for entries in by_device.values():
        device_module._no_overlap(entries)


class _NoPlan(Exception):
    """A step that _Plan does not describe (the general path takes every such step)."""


class _FusedOptimizer(torch.optim.Optimizer):
    """A torch optimizer whose step is one fused optbowl kernel call per device.

    A subclass is mostly a table:

    - ``_entry``: the name of its compiled entry (in ``optbowl._core`` and the CUDA module),
      called as ``entry(*_leading, params, grads, *state columns, [steps,] groups,
      group_sizes)``;
    - ``_state_names``: the state tensors the entry takes, in its order; ``_optional`` says,
      per name, under which group options a column is there at all (absent columns are
      passed as None and are not in the state, as in torch);
    - ``_hyper``: the group entries that make the kernel's group tuple, in its order (pairs
      are flattened, tensors read as numbers): the rule's registry entry's (``_rule``, the
      entry named ``_entry``);
    - ``_flags``: the implementation options (``foreach``, ``fused``, ...) and the values it
      takes;
    - ``_has_step``: whether the state holds torch's ``step`` counter, ``_counts_steps``:
      whether the entry takes each tensor's step count (reading it costs a sync on a GPU;
      the registry entry's ``counts_steps``).

    and checks its hyper-parameters as the entry describes them (``_check_hyper``; a rule
    with torch's own conditions overrides it). This class finds the parameters
    with gradients, checks every tensor, makes missing state, hands everything over without
    copies (one call per device and state layout) and advances the ``step`` counters and
    stores new state only after the kernels have run.
    """

    _entry = ""
    _leading: Tuple[Any, ...] = ()
    _state_names: Tuple[str, ...] = ()
    _optional: Dict[str, Callable[[Dict[str, Any]], bool]] = {}
    _hyper: Tuple[str, ...] = ()
    _flags: Dict[str, Tuple[Tuple[Any, ...], str]] = {}
    _has_step = True
    _counts_steps = False

    #: ``state_dtype``: None (state of the parameter's dtype, as torch) or torch.float32
    #: (float32 state for bfloat16/float16 parameters: :meth:`_set_state_dtype`).
    _state_dtype: Optional[torch.dtype] = None

    def __init__(self, params: Any, defaults: Dict[str, Any]) -> None:
        bits = getattr(self, "state_bits", 32)
        if self._state_dtype is not None and bits != 32:
            raise ValueError(f"state_dtype: float32 state cannot be combined with "
                             f"state_bits={bits} (quantized state of float32 parameters)")
        self._check_group(defaults)
        self._plan: Optional[_Plan] = None
        super().__init__(params, defaults)
        self._register_load_hooks()

    def _set_state_dtype(self, state_dtype: Any) -> None:
        """``state_dtype`` (a keyword torch does not have): None, or torch.float32 (also
        ``np.float32`` or ``"float32"``) for float32 state beside bfloat16/float16
        parameters."""
        if state_dtype is None or state_dtype is torch.float32:
            self._state_dtype = state_dtype
            return
        if isinstance(state_dtype, torch.dtype):
            raise ValueError(f"state_dtype: expected {_check.STATE_DTYPE_CHOICES}, got "
                             f"{state_dtype}")
        _check.state_dtype(state_dtype)  # np.float32 / "float32", or the error
        self._state_dtype = torch.float32

    def _wide(self, p: torch.Tensor) -> bool:
        """Whether ``p`` keeps float32 state (``state_dtype=torch.float32``, 16-bit ``p``)."""
        return self._state_dtype is not None and p.dtype in (torch.bfloat16, torch.float16)

    def _state_dtype_of(self, p: torch.Tensor) -> torch.dtype:
        """The dtype of ``p``'s state tensors."""
        return torch.float32 if self._wide(p) else p.dtype

    def _register_load_hooks(self) -> None:
        if _state_in_param_layouts not in self._optimizer_load_state_dict_post_hooks.values():
            self.register_load_state_dict_post_hook(_state_in_param_layouts)
        if (self._rule.scalar_state or self._state_dtype is not None) and \
                _restore_scalar_state not in self._optimizer_load_state_dict_post_hooks.values():
            self.register_load_state_dict_pre_hook(_keep_scalar_state)
            self.register_load_state_dict_post_hook(_restore_scalar_state)

    # ---------------------------------------------------------------- per optimizer
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__doc__" in cls.__dict__ and not cls.__name__.startswith("_"):
            cls.__doc__ = add_parameter_doc(cls.__doc__, STATE_DTYPE_DOC)
        if cls.__dict__.get("_entry"):  # the registry entry says what the class would repeat
            cls._rule = _registry.rule(cls._entry)
            cls._hyper = cls._rule.group
            cls._counts_steps = cls._rule.counts_steps

    _rule: _registry.Rule

    def _check_hyper(self, group: Dict[str, Any]) -> None:
        """Every hyper-parameter but ``maximize`` (checked by :meth:`_check_group`) as the
        rule's entry describes it, with torch's leniencies (a one-element tensor for a
        number)."""
        for h in self._rule.hyper:
            if h.name != "maximize":
                _check_entry(h, group[h.name])

    def _initial_value(self, name: str, group: Dict[str, Any]) -> float:
        """The value a state tensor ``name`` starts at (0 unless the rule says otherwise)."""
        return 0.0

    def _init_state(self, p: torch.Tensor, group: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """A parameter's state as torch makes it before its first step."""
        state = {"step": _new_step(p, group)} if self._has_step else {}
        for scalar in self._rule.scalar_state:  # 0-d tensors of torch's scalar dtype
            state[scalar.name] = torch.tensor(_as_number(scalar.start_value(group)),
                                              dtype=_scalar_dtype())
        for name in self._state_names:
            if self._present(name, group):
                state[name] = self._new_tensor(name, p, group)
        return state

    def _step_count(self, state: Dict[str, Any], group: Dict[str, Any]) -> Any:
        """The step count the kernel gets for a parameter (this step included); a CUDA
        counter (``fused=True``) itself, which the kernels read on the device (count + 1),
        as torch's fused optimizers do, so that a step never waits for the device."""
        if not self._counts_steps:
            return 0.0
        counter = state["step"]
        if isinstance(counter, torch.Tensor) and counter.is_cuda:
            return counter
        return float(counter) + 1.0

    # ---------------------------------------------------------------- CUDA
    @property
    def _step_supports_amp_scaling(self) -> bool:
        """True when every parameter is a CUDA tensor and every step counter is on the
        device (``fused=True`` where the state counts steps): ``torch.amp.GradScaler`` then
        hands this optimizer its ``grad_scale`` and ``found_inf`` (device tensors) instead of
        unscaling and checking on the host, and the kernels divide each gradient by the
        scale (writing it back unscaled) and skip the step where found_inf is non-zero,
        without a host synchronisation, as torch's fused optimizers do."""
        if not self.param_groups:
            return False
        for group in self.param_groups:
            if self._has_step and self._counts_steps and not group.get("fused"):
                return False
            if self._has_step and not self._counts_steps:
                return False  # a host counter cannot see a device found_inf
            for p in group["params"]:
                if not p.is_cuda:
                    return False
        return True

    def _launch_cuda(self, entry: Callable[..., Any], batch: _Batch) -> Optional[torch.Tensor]:
        """The kernel call of one batch of CUDA tensors, with a GradScaler's grad_scale and
        found_inf (when it set them) read by the kernels; returns that found_inf."""
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        flag = None
        if found_inf is not None:
            flag = importlib.import_module("optbowl._device")._scalar_view(
                found_inf, "found_inf", batch.params[0].device.index
            )
        steps = batch.steps
        if any(isinstance(t, torch.Tensor) for t in steps) and not all(
                isinstance(t, torch.Tensor) for t in steps):
            # host and device counters in one batch (groups with and without fused=True)
            steps = [float(t) + 1.0 if isinstance(t, torch.Tensor) else t for t in steps]
        counts = (steps,) if self._counts_steps else ()
        entry(
            *self._leading,
            batch.params,
            batch.grads,
            *batch.states,
            *counts,
            [self._kernel_group(g) for g in batch.groups],
            batch.group_sizes,
            found_inf=flag,
            grad_scale=grad_scale,
        )
        return found_inf

    # ---------------------------------------------------------------- shared
    def _check_group(self, group: Dict[str, Any]) -> None:
        for name in getattr(self, "defaults", group):  # (the defaults, before __init__ sets them)
            if name not in group:
                raise ValueError(
                    f"{name}: missing from the param group; every group holds "
                    f"{', '.join(self.defaults)}"
                )
        self._check_hyper(group)
        _bool("maximize", group["maximize"])
        for name, (allowed, why) in self._flags.items():
            _flag(name, group[name], allowed, why)
        self._check_in_dtypes(group)

    def _check_in_dtypes(self, group: Dict[str, Any]) -> None:
        """``_check_hyper`` again on the values as the kernels round them for the group's
        tensors (the narrowest dtype among them decides), as the NumPy classes check theirs
        (``optbowl._check.in_dtypes``)."""
        params = group.get("params")
        if not params:
            return  # the defaults, checked before there are parameters
        start = 0
        for g in self.param_groups:
            if g is group:
                break
            start += len(g["params"])
        dtypes: Dict[Any, str] = {}
        for j, p in enumerate(params):
            dtype = _ROUNDED_AS.get(p.dtype) if isinstance(p, torch.Tensor) else None
            if dtype is not None:
                dtypes.setdefault(dtype, f"params[{start + j}]")
        if not dtypes:
            return
        twin = next(getattr(optbowl_numpy, c.__name__) for c in type(self).__mro__
                    if c.__module__ == __name__ and hasattr(optbowl_numpy, c.__name__))
        plain = {k: _as_number(v) for k, v in group.items() if k != "params"}
        _check.in_dtypes(self._check_hyper, plain, dtypes, twin._stored_hyper,
                         twin._derived_hyper(plain))

    def _present(self, name: str, group: Dict[str, Any]) -> bool:
        rule = self._optional.get(name)
        return rule is None or bool(rule(group))

    def _new_tensor(self, name: str, p: torch.Tensor, group: Dict[str, Any]) -> torch.Tensor:
        value: Any = self._initial_value(name, group)
        if p.is_complex():  # each part of the real view, as torch fills a complex state
            value = complex(value, value)
        return torch.full_like(p, value, dtype=self._state_dtype_of(p),
                               memory_format=torch.preserve_format)

    def _kernel_group(self, group: Dict[str, Any]) -> tuple:
        values: List[Any] = []
        for name in self._hyper:
            value = group[name]
            if isinstance(value, bool):
                values.append(value)
            elif isinstance(value, (tuple, list)):
                values.extend(_real(f"{name}[{k}]", v, -math.inf) for k, v in enumerate(value))
            else:
                values.append(_real(name, value, -math.inf))
        return tuple(values)

    def _launch(self, entry: Callable[..., Any], batch: _Batch,
                group_tuples: Optional[List[tuple]] = None) -> None:
        """The kernel call of one batch; ``group_tuples``: its groups' kernel tuples, if
        already made (a plan's)."""
        steps = (batch.steps,) if self._counts_steps else ()
        if group_tuples is None:
            group_tuples = [self._kernel_group(g) for g in batch.groups]
        group_sizes, store = batch.group_sizes, None
        if self._rule.scalar_state:  # stored after the kernel ran (_registry.scalar_runs)
            group_tuples, group_sizes, store = _registry.scalar_runs(
                self._rule, group_tuples, group_sizes, batch.scalars, batch.steps)
        entry(
            *self._leading,
            batch.params,
            batch.grads,
            *batch.states,
            *steps,
            group_tuples,
            group_sizes,
            **self._cpu_options(batch.groups),
        )
        if store is not None:
            store()

    def _cpu_options(self, groups: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        """Keyword arguments of the CPU entry for a batch of these groups (none here)."""
        return {}

    # ---------------------------------------------------------------- torch machinery
    #: Whether the update is torch's ``fused=True`` one (and only that): ``state_dict()`` then
    #: says so in each group (see there).
    _torch_fused = False

    def state_dict(self) -> Dict[str, Any]:
        """torch's ``state_dict()``. For the optimizers that compute torch's ``fused=True``
        update (:class:`Adagrad`, :class:`Adam`, :class:`AdamW`), each group's ``fused`` is
        written as True where it is None, so that ``torch.optim.X`` loading the state_dict
        keeps to the fused path whose results these match (with None it would take its
        default path, which rounds otherwise)."""
        sd = super().state_dict()
        if self._torch_fused:
            for group in sd["param_groups"]:
                if group.get("fused") is None:
                    group["fused"] = True
        return sd

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        self._plan = None
        super().add_param_group(param_group)
        self._check_group(self.param_groups[-1])
        if self._state_dtype is not None:
            start = sum(len(g["params"]) for g in self.param_groups[:-1])
            for j, p in enumerate(self.param_groups[-1]["params"]):
                if p.device.type != "cpu":
                    raise ValueError(f"state_dtype: float32 state is for CPU tensors; "
                                     f"params[{start + j}] is on {p.device}")
                if p.dtype in (torch.float64, torch.complex128):
                    raise ValueError(
                        f"state_dtype: float32 state is for bfloat16 and float16 parameters (a "
                        f"float32 parameter's state is float32 already); params[{start + j}] "
                        f"is {p.dtype}, whose state would be rounded: leave state_dtype=None")

    def __getstate__(self) -> Dict[str, Any]:
        state = super().__getstate__()
        if self._state_dtype is not None:  # torch keeps defaults, state and groups only
            state = {**state, "_state_dtype": self._state_dtype}
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        self._plan = None
        self._register_load_hooks()
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            if not self._has_step:
                continue
            for p in group["params"]:
                p_state = self.state.get(p)
                if p_state and not torch.is_tensor(p_state.get("step")):
                    p_state["step"] = _new_step(p, group, float(p_state.get("step", 0)))

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """Perform a single optimization step.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss (called with gradients enabled).

        Returns
        -------
        The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        plan = self._plan
        if plan is not None and plan.step(self):
            return loss
        self._plan = None

        for k, group in enumerate(self.param_groups):
            try:
                self._check_group(group)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"param_groups[{k}]: {exc}") from None

        batches: Dict[Tuple[torch.device, Tuple[bool, ...]], _Batch] = {}
        created: List[Tuple[torch.Tensor, Dict[str, torch.Tensor]]] = []
        counters: List[torch.Tensor] = []
        index = -1
        for group in self.param_groups:
            for p in group["params"]:
                index += 1
                if p.grad is None:
                    continue
                self._check_tensors(f"params[{index}]", p, p.grad)
                old = self.state.get(p) or {}
                new = {} if old else self._init_state(p, group)
                state = {**old, **new}
                count = self._step_count(state, group)
                tensors: List[Optional[torch.Tensor]] = []
                for name in self._state_names:
                    if not self._present(name, group):
                        tensors.append(None)
                        continue
                    t = state.get(name)
                    if t is None:  # made under other options (e.g. momentum switched on)
                        t = state[name] = new[name] = self._new_tensor(name, p, group)
                    self._check_state(f"params[{index}]: state[{name!r}]", p, t)
                    tensors.append(t)
                layout = tuple(t is not None for t in tensors)
                batch = batches.get((p.device, layout))
                if batch is None:
                    batch = batches[(p.device, layout)] = _Batch(layout)
                batch.add(p, p.grad, tensors, count, group, index)
                if self._rule.scalar_state:
                    scalars = tuple(state[n] for n in self._rule.scalar_names)
                    for n, t in zip(self._rule.scalar_names, scalars):
                        self._check_scalar_state(f"params[{index}]: state[{n!r}]", t)
                    batch.scalars.append(scalars)
                if new:
                    created.append((p, new))
                if self._has_step:
                    counters.append(state["step"])

        runs = []
        for (device, _), batch in batches.items():
            if device.type == "cpu":
                runs.append((getattr(_core, self._entry), batch.as_numpy(), device))
            else:
                runs.append((_cuda_entry(_cuda_kernels(), self._entry, type(self).__name__), batch,
                             device))
        self._check_runs(runs)
        skipped_if: Optional[torch.Tensor] = None  # a device found_inf the kernels honoured
        for entry, batch, device in runs:
            if device.type != "cpu":
                skipped_if = self._launch_cuda(entry, batch)
            else:
                self._launch(entry, batch)

        for p, new in created:
            self.state[p].update(new)
        if counters:
            torch._foreach_add_(counters, 1)
            if skipped_if is not None:  # a skipped step does not count (on the device)
                on_device = [c for c in counters if c.device == skipped_if.device]
                torch._foreach_sub_(on_device, [skipped_if.reshape(())] * len(on_device))
        if batches:
            increment_version([p for batch in batches.values() for p in batch.params])
            if all(device.type == "cpu" for device, _ in batches):
                try:
                    self._plan = _Plan(self)
                except (_NoPlan, TypeError, ValueError, RuntimeError):
                    pass  # the step is done; without a plan the next one is a general one
        return loss

    def _calls(self, batches: Sequence[_Batch]) -> List[tuple]:
        """CPU batches (NumPy views) as ``_core.check_calls`` takes them, each array named
        after its parameter's position in ``param_groups``."""
        labels = [f"params[{{}}]: state[{name!r}]" for name in self._state_names]
        return [
            (batch.index, [("params[{}]", batch.params, True),
                           ("params[{}].grad", batch.grads, False),
                           *[(label, column, True) for label, column in zip(labels, batch.states)]])
            for batch in batches
        ]

    def _check_runs(self, runs: List[Tuple[Any, _Batch, torch.device]]) -> None:
        """Check every array of every kernel call of a step before the first call runs, so
        that a step is all or nothing: each call checks its own arrays, but a step of param
        groups with different state layouts (or devices) makes several, and a call refused
        after another had written would leave a half-taken step. Arrays of different calls
        that share memory (overlapping views in groups of different layouts) are refused as
        they are within one call."""
        cpu = [batch for _, batch, device in runs if device.type == "cpu"]
        if cpu:
            _core.check_calls(self._calls(cpu))
        if len(runs) > 1 and len(cpu) < len(runs):
            _check_device_batches([batch for _, batch, device in runs if device.type != "cpu"],
                                  self._state_names)

    #: Whether complex parameters are stepped (as their view_as_real): torch's rules only.
    _complex_ok = True

    def _check_tensors(self, name: str, p: torch.Tensor, grad: torch.Tensor) -> None:
        if grad.is_sparse or grad.layout != torch.strided:
            raise TypeError(
                f"{name}.grad: sparse gradients are not supported (layout {grad.layout})"
            )
        if p.layout != torch.strided:
            raise TypeError(f"{name}: expected a dense tensor, got layout {p.layout}")
        if p.device.type == "cpu":
            if p.dtype not in CPU_DTYPES and p.dtype not in COMPLEX_DTYPES:
                raise TypeError(
                    f"{name}: expected a float32, float64, bfloat16 or float16 tensor on the "
                    f"CPU, got {p.dtype}"
                )
        elif p.device.type != "cuda":
            raise TypeError(
                f"{name}: tensors on {p.device.type!r} are not supported (only cpu and cuda)"
            )
        if grad.dtype != p.dtype:
            raise TypeError(
                f"{name}.grad: dtype {grad.dtype} does not match the parameter's {p.dtype}"
            )
        if grad.device != p.device:
            raise ValueError(f"{name}.grad: on {grad.device}, the parameter is on {p.device}")
        if grad.shape != p.shape:
            raise ValueError(
                f"{name}.grad: shape {tuple(grad.shape)} "
                f"does not match the parameter's {tuple(p.shape)}"
            )
        if p.device.type != "cpu":
            if not p.is_contiguous():
                raise ValueError(
                    f"{name}: must be contiguous (the CUDA kernels update it in place, in order)"
                )
            if not grad.is_contiguous():
                raise ValueError(f"{name}.grad: must be contiguous")
            return
        if p.is_complex() and not self._complex_ok:
            raise TypeError(
                f"{name}: a {p.dtype} tensor; complex parameters are stepped as their "
                "view_as_real only by the rules torch steps them with (Rprop, Adagrad, Adam, "
                f"AdamW, RMSprop, SGD), and torch has no {type(self).__name__}; to step the "
                "real view with it, optimise torch.view_as_real(p)"
            )
        for who, t in ((name, p), (f"{name}.grad", grad)):
            if t.is_conj() or t.is_neg():
                raise ValueError(f"{who}: a lazy conjugate or negative view (conj or neg bit "
                                 "set); resolve it first (t.resolve_conj().resolve_neg())")
        if not _dense(p):
            raise ValueError(f"{name}: {_check.NOT_DENSE}, got strides {p.stride()}")
        if not _dense(grad):
            raise ValueError(f"{name}.grad: {_check.NOT_DENSE}, got strides {grad.stride()}")
        if not _same_layout(grad, p):
            raise ValueError(
                f"{name}.grad: strides {grad.stride()} differ from the parameter's {p.stride()}; "
                "a gradient must have its parameter's memory layout (torch's autograd makes it so)"
            )

    @staticmethod
    def _check_scalar_state(name: str, t: Any) -> None:
        """A rule's per-parameter scalar state: a 0-d float32 or float64 tensor on the CPU, as
        torch makes it (and as ``load_state_dict`` keeps it: :func:`_keep_scalar_state`)."""
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a 0-d tensor, got {type(t).__name__}")
        if t.dim() != 0 or not t.is_cpu or t.dtype not in (torch.float32, torch.float64):
            raise TypeError(
                f"{name}: expected a 0-d float32 or float64 tensor on the CPU, got a "
                f"{t.dtype} tensor of shape {tuple(t.shape)} on {t.device}"
            )

    def _check_state(self, name: str, p: torch.Tensor, t: Any) -> None:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
        dtype = self._state_dtype_of(p)
        if t.dtype != dtype or t.device != p.device or t.shape != p.shape:
            wide = " state (state_dtype=torch.float32)" if dtype != p.dtype else ""
            raise ValueError(
                f"{name}: {t.dtype} {tuple(t.shape)} on {t.device} does not match the parameter "
                f"({p.dtype} {tuple(p.shape)} on {p.device}{', float32' + wide if wide else ''})"
            )
        if p.device.type != "cpu":
            if not t.is_contiguous():
                raise ValueError(f"{name}: must be contiguous")
            return
        if t.is_conj() or t.is_neg():
            raise ValueError(f"{name}: a lazy conjugate or negative view (conj or neg bit set); "
                             "resolve it first (t.resolve_conj().resolve_neg())")
        if not _dense(t) or not _same_layout(t, p):
            raise ValueError(
                f"{name}: strides {t.stride()} differ from the parameter's {p.stride()}; a state "
                "tensor must have its parameter's memory layout (as torch.empty_like makes it)"
            )


class Rprop(_FusedOptimizer):
    r"""torch.optim.Rprop on optbowl's fused kernel, bit-identical to it.

    The resilient-backpropagation rule of torch (iRprop−): with :math:`s = g_t\,g_{t-1}`,

    .. math::

        \Delta_t = \operatorname{clamp}(\Delta_{t-1} f,\ \Gamma_{\min},\ \Gamma_{\max}),\quad
        f = \begin{cases} \eta_+ & s > 0 \\ \eta_- & s < 0 \ (\text{and } g_t \leftarrow 0) \\
        1 & \text{otherwise} \end{cases},\qquad
        \theta_t = \theta_{t-1} - \Delta_t \operatorname{sign}(g_t)

    with :math:`\Delta_0 = \text{lr}` and :math:`g_{t-1}` the previous (possibly zeroed)
    gradient. The state per parameter is torch's: ``step`` (a scalar tensor), ``prev`` and
    ``step_size``.

    Parameters
    ----------
    params : iterable of tensors or of dicts
        Parameters, or param groups with their own ``lr``, ``etas``, ``step_sizes``,
        ``maximize``.
    lr : float or one-element tensor
        Initial step size :math:`\Delta_0` (default 1e-2).
    etas : (float, float)
        :math:`(\eta_-, \eta_+)`, with :math:`0 < \eta_- < 1 < \eta_+` (default (0.5, 1.2)).
    step_sizes : (float, float)
        :math:`(\Gamma_{\min}, \Gamma_{\max})`, with :math:`0 \le \Gamma_{\min} \le \Gamma_{\max}`
        (default (1e-6, 50)).
    capturable : bool
        Only False: CUDA-graph capture is not supported.
    foreach : bool or None
        Accepted for compatibility; every value runs the same fused kernel, whose results
        equal torch's for every value.
    maximize : bool
        Follow the gradient uphill.
    differentiable : bool
        Only False: the kernels do not record the update for autograd.
    """

    _entry = "rprop"
    _leading = ("irprop-",)
    _state_names = ("prev", "step_size", "updates")
    _optional = {"updates": lambda group: False}  # only the rprop+/irprop+ variants keep moves
    _flags = {
        "foreach": ANY_IMPLEMENTATION,
        "capturable": NOT_CAPTURABLE,
        "differentiable": NOT_DIFFERENTIABLE,
    }

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        etas: Tuple[float, float] = (0.5, 1.2),
        step_sizes: Tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: Optional[bool] = None,
        maximize: bool = False,
        differentiable: bool = False,
        state_dtype: Optional[torch.dtype] = None,
    ) -> None:
        self._set_state_dtype(state_dtype)
        super().__init__(params, _options(locals()))

    def _check_hyper(self, group: Dict[str, Any]) -> None:
        _real("lr", group["lr"])
        eta_minus, eta_plus = _pair("etas", group["etas"])
        if not 0.0 < eta_minus < 1.0 < eta_plus:
            raise ValueError(
                f"etas: expected 0 < eta_minus < 1 < eta_plus, got ({eta_minus}, {eta_plus})"
            )
        step_min, step_max = _pair("step_sizes", group["step_sizes"])
        if not 0.0 <= step_min <= step_max:
            raise ValueError(
                f"step_sizes: expected 0 <= step_min <= step_max, got ({step_min}, {step_max})"
            )

    def _initial_value(self, name: str, group: Dict[str, Any]) -> float:
        return _real("lr", group["lr"]) if name == "step_size" else 0.0


class _StateBits:
    """``state_bits=8|16`` for :class:`Adagrad` and :class:`Adam`/:class:`AdamW` (a keyword
    torch does not have): the state tensors in the NumPy classes' format (``uint8`` codes
    and ``<name>_absmax`` float32 tensors, or bfloat16 bits as ``uint16``), stepped by the
    same compiled quantized kernels. Float32 CPU parameters only. A state_dict of another
    format is refused by ``load_state_dict`` (convert through the NumPy classes)."""

    _float_state: Tuple[str, ...] = ()
    _signed_state: Tuple[bool, ...] = ()
    _quantized_entry = ""
    state_bits = 32

    def _set_state_bits(self, state_bits: Any, stochastic_rounding: Any, seed: Any) -> None:
        bits, stochastic, seed_value = _state_bits.check_options(state_bits, stochastic_rounding,
                                                                 seed)
        self.state_bits, self.stochastic_rounding, self._seed_value = bits, stochastic, seed_value

    def _quantized_tensors(self, p: torch.Tensor, group: Dict[str, Any],
                           names: Sequence[str]) -> Dict[str, torch.Tensor]:
        if p.device.type != "cpu":
            raise ValueError(f"state_bits: {self.state_bits}-bit state is for CPU tensors; "
                             f"CUDA tensors keep float state (state_bits=32)")
        if p.dtype != torch.float32:
            raise TypeError(f"params: state_bits={self.state_bits} keeps the state of float32 "
                            f"parameters only, got {p.dtype} (use state_bits=32)")
        value = self._initial_value(names[0], group)  # type: ignore[attr-defined]
        signed = dict(zip(self._float_state, self._signed_state))
        arrays = _state_bits.new_state(names, [signed[n] for n in names],
                                       np.empty(tuple(p.shape), np.float32), self.state_bits,
                                       value)
        return {k: torch.from_numpy(a) for k, a in arrays.items()}

    def _quantized_names(self, group: Dict[str, Any]) -> List[str]:
        return [n for n in self._float_state if self._present(n, group)]  # type: ignore

    def _init_state(self, p: torch.Tensor, group: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        if self.state_bits == 32:
            return super()._init_state(p, group)  # type: ignore[misc]
        return {"step": _new_step(p, group),
                **self._quantized_tensors(p, group, self._quantized_names(group))}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        saved = state_dict.get("state", {}) if isinstance(state_dict, dict) else {}
        for key, st in (saved.items() if isinstance(saved, dict) else ()):
            if not isinstance(st, dict) or self._float_state[0] not in st:
                continue
            first = st[self._float_state[0]]
            found = 8 if f"{self._float_state[0]}_absmax" in st else (
                16 if isinstance(first, torch.Tensor) and first.dtype == torch.uint16 else 32)
            if found != self.state_bits:
                raise ValueError(
                    f"state_dict: state[{key}] holds {found}-bit state, this optimizer keeps "
                    f"state_bits={self.state_bits}; convert it with the NumPy classes' "
                    "load_state_dict, or build the optimizer with the saved state_bits"
                )
        if self.state_bits == 32 or not isinstance(saved, dict) or not saved:
            super().load_state_dict(state_dict)  # type: ignore[misc]
            return
        # torch casts every state tensor of a floating-point parameter to the parameter's
        # dtype: the codes and absmaxes are taken out, checked, and put back as copies
        groups = state_dict.get("param_groups", [])
        ids = [i for g in groups if isinstance(g, dict) for i in g.get("params", [])]
        mine = [p for g in self.param_groups for p in g["params"]]  # type: ignore[attr-defined]
        owner = dict(zip(ids, mine))
        codes = torch.uint8 if self.state_bits == 8 else torch.uint16
        kept: Dict[Any, Dict[str, torch.Tensor]] = {}
        trimmed: Dict[Any, Any] = {}
        for key, st in saved.items():
            p = owner.get(key)
            if not isinstance(st, dict) or p is None:
                trimmed[key] = st
                continue
            keep = {}
            for name in self._float_state:
                for part in ((name, f"{name}_absmax") if self.state_bits == 8 else (name,)):
                    if part not in st:
                        continue
                    t = st[part]
                    who = f"state_dict: state[{key}][{part!r}]"
                    absmax = part.endswith("_absmax")
                    want = torch.float32 if absmax else codes
                    shape = ((-(-p.numel() // _state_bits.BLOCK),) if absmax else tuple(p.shape))
                    if not isinstance(t, torch.Tensor) or t.dtype != want:
                        raise TypeError(f"{who}: expected a {want} tensor, got "
                                        f"{getattr(t, 'dtype', type(t).__name__)}")
                    if tuple(t.shape) != shape:
                        raise ValueError(f"{who}: expected shape {shape}, got {tuple(t.shape)}")
                    keep[part] = t
            kept[key] = keep
            trimmed[key] = {k: v for k, v in st.items() if k not in keep}
        super().load_state_dict({**state_dict, "state": trimmed})  # type: ignore[misc]
        for key, keep in kept.items():
            self.state[owner[key]].update(  # type: ignore[attr-defined]
                {k: t.detach().to("cpu").clone() for k, t in keep.items()})

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        if self.state_bits == 32:
            return super().step(closure)  # type: ignore[misc]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        groups = self.param_groups  # type: ignore[attr-defined]
        for k, group in enumerate(groups):
            try:
                self._check_group(group)  # type: ignore[attr-defined]
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"param_groups[{k}]: {exc}") from None
        bits = self.state_bits
        width = len(self._float_state)
        params: List[np.ndarray] = []
        grads: List[np.ndarray] = []
        columns: List[List[np.ndarray]] = [[] for _ in range(2 * width)]
        steps: List[float] = []
        tuples: List[tuple] = []
        sizes: List[int] = []
        counters: List[torch.Tensor] = []
        touched: List[torch.Tensor] = []
        created: List[Tuple[torch.Tensor, Dict[str, torch.Tensor]]] = []
        index = -1
        for group in groups:
            count = 0
            names = self._quantized_names(group)
            for p in group["params"]:
                index += 1
                if p.grad is None:
                    continue
                self._check_tensors(f"params[{index}]", p, p.grad)  # type: ignore[attr-defined]
                old = self.state.get(p) or {}  # type: ignore[attr-defined]
                new = {} if old else self._init_state(p, group)
                missing = [n for n in names if old and n not in old]
                if missing:  # amsgrad switched on later
                    new.update(self._quantized_tensors(p, group, missing))
                state = {**old, **new}
                params.append(p.detach().numpy())
                grads.append(p.grad.detach().numpy())
                for j, name in enumerate(self._float_state):
                    if name in names:
                        columns[j].append(state[name].numpy())
                        if bits == 8:
                            columns[width + j].append(state[f"{name}_absmax"].numpy())
                steps.append(self._step_count(state, group))  # type: ignore[attr-defined]
                counters.append(state["step"])
                touched.append(p)
                if new:
                    created.append((p, new))
                count += 1
            if count:
                tuples.append(self._kernel_group(group))  # type: ignore[attr-defined]
                sizes.append(count)
        if not params:
            return loss
        cols: List[Any] = [c if c else None for c in columns]
        if bits == 16:
            cols = cols[:width] + [None] * width
        getattr(_core, self._quantized_entry)(bits, self.stochastic_rounding, self._seed_value,
                                              params, grads, *cols, steps, tuples, sizes)
        for p, new in created:
            self.state.setdefault(p, {}).update(new)  # type: ignore[attr-defined]
        torch._foreach_add_(counters, 1)
        increment_version(touched)
        return loss


class Adagrad(_StateBits, _FusedOptimizer):
    r"""torch.optim.Adagrad on optbowl's fused kernel, bit-identical to ``fused=True``.

    At step :math:`t` (counting from 1):

    .. math::

        \eta_t = \frac{\text{lr}}{1 + (t-1)\,\text{lr\_decay}},\quad
        g \leftarrow g + \lambda\theta,\quad
        s \leftarrow s + g^2,\quad
        \theta \leftarrow \theta - \eta_t \frac{g}{\sqrt{s} + \epsilon}

    rounded as torch's fused CPU kernel rounds (``fma`` for the weight decay and the sum of
    squares), so the results equal ``torch.optim.Adagrad(fused=True)`` bit for bit on every
    tensor size (its scalar tail rounds as its body; for a bfloat16 or float16 tensor it
    takes the hyper-parameters of its last ``numel % 16`` elements in float32, where its
    body rounds them to the dtype, and so does this class). ``state_dict()`` writes ``fused: True``
    in each group, so that ``torch.optim.Adagrad`` loading it continues on its fused path;
    :meth:`share_memory` shares the accumulators as torch's does. The state
    per parameter is torch's: ``step`` (a scalar tensor) and ``sum``, made for every parameter
    when the optimizer is built, as torch does. As in torch, the accumulator starts at the
    constructor's ``initial_accumulator_value`` whatever a param group says.

    Parameters
    ----------
    params : iterable of tensors or of dicts
        Parameters, or param groups with their own hyper-parameters.
    lr : float or one-element tensor
        Learning rate (default 1e-2).
    lr_decay, weight_decay, initial_accumulator_value : float
        As in torch (default 0), each >= 0.
    eps : float
        Added to the denominator (default 1e-10), >= 0.
    foreach : None
        Only None: ``foreach=True`` and ``foreach=False`` ask for torch's foreach and
        single-tensor paths, which round otherwise than its fused kernel, the only update
        computed here; the ValueError says to pass ``fused=True``.
    maximize : bool
        Follow the gradient uphill.
    differentiable : bool
        Only False.
    fused : bool or None
        None (default) or True: the update is always the fused one; False, which asks for
        torch's differently rounded single-tensor path, is refused.
    state_bits : {32, 16, 8}
        Keyword-only, not in torch. 32 (default): torch's state, bit-identical as above.
        8: the state blockwise-quantized as :class:`optbowl.Adagrad`'s (``sum`` as ``uint8``
        codes, each with a float32 ``<name>_absmax`` per block of 256); 16: bfloat16 bits
        as ``uint16``. Float32 CPU tensors only; ``load_state_dict`` refuses a state of
        another format.
    stochastic_rounding, seed
        With ``state_bits=16``: stochastic rounding to bfloat16, seeded.
    """

    _entry = "adagrad"
    _state_names = ("sum",)
    _float_state = ("sum",)
    _signed_state = (False,)
    _quantized_entry = "quantized_adagrad"
    _flags = {"fused": ONLY_FUSED, "foreach": NOT_FOREACH, "differentiable": NOT_DIFFERENTIABLE}
    _torch_fused = True

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: Optional[bool] = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: Optional[bool] = None,
        state_bits: int = 32,
        stochastic_rounding: bool = False,
        seed: Optional[int] = None,
        state_dtype: Optional[torch.dtype] = None,
    ) -> None:
        self._set_state_dtype(state_dtype)
        self._set_state_bits(state_bits, stochastic_rounding, seed)
        options = _options(locals())
        for name in ("state_bits", "stochastic_rounding", "seed"):
            options.pop(name, None)
        super().__init__(params, options)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = self._init_state(p, group)

    def _initial_value(self, name: str, group: Dict[str, Any]) -> float:
        # As in torch, the accumulator starts at the constructor's value whatever the group says.
        return _real("initial_accumulator_value", self.defaults["initial_accumulator_value"])

    def share_memory(self) -> None:
        """Move each parameter's ``sum`` to shared memory (``Tensor.share_memory_()``), as
        ``torch.optim.Adagrad.share_memory`` does: processes that share the model (Hogwild
        training with ``torch.multiprocessing``) then share the accumulators too, and every
        step, in any of them, updates them in place."""
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["sum"].share_memory_()


class SGD(_FusedOptimizer):
    r"""torch.optim.SGD on optbowl's fused kernel, bit-identical to it.

    With :math:`g = \nabla f(\theta) + \lambda\theta` (``maximize`` negates the gradient):

    .. math::

        b_1 = g, \qquad b_t = \mu\, b_{t-1} + (1 - \tau)\, g \quad (t > 1), \qquad
        \theta \leftarrow \theta - \eta \cdot \begin{cases} g + \mu\, b_t & \text{nesterov} \\
        b_t & \mu \ne 0 \\ g & \mu = 0 \end{cases}

    rounded as torch 2.13 rounds on the CPU, so the results equal ``torch.optim.SGD`` bit
    for bit on every tensor size, for the path the group's options name: ``fused=True``,
    torch's fused kernel, whose scalar tail (the last numel mod 8 float32 or mod 4 float64
    elements of each tensor) rounds the momentum buffer its own way, and so does optbowl's;
    otherwise (``foreach=True``, ``foreach=False``, or neither, torch's default) torch's
    foreach and single-tensor paths, which round every element alike. The state is torch's: a
    ``momentum_buffer`` per parameter once it has taken a step with momentum
    :math:`\mu \ne 0`, and nothing while :math:`\mu = 0`; a buffer starts as the gradient,
    also when momentum is switched on later, as in torch.

    Sparse gradients (which ``torch.optim.SGD`` accepts) are refused with a TypeError: the
    kernels take dense gradients only.

    Parameters
    ----------
    params : iterable of tensors or of dicts
        Parameters, or param groups with their own hyper-parameters.
    lr : float or one-element tensor
        Learning rate :math:`\eta \ge 0` (default 1e-3).
    momentum : float
        Momentum factor :math:`\mu \ge 0` (default 0).
    dampening : float
        Dampening :math:`\tau` of the gradient in the buffer (default 0).
    weight_decay : float
        L2 penalty :math:`\lambda \ge 0` (default 0).
    nesterov : bool
        Nesterov momentum (needs momentum > 0 and dampening 0).
    maximize : bool
        Follow the gradient uphill.
    foreach, fused : bool or None
        The torch path whose rounding the fused kernel reproduces (not both True, as in
        torch): ``fused=True`` torch's fused kernel, tails included; any other value its
        foreach and single-tensor paths (which agree with each other bit for bit).
    differentiable : bool
        Only False: the kernels do not record the update for autograd.
    """

    _entry = "sgd"
    _state_names = ("momentum_buffer",)
    _optional = {"momentum_buffer": lambda group: _real("momentum", group["momentum"]) != 0.0}
    _flags = {
        "foreach": ANY_IMPLEMENTATION,
        "fused": ANY_IMPLEMENTATION,
        "differentiable": NOT_DIFFERENTIABLE,
    }
    _has_step = False

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: Optional[bool] = None,
        differentiable: bool = False,
        fused: Optional[bool] = None,
        state_dtype: Optional[torch.dtype] = None,
    ) -> None:
        self._set_state_dtype(state_dtype)
        super().__init__(params, _options(locals()))

    def _check_hyper(self, group: Dict[str, Any]) -> None:
        super()._check_hyper(group)
        momentum = _real("momentum", group["momentum"])
        dampening = _real("dampening", group["dampening"], -math.inf)
        if group["nesterov"] and (momentum <= 0.0 or dampening != 0.0):
            raise ValueError(
                "nesterov: Nesterov momentum requires a momentum > 0 and zero dampening, got "
                f"momentum={momentum}, dampening={dampening}"
            )
        if group["foreach"] is True and group["fused"] is True:
            raise ValueError("fused: fused=True and foreach=True cannot be set together")

    def _init_state(self, p: torch.Tensor, group: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        return {}  # torch keeps nothing until a step with momentum makes the buffer

    def _present(self, name: str, group: Dict[str, Any]) -> bool:
        # state_dtype=torch.float32: the buffer is kept without momentum too (zeros that the
        # kernel leaves alone, as the NumPy class keeps it), so that a 16-bit parameter
        # always has float32 state and is stepped as the float32 rule, not as torch's
        # 16-bit loop
        return self._state_dtype is not None or super()._present(name, group)

    def _cpu_options(self, groups: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        # fused=True: each tensor's scalar tail rounded as torch's fused kernel rounds it;
        # else every element as torch's foreach and single-tensor paths (and the fused body).
        tails = [group["fused"] is True for group in groups]
        return {"fused_tails": tails} if any(tails) else {}

    def _step_count(self, state: Dict[str, Any], group: Dict[str, Any]) -> float:
        # The kernel's first step (buffer = gradient) wherever torch has no buffer yet.
        return 1.0 if state.get("momentum_buffer") is None else 2.0


class RMSprop(_FusedOptimizer):
    r"""torch.optim.RMSprop on optbowl's fused kernel.

    With :math:`g = \nabla f(\theta) + \lambda\theta` (``maximize`` negates the gradient):

    .. math::

        v \leftarrow \alpha v + (1-\alpha) g^2, \qquad
        \bar g \leftarrow \alpha \bar g + (1-\alpha) g \ \text{(centered)}, \qquad
        a = \sqrt{v - \bar g^2} + \epsilon \ \text{(centered) or } \sqrt{v} + \epsilon

    then :math:`b \leftarrow \mu b + g/a,\ \theta \leftarrow \theta - \eta b` with momentum
    :math:`\mu > 0`, else :math:`\theta \leftarrow \theta - \eta\, g / a`. The operations
    follow torch's order; torch has no fused CPU RMSprop, and the results agree with its
    single-tensor and foreach paths to an ulp or so per step (not bit for bit). The state is
    torch's: ``step`` (a scalar tensor), ``square_avg``, ``momentum_buffer`` (only with
    momentum > 0) and ``grad_avg`` (only when centered).

    Parameters
    ----------
    params : iterable of tensors or of dicts
        Parameters, or param groups with their own hyper-parameters.
    lr : float or one-element tensor
        Learning rate :math:`\eta \ge 0` (default 1e-2).
    alpha : float
        Smoothing constant :math:`\alpha \ge 0` (default 0.99).
    eps : float
        Added to the denominator, >= 0 (default 1e-8).
    weight_decay : float
        L2 penalty :math:`\lambda \ge 0` (default 0).
    momentum : float
        Momentum factor :math:`\mu \ge 0` (default 0).
    centered : bool
        Normalise by the estimated variance instead of the second moment.
    capturable : bool
        Only False: CUDA-graph capture is not supported.
    foreach : bool or None
        Accepted for compatibility; every value runs the same fused kernel.
    maximize : bool
        Follow the gradient uphill.
    differentiable : bool
        Only False: the kernels do not record the update for autograd.
    """

    _entry = "rmsprop"
    _state_names = ("square_avg", "grad_avg", "momentum_buffer")
    _optional = {
        "grad_avg": lambda group: group["centered"],
        "momentum_buffer": lambda group: _real("momentum", group["momentum"]) > 0.0,
    }
    _flags = {
        "capturable": NOT_CAPTURABLE,
        "foreach": ANY_IMPLEMENTATION,
        "differentiable": NOT_DIFFERENTIABLE,
    }

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: Optional[bool] = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        state_dtype: Optional[torch.dtype] = None,
    ) -> None:
        self._set_state_dtype(state_dtype)
        super().__init__(params, _options(locals()))


class Adam(_StateBits, _FusedOptimizer):
    r"""torch.optim.Adam on optbowl's fused kernel, bit-identical to ``fused=True``.

    At step :math:`t` (from 1), with :math:`g = \nabla f(\theta)` (``maximize`` negates it):

    .. math::

        g \leftarrow g + \lambda\theta \ \text{(or, decoupled: } \theta \leftarrow
        \theta(1 - \eta\lambda)), \quad
        m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2,

    .. math::

        \hat v = \max(\hat v, v) \text{ (amsgrad) or } v, \qquad
        \theta \leftarrow \theta - \frac{\eta}{1-\beta_1^t}\,
        \frac{m}{\sqrt{\hat v}/\sqrt{1-\beta_2^t} + \epsilon}

    rounded as torch's fused CPU kernel rounds, so the results equal
    ``torch.optim.Adam(fused=True)`` bit for bit in float32 and float64 on every tensor
    size: the last numel mod 8 (float32) or mod 4 (float64) elements of each tensor, which
    torch steps in a scalar loop that rounds :math:`v` otherwise, are rounded as that loop
    rounds them. ``state_dict()`` writes ``fused: True`` in each group, so that
    ``torch.optim.Adam`` loading it continues on its fused path. The state is
    torch's: ``step`` (a scalar tensor: float32 on the parameter's device with
    ``fused=True``, as torch makes it), ``exp_avg``, ``exp_avg_sq`` and ``max_exp_avg_sq``
    (only with amsgrad).

    Parameters
    ----------
    params : iterable of tensors or of dicts
        Parameters, or param groups with their own hyper-parameters.
    lr : float or one-element tensor
        Learning rate :math:`\eta \ge 0` (default 1e-3).
    betas : (float, float)
        :math:`(\beta_1, \beta_2)`, each in [0, 1) (default (0.9, 0.999)): two numbers or
        two one-element tensors; a tensor beside a number is refused, as torch refuses it.
    eps : float
        Added to the denominator, >= 0 (default 1e-8).
    weight_decay : float
        :math:`\lambda \ge 0` (default 0).
    amsgrad : bool
        Use the running maximum of :math:`v`.
    foreach : None
        Only None: ``foreach=True`` and ``foreach=False`` ask for torch's foreach and
        single-tensor paths, which round otherwise than its fused kernel, the only update
        computed here; the ValueError says to pass ``fused=True``.
    maximize : bool
        Follow the gradient uphill.
    capturable : bool
        Only False: CUDA-graph capture is not supported.
    differentiable : bool
        Only False: the kernels do not record the update for autograd.
    fused : bool or None
        None (default) or True: the update is always the fused one; False, which asks for
        torch's differently rounded single-tensor path, is refused.
    decoupled_weight_decay : bool
        AdamW's decoupled weight decay instead of an L2 term.
    state_bits : {32, 16, 8}
        Keyword-only, not in torch. 32 (default): torch's state, bit-identical as above.
        8: the state blockwise-quantized as :class:`optbowl.Adam`'s (``exp_avg``,
        ``exp_avg_sq``, ``max_exp_avg_sq`` as ``uint8`` codes, each with a float32
        ``<name>_absmax`` per block of 256); 16: bfloat16 bits
        as ``uint16``. Float32 CPU tensors only; ``load_state_dict`` refuses a state of
        another format.
    stochastic_rounding, seed
        With ``state_bits=16``: stochastic rounding to bfloat16, seeded.
    """

    _entry = "adam"
    _state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _float_state = _state_names
    _signed_state = (True, False, False)
    _quantized_entry = "quantized_adam"
    _optional = {"max_exp_avg_sq": lambda group: group["amsgrad"]}
    _flags = {
        "foreach": NOT_FOREACH,
        "capturable": NOT_CAPTURABLE,
        "differentiable": NOT_DIFFERENTIABLE,
        "fused": ONLY_FUSED,
    }
    _torch_fused = True

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: Optional[bool] = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: Optional[bool] = None,
        decoupled_weight_decay: bool = False,
        state_bits: int = 32,
        stochastic_rounding: bool = False,
        seed: Optional[int] = None,
        state_dtype: Optional[torch.dtype] = None,
    ) -> None:
        self._set_state_dtype(state_dtype)
        self._set_state_bits(state_bits, stochastic_rounding, seed)
        options = _options(locals())
        for name in ("state_bits", "stochastic_rounding", "seed"):
            options.pop(name, None)
        super().__init__(params, options)

    def _check_hyper(self, group: Dict[str, Any]) -> None:
        betas = group["betas"]
        if isinstance(betas, Sequence) and len(betas) == 2 and not (
                all(isinstance(b, float) for b in betas)
                or all(isinstance(b, torch.Tensor) for b in betas)):  # torch's own rule
            raise ValueError(
                "betas: must be either both floats or both tensors, as torch.optim requires; got "
                f"{type(betas[0]).__name__} and {type(betas[1]).__name__}"
            )
        super()._check_hyper(group)


class AdamW(Adam):
    r"""torch.optim.AdamW on optbowl's fused kernel, bit-identical to ``fused=True``.

    :class:`Adam` with decoupled weight decay, :math:`\theta \leftarrow \theta(1 - \eta\lambda)`
    before the Adam step; ``weight_decay`` defaults to 1e-2 and ``decoupled_weight_decay``
    is always True (in the param groups too), as in torch. Same state and options as
    :class:`Adam`.
    """

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: Optional[bool] = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: Optional[bool] = None,
        state_bits: int = 32,
        stochastic_rounding: bool = False,
        seed: Optional[int] = None,
        state_dtype: Optional[torch.dtype] = None,
    ) -> None:
        self._set_state_dtype(state_dtype)
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
            state_bits=state_bits,
            stochastic_rounding=stochastic_rounding,
            seed=seed,
            state_dtype=state_dtype,
        )

    def _check_hyper(self, group: Dict[str, Any]) -> None:
        super()._check_hyper(group)
        if not group["decoupled_weight_decay"]:
            raise ValueError(
                "decoupled_weight_decay: AdamW always decouples weight decay; use Adam for L2"
            )


class QuickProp(_FusedOptimizer):
    r"""optbowl's QuickProp (Fahlman, 1988) as a torch optimizer; torch has no counterpart.

    Every element fits a parabola through its last two gradients and jumps to its minimum,

    .. math::

        \Delta w_t = \Delta w_{t-1}\,\frac{g_t}{g_{t-1} - g_t}, \qquad w \leftarrow w + \Delta w_t

    with :math:`|\Delta w_t| \le \mu\,|\Delta w_{t-1}|`, a gradient step
    :math:`-\eta g_t` where there is no previous step; the same kernel and results as
    :class:`optbowl.QuickProp`. The state per parameter is ``step`` (a scalar tensor),
    ``prev_grad`` and ``prev_step``, the names of :class:`optbowl.QuickProp`.

    Parameters
    ----------
    params : iterable of tensors or of dicts
        Parameters, or param groups with their own hyper-parameters.
    lr : float or one-element tensor
        Step size :math:`\eta \ge 0` of the gradient steps (default 1e-2).
    max_growth : float
        :math:`\mu > 0`, the largest factor by which a step may grow (default 1.75).
    maximize : bool
        Follow the gradient uphill.
    differentiable : bool
        Only False: the kernels do not record the update for autograd (torch's optimizer
        base class gives every param group this option).
    """

    _entry = "quickprop"
    _complex_ok = False
    _state_names = ("prev_grad", "prev_step")
    _flags = {"differentiable": NOT_DIFFERENTIABLE}

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        max_growth: float = 1.75,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        state_dtype: Optional[torch.dtype] = None,
    ) -> None:
        self._set_state_dtype(state_dtype)
        super().__init__(params, _options(locals()))



class Lion(_FusedOptimizer):
    r"""optbowl's Lion (Chen et al., 2023) as a torch optimizer; torch has no counterpart.

    With :math:`g = \nabla f(\theta)` (``maximize`` negates it):

    .. math::

        c = \beta_1 m + (1-\beta_1) g, \qquad
        \theta \leftarrow \theta(1 - \eta\lambda) - \eta\,\operatorname{sign}(c), \qquad
        m \leftarrow \beta_2 m + (1-\beta_2) g

    the same kernel and results as :class:`optbowl.Lion` (bit for bit the reference
    implementation's ``p.mul_(1 - lr*wd); p.add_(m.lerp(g, 1-β1).sign_(), alpha=-lr);
    m.lerp_(g, 1-β2)`` in float32 and float64). The state per parameter is ``step`` (a
    scalar tensor) and ``exp_avg``.

    Parameters
    ----------
    params : iterable of tensors or of dicts
        Parameters, or param groups with their own hyper-parameters.
    lr : float or one-element tensor
        Learning rate :math:`\eta \ge 0` (default 1e-4).
    betas : (float, float)
        :math:`(\beta_1, \beta_2)`, each in [0, 1) (default (0.9, 0.99)).
    weight_decay : float
        Decoupled weight decay :math:`\lambda \ge 0` (default 0).
    maximize : bool
        Follow the gradient uphill.
    differentiable : bool
        Only False: the kernels do not record the update for autograd.
    """

    _entry = "lion"
    _complex_ok = False
    _state_names = ("exp_avg",)
    _flags = {"differentiable": NOT_DIFFERENTIABLE}

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-4,
        betas: Tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        state_dtype: Optional[torch.dtype] = None,
    ) -> None:
        self._set_state_dtype(state_dtype)
        super().__init__(params, _options(locals()))


class Adamax(_FusedOptimizer):
    r"""optbowl's Adamax as a drop-in for ``torch.optim.Adamax``.

    At step :math:`t` (from 1), with :math:`g = \nabla f(\theta)` (``maximize`` negates it)
    and :math:`g \leftarrow g + \lambda\theta`:

    .. math::

        m \leftarrow \beta_1 m + (1-\beta_1) g, \qquad
        u \leftarrow \max(\beta_2 u,\ |g| + \epsilon), \qquad
        \theta \leftarrow \theta - \frac{\eta}{1-\beta_1^t}\,\frac{m}{u}

    the same kernel and results as :class:`optbowl.Adamax`: torch's single-tensor path
    (``foreach=False``, what torch runs on the CPU by default) bit for bit in float32 and
    float64, and in bfloat16 and float16 at every size: a 16-bit tensor's last
    ``numel % 32`` elements are rounded as torch's scalar loop rounds them (past 32768
    elements, which torch cuts into one part per intra-op thread, as torch with one
    thread). The state is ``step`` (a scalar tensor, as torch keeps it), ``exp_avg`` and
    ``exp_inf``.

    Parameters
    ----------
    params : iterable of tensors or of dicts
        Parameters, or param groups with their own hyper-parameters.
    lr : float or one-element tensor
        Learning rate :math:`\eta \ge 0` (default 2e-3).
    betas : (float, float)
        :math:`(\beta_1, \beta_2)`, each in [0, 1) (default (0.9, 0.999)).
    eps : float
        Added to :math:`|g|`, >= 0 (default 1e-8).
    weight_decay : float
        :math:`\lambda \ge 0` (default 0).
    foreach : bool or None
        None or False: torch's single-tensor path, whose rounding the kernel reproduces;
        True (its foreach path, rounded otherwise) is refused.
    maximize : bool
        Follow the gradient uphill.
    differentiable : bool
        Only False: the kernels do not record the update for autograd.
    capturable : bool
        Only False: CUDA-graph capture is not supported.
    """

    _entry = "adamax"
    _complex_ok = False
    _state_names = ("exp_avg", "exp_inf")
    _flags = {
        "foreach": SINGLE_TENSOR,
        "differentiable": NOT_DIFFERENTIABLE,
        "capturable": NOT_CAPTURABLE,
    }

    def __init__(
        self,
        params: Any,
        lr: Any = 2e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: Optional[bool] = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        state_dtype: Optional[torch.dtype] = None,
    ) -> None:
        self._set_state_dtype(state_dtype)
        super().__init__(params, _options(locals()))


class Adadelta(_FusedOptimizer):
    r"""optbowl's Adadelta as a drop-in for ``torch.optim.Adadelta``.

    With :math:`g = \nabla f(\theta)` (``maximize`` negates it) and
    :math:`g \leftarrow g + \lambda\theta`:

    .. math::

        v \leftarrow \rho v + (1-\rho) g^2, \qquad
        \Delta = \frac{\sqrt{u + \epsilon}}{\sqrt{v + \epsilon}}\, g, \qquad
        u \leftarrow \rho u + (1-\rho) \Delta^2, \qquad
        \theta \leftarrow \theta - \eta\,\Delta

    the same kernel and results as :class:`optbowl.Adadelta`: torch's single-tensor path
    (``foreach=False``) with correctly rounded square roots. Where torch is built with MKL
    its CPU ``sqrt`` of float32 and float64 tensors is not always correctly rounded (within
    an ulp), and results then differ from torch's by that bit and what follows from it.
    bfloat16 and float16 parameters agree with torch bit for bit at every size, a tensor's
    last ``numel % 32`` elements rounded as torch's scalar loop rounds them (as
    :class:`Adamax`'s). The state is ``step`` (a scalar tensor, as torch keeps it),
    ``square_avg`` and ``acc_delta``.

    Parameters
    ----------
    params : iterable of tensors or of dicts
        Parameters, or param groups with their own hyper-parameters.
    lr : float or one-element tensor
        The factor :math:`\eta \ge 0` on :math:`\Delta` (default 1.0).
    rho : float
        :math:`\rho \in [0, 1]` (default 0.9).
    eps : float
        Added under both square roots, >= 0 (default 1e-6).
    weight_decay : float
        :math:`\lambda \ge 0` (default 0).
    foreach : bool or None
        None or False: torch's single-tensor path, whose rounding the kernel reproduces;
        True (its foreach path, rounded otherwise) is refused.
    capturable : bool
        Only False: CUDA-graph capture is not supported.
    maximize : bool
        Follow the gradient uphill.
    differentiable : bool
        Only False: the kernels do not record the update for autograd.
    """

    _entry = "adadelta"
    _complex_ok = False
    _state_names = ("square_avg", "acc_delta")
    _flags = {
        "foreach": SINGLE_TENSOR,
        "capturable": NOT_CAPTURABLE,
        "differentiable": NOT_DIFFERENTIABLE,
    }

    def __init__(
        self,
        params: Any,
        lr: Any = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: Optional[bool] = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
        state_dtype: Optional[torch.dtype] = None,
    ) -> None:
        self._set_state_dtype(state_dtype)
        super().__init__(params, _options(locals()))


class RAdam(_FusedOptimizer):
    r"""optbowl's RAdam as a drop-in for ``torch.optim.RAdam``.

    At step :math:`t` (from 1), with :math:`g = \nabla f(\theta)` (``maximize`` negates it)
    and :math:`g \leftarrow g + \lambda\theta` (or, with ``decoupled_weight_decay``,
    :math:`\theta \leftarrow \theta(1 - \eta\lambda)`):

    .. math::

        m \leftarrow \beta_1 m + (1-\beta_1) g, \qquad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2, \qquad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1-\beta_2^t}, \quad
        \rho_\infty = \frac{2}{1-\beta_2} - 1

    .. math::

        \theta \leftarrow \theta - \frac{\eta}{1-\beta_1^t}\, m \cdot
        \frac{\sqrt{1-\beta_2^t}}{\sqrt{v} + \epsilon}\, r_t \ (\rho_t > 5), \qquad
        \theta \leftarrow \theta - \frac{\eta}{1-\beta_1^t}\, m \ (\rho_t \le 5)

    with :math:`r_t` the rectification term (:class:`optbowl.RAdam`): the same kernel and
    results as :class:`optbowl.RAdam`, torch's single-tensor path (``foreach=False``) with
    a correctly rounded square root. Where torch is built with MKL its CPU ``sqrt`` of
    float32 and float64 tensors is not always correctly rounded (within an ulp), and results
    then differ from torch's by that bit and what follows from it. bfloat16 and float16
    parameters agree with torch bit for bit at every size, a tensor's last ``numel % 32``
    elements rounded as torch's scalar loop rounds them (as :class:`Adamax`'s). The state
    is ``step`` (a scalar tensor, as torch keeps it), ``exp_avg`` and ``exp_avg_sq``.

    Parameters
    ----------
    params : iterable of tensors or of dicts
        Parameters, or param groups with their own hyper-parameters.
    lr : float or one-element tensor
        Learning rate :math:`\eta \ge 0` (default 1e-3).
    betas : (float, float)
        :math:`(\beta_1, \beta_2)`, each in [0, 1) (default (0.9, 0.999)).
    eps : float
        Added to :math:`\sqrt{v}`, >= 0 (default 1e-8).
    weight_decay : float
        :math:`\lambda \ge 0` (default 0).
    decoupled_weight_decay : bool
        Decay the parameter itself (AdamW's way) instead of adding an L2 term.
    foreach : bool or None
        None or False: torch's single-tensor path, whose rounding the kernel reproduces;
        True (its foreach path, rounded otherwise) is refused.
    maximize : bool
        Follow the gradient uphill.
    capturable : bool
        Only False: CUDA-graph capture is not supported.
    differentiable : bool
        Only False: the kernels do not record the update for autograd.
    """

    _entry = "radam"
    _complex_ok = False
    _state_names = ("exp_avg", "exp_avg_sq")
    _flags = {
        "foreach": SINGLE_TENSOR,
        "capturable": NOT_CAPTURABLE,
        "differentiable": NOT_DIFFERENTIABLE,
    }

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: Optional[bool] = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        state_dtype: Optional[torch.dtype] = None,
    ) -> None:
        self._set_state_dtype(state_dtype)
        super().__init__(params, _options(locals()))


class NAdam(_FusedOptimizer):
    r"""optbowl's NAdam as a drop-in for ``torch.optim.NAdam``.

    At step :math:`t` (from 1), with :math:`g = \nabla f(\theta)` (``maximize`` negates it),
    :math:`g \leftarrow g + \lambda\theta` (or, with ``decoupled_weight_decay``,
    :math:`\theta \leftarrow \theta(1 - \eta\lambda)`) and
    :math:`\mu_t = \beta_1 (1 - \tfrac12\, 0.96^{t\psi})`:

    .. math::

        \Pi_t = \Pi_{t-1}\,\mu_t, \qquad
        m \leftarrow \beta_1 m + (1-\beta_1) g, \qquad
        v \leftarrow \beta_2 v + (1-\beta_2) g^2,

        \theta \leftarrow \theta - \eta\left(\frac{(1-\mu_t)\, g}{1-\Pi_t}
            + \frac{\mu_{t+1}\, m}{1-\Pi_t\,\mu_{t+1}}\right)
            \Big/ \left(\sqrt{\frac{v}{1-\beta_2^t}} + \epsilon\right)

    the same kernel and results as :class:`optbowl.NAdam`: torch's single-tensor path
    (``foreach=False``) with correctly rounded square roots. Where torch is built with MKL
    its CPU ``sqrt`` of float32 and float64 tensors is not always correctly rounded (within
    an ulp), and results then differ from torch's by that bit and what follows from it.
    bfloat16 and float16 parameters agree with torch bit for bit, a tensor's last
    ``numel % 32`` elements rounded as torch's scalar loop rounds them (past 32768 elements,
    as torch on one thread). The state is ``step`` and ``mu_product`` (:math:`\Pi_t`;
    scalar tensors of torch's scalar dtype, float32 unless torch's default dtype is
    float64, as torch keeps them), ``exp_avg`` and ``exp_avg_sq``. ``load_state_dict``
    keeps ``mu_product`` in the dtype it was saved in, where torch's would round it to a
    16-bit parameter's dtype.

    Parameters
    ----------
    params : iterable of tensors or of dicts
        Parameters, or param groups with their own hyper-parameters.
    lr : float or one-element tensor
        Learning rate :math:`\eta \ge 0` (default 2e-3).
    betas : (float, float)
        :math:`(\beta_1, \beta_2)`, each in [0, 1) (default (0.9, 0.999)).
    eps : float
        Added to the root mean square, >= 0 (default 1e-8).
    weight_decay : float
        :math:`\lambda \ge 0` (default 0).
    momentum_decay : float
        :math:`\psi \ge 0` (default 4e-3).
    decoupled_weight_decay : bool
        Decay the parameter instead of adding :math:`\lambda\theta` to the gradient.
    foreach : bool or None
        None or False: torch's single-tensor path, whose rounding the kernel reproduces;
        True (its foreach path, rounded otherwise) is refused.
    maximize : bool
        Follow the gradient uphill.
    capturable : bool
        Only False: CUDA-graph capture is not supported.
    differentiable : bool
        Only False: the kernels do not record the update for autograd.
    """

    _entry = "nadam"
    _complex_ok = False
    _state_names = ("exp_avg", "exp_avg_sq")
    _flags = {
        "foreach": SINGLE_TENSOR,
        "capturable": NOT_CAPTURABLE,
        "differentiable": NOT_DIFFERENTIABLE,
    }

    def __init__(
        self,
        params: Any,
        lr: Any = 2e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        foreach: Optional[bool] = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        state_dtype: Optional[torch.dtype] = None,
    ) -> None:
        self._set_state_dtype(state_dtype)
        super().__init__(params, _options(locals()))


class ASGD(_FusedOptimizer):
    r"""optbowl's ASGD as a drop-in for ``torch.optim.ASGD``.

    At step :math:`t` (from 1), with :math:`g = \nabla f(\theta)` (``maximize`` negates it)
    and :math:`g \leftarrow g + \lambda_w\theta`, the step size :math:`\eta` and averaging
    weight :math:`\mu` of the step before (:math:`\eta_0` = ``lr`` and 1 at first):

    .. math::

        \theta \leftarrow \theta\,(1 - \lambda\eta) - \eta\, g, \qquad
        \bar\theta \leftarrow \bar\theta + \mu\,(\theta - \bar\theta)\quad(\bar\theta
        \leftarrow \theta \text{ while } \mu = 1),

        \eta \leftarrow \frac{\eta_0}{(1 + \lambda\eta_0 t)^{\alpha}}, \qquad
        \mu \leftarrow \frac{1}{\max(1,\ t - t_0)}

    the same kernel and results as :class:`optbowl.ASGD`: torch's single-tensor path
    (``foreach=False``) bit for bit in every dtype, a bfloat16 or float16 tensor's last
    ``numel % 32`` elements rounded as torch's scalar loop rounds them (past 32768 elements,
    as torch on one thread). The state is ``step``, ``eta`` and ``mu`` (scalar tensors of
    torch's scalar dtype, float32 unless torch's default dtype is float64, as torch keeps
    them) and ``ax`` (:math:`\bar\theta`). ``load_state_dict`` keeps ``eta`` and ``mu``
    in the dtype they were saved in, where torch's would round them to a 16-bit
    parameter's dtype.

    Parameters
    ----------
    params : iterable of tensors or of dicts
        Parameters, or param groups with their own hyper-parameters.
    lr : float or one-element tensor
        The first step size :math:`\eta_0 \ge 0` (default 1e-2).
    lambd : float
        The step size's decay :math:`\lambda` (default 1e-4).
    alpha : float
        Its power :math:`\alpha` (default 0.75).
    t0 : float
        The step :math:`t_0` after which the averaging starts (default 1e6).
    weight_decay : float
        :math:`\lambda_w \ge 0` (default 0).
    foreach : bool or None
        None or False: torch's single-tensor path, whose rounding the kernel reproduces;
        True (its foreach path, rounded otherwise) is refused.
    maximize : bool
        Follow the gradient uphill.
    differentiable : bool
        Only False: the kernels do not record the update for autograd.
    capturable : bool
        Only False: CUDA-graph capture is not supported.
    """

    _entry = "asgd"
    _complex_ok = False
    _state_names = ("ax",)
    _flags = {
        "foreach": SINGLE_TENSOR,
        "differentiable": NOT_DIFFERENTIABLE,
        "capturable": NOT_CAPTURABLE,
    }

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: Optional[bool] = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
        *,
        state_dtype: Optional[torch.dtype] = None,
    ) -> None:
        self._set_state_dtype(state_dtype)
        super().__init__(params, _options(locals()))
