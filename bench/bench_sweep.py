"""The bowl sweep: optbowl.sweep against a vectorised NumPy loop running the same sweep.

    python bench/bench_sweep.py [--rounds 5] [--threads N] [--json FILE]

Each case is a hyper-parameter grid on a quadratic bowl of n dimensions and condition
number 100 (eigenvalues evenly spaced in [1, 100], rotated), every configuration run from
the same start for the same number of steps, and the error ‖x − x*‖ measured after half of
the steps and at the end (what :class:`optbowl.SweepResult` reports).

The NumPy competitor is what one writes without optbowl: all configurations stacked into
one (configurations, n) array and stepped together, the gradient X Aᵀ − b by one matrix
product per step into a buffer made once (X @ A.T − b made anew took up to 3× as long),
and the update by the whole-array expressions of the rule modules (``numpy_rprop_step``,
``numpy_momentum_step``) with per-row hyper-parameters. optbowl runs momentum, a linear
method, in the bowl's eigenbasis (see :func:`optbowl.sweep`), where the gradient costs O(n)
per configuration instead of O(n²); so for momentum the NumPy loop is also timed on the
same rotated bowl, with the gradient X·diag(A) − b, and both speed-ups are reported.

Rounds are interleaved (NumPy, optbowl, NumPy, ...), each sample after a settling pause
(PAUSE_S: after a matrix product, OpenBLAS's idle threads spin for up to 2^28 cycles,
about 70 ms here, and would take a core from the next sample) and the mean of
back-to-back sweeps over at least MIN_SAMPLE_S (50 ms, so that the CPU is awake); the
medians are reported, and each speed-up is the median over rounds of the NumPy sample
over optbowl's sample of the same round (a slow phase of the machine cancels in it). The
script also checks that both computed the same errors (to 1e-9 relative for momentum;
Rprop's sign decisions can split where the two gradients differ by rounding, so for it
the share of configurations that agree to 1e-6 is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

import optbowl as ob
from optbowl.rprop import numpy_rprop_step
from optbowl.sgd import numpy_momentum_step
from optbowl.bench import SETTLE_S, Timing, paired_ratio

PAUSE_S = max(SETTLE_S, 0.3)
MIN_SAMPLE_S = 0.05


def bowl_of(n: int) -> ob.QuadraticBowl:
    return ob.QuadraticBowl.from_eigenvalues(np.linspace(1.0, 100.0, n), rotate=n > 1, seed=0)


def numpy_sweep(bowl, method, x0, steps, hyper):
    """The same sweep in vectorised NumPy: returns (error after steps // 2, error at the end)."""
    A, b, xstar = bowl.A, bowl.b, bowl.minimizer
    rows = next(iter(hyper.values())).size
    X = np.tile(np.asarray(x0, dtype=np.float64), (rows, 1))
    col = {k: v.reshape(-1, 1) for k, v in hyper.items()}
    if method == "momentum":
        buf = np.zeros_like(X)

        def update(G):
            return numpy_momentum_step(X, G, buf, col["lr"], col["momentum"])
    else:  # irprop-
        prev = np.zeros_like(X)
        size = np.broadcast_to(col["lr"], X.shape).copy()
        etas = (col["eta_minus"], col["eta_plus"])

        def update(G):
            return numpy_rprop_step(X, G, prev, size, etas=etas)
    err_mid = None
    AT, G = np.ascontiguousarray(A.T), np.empty_like(X)
    diagonal = np.diag(A) if bowl.is_axis_aligned else None
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps):
            if t == steps // 2:
                err_mid = np.linalg.norm(X - xstar, axis=1)
            if diagonal is None:
                np.matmul(X, AT, out=G)
            else:
                np.multiply(X, diagonal, out=G)
            G -= b
            update(G)
    return err_mid, np.linalg.norm(X - xstar, axis=1)


def optbowl_sweep(bowl, method, x0, steps, hyper):
    if method == "momentum":
        res = ob.sweep(bowl, "momentum", x0, steps, lr=hyper["lr"], momentum=hyper["momentum"])
    else:
        res = ob.sweep(bowl, "rprop", x0, steps, lr=hyper["lr"],
                       etas=(hyper["eta_minus"], hyper["eta_plus"]))
    return res


