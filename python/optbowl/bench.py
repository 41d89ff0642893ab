"""``python -m optbowl bench``: optimizer steps timed against the memory floor, NumPy and torch.

An element-wise optimizer step is bandwidth-bound, so the yardstick is the *floor*: a
streaming kernel (``optbowl._core.stream_floor``) that reads and writes the same bytes
per element as the rule -- parameter, gradient and state arrays -- with the same
chunking, threads and instruction set. Every case times, in the same run and
interleaved round by round (so they share the machine's noise):

* ``optbowl``        the optimizer's ``step(grads)``, as a user calls it;
* ``floor``          the streaming kernel over the rule's float arrays;
* ``numpy``          the vectorised NumPy step of ``optbowl._numpy_baseline`` (where one exists);
* ``torch-single``, ``torch-foreach``, ``torch-fused``: ``torch.optim`` on tensors sharing
  the parameters' and gradients' memory (the paths torch has for the rule; skipped when
  torch is not installed), with torch's intra-op threads set to optbowl's thread count.

Two gradient sets alternate from step to step, so signs change as in training. Each
competitor runs ``repeats`` samples of enough steps to last ``--min-time``; the table
shows the median time per step and the noise (half the inter-quartile range over the
median, in %). Ratios pair the samples of one round: ``x floor`` is the median over
rounds of optbowl's sample over the floor's, so a slow phase of the machine that spans a
round cancels instead of landing on one side.

Rules form a registry (``RULES``): one ``register(BenchRule(...))`` line adds one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import (SGD, Adagrad, Adam, AdamW, QuickProp, RMSprop, Rprop, __version__, _core, _device,
               _numpy_baseline, _workloads)

Shape = Tuple[int, ...]
Step = Callable[[], None]

TORCH_PATHS = ("torch-single", "torch-foreach", "torch-fused")


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
    needs_loss : bool
        ``step`` needs ``loss=`` (iRprop+).
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

    def floor_bytes(self, itemsize: int) -> int:
        """Bytes per element the floor kernel moves."""
        return (2 * (1 + self.float_states) + 1) * itemsize

    def step_bytes(self, itemsize: int) -> int:
        """Bytes per element an optbowl step moves."""
        if self.compact:
            return (2 * self.float_states + 1) * itemsize + self.extra_bytes
        return self.floor_bytes(itemsize)


RULES: Dict[str, BenchRule] = {}


def register(rule: BenchRule) -> BenchRule:
    """Add a rule to the benchmark's registry (by name)."""
    RULES[rule.name] = rule
    return rule


def _numpy_rprop(params: List[np.ndarray]):
    states = [(np.zeros_like(p), np.full_like(p, 1e-2)) for p in params]

    def step(grads: List[np.ndarray]) -> None:
        for p, g, (prev, size) in zip(params, grads, states):
            _numpy_baseline.rprop_step(p, g, prev, size)

    return step


def _numpy_adagrad(params: List[np.ndarray]):
    sums = [np.zeros_like(p) for p in params]

    def step(grads: List[np.ndarray]) -> None:
        for p, g, s in zip(params, grads, sums):
            _numpy_baseline.adagrad_step(p, g, s, 1e-2)

    return step


def _numpy_momentum(params: List[np.ndarray]):
    bufs = [np.zeros_like(p) for p in params]

    def step(grads: List[np.ndarray]) -> None:
        for p, g, b in zip(params, grads, bufs):
            _numpy_baseline.momentum_step(p, g, b, 1e-2, 0.9)

    return step


def _torch_rule(cls_name: str, fused: bool, **hyper: Any):
    """torch.optim.<cls_name>(**hyper) on each path torch has (fused only where ``fused``)."""

    def make(torch, tensors, path):
        if path == "torch-fused":
            return getattr(torch.optim, cls_name)(tensors, fused=True, **hyper) if fused else None
        return getattr(torch.optim, cls_name)(tensors, foreach=path == "torch-foreach", **hyper)

    return make


def _rprop(variant: str, compact: bool = False):
    return lambda params: Rprop(params, lr=1e-2, variant=variant, compact_state=compact)


register(BenchRule("irprop-", "Rprop irprop- (torch.optim.Rprop)", 2, _rprop("irprop-"),
                   _numpy_rprop, _torch_rule("Rprop", fused=False, lr=1e-2)))
register(BenchRule("irprop-/compact", "Rprop irprop-, compact_state=True (int8 signs)", 2,
                   _rprop("irprop-", compact=True), compact=True, extra_bytes=2))
