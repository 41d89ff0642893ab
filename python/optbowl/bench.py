"""``python -m optbowl bench``: optimizer steps timed against the memory floor, NumPy, torch
(eager and ``torch.compile``) and optax.

An element-wise optimizer step is bandwidth-bound, so the yardstick is the *floor*: a
streaming kernel (``optbowl._core.stream_floor``) that reads and writes the same bytes
per element as the rule -- parameter, gradient and state arrays -- with the same
chunking, threads and instruction set. Every case times, in the same run and
interleaved round by round (so they share the machine's noise):

* ``optbowl``        the optimizer's ``step(grads)``, as a user calls it;
* ``floor``          the streaming kernel over the rule's float arrays;
* ``numpy``          the vectorised NumPy step its rule's module defines (where one exists);
* ``torch-single``, ``torch-foreach``, ``torch-fused``: ``torch.optim`` on tensors sharing
  the parameters' and gradients' memory (the paths torch has for the rule; skipped when
  torch is not installed), with torch's intra-op threads set to optbowl's thread count;
* ``torch-compile``  ``torch.compile(opt.step)`` on the single-tensor torch optimizer, the
  way torch gets fused code for a rule without a fused kernel; its compile time (the
  first calls, which trace and compile) is reported apart from its step time;
* ``optax``          the optax rule under ``jax.jit`` (parameters and state donated, so
  updated in place), where jax and optax are installed (the ``bench`` extra); its own
  copies of the arrays, XLA's own CPU threads; compile time reported apart.

* ``float-state``    beside a low-precision state rule (``<name>/8bit``, ``<name>/bf16``:
  ``state_bits=8|16``), the same optimizer with float state, on the same arrays;
* ``bitsandbytes``   beside the 8-bit rules that bitsandbytes has too, its 8-bit
  optimizer on CPU tensors (its own copies), where bitsandbytes is installed and its
  step runs on this CPU (timed with the torch peers).

Two gradient sets alternate from step to step, so signs change as in training. Each
competitor runs ``repeats`` samples of enough steps to last ``--min-time``; the table
shows optbowl's median time per step, and for every other column the ratio with its
spread. Ratios pair the samples of one round: ``x floor`` is the median over rounds of
optbowl's sample over the floor's, ``vs X`` the median of X's over optbowl's, so a slow
phase of the machine that spans a round cancels instead of landing on one side. A
ratio's spread is half the inter-quartile range of its per-round quotients, relative to
their median; a ratio whose spread reaches its margin (|ratio - 1|) is flagged ``?``:
that run cannot tell which side is faster. ``--quick`` times a representative subset
(ResNet-18, float32, the families their registry entries mark quick, and one in
bfloat16, 5 samples).

``--dtype bfloat16 float16`` times 16-bit parameters (state in the same dtype, float32
arithmetic, as torch steps them): the floor then streams the 16-bit bytes, widening and
rounding them as the rules do, and torch's paths see the same memory; NumPy, optax and
torch.compile are not timed there.

Rules form a registry (``RULES``), made from the benchmark families that each rule's
registry entry declares (``optbowl._registry.BenchFamily``); ``register(BenchRule(...))``
adds one more.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__, _check, _core, _device, _registry, _workloads
from ._cli_args import integer, number

Shape = Tuple[int, ...]
Step = Callable[[], None]

TORCH_PATHS = ("torch-single", "torch-foreach", "torch-fused")
#: The peers that compile the step first (their compile time is reported apart).
COMPILED_PEERS = ("torch-compile", "optax")
#: The float-state optbowl step beside a low-precision state one (state_bits=8|16), and
#: bitsandbytes' 8-bit optimizers where they run on this CPU.
STATE_PEERS = ("float-state", "bitsandbytes")
PEERS = ("numpy", *TORCH_PATHS, *COMPILED_PEERS, *STATE_PEERS)


# ------------------------------------------------------------------------------ rules
@dataclass(frozen=True)
class BenchRule:
    """One optimizer configuration the benchmark can time.

    Parameters
    ----------
    name : str
        The name used on the command line and in the table.
    float_states : int
        Number of state arrays of the parameters' dtype that a step reads and writes in
        the uncompacted form: the floor moves ``(2 * (1 + float_states) + 1) * itemsize``
        bytes per element (param and states read and written, gradient read).
    extra_bytes : int
        Bytes per element of any other state (int8 sign codes: 2, read and written).
        When ``compact``, the optbowl step moves ``extra_bytes`` instead of one float
        state; the floor stays the uncompacted one it is meant to beat.
    make_optbowl : callable
        ``(params) -> optimizer``; its ``step(grads)`` is timed.
    make_numpy : callable or None
        ``(params) -> step(grads)`` in NumPy.
    make_torch : callable or None
        ``(torch, tensors, path) -> torch optimizer or None`` for path in TORCH_PATHS.
    make_optax : callable or None
        ``(optax) -> optax.GradientTransformation`` of the same rule and hyper-parameters.
    state_bits : int
        8 or 16: the optbowl step keeps every state array in low precision (8: one byte
        per element and a float32 absmax per 256; 16: bfloat16); the floor stays the
        float-state one, and the float-state optbowl step (``make_float``) is timed beside
        it as the peer ``float-state``.
    make_float : callable or None
        ``(params) -> optimizer`` with float state, for the ``float-state`` peer.
    make_bnb : callable or None
        ``(bnb, tensors) -> bitsandbytes optimizer`` (8-bit, CPU), for the ``bitsandbytes``
        peer where bitsandbytes is installed and runs (with the torch peers: a torch
        optimizer).
    needs_loss : bool
        ``step`` needs ``loss=``.
    compact : bool
        One float state is replaced by ``extra_bytes`` of int8 state.
    """

    name: str
    description: str
    float_states: int
    make_optbowl: Callable[[List[np.ndarray]], Any]
    make_numpy: Optional[Callable[[List[np.ndarray]], Callable[[List[np.ndarray]], None]]] = None
    make_torch: Optional[Callable[[Any, List[Any], str], Any]] = None
    needs_loss: bool = False
    compact: bool = False
    extra_bytes: int = 0
    make_optax: Optional[Callable[[Any], Any]] = None
    state_bits: int = 32
    make_float: Optional[Callable[[List[np.ndarray]], Any]] = None
    make_bnb: Optional[Callable[[Any, List[Any]], Any]] = None

    def floor_bytes(self, itemsize: int) -> int:
        """Bytes per element the floor kernel moves."""
        return (2 * (1 + self.float_states) + 1) * itemsize

    def step_bytes(self, itemsize: int) -> float:
        """Bytes per element an optbowl step moves."""
        if self.state_bits == 8:  # codes read and written, absmax per 256 read and written
            return 3 * itemsize + self.float_states * (2 + 8 / 256)
        if self.state_bits == 16:
            return 3 * itemsize + self.float_states * 4
        if self.compact:
            return (2 * self.float_states + 1) * itemsize + self.extra_bytes
        return self.floor_bytes(itemsize)


RULES: Dict[str, BenchRule] = {}


def register(rule: BenchRule) -> BenchRule:
    """Add a rule to the benchmark's registry (by name)."""
    RULES[rule.name] = rule
    return rule


