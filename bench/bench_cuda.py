"""GPU benchmark of the CUDA kernels against torch and a device copy over the same bytes.

Run where a CUDA GPU, optbowl's CUDA module and a CUDA build of torch exist::

    python bench/bench_cuda.py [--out bench/results/cuda_<device>.json] [--repeat 50]

Workloads: one float32 tensor of 1 M, 16 M and 100 M elements, and ResNet-18's 62 parameter
shapes (11.7 M elements). For each, per-step time (CUDA events, steady state, median of
--repeat steps) of

* ``optbowl``: ``opt.step(grads)`` as a user calls it (Python checks included);
* ``optbowl kernel``: the ``_cuda`` call alone with prepared pointer lists;
* ``torch single`` / ``torch foreach`` / ``torch fused`` (where torch has it);
* ``copy``: ``dst.copy_(src)`` over the same bytes the rule moves per element (Rprop 28 B:
  read p, g, prev, step, write p, prev, step; AdaGrad, SGD with momentum and RMSprop 20 B;
  Adam 28 B), the bandwidth ceiling.

Rules: Rprop (irprop-), AdaGrad, SGD (momentum 0.9), RMSprop and Adam, with torch's defaults
otherwise; ``--rules`` picks some.

Bandwidth is bytes moved / time; "vs copy" is the copy's time over ours (1.0 = copy speed).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: rule -> (bytes per float32 element, optbowl / torch.optim class name, hyper-parameters)
RULES = {
    "rprop": (28, "Rprop", {}),
    "adagrad": (20, "Adagrad", {}),
    "sgd": (20, "SGD", {"lr": 1e-3, "momentum": 0.9}),
    "rmsprop": (20, "RMSprop", {}),
    "adam": (28, "Adam", {}),
}


def _time(fn, repeat, torch):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3)
    return statistics.median(times)


def _workloads():
    shapes = json.loads((HERE / "resnet18_shapes.json").read_text())["shapes"]
    return {
        "1M": [(1 << 20,)],
        "16M": [(16 << 20,)],
        "100M": [(100_000_000,)],
        "resnet18": [tuple(s) for s in shapes],
    }


def _optbowl_kernel_call(opt, grads, rule):
    """The _cuda call of one step alone: recorded from a real step, then replayed with the
    same prepared arguments (what the kernel costs without optbowl's Python checks)."""
    from optbowl import _device

    module = _device._cuda
    kernel = getattr(module, rule)
    recorded = []

    class Recorder:
        def __getattr__(self, name):
            return getattr(module, name)

    def record(*args):
        recorded.append(args)
        return kernel(*args)

    recorder = Recorder()
    setattr(recorder, rule, record)
    _device._cuda = recorder
    try:
        opt.step(grads)
    finally:
        _device._cuda = module
    (args,) = recorded
    return lambda: kernel(*args)


def bench(rule, shapes, repeat, torch, ob):
    n = sum(math.prod(s) for s in shapes)
    nbytes, cls_name, hp = RULES[rule]
    moved = nbytes * n
    gen = torch.Generator(device="cuda").manual_seed(0)

    def make():
        return [torch.randn(*s, device="cuda", generator=gen) for s in shapes]

    rows = {}
    params, grads = make(), make()
    opt = getattr(ob, cls_name)(params, **hp)
    opt.step(grads)
    rows["optbowl"] = _time(lambda: opt.step(grads), repeat, torch)
    rows["optbowl kernel"] = _time(_optbowl_kernel_call(opt, grads, rule), repeat, torch)

    tparams = [p.requires_grad_(True) for p in make()]
    for p, g in zip(tparams, grads):
        p.grad = g
    variants = {
        "torch single": dict(foreach=False),
        "torch foreach": dict(foreach=True),
        "torch fused": dict(fused=True),
    }
    for name, kw in variants.items():
        try:
            topt = getattr(torch.optim, cls_name)(tparams, **hp, **kw)
            topt.step()
        except (RuntimeError, TypeError, ValueError) as error:  # no fused kernel for this rule
            rows[name] = None
            rows[name + " (why not)"] = str(error).splitlines()[0][:120]
            continue
        rows[name] = _time(topt.step, repeat, torch)

    half = moved // 2
    src = torch.empty(half, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    rows["copy"] = _time(lambda: dst.copy_(src), repeat, torch)

    out = {"elements": n, "tensors": len(shapes), "bytes_moved": moved, "seconds": rows}
    out["GB/s"] = {k: moved / v / 1e9 for k, v in rows.items() if isinstance(v, float)}
    out["vs copy"] = {k: rows["copy"] / v for k, v in rows.items() if isinstance(v, float)}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--workloads", nargs="*", default=None)
    parser.add_argument("--rules", nargs="*", default=None, choices=sorted(RULES))
    args = parser.parse_args(argv)

    import torch

    import optbowl as ob

    if not (ob.cuda.is_available() and torch.cuda.is_available()):
        print(
            f"no CUDA device: {ob.cuda.unavailable_reason() or 'torch has no CUDA'}",
            file=sys.stderr,
        )
        return 2
    name = torch.cuda.get_device_name()
    results = {
        "device": name,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "optbowl": ob.__version__,
        "repeat": args.repeat,
        "runs": {},
    }
    for wname, shapes in _workloads().items():
        if args.workloads and wname not in args.workloads:
            continue
        for rule in args.rules or RULES:
            r = bench(rule, shapes, args.repeat, torch, ob)
            torch.cuda.empty_cache()
            results["runs"][f"{rule} {wname}"] = r
            cells = "  ".join(
                f"{k} {v * 1e3:.3f} ms ({r['vs copy'][k]:.2f})"
                for k, v in r["seconds"].items()
                if isinstance(v, float)
            )
            print(f"{rule:8s} {wname:9s} {cells}", flush=True)
    out = args.out or HERE / "results" / f"cuda_{name.replace(' ', '_')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
