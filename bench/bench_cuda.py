"""GPU benchmark of the CUDA kernels against the device's copy kernel and torch, in one run.

Run where a CUDA GPU, optbowl's CUDA module and a CUDA build of torch exist::

    python bench/bench_cuda.py [--out-dir DIR] [--steps 20] [--repeat 5]

writes ``DIR/cuda-<device>.json`` (default DIR: bench/results). Workloads: one tensor of
1 M, 16 M and 100 M elements and ResNet-18's 62 parameter shapes (11.7 M elements), in
float32 and bfloat16; rules Rprop (irprop-) and AdaGrad by default (``--rules`` adds SGD
with momentum, RMSprop, Adam). Each case's working set is compared with the device's L2
(``fits_in_l2``: the 1 M case does; 16 M and up are over twice its size).

Timing: every figure is the GPU time of ``--steps`` steps queued back to back between two
CUDA events, divided by the steps, the median of ``--repeat`` such runs, so the host's
latency between calls is not what is measured. Per case:

* ``optbowl_step``: ``opt.step(grads)`` as a user calls it, queued (Python checks included:
  where they take longer than the kernel, this is host-bound);
* ``optbowl_kernel``: the same step captured in a CUDA graph and replayed, the kernel time
  alone (the kernel bandwidth); when capture fails, the kernel call replayed with prepared
  arguments, queued (``kernel_timing`` says which);
* ``torch_step``: torch.optim's CUDA step, queued: Rprop with ``foreach=True``, Adagrad
  with ``fused=True`` where torch has it on CUDA, else ``foreach=True`` (``torch_variant``);
* ``copy``: the device's copy kernel (``dst.copy_(src)``) over the bytes the step moves
  (read p, g and the state, write p and the state: Rprop 7 accesses per element, AdaGrad
  5), in a CUDA graph.

Derived: ``GB/s`` (bytes moved / time), ``copy_fraction`` (copy time / optbowl kernel time:
the fraction of the device's copy bandwidth the kernel reaches), ``step_copy_fraction``
(the same for the user-level step), ``speedup_vs_torch`` (torch step / optbowl step) and
the launch plan (launches, chunks, chunk length, blocks).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: rule -> (memory accesses per element, optbowl / torch.optim class, hyper-parameters,
#: the torch variants to try in order)
RULES = {
    "rprop": (7, "Rprop", {}, ({"foreach": True},)),
    "adagrad": (5, "Adagrad", {}, ({"fused": True}, {"foreach": True})),
    "sgd": (5, "SGD", {"lr": 1e-3, "momentum": 0.9}, ({"fused": True}, {"foreach": True})),
    "rmsprop": (5, "RMSprop", {}, ({"foreach": True},)),
    "adam": (7, "Adam", {}, ({"fused": True}, {"foreach": True})),
}
DTYPES = ("float32", "bfloat16")


def _workloads():
    shapes = json.loads((HERE / "resnet18_shapes.json").read_text())["shapes"]
    return {
        "1M": [(1 << 20,)],
        "16M": [(16 << 20,)],
        "100M": [(100_000_000,)],
        "resnet18": [tuple(s) for s in shapes],
    }


def _queued(fn, steps, repeat, torch):
    """Median GPU seconds per call of ``steps`` calls queued between two events."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3 / steps)
    return statistics.median(times)


