"""optbowl.torch as the optimizer of torch's ZeroRedundancyOptimizer (state sharded over ranks).

Two processes (gloo, 127.0.0.1) train the same model on the same batch; each rank keeps
the optimizer state of its shard of the parameters, updates that shard with optbowl's
kernel and broadcasts it. The parameters, and the consolidated optimizer state, must equal
a one-process run bit for bit. The file is also the worker script:
``python test_torch_zero.py --rank R --world W --port P --out FILE``.
"""

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys

import pytest

STEPS = 12
TIMEOUT_S = 240  # per launch, for everything: interpreter start, rendezvous, training

# name -> (optimizer class path, keyword arguments)
OPTIMIZERS = {
    "optbowl-rprop": ("optbowl.torch.Rprop", {"lr": 0.01}),
    "torch-rprop": ("torch.optim.Rprop", {"lr": 0.01}),
    "optbowl-adagrad": ("optbowl.torch.Adagrad", {"lr": 0.05, "weight_decay": 1e-3}),
    "optbowl-adam": ("optbowl.torch.Adam", {"lr": 0.01, "weight_decay": 1e-3, "amsgrad": True}),
    "optbowl-sgd": ("optbowl.torch.SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
}


def _load(path):
    import importlib

    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def _train(rank, world, port):
    """Train one model per optimizer; return the final parameters and state per optimizer."""
    import torch
    import torch.distributed as dist
    from torch.distributed.optim import ZeroRedundancyOptimizer

    torch.set_num_threads(1)  # the same reduction order in every process
    if world > 1:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=TIMEOUT_S // 2),
        )
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(32, 1, 10, 10, generator=gen)
    y = torch.randint(0, 4, (32,), generator=gen)
    results = {}
    try:
        for name, (path, kwargs) in OPTIMIZERS.items():
            torch.manual_seed(0)
            model = torch.nn.Sequential(
                torch.nn.Conv2d(1, 6, 3),
                torch.nn.ReLU(),
                torch.nn.Flatten(),
                torch.nn.Linear(6 * 8 * 8, 32),
                torch.nn.Tanh(),
                torch.nn.Linear(32, 4),
            )
            cls = _load(path)
            if world > 1:
                opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=cls, **kwargs)
                local = opt.optim
                shard = sum(len(g["params"]) for g in local.param_groups)
            else:
                opt = local = cls(model.parameters(), **kwargs)
                shard = len(list(model.parameters()))
            for _ in range(STEPS):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            if world > 1:
                opt.consolidate_state_dict(to=0)
            state = opt.state_dict() if rank == 0 else None
            results[name] = {
                "local_class": f"{type(local).__module__}.{type(local).__name__}",
                "shard_size": shard,
                "params": [p.detach().clone() for p in model.parameters()],
                "state": state,
            }
    finally:
        if world > 1:
            dist.destroy_process_group()
    return results


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path):
    """Start rank 0, rank 1 and the single-process reference at once; wait with a deadline."""
    port = _free_port()
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "MASTER_ADDR": "127.0.0.1"}
    runs = {"rank0": (0, 2), "rank1": (1, 2), "single": (0, 1)}
    procs = {}
    try:
        for label, (rank, world) in runs.items():
            out = tmp_path / f"{label}.pt"
            log = open(tmp_path / f"{label}.log", "w")
            cmd = [sys.executable, __file__, "--rank", str(rank), "--world", str(world),
                   "--port", str(port), "--out", str(out)]
            procs[label] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                            log)
        for label, (proc, log) in procs.items():
            try:
                proc.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{label} did not finish within {TIMEOUT_S} s:\n{_logs(tmp_path)}")
            if proc.returncode != 0:
                pytest.fail(f"{label} exited with {proc.returncode}:\n{_logs(tmp_path)}")
    finally:
        for proc, log in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    return {label: tmp_path / f"{label}.pt" for label in runs}


def _logs(tmp_path):
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}"
                     for p in sorted(tmp_path.glob("*.log")))


def test_zero_redundancy_optimizer_matches_one_process(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("optbowl.torch")
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available")

    files = _launch(tmp_path)
    result = {label: torch.load(path, weights_only=False) for label, path in files.items()}
    for name, (path, _) in OPTIMIZERS.items():
        single = result["single"][name]
        ranks = [result["rank0"][name], result["rank1"][name]]
        # The state really is sharded: each rank's local optimizer holds part of the parameters.
        package, cls_name = path.split(".")[0], path.rsplit(".", 1)[1]
        for r in ranks:
            assert r["local_class"].split(".")[0] == package \
                and r["local_class"].endswith("." + cls_name)
        assert all(0 < r["shard_size"] < single["shard_size"] for r in ranks), name
        assert sum(r["shard_size"] for r in ranks) == single["shard_size"]
        for rank in ranks:
            for k, (a, b) in enumerate(zip(single["params"], rank["params"])):
                assert torch.equal(a, b), f"{name}: params[{k}] differ from the one-process run"
        # The consolidated, torch-format state equals the one-process optimizer's.
        full, consolidated = single["state"], ranks[0]["state"]
        assert full["state"].keys() == consolidated["state"].keys()
        for i, st in full["state"].items():
            assert st.keys() == consolidated["state"][i].keys()
            for key, value in st.items():
                assert torch.equal(value, consolidated["state"][i][key]), (name, i, key)


def _main():
    parser = argparse.ArgumentParser()
    for name in ("rank", "world", "port"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import torch

    results = _train(args.rank, args.world, args.port)
    torch.save(results, args.out)
    print(json.dumps({name: r["shard_size"] for name, r in results.items()}))


if __name__ == "__main__":
    _main()