def _torch_rule(cls_name: str, fused: bool, **hyper: Any):
    """torch.optim.<cls_name>(**hyper) on each path torch has (fused only where ``fused``);
    the path sets ``foreach`` (and ``fused``), whatever ``hyper`` says of them."""
    hyper = {k: v for k, v in hyper.items() if k not in ("foreach", "fused")}

    def make(torch, tensors, path):
        if path == "torch-fused":
            return getattr(torch.optim, cls_name)(tensors, fused=True, **hyper) if fused else None
        return getattr(torch.optim, cls_name)(tensors, foreach=path == "torch-foreach", **hyper)

    return make


def _bnb_rule(cls_name: str, **hyper: Any):
    """bitsandbytes.optim.<cls_name>(**hyper), blockwise 8-bit state."""
    return lambda bnb, tensors: getattr(bnb.optim, cls_name)(tensors, **hyper)


def _low_precision(name: str, base: str, float_states: int, cls: Any, hyper: Dict[str, Any],
                   bnb: Any = None) -> None:
    """``<base>/8bit`` and ``<base>/bf16``: cls with state_bits 8 and 16, beside cls with
    float state (the ``float-state`` peer) and the float floor."""
    def low(bits: int) -> Callable[[List[np.ndarray]], Any]:
        return lambda params: cls(params, state_bits=bits, **hyper)

    def full(params: List[np.ndarray]) -> Any:
        return cls(params, **hyper)

    for bits, suffix in ((8, "8bit"), (16, "bf16")):
        register(BenchRule(f"{name}/{suffix}", f"{base}, state_bits={bits}", float_states,
                           low(bits), state_bits=bits, make_float=full,
                           make_bnb=bnb if bits == 8 else None))