def grid(method: str, side: int, bowl) -> dict:
    if method == "momentum":  # Goh's plane: lr up to the stability edge, β in [0, 1)
        lr, beta = np.meshgrid(np.linspace(0.001, 2.0 / bowl.eigenvalues[-1], side),
                               np.linspace(0.0, 0.99, side))
        return {"lr": lr.ravel(), "momentum": beta.ravel()}
    lr, eta_plus = np.meshgrid(np.geomspace(1e-3, 1.0, side), np.linspace(1.05, 1.5, side))
    return {"lr": lr.ravel(), "eta_minus": np.full(lr.size, 0.5), "eta_plus": eta_plus.ravel()}


def run_case(method, n, side, steps, rounds):
    bowl = bowl_of(n)
    x0 = np.ones(n)
    hyper = grid(method, side, bowl)
    times = {"numpy": [], "optbowl": []}
    out = {}

    def sample(who, fn):
        # The other side's idle worker threads stop spinning first; then the sweep runs
        # back to back for at least MIN_SAMPLE_S, so that a CPU waking from the pause is
        # not what a short sweep measures.
        time.sleep(PAUSE_S)
        calls, t0 = 0, time.perf_counter()
        while True:
            out[who] = fn(bowl, method, x0, steps, hyper)
            calls += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= MIN_SAMPLE_S:
                break
        times[who].append(elapsed / calls)

    sides = {"numpy": numpy_sweep, "optbowl": optbowl_sweep}
    if method == "momentum":  # NumPy too in the eigenbasis, where optbowl runs it
        eig, Q = bowl.to_eigenbasis(), bowl.eigenvectors
        sides["numpy_eigenbasis"] = lambda _bowl, m, x, s, h: numpy_sweep(eig, m, Q.T @ x, s, h)
        times["numpy_eigenbasis"] = []
    for _ in range(rounds):
        for who, fn in sides.items():
            sample(who, fn)
    (_, end_np), res = out["numpy"], out["optbowl"]
    end_ob = np.asarray(res.final_error).ravel()
    finite = np.isfinite(end_np) & np.isfinite(end_ob)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(end_np - end_ob) / np.maximum(np.abs(end_np), 1e-300)
    tol = 1e-9 if method == "momentum" else 1e-6
    agree = float(np.mean(rel[finite] <= tol)) if finite.any() else 0.0
    med = {k: statistics.median(v) for k, v in times.items()}

    def speedup(numpy_side):
        return paired_ratio(Timing(times[numpy_side]), Timing(times["optbowl"]))

    r = {
        "method": method, "n": n, "configurations": side * side, "steps": steps,
        "numpy_ms": 1e3 * med["numpy"], "optbowl_ms": 1e3 * med["optbowl"],
        "speedup": speedup("numpy"), "agree": agree,
        "samples_ms": {k: [1e3 * t for t in v] for k, v in times.items()},
    }
    if "numpy_eigenbasis" in med:
        r["numpy_eigenbasis_ms"] = 1e3 * med["numpy_eigenbasis"]
        r["speedup_eigenbasis"] = speedup("numpy_eigenbasis")
    return r


CASES = [("momentum", 2, 64, 200), ("momentum", 10, 64, 200), ("momentum", 100, 32, 200),
         ("irprop-", 2, 64, 200), ("irprop-", 10, 64, 200), ("irprop-", 100, 32, 200)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None,
                    help="optbowl's threads (default: its own)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        ob.set_num_threads(args.threads)
    load0 = os.getloadavg()
    print(f"{'method':10} {'n':>4} {'configs':>7} {'steps':>5} {'numpy ms':>10} {'optbowl ms':>10} "
          f"{'speed-up':>8} {'agree':>6} {'numpy eigenbasis ms':>20} {'speed-up':>8}")
    results = []
    for method, n, side, steps in CASES:
        r = run_case(method, n, side, steps, args.rounds)
        results.append(r)
        eig = f"{'-':>20} {'-':>8}"
        if "speedup_eigenbasis" in r:
            eig = f"{r['numpy_eigenbasis_ms']:20.2f} {r['speedup_eigenbasis']:7.1f}x"
        print(f"{method:10} {n:4d} {r['configurations']:7d} {steps:5d} {r['numpy_ms']:10.2f} "
              f"{r['optbowl_ms']:10.2f} {r['speedup']:7.1f}x {r['agree']:6.0%} {eig}", flush=True)
    if args.json:
        machine = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                   "threads": ob.get_num_threads(), "isa": ob._core.cpu_isa(),
                   "numpy": np.__version__,
                   "optbowl": ob.__version__, "load": [list(load0), list(os.getloadavg())],
                   "pause_s": PAUSE_S, "min_sample_s": MIN_SAMPLE_S}
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
