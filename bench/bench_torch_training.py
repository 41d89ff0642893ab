"""A real CPU training step (forward, backward, step) of a small CNN: torch.optim vs optbowl.torch.

    python bench/bench_torch_training.py [--optimizer rprop|adam] [--dtype float32|bfloat16|float16]
                                         [--memory-format contiguous|channels_last]
                                         [--batch 32] [--steps 30] [--rounds 5] [--threads N]
                                         [--json FILE]

Every optimizer trains its own copy of the same model on the same batches; the rounds are
interleaved (torch's implementations, optbowl, then again) so that a change in machine load
hits all of them alike. Reported per optimizer: the median over all steps of the whole
training step and of ``opt.step()`` alone, in milliseconds, and the speed-up of the
optimizer step against torch's foreach implementation. The script also checks that all end
with bit-identical parameters (they implement the same rule). ``--dtype bfloat16`` trains
the model in bfloat16 (parameters, gradients, optimizer state); Adam is compared with
torch's fused=True, Rprop with its single-tensor and foreach loops. ``--memory-format
channels_last`` converts the model to channels_last (its convolution weights become
non-contiguous dense tensors): optbowl steps them only where its build takes every dense
layout; contiguous is the default.
"""  # noqa: E501  (line 1 is the argparse description: it stays whole)

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import optbowl
import optbowl.torch


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64 * 8 * 8, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )


OPTIMIZERS = {
    "rprop": {
        "torch.optim.Rprop(foreach=False)":
            lambda ps: torch.optim.Rprop(ps, lr=1e-3, foreach=False),
        "torch.optim.Rprop(foreach=True)": lambda ps: torch.optim.Rprop(ps, lr=1e-3, foreach=True),
        "optbowl.torch.Rprop": lambda ps: optbowl.torch.Rprop(ps, lr=1e-3),
    },
    "adam": {
        "torch.optim.Adam(foreach=True)": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
        "torch.optim.Adam(fused=True)": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
        "optbowl.torch.Adam": lambda ps: optbowl.torch.Adam(ps, lr=1e-3),
    },
}
#: The pairs that must end bit-identical (torch's foreach Adam rounds differently).
MUST_AGREE = {"rprop": list(OPTIMIZERS["rprop"]),
              "adam": ["torch.optim.Adam(fused=True)", "optbowl.torch.Adam"]}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch and optbowl threads")
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="rprop")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                        help="the model's dtype (parameters, gradients, state)")
    parser.add_argument("--memory-format", choices=sorted(FORMATS), default="contiguous",
                        dest="memory_format", help="the model's memory format")
    args = parser.parse_args()
    dtype, memory_format = DTYPES[args.dtype], FORMATS[args.memory_format]
    optimizers = OPTIMIZERS[args.optimizer]
    if args.threads:
        torch.set_num_threads(args.threads)
        optbowl.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(args.batch, 3, 32, 32, generator=gen).to(dtype=dtype,
                                                               memory_format=memory_format),
         torch.randint(0, 10, (args.batch,), generator=gen))
        for _ in range(8)
    ]
    runs = {}
    for name, make in optimizers.items():
        model = make_model().to(dtype=dtype, memory_format=memory_format)
        runs[name] = {"model": model, "opt": make(model.parameters()), "step": [], "train": [],
                      "t": 0}
    n_params = sum(p.numel() for p in make_model().parameters())

    for _ in range(args.rounds):
        for run in runs.values():
            model, opt = run["model"], run["opt"]
            for _ in range(args.steps):
                x, y = batches[run["t"] % len(batches)]
                run["t"] += 1
                start = time.perf_counter()
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                before_step = time.perf_counter()
                opt.step()
                end = time.perf_counter()
                run["step"].append(end - before_step)
                run["train"].append(end - start)

    params = [list(runs[name]["model"].parameters()) for name in MUST_AGREE[args.optimizer]]
    identical = all(torch.equal(a, b) for other in params[1:] for a, b in zip(params[0], other))
    foreach = next(name for name in optimizers if "foreach=True" in name)
    baseline = statistics.median(runs[foreach]["step"])
    results = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "optbowl": optbowl.__version__,
        "threads": {"torch": torch.get_num_threads(), "optbowl": optbowl.get_num_threads()},
        "parameters": n_params,
        "optimizer": args.optimizer,
        "dtype": args.dtype,
        "memory_format": args.memory_format,
        "batch": args.batch,
        "steps_timed": args.steps * args.rounds,
        "bit_identical": identical,
        "median_ms": {},
    }
    print(f"small CNN, {n_params:,} parameters, {args.dtype}, {args.memory_format}, "
          f"batch {args.batch}, {args.steps * args.rounds} steps each")
    print(f"{'optimizer':36s} {'train step ms':>13s} {'opt.step ms':>12s} "
          f"{'step speed-up vs foreach':>25s}")
    for name, run in runs.items():
        train, step = statistics.median(run["train"]) * 1e3, statistics.median(run["step"]) * 1e3
        results["median_ms"][name] = {"train_step": train, "optimizer_step": step}
        print(f"{name:36s} {train:13.3f} {step:12.3f} {baseline * 1e3 / step:24.2f}x")
    print(f"parameters bit-identical ({', '.join(MUST_AGREE[args.optimizer])}): {identical}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if not identical:
        raise SystemExit(f"the optimizers disagree: {', '.join(MUST_AGREE[args.optimizer])} "
                         "must end bit-identical")


if __name__ == "__main__":
    main()