def _maker(cls: Any, hyper: Dict[str, Any]) -> Callable[[List[np.ndarray]], Any]:
    return lambda params: cls(params, **hyper)


def _register_families() -> None:
    """One BenchRule per benchmark family of every rule's registry entry, then the
    low-precision ones (``<name>/8bit``, ``<name>/bf16``) of the families that have them."""
    package = importlib.import_module(__package__)
    families = [(rule, family) for rule in _registry.rules("bench") for family in rule.bench]
    made = []
    for rule, family in families:
        cls = getattr(package, family.cls or rule.cls)
        hyper = dict(family.hyper)
        torch_hyper = hyper if family.torch_hyper is None else dict(family.torch_hyper)
        torch_rule = (None if family.torch is None
                      else _torch_rule(family.torch, family.torch_fused, **torch_hyper))
        register(BenchRule(family.name, family.description, family.float_states,
                           _maker(cls, hyper),
                           family.numpy, torch_rule, needs_loss=family.needs_loss,
                           compact=family.compact, extra_bytes=family.extra_bytes,
                           make_optax=family.optax))
        made.append((family, cls, hyper))
    for family, cls, hyper in made:
        if family.low_precision:
            _low_precision(family.name, family.low_precision, family.float_states, cls, hyper,
                           bnb=_bnb_rule(family.bnb, **hyper) if family.bnb else None)


_register_families()

_FAMILIES = [family for rule in _registry.rules("bench") for family in rule.bench]
DEFAULT_RULES = tuple(family.name for family in _FAMILIES if family.default)
#: What ``--quick`` times: the headline rules on the standard workload.
QUICK: Dict[str, Any] = {"workload": "resnet18",
                         "rules": [family.name for family in _FAMILIES if family.quick],
                         "dtype": ["float32"], "repeats": 5, "min_time": 0.01}
#: ... and, when neither --rules nor --dtype is given, these (dtype, rule) rows: a
#: 16-bit model's step against torch's fused one (where ml_dtypes is installed).
QUICK_EXTRA = [(family.quick_dtype, family.name) for family in _FAMILIES if family.quick_dtype]

# ------------------------------------------------------------------------------ cases
def _torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _optax_or_none():
    """(jax, optax) where both import, else None. float64 arrays need jax's 64-bit mode."""
    try:
        import jax
        import optax  # type: ignore[import-untyped]
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    return jax, optax


#: Calls that trace and compile a compiled peer before it is timed (the second call can
#: compile again, now that the optimizer's state exists).
COMPILE_CALLS = 2


@dataclass
class Case:
    """The arrays and the competitors' step callables of one (workload, dtype, rule)."""

    rule: BenchRule
    shapes: List[Shape]
    dtype: np.dtype
    steps: Dict[str, Step] = field(default_factory=dict)
    skipped: Dict[str, str] = field(default_factory=dict)
    #: Seconds the first ``COMPILE_CALLS`` calls of a compiled peer took (trace + compile).
    compile_s: Dict[str, float] = field(default_factory=dict)

    @property
    def numel(self) -> int:
        return sum(math.prod(s) for s in self.shapes)


def _dtype(name: Any) -> np.dtype:
    """A bench dtype by name: float32, float64, float16, or bfloat16 (needs ml_dtypes)."""
    if name == "bfloat16":
        if _check.BFLOAT16 is None:
            raise ValueError("--dtype: bfloat16 needs the ml_dtypes package (the bf16 extra)")
        return _check.BFLOAT16
    return np.dtype(name)