def _graphed(fn, steps, torch):
    """``fn`` captured ``steps`` times in one CUDA graph (after a warm-up on a side stream)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(steps):
            fn()
    return graph


def _graph_time(fn, steps, repeat, torch):
    graph = _graphed(fn, steps, torch)
    return _queued(graph.replay, 1, repeat, torch) / steps


def _kernel_replay(opt, grads, rule):
    """The _cuda call of one step alone, replayed with the arguments of a real step."""
    from optbowl import _device

    module = _device._cuda
    kernel = getattr(module, rule)
    recorded = []

    class Recorder:
        def __getattr__(self, name):
            return getattr(module, name)

    def record(*args, **kwargs):
        recorded.append((args, kwargs))
        return kernel(*args, **kwargs)

    recorder = Recorder()
    setattr(recorder, rule, record)
    _device._cuda = recorder
    try:
        opt.step(grads)
    finally:
        _device._cuda = module
    ((args, kwargs),) = recorded
    return lambda: kernel(*args, **kwargs)


def bench(rule, shapes, dtype_name, steps, repeat, torch, ob, l2_bytes):
    from optbowl import _device

    accesses, cls_name, hp, torch_variants = RULES[rule]
    dtype = getattr(torch, dtype_name)
    n = sum(math.prod(s) for s in shapes)
    itemsize = torch.empty((), dtype=dtype).element_size()
    moved = accesses * itemsize * n
    working_set = (accesses + 1) // 2 * itemsize * n  # p, g and the state arrays
    gen = torch.Generator(device="cuda").manual_seed(0)

    def make():
        return [torch.randn(*s, device="cuda", generator=gen).to(dtype) for s in shapes]

    seconds, notes = {}, {}
    params, grads = make(), make()
    opt = getattr(ob, cls_name)(params, **hp)
    opt.step(grads)
    launch = list(_device.CudaBackend.last_launch)
    seconds["optbowl_step"] = _queued(lambda: opt.step(grads), steps, repeat, torch)
    try:
        seconds["optbowl_kernel"] = _graph_time(lambda: opt.step(grads), steps, repeat, torch)
        notes["kernel_timing"] = "cuda graph"
    except Exception as error:  # capture refused: the prepared call, queued
        notes["kernel_timing"] = f"queued kernel call (graph capture failed: {error})"[:200]
        seconds["optbowl_kernel"] = _queued(_kernel_replay(opt, grads, rule), steps, repeat,
                                            torch)

    tparams = [p.requires_grad_(True) for p in make()]
    for p, g in zip(tparams, grads):
        p.grad = g
    seconds["torch_step"] = None
    for kw in torch_variants:
        try:
            topt = getattr(torch.optim, cls_name)(tparams, **hp, **kw)
            topt.step()
        except (RuntimeError, TypeError, ValueError) as error:
            notes.setdefault("torch_refused", []).append(
                f"{kw}: {str(error).splitlines()[0][:120]}")
            continue
        notes["torch_variant"] = ", ".join(f"{k}={v}" for k, v in kw.items())
        seconds["torch_step"] = _queued(topt.step, steps, repeat, torch)
        break

    src = torch.empty(moved // 2, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    seconds["copy"] = _graph_time(lambda: dst.copy_(src), steps, repeat, torch)

    timed = {k: v for k, v in seconds.items() if v is not None}
    out = {
        "rule": rule,
        "dtype": dtype_name,
        "elements": n,
        "tensors": len(shapes),
        "bytes_moved": moved,
        "working_set_bytes": working_set,
        "fits_in_l2": working_set <= l2_bytes,
        "launch": dict(zip(("launches", "chunks", "chunk_elems", "blocks"), launch)),
        "seconds": seconds,
        "GB/s": {k: moved / v / 1e9 for k, v in timed.items()},
        "copy_fraction": seconds["copy"] / seconds["optbowl_kernel"],
        "step_copy_fraction": seconds["copy"] / seconds["optbowl_step"],
        "speedup_vs_torch": (seconds["torch_step"] / seconds["optbowl_step"]
                             if seconds["torch_step"] else None),
        **notes,
    }
    return out


def _device_info(torch, ob):
    from optbowl import _device

    props = torch.cuda.get_device_properties(0)
    driver = _device._cuda.driver_version()
    runtime = _device._cuda.runtime_version()
    return {
        "device": torch.cuda.get_device_name(0),
        "compute_capability": f"{props.major}.{props.minor}",
        "sm_count": props.multi_processor_count,
        "l2_bytes": int(getattr(props, "L2_cache_size", 0)),
        "memory_bytes": int(props.total_memory),
        "driver_cuda_version": f"{driver // 1000}.{driver % 1000 // 10}",
        "optbowl_cuda_runtime": f"{runtime // 1000}.{runtime % 1000 // 10}",
        "optbowl_cuda_architectures": getattr(_device._cuda, "architectures", None),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "optbowl": ob.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def _nvidia_driver():
    """The NVIDIA driver version (nvidia-smi), or None."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    r = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                       capture_output=True, text=True, timeout=60)
    return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE / "results")
    parser.add_argument("--steps", type=int, default=20, help="steps queued per timing")
    parser.add_argument("--repeat", type=int, default=5, help="timings per figure (median)")
    parser.add_argument("--workloads", nargs="*", default=None, choices=sorted(_workloads()))
    parser.add_argument("--rules", nargs="*", default=["rprop", "adagrad"], choices=sorted(RULES))
    parser.add_argument("--dtypes", nargs="*", default=list(DTYPES), choices=DTYPES)
    args = parser.parse_args(argv)

    import torch

    import optbowl as ob

    if not (ob.cuda.is_available() and torch.cuda.is_available()):
        print(f"no CUDA device: {ob.cuda.unavailable_reason() or 'torch has no CUDA'}",
              file=sys.stderr)
        return 2
    info = _device_info(torch, ob)
    info["nvidia_driver"] = _nvidia_driver()
    results = {**info, "steps_per_timing": args.steps, "repeat": args.repeat, "cases": {}}
    began = time.time()
    for wname, shapes in _workloads().items():
        if args.workloads and wname not in args.workloads:
            continue
        for dtype in args.dtypes:
            for rule in args.rules:
                r = bench(rule, shapes, dtype, args.steps, args.repeat, torch, ob,
                          info["l2_bytes"])
                results["cases"][f"{rule} {dtype} {wname}"] = r
                torch.cuda.empty_cache()
                s = r["seconds"]
                torch_ms = f"{s['torch_step'] * 1e3:8.3f}" if s["torch_step"] else "     n/a"
                print(
                    f"{rule:8s} {dtype:8s} {wname:9s} kernel {s['optbowl_kernel'] * 1e3:8.3f} ms "
                    f"({r['copy_fraction']:.2f} of copy)  step {s['optbowl_step'] * 1e3:8.3f} ms"
                    f"  torch {torch_ms} ms  copy {s['copy'] * 1e3:8.3f} ms",
                    flush=True,
                )
    results["seconds_total"] = time.time() - began
    slug = re.sub(r"[^A-Za-z0-9]+", "-", info["device"]).strip("-").lower()
    out = args.out_dir / f"cuda-{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