register(BenchRule("rprop-", "Rprop rprop-", 2, _rprop("rprop-")))
register(BenchRule("rprop+", "Rprop rprop+ (Riedmiller & Braun)", 3, _rprop("rprop+")))
register(BenchRule("irprop+", "Rprop irprop+ (Igel & Huesken)", 3, _rprop("irprop+"),
                   needs_loss=True))
register(BenchRule("backtrack", "Rprop backtrack", 2, _rprop("backtrack")))
register(BenchRule("adagrad", "AdaGrad (torch.optim.Adagrad)", 1,
                   lambda params: Adagrad(params, lr=1e-2), _numpy_adagrad,
                   _torch_rule("Adagrad", fused=True, lr=1e-2)))


def _family(name: str, description: str, float_states: int, cls: Any, hyper: Dict[str, Any],
            torch_fused: Optional[bool] = None, make_numpy: Any = None) -> None:
    """Register a rule of the family timed with ``cls(params, **hyper)`` and, unless
    ``torch_fused`` is None, torch's class of the same name and hyper-parameters."""
    torch_rule = None if torch_fused is None else _torch_rule(cls.__name__, torch_fused, **hyper)
    register(BenchRule(name, description, float_states, lambda params: cls(params, **hyper),
                       make_numpy, torch_rule))


_family("sgd", "SGD, plain (torch.optim.SGD)", 0, SGD, {"lr": 1e-2}, torch_fused=True)
_family("momentum", "SGD, momentum 0.9 (torch.optim.SGD)", 1, SGD, {"lr": 1e-2, "momentum": 0.9},
        torch_fused=True, make_numpy=_numpy_momentum)
_family("nesterov", "SGD, Nesterov momentum 0.9", 1, SGD,
        {"lr": 1e-2, "momentum": 0.9, "nesterov": True},
        torch_fused=True)
_family("quickprop", "QuickProp (Fahlman)", 2, QuickProp, {"lr": 1e-2})
_family("rmsprop", "RMSprop (torch.optim.RMSprop)", 1, RMSprop, {"lr": 1e-2}, torch_fused=False)
_family("rmsprop/centered", "RMSprop, centered, momentum 0.9", 3, RMSprop,
        {"lr": 1e-2, "centered": True, "momentum": 0.9}, torch_fused=False)
_family("adam", "Adam (torch.optim.Adam)", 2, Adam, {"lr": 1e-3}, torch_fused=True)
_family("amsgrad", "Adam, amsgrad", 3, Adam, {"lr": 1e-3, "amsgrad": True}, torch_fused=True)
_family("adamw", "AdamW (torch.optim.AdamW)", 2, AdamW, {"lr": 1e-3, "weight_decay": 1e-2},
        torch_fused=True)

DEFAULT_RULES = ("irprop-", "irprop-/compact", "adagrad")


# ------------------------------------------------------------------------------ cases
def _torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


@dataclass
class Case:
    """The arrays and the competitors' step callables of one (workload, dtype, rule)."""

    rule: BenchRule
    shapes: List[Shape]
    dtype: np.dtype
    steps: Dict[str, Step] = field(default_factory=dict)
    skipped: Dict[str, str] = field(default_factory=dict)

    @property
    def numel(self) -> int:
        return sum(math.prod(s) for s in self.shapes)


def build_case(rule: BenchRule, shapes: Sequence[Shape], dtype: Any, seed: int = 0,
               with_torch: bool = True) -> Case:
    """Allocate parameters and two gradient sets, and one step callable per competitor.

    All competitors update the same parameter arrays (torch through ``torch.from_numpy``)
    and read the same gradients; each keeps its own state.
    """
    dtype = np.dtype(dtype)
    case = Case(rule, [tuple(s) for s in shapes], dtype)
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in case.shapes]
    grad_sets = [[rng.standard_normal(s).astype(dtype) for s in case.shapes] for _ in range(2)]
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

    if rule.make_numpy is not None:
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
        tensors = [torch.from_numpy(p) for p in params]
        tgrads = [[torch.from_numpy(g) for g in gs] for gs in grad_sets]
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
    return case


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
             min_time: float, with_torch: bool = True) -> Dict[str, Any]:
    """Time one case; return its record (times, ratios)."""
    case = build_case(rule, shapes, dtype, with_torch=with_torch)
    timings = time_steps(case.steps, repeats=repeats, min_time=min_time)
    item = case.dtype.itemsize
    ours = timings["optbowl"].median
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
        "ms_per_step": ours * 1e3,
        "gb_per_s": rule.step_bytes(item) * case.numel / ours / 1e9,
        "x_floor": paired_ratio(timings["optbowl"], timings["floor"]),
        "speedup": {k: paired_ratio(timings[k], timings["optbowl"])
                    for k in timings if k not in ("optbowl", "floor")},
    }
    return record