def _from_numpy(torch: Any, a: np.ndarray) -> Any:
    """A tensor sharing ``a``'s memory (bfloat16 through an int16 view)."""
    if a.dtype == _check.BFLOAT16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def build_case(rule: BenchRule, shapes: Sequence[Shape], dtype: Any, seed: int = 0,
               with_torch: bool = True, with_compile: bool = False,
               with_optax: bool = False) -> Case:
    """Allocate parameters and two gradient sets, and one step callable per competitor.

    All competitors but optax update the same parameter arrays (torch through
    ``torch.from_numpy``) and read the same gradients; each keeps its own state. With
    ``with_compile`` (and torch), ``torch.compile(opt.step)`` of the single-tensor torch
    optimizer joins; with ``with_optax`` (and jax, optax installed), the optax rule under
    ``jax.jit`` on its own copies. Both are compiled here, timed in ``compile_s``.
    """
    dtype = _dtype(dtype)
    half = dtype in _check.HALF_DTYPES
    case = Case(rule, [tuple(s) for s in shapes], dtype)
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s, dtype=np.float32).astype(dtype) for s in case.shapes]
    grad_sets = [[rng.standard_normal(s, dtype=np.float32).astype(dtype) for s in case.shapes]
                 for _ in range(2)]
    turn = [0]

    def next_grads() -> List[np.ndarray]:
        turn[0] ^= 1
        return grad_sets[turn[0]]

    opt = rule.make_optbowl(params)
    if rule.needs_loss:
        losses = [1.0]

        def optbowl_step() -> None:
            losses[0] = 3.0 - losses[0]  # alternately up and down
            opt.step(next_grads(), loss=losses[0])
    else:
        def optbowl_step() -> None:
            opt.step(next_grads())
    case.steps["optbowl"] = optbowl_step

    # Placed as the optimizers place their states: at the parameter's offset in a cache line.
    floor_states = [
        [_device.host_full_like(p, 0.0) for p in params] for _ in range(rule.float_states)
    ]
    floor_inout = [params, *floor_states]

    def floor_step() -> None:
        _core.stream_floor(floor_inout, [next_grads()])
    case.steps["floor"] = floor_step

    if rule.make_float is not None:
        float_opt = rule.make_float(params)
        case.steps["float-state"] = lambda: float_opt.step(next_grads())
    if rule.state_bits != 32:
        if with_torch:
            _add_bnb(case, rule, params, grad_sets, turn)
        else:
            case.skipped["bitsandbytes"] = "torch not timed (--no-torch)"

    if half:
        case.skipped["numpy"] = "NumPy has no 16-bit arithmetic of its own to compare with"
    elif rule.make_numpy is not None:
        np_step = rule.make_numpy(params)
        case.steps["numpy"] = lambda: np_step(next_grads())
    else:
        case.skipped["numpy"] = "no NumPy version of this rule"

    torch = _torch_or_none() if with_torch else None
    for path in TORCH_PATHS:
        if rule.make_torch is None:
            case.skipped[path] = "no torch counterpart timed for this rule"
            continue
        if torch is None:
            case.skipped[path] = "torch is not installed"
            continue
        tensors = [_from_numpy(torch, p) for p in params]
        tgrads = [[_from_numpy(torch, g) for g in gs] for gs in grad_sets]
        topt = rule.make_torch(torch, tensors, path)
        if topt is None:
            case.skipped[path] = f"torch has no {path[6:]} path for this rule"
            continue

        def torch_step(tensors=tensors, tgrads=tgrads, topt=topt) -> None:
            turn[0] ^= 1
            for t, g in zip(tensors, tgrads[turn[0]]):
                t.grad = g
            topt.step()
        case.steps[path] = torch_step
    if half:
        with_compile = with_optax = False
        why_not = "not timed for 16-bit dtypes"
    elif not with_compile:
        why_not = "not asked for (--no-compile)"
    else:
        why_not = "torch is not installed" if with_torch else "torch not timed (--no-torch)"
    _add_torch_compile(case, torch if with_compile else None, params, grad_sets, turn, why_not)
    _add_optax(case, _optax_or_none() if with_optax else None, params, grad_sets, turn,
               "jax and optax are not installed (the bench extra)" if with_optax
               else ("not timed for 16-bit dtypes" if half else "not asked for (--no-optax)"))
    return case


def _bnb_or_none() -> Tuple[Any, str]:
    """(bitsandbytes, "") where it imports, else (None, why not)."""
    try:
        import bitsandbytes  # type: ignore[import-not-found]
    except Exception as exc:  # not installed, or its import fails on this machine
        return None, f"bitsandbytes does not import ({type(exc).__name__})"
    return bitsandbytes, ""


def _add_bnb(case: Case, rule: BenchRule, params, grad_sets, turn) -> None:
    """bitsandbytes' 8-bit optimizer of the rule on CPU tensors (its own copies), where
    bitsandbytes is installed and its step runs here."""
    if rule.make_bnb is None:
        case.skipped["bitsandbytes"] = "no bitsandbytes counterpart timed for this rule"
        return
    torch = _torch_or_none()
    bnb, why = _bnb_or_none() if torch is not None else (None, "torch is not installed")
    if bnb is None:
        case.skipped["bitsandbytes"] = why
        return
    tensors = [torch.from_numpy(p.copy()) for p in params]
    tgrads = [[torch.from_numpy(g) for g in gs] for gs in grad_sets]
    try:
        opt = rule.make_bnb(bnb, tensors)
        for t, g in zip(tensors, tgrads[0]):
            t.grad = g
        opt.step()  # its first step makes its state: refused here if it has no CPU path
    except Exception as exc:  # bitsandbytes' own refusal (no CPU kernels in this build)
        case.skipped["bitsandbytes"] = f"its step does not run here: {type(exc).__name__}: " \
                                       f"{str(exc)[:120]}"
        return

    def bnb_step() -> None:
        turn[0] ^= 1
        for t, g in zip(tensors, tgrads[turn[0]]):
            t.grad = g
        opt.step()
    case.steps["bitsandbytes"] = bnb_step


def _compile(case: Case, name: str, step: Step) -> None:
    """Run the first calls (trace and compile), time them, and register the step."""
    t0 = time.perf_counter()
    for _ in range(COMPILE_CALLS):
        step()
    case.compile_s[name] = time.perf_counter() - t0
    case.steps[name] = step


def _add_torch_compile(case: Case, torch: Any, params, grad_sets, turn, why_not: str) -> None:
    rule = case.rule
    if rule.make_torch is None:
        case.skipped["torch-compile"] = "no torch counterpart timed for this rule"
        return
    if torch is None:
        case.skipped["torch-compile"] = why_not
        return
    tensors = [torch.from_numpy(p) for p in params]
    tgrads = [[torch.from_numpy(g) for g in gs] for gs in grad_sets]
    topt = rule.make_torch(torch, tensors, "torch-single")
    compiled = torch.compile(topt.step)

    def compiled_step() -> None:
        turn[0] ^= 1
        for t, g in zip(tensors, tgrads[turn[0]]):
            t.grad = g
        compiled()

    try:
        _compile(case, "torch-compile", compiled_step)
    except Exception as error:  # no C++ compiler, an unsupported platform, ...
        case.skipped["torch-compile"] = f"torch.compile failed: {type(error).__name__}: {error}"


def _add_optax(case: Case, jax_optax: Any, params, grad_sets, turn, why_not: str) -> None:
    rule = case.rule
    if rule.make_optax is None:
        case.skipped["optax"] = "no optax counterpart timed for this rule"
        return
    if jax_optax is None:
        case.skipped["optax"] = why_not
        return
    jax, optax = jax_optax
    transform = rule.make_optax(optax)
    jparams = [jax.numpy.array(p) for p in params]
    jgrads = [[jax.numpy.array(g) for g in gs] for gs in grad_sets]

    def update(ps, state, grads):
        updates, state = transform.update(grads, state, ps)
        return optax.apply_updates(ps, updates), state

    jitted = jax.jit(update, donate_argnums=(0, 1))
    held = [jparams, transform.init(jparams)]

    def optax_step() -> None:
        turn[0] ^= 1
        held[0], held[1] = jitted(held[0], held[1], jgrads[turn[0]])
        jax.block_until_ready(held[0])

    _compile(case, "optax", optax_step)


# ------------------------------------------------------------------------------ timing
@dataclass
class Timing:
    samples: List[float]  # seconds per step, one per sample

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def noise(self) -> float:
        """Half the inter-quartile range over the median."""
        q25, q75 = np.percentile(self.samples, [25, 75])
        return float((q75 - q25) / 2 / self.median) if self.median > 0 else 0.0

    def as_dict(self) -> Dict[str, Any]:
        return {"median_s": self.median, "min_s": float(min(self.samples)), "noise": self.noise,
                "samples_s": [float(s) for s in self.samples]}


#: Pause before each sample, so that other thread pools' spinning has stopped.
SETTLE_S = 0.01