def _fmt_speedup(record: Dict[str, Any], name: str) -> str:
    v = record["speedup"].get(name)
    return f"{v:7.2f}x" if v is not None else "      --"


def table(records: List[Dict[str, Any]]) -> str:
    cols = ["numpy", *TORCH_PATHS]
    names = [f"vs {c[6:]}" if c.startswith("torch") else "vs numpy" for c in cols]
    head = (f"{'workload':<12} {'dtype':<8} {'rule':<16} {'ms/step':>9} {'noise':>6} {'GB/s':>6} "
            f"{'floor ms':>9} {'x floor':>8} " + " ".join(f"{n:>8}" for n in names))
    lines = [head, "-" * len(head)]
    for r in records:
        t = r["timings"]
        noise, floor_ms = t["optbowl"]["noise"] * 100, t["floor"]["median_s"] * 1e3
        lines.append(
            f"{r['workload']:<12} {r['dtype']:<8} {r['rule']:<16} {r['ms_per_step']:9.3f} "
            f"{noise:5.1f}% {r['gb_per_s']:6.1f} {floor_ms:9.3f} "
            f"{r['x_floor']:7.3f}x " + " ".join(_fmt_speedup(r, c) for c in cols)
        )
    lines.append("vs X: X's time / optbowl's (above 1: optbowl is faster); noise: half IQR / "
                 "median of optbowl's samples; x floor: optbowl / the streaming kernel over the "
                 "rule's float arrays (for /compact the uncompacted floor it replaces); both "
                 "ratios: median over rounds of the two samples of a round")
    return "\n".join(lines)


def add_parser(sub) -> None:
    p = sub.add_parser("bench",
                       help="time optimizer steps against the memory floor, NumPy and torch")
    p.add_argument("--workload", choices=("resnet18", "flat"), default="resnet18",
                   help="ResNet-18's 62 parameter shapes (default) or one flat tensor per --sizes")
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[1 << 20, 1 << 24, 1 << 26],
                   help="flat sizes, e.g. 1K 64K 1M 16M 64M (default 1M 16M 64M)")
    p.add_argument("--rules", nargs="+", default=list(DEFAULT_RULES),
                   help=f"rules to time, or 'all' (default {' '.join(DEFAULT_RULES)}; "
                        f"known: {' '.join(RULES)})")
    p.add_argument("--dtype", nargs="+", choices=("float32", "float64"), default=["float32"])
    p.add_argument("--repeats", type=int, default=7, help="samples per competitor (default 7)")
    p.add_argument("--min-time", type=float, default=0.02,
                   help="seconds each sample lasts at least (default 0.02)")
    p.add_argument("--threads", type=int, default=0,
                   help="threads (default: OMP_NUM_THREADS or all cores)")
    p.add_argument("--no-torch", action="store_true", help="do not time torch")
    p.add_argument("--json", metavar="FILE", help="write every sample and the machine to FILE")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    names = list(RULES) if args.rules == ["all"] else args.rules
    unknown = [n for n in names if n not in RULES]
    if unknown:
        print(f"rules: unknown {unknown}; known: {list(RULES)}", file=sys.stderr)
        return 2
    if args.repeats < 1:
        print("repeats: must be >= 1", file=sys.stderr)
        return 2
    if args.threads:
        _core.set_num_threads(args.threads)
    torch = None if args.no_torch else _torch_or_none()
    if torch is not None:
        torch.set_num_threads(_core.get_num_threads())
    info = machine()
    print(f"optbowl {__version__} bench: {info['cpu']}, {info['logical_cpus']} logical CPUs, "
          f"ISA {info['isa']}, {info['threads']} thread(s); numpy {info['numpy']}, "
          f"torch {info['torch'] or 'not installed'}; load {info.get('load_average', '?')}",
          flush=True)
    cases = [(w, d, n)
             for w in workloads(args.workload, args.sizes) for d in args.dtype for n in names]
    records = []
    for i, ((label, shapes), dtype, name) in enumerate(cases, 1):
        r = run_case(RULES[name], label, shapes, dtype, args.repeats, args.min_time,
                     with_torch=torch is not None)
        records.append(r)
        others = "  ".join(f"{k} {v['median_s'] * 1e3:.3f}" for k, v in r["timings"].items()
                           if k != "optbowl")
        print(f"[{i}/{len(cases)}] {label} {dtype} {name}: optbowl {r['ms_per_step']:.3f} ms/step "
              f"({r['x_floor']:.2f}x floor)  {others}", flush=True)
    print()
    print(table(records))
    if args.json:
        info_after = machine()
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