def time_steps(steps: Dict[str, Step], repeats: int = 7,
               min_time: float = 0.02) -> Dict[str, Timing]:
    """Median-ready timings of every step callable, interleaved round by round.

    Each callable is warmed up (states allocated), calibrated to a number of calls that
    lasts at least ``min_time`` seconds, then timed ``repeats`` times in round-robin.
    """
    numbers: Dict[str, int] = {}
    for name, fn in steps.items():
        fn()  # allocates lazy state
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-7)
        numbers[name] = max(1, int(math.ceil(min_time / once)))
    samples: Dict[str, List[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            n = numbers[name]
            # The previous competitor's idle worker threads spin for a while before they
            # sleep (OpenMP runtimes do, torch's among them); on few cores they would take
            # this sample's. They are given the time to go to sleep first.
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
    return {name: Timing(s) for name, s in samples.items()}


def paired_ratio(num: Timing, den: Timing) -> float:
    """The median over rounds of ``num``'s sample over ``den``'s sample of the same round.

    Samples of one round were taken a few tens of milliseconds apart (``time_steps``), so
    the machine's slow and fast phases, which last seconds, cancel in each quotient; the
    quotient of the two medians can pair a slow sample with a fast one.
    """
    if len(num.samples) != len(den.samples):
        raise ValueError(f"samples: {len(num.samples)} and {len(den.samples)} do not pair up")
    return float(np.median(np.divide(num.samples, den.samples)))


def paired_spread(num: Timing, den: Timing) -> float:
    """Half the inter-quartile range of the per-round quotients, over their median."""
    if len(num.samples) != len(den.samples):
        raise ValueError(f"samples: {len(num.samples)} and {len(den.samples)} do not pair up")
    q = np.divide(num.samples, den.samples)
    q25, q50, q75 = np.percentile(q, [25, 50, 75])
    return float((q75 - q25) / 2 / q50) if q50 > 0 else 0.0


def within_noise(ratio: float, spread: float) -> bool:
    """Whether a ratio's spread reaches its margin: ratio ± spread·ratio includes 1."""
    return spread * ratio >= abs(ratio - 1.0)


# ------------------------------------------------------------------------------ machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version_of(name: str) -> Optional[str]:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe_load(load: Optional[Sequence[float]], cpus: Optional[int]) -> str:
    """The load average in words: '0.42 / 0.66 / 0.20 (1 / 5 / 15 min) on 2 CPUs: quiet'."""
    if not load:
        return "load average unknown on this platform"
    cpus = cpus or 1
    text = (f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min) "
            f"on {cpus} logical CPU{'s' if cpus != 1 else ''}")
    if load[0] >= cpus:
        return (text + ": BUSY, other processes want more than every CPU; expect large "
                "spreads and ratios flagged '?' (rerun on a quiet machine)")
    if load[0] >= 0.5 * cpus:
        return text + ": busy, other processes compete for the CPUs; watch the spreads"
    return text + ": quiet"


def machine() -> Dict[str, Any]:
    """What the numbers were measured on."""
    torch = _torch_or_none()
    info: Dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "isa": _core.cpu_isa(),
        "detected_isa": _core.detected_isa(),
        "wide_in_cache_bytes": _core.wide_in_cache_bytes(),
        "threads": _core.get_num_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "optbowl": __version__,
        "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "jax": _version_of("jax"),
        "optax": _version_of("optax"),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average"] = list(os.getloadavg())
    return info


# ------------------------------------------------------------------------------ the run
def parse_size(text: str) -> int:
    """'1K' -> 1024, '16M' -> 16 * 2**20, '1000' -> 1000."""
    t = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    if scale != 1:
        t = t[:-1]
    try:
        value = int(t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"sizes: expected e.g. 1K, 16M or 1000, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"sizes: expected a positive size, got {text!r}")
    return value


def _size_name(n: int) -> str:
    for unit, scale in (("M", 1 << 20), ("K", 1 << 10)):
        if n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def workloads(kind: str, sizes: Sequence[int]) -> List[Tuple[str, List[Shape]]]:
    if kind == "resnet18":
        return [("resnet18", _workloads.resnet18())]
    return [(f"flat {_size_name(n)}", _workloads.flat(n)) for n in sizes]


def run_case(rule: BenchRule, label: str, shapes: List[Shape], dtype: Any, repeats: int,
             min_time: float, with_torch: bool = True, with_compile: bool = False,
             with_optax: bool = False) -> Dict[str, Any]:
    """Time one case; return its record (times, ratios and their spreads, compile times)."""
    case = build_case(rule, shapes, dtype, with_torch=with_torch, with_compile=with_compile,
                      with_optax=with_optax)
    timings = time_steps(case.steps, repeats=repeats, min_time=min_time)
    item = case.dtype.itemsize
    ours = timings["optbowl"].median
    peers = [k for k in timings if k not in ("optbowl", "floor")]
    record: Dict[str, Any] = {
        "workload": label,
        "tensors": len(case.shapes),
        "numel": case.numel,
        "dtype": case.dtype.name,
        "rule": rule.name,
        "bytes_per_element": rule.step_bytes(item),
        "floor_bytes_per_element": rule.floor_bytes(item),
        "timings": {k: v.as_dict() for k, v in timings.items()},
        "skipped": dict(case.skipped),
        "compile_s": dict(case.compile_s),
        "ms_per_step": ours * 1e3,
        "gb_per_s": rule.step_bytes(item) * case.numel / ours / 1e9,
        "x_floor": paired_ratio(timings["optbowl"], timings["floor"]),
        "x_floor_spread": paired_spread(timings["optbowl"], timings["floor"]),
        "speedup": {k: paired_ratio(timings[k], timings["optbowl"]) for k in peers},
        "speedup_spread": {k: paired_spread(timings[k], timings["optbowl"]) for k in peers},
    }
    return record


#: A ratio whose spread is above this (relative) is flagged noisy ('!').
NOISY = 0.25


def _flag(ratio: float, spread: float) -> str:
    if within_noise(ratio, spread):
        return "?"
    return "!" if spread > NOISY else " "


def _fmt_ratio(ratio: Optional[float], spread: Optional[float]) -> str:
    if ratio is None or spread is None:
        return f"{'--':>12}"
    digits = 2 if ratio < 10 else 1 if ratio < 100 else 0
    return f"{ratio:6.{digits}f}x±{min(spread * 100, 999):3.0f}%{_flag(ratio, spread)}"


def table(records: List[Dict[str, Any]]) -> str:
    cols = [c for c in PEERS if any(c in r["speedup"] for r in records)] or ["numpy"]
    names = [f"vs {c[6:]}" if c.startswith("torch-") else f"vs {c}" for c in cols]
    head = (f"{'workload':<12} {'dtype':<8} {'rule':<16} {'ms/step':>8} {'±':>4} {'GB/s':>6} "
            f"{'x floor':>12} " + " ".join(f"{n:>12}" for n in names))
    lines = [head, "-" * len(head)]
    flagged = {"?": 0, "!": 0}
    for r in records:
        noise = r["timings"]["optbowl"]["noise"] * 100
        cells = [_fmt_ratio(r["x_floor"], r["x_floor_spread"])]
        cells += [_fmt_ratio(r["speedup"].get(c), r["speedup_spread"].get(c)) for c in cols]
        for mark in flagged:
            flagged[mark] += sum(cell.endswith(mark) for cell in cells)
        lines.append(
            f"{r['workload']:<12} {r['dtype']:<8} {r['rule']:<16} {r['ms_per_step']:8.3f} "
            f"{min(noise, 999):3.0f}% {r['gb_per_s']:6.1f} " + " ".join(cells)
        )
    compiled = [(r, k, v) for r in records for k, v in r.get("compile_s", {}).items()]
    if compiled:
        lines.append("compile time (the first calls, apart from the step times above): "
                     + "; ".join(f"{r['rule']} {r['dtype']} {k} {v:.1f} s"
                                 for r, k, v in compiled))
    lines.append("vs X: X's time / optbowl's (above 1: optbowl is faster); x floor: optbowl / "
                 "the streaming kernel over the rule's float arrays (for /compact the "
                 "uncompacted floor it replaces); both the median over rounds of the two "
                 "samples of a round, ± half the IQR of those quotients over their median; "
                 "± after ms/step: half IQR / median of optbowl's samples")
    if flagged["?"]:
        lines.append(f"? ({flagged['?']} ratio(s)): the spread reaches the margin |ratio - 1|, "
                     "so this run cannot tell which side is faster there")
    if flagged["!"]:
        lines.append(f"! ({flagged['!']} ratio(s)): noisy, the spread is above "
                     f"{NOISY * 100:.0f}%; the machine was not quiet enough to trust the ratio")
    return "\n".join(lines)


def add_parser(sub) -> None:
    desc = (__doc__ or "").split("\n\n", 1)[1].replace("``", "")
    p = sub.add_parser("bench", help="time optimizer steps against the memory floor, NumPy, "
                                     "torch (eager, torch.compile) and optax",
                       description=desc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a representative subset in about a minute: "
                        f"{QUICK['workload']}, {' '.join(QUICK['dtype'])}, "
                        f"rules {' '.join(QUICK['rules'])}, {QUICK['repeats']} samples of "
                        f"{QUICK['min_time']} s (options given beside it win)")
    p.add_argument("--workload", choices=("resnet18", "flat"), default=None,
                   help="ResNet-18's 62 parameter shapes (default) or one flat tensor per --sizes")
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[1 << 20, 1 << 24, 1 << 26],
                   help="flat sizes, e.g. 1K 64K 1M 16M 64M (default 1M 16M 64M)")
    p.add_argument("--rules", nargs="+", default=None,
                   help=f"rules to time, or 'all' (default {' '.join(DEFAULT_RULES)}; "
                        f"known: {' '.join(RULES)})")
    p.add_argument("--dtype", nargs="+", choices=("float32", "float64", "bfloat16", "float16"),
                   default=None, help="dtypes (default float32; bfloat16 needs ml_dtypes)")
    p.add_argument("--repeats", type=integer(1), default=None,
                   help="samples per competitor (default 7)")
    p.add_argument("--min-time", type=number(0.0, 60.0, low_open=True), default=None,
                   help="seconds each sample lasts at least (default 0.02)")
    p.add_argument("--threads", type=integer(0), default=0,
                   help="threads (default: OMP_NUM_THREADS or all cores)")
    p.add_argument("--no-torch", action="store_true", help="do not time torch")
    p.add_argument("--no-compile", action="store_true",
                   help="do not time torch.compile (its compile takes tens of seconds per rule)")
    p.add_argument("--no-optax", action="store_true", help="do not time optax under jax.jit")
    p.add_argument("--json", metavar="FILE", help="write every sample and the machine to FILE")
    p.set_defaults(run=run)


def _resolve(args: argparse.Namespace) -> None:
    """Fill the options not given: --quick's subset, else the full defaults."""
    full = {"workload": "resnet18", "rules": list(DEFAULT_RULES), "dtype": ["float32"],
            "repeats": 7, "min_time": 0.02}
    defaults = QUICK if args.quick else full
    args.extra = []
    if args.quick and args.rules is None and args.dtype is None:
        args.extra = [(d, r) for d, r in QUICK_EXTRA
                      if d != "bfloat16" or _check.BFLOAT16 is not None]
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def run(args: argparse.Namespace) -> int:
    _resolve(args)
    names = list(RULES) if args.rules == ["all"] else args.rules
    unknown = [n for n in names if n not in RULES]
    if unknown:
        raise ValueError(f"--rules: unknown {' '.join(unknown)}; known: {' '.join(RULES)}")
    if args.threads:
        try:
            _core.set_num_threads(args.threads)
        except ValueError as error:
            raise ValueError(f"--threads: {error}") from None
    torch = None if args.no_torch else _torch_or_none()
    if torch is not None:
        torch.set_num_threads(_core.get_num_threads())
    with_optax = not args.no_optax
    info = machine()
    started = time.perf_counter()
    optax_text = (f"optax {info['optax']} (jax {info['jax']})" if info["optax"] and info["jax"]
                  else "optax not installed")
    print(f"optbowl {__version__} bench: {info['cpu']}, ISA {info['isa']}, "
          f"{info['threads']} thread(s); numpy {info['numpy']}, "
          f"torch {info['torch'] or 'not installed'}, {optax_text}", flush=True)
    print(f"before: {describe_load(info.get('load_average'), info['logical_cpus'])}", flush=True)
    # low-precision state is for float32 parameters: those rules skip other dtypes
    cases = [(w, d, n)
             for w in workloads(args.workload, args.sizes) for d in args.dtype for n in names
             if RULES[n].state_bits == 32 or d == "float32"]
    cases += [(w, d, n) for w in workloads(args.workload, args.sizes)
              for d, n in getattr(args, "extra", [])]
    records = []
    for i, ((label, shapes), dtype, name) in enumerate(cases, 1):
        r = run_case(RULES[name], label, shapes, dtype, args.repeats, args.min_time,
                     with_torch=torch is not None, with_compile=not args.no_compile,
                     with_optax=with_optax)
        records.append(r)
        others = "  ".join(f"{k} {v['median_s'] * 1e3:.3f}±{v['noise'] * 100:.0f}%"
                           for k, v in r["timings"].items() if k != "optbowl")
        compiled = "".join(f"  ({k} compiled in {v:.1f} s)" for k, v in r["compile_s"].items())
        print(f"[{i}/{len(cases)}] {label} {dtype} {name}: optbowl {r['ms_per_step']:.3f}"
              f"±{r['timings']['optbowl']['noise'] * 100:.0f}% ms/step "
              f"({r['x_floor']:.2f}x floor)  {others}{compiled}", flush=True)
    info_after = machine()
    print()
    print(table(records))
    print(f"after: {describe_load(info_after.get('load_average'), info['logical_cpus'])}; "
          f"the run took {time.perf_counter() - started:.0f} s")
    if args.json:
        command = None
        if sys.argv[1:2] == ["bench"]:
            command = "python -m optbowl bench " + " ".join(sys.argv[2:])
        with open(args.json, "w") as f:
            json.dump({"machine": info, "load_average_after": info_after.get("load_average"),
                       "command": command,
                       "repeats": args.repeats, "min_time_s": args.min_time, "results": records},
                      f, indent=1)
        print(f"wrote {args.json}")
    return 0
