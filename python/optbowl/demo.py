"""``python -m optbowl demo``: every optimizer of optbowl on a 1-million-parameter bowl.

The bowl is f(x) = ½ Σ λᵢ xᵢ² with λ log-spaced over [1, κ]: an ill-conditioned quadratic
whose gradient λ∘x NumPy computes. Each phase runs one optimizer from the same start,
timing only its step, and the NumPy phases time what a user would write without optbowl
on the same arrays, in the same run. Gradient descent and heavy-ball momentum run at the
hyper-parameters the bowl theory calls optimal (``QuadraticBowl.optimal``), and their
measured contraction per step is printed beside the predicted rate.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from . import (
    SGD,
    Adagrad,
    Adam,
    QuadraticBowl,
    QuickProp,
    RMSprop,
    Rprop,
    __version__,
    _numpy_baseline,
    get_num_threads,
)


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="minimise a 1M-parameter ill-conditioned bowl with every "
                                    "optimizer, timed against NumPy")
    p.add_argument("--size", type=int, default=1_000_000,
                   help="number of parameters (default 1,000,000)")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps per phase (default 200)")
    p.add_argument("--condition", type=float, default=1e4,
                   help="condition number κ of the bowl (default 1e4)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.set_defaults(run=run)


def _bowl(n: int, kappa: float, dtype) -> Tuple[np.ndarray, np.ndarray]:
    lam = np.logspace(0.0, np.log10(kappa), n).astype(dtype)
    x0 = np.ones(n, dtype)
    return lam, x0


def _loss(lam: np.ndarray, x: np.ndarray) -> float:
    return 0.5 * float(np.dot(lam.astype(np.float64), np.square(x, dtype=np.float64)))


def _norm(x: np.ndarray) -> float:
    return float(np.linalg.norm(x.astype(np.float64)))


def _phase(lam, x0, steps, make_step: Callable[[np.ndarray], Callable[[np.ndarray], None]]):
    """Run `steps` updates from x0; return (final loss, seconds per step (step timing only),
    measured contraction of ‖x − x*‖ per step over the second half of the run)."""
    x = x0.copy()
    step = make_step(x)
    g = np.empty_like(x)
    spent = 0.0
    mid = steps // 2
    err_mid = _norm(x) if mid == 0 else 0.0
    for k in range(steps):
        np.multiply(lam, x, out=g)
        t0 = time.perf_counter()
        step(g)
        spent += time.perf_counter() - t0
        if k + 1 == mid:
            err_mid = _norm(x)
    contraction = (_norm(x) / err_mid) ** (1.0 / (steps - mid)) if err_mid > 0 else 0.0
    return _loss(lam, x), spent / steps, contraction


def run(args: argparse.Namespace) -> int:
    dtype = np.dtype(args.dtype)
    lam, x0 = _bowl(args.size, args.condition, dtype)
    start = _loss(lam, x0)
    print(
        f"optbowl {__version__} demo: f(x) = ½ Σ λᵢ xᵢ², {args.size:,} {dtype.name} parameters, "
        f"λ log-spaced over [1, {args.condition:g}] (κ = {args.condition:g}), "
        f"{get_num_threads()} thread(s); loss at the start {start:.4g}"
    )
    lr = 0.1
    rows: List[Tuple[str, float, float]] = []

    def report(name: str, loss: float, sec: float, numpy_sec: float = 0.0) -> None:
        extra = (f"   NumPy {numpy_sec * 1e3:8.3f} ms/step   speed-up {numpy_sec / sec:5.1f}x"
                 if numpy_sec else "")
        print(f"  {name:<22} {args.steps} steps   loss {loss:10.4g}   "
              f"optbowl {sec * 1e3:7.3f} ms/step{extra}", flush=True)
        rows.append((name, loss, sec))

    for variant in ("irprop-", "rprop-", "rprop+", "irprop+", "backtrack"):
        if variant == "irprop+":
            # iRprop+ needs the loss of the current point at every step.
            def make(x, variant=variant):
                opt = Rprop(x, lr=lr, variant=variant)
                return lambda g: opt.step(g, loss=0.5 * float(np.dot(g, x)))
        else:
            def make(x, variant=variant):
                return Rprop(x, lr=lr, variant=variant).step

        loss, sec, _ = _phase(lam, x0, args.steps, make)
        numpy_sec = 0.0
        if variant == "irprop-":
            def make_np(x):
                prev, step = np.zeros_like(x), np.full_like(x, lr)
                return lambda g: _numpy_baseline.rprop_step(x, g, prev, step)

            np_loss, numpy_sec, _ = _phase(lam, x0, args.steps, make_np)
            if not np.isclose(np_loss, loss, rtol=1e-3):
                raise RuntimeError(f"NumPy Rprop ended at loss {np_loss}, optbowl at {loss}")
        report(f"Rprop {variant}", loss, sec, numpy_sec)

    ada_lr = 0.5
    loss, sec, _ = _phase(lam, x0, args.steps, lambda x: Adagrad(x, lr=ada_lr).step)

    def make_np_ada(x):
        state_sum = np.zeros_like(x)
        return lambda g: _numpy_baseline.adagrad_step(x, g, state_sum, ada_lr)

    np_loss, numpy_sec, _ = _phase(lam, x0, args.steps, make_np_ada)
    if not np.isclose(np_loss, loss, rtol=1e-3):
        raise RuntimeError(f"NumPy AdaGrad ended at loss {np_loss}, optbowl at {loss}")
    report("AdaGrad", loss, sec, numpy_sec)

    # The theory's optimal hyper-parameters depend only on the extreme eigenvalues.
    theory = QuadraticBowl.from_eigenvalues([float(lam.min()), float(lam.max())])
    measured = {}
    gd = theory.optimal("gd")
    loss, sec, measured["gd"] = _phase(lam, x0, args.steps, lambda x: SGD(x, lr=gd["lr"]).step)
    report(f"SGD lr={gd['lr']:.3g}", loss, sec)
    hb = theory.optimal("momentum")
    hb_kw: Dict[str, Any] = {"lr": hb["lr"], "momentum": hb["momentum"]}
    loss, sec, measured["momentum"] = _phase(lam, x0, args.steps, lambda x: SGD(x, **hb_kw).step)

    def make_np_hb(x):
        buf = np.zeros_like(x)
        return lambda g: _numpy_baseline.momentum_step(x, g, buf, **hb_kw)

    np_loss, numpy_sec, _ = _phase(lam, x0, args.steps, make_np_hb)
    if not np.isclose(np_loss, loss, rtol=1e-3):
        raise RuntimeError(f"NumPy momentum ended at loss {np_loss}, optbowl at {loss}")
    report(f"SGD momentum={hb['momentum']:.3g}", loss, sec, numpy_sec)
    nag = theory.optimal("nesterov")
    nag_kw: Dict[str, Any] = {"lr": nag["lr"], "momentum": nag["momentum"], "nesterov": True}
    loss, sec, measured["nesterov"] = _phase(lam, x0, args.steps, lambda x: SGD(x, **nag_kw).step)
    report(f"SGD Nesterov={nag['momentum']:.3g}", loss, sec)
    for name, make_opt in (
        ("RMSprop", lambda x: RMSprop(x, lr=1e-2).step),
        ("Adam", lambda x: Adam(x, lr=1e-1).step),
        ("QuickProp", lambda x: QuickProp(x, lr=1.0 / float(lam.max())).step),
    ):
        loss, sec, _ = _phase(lam, x0, args.steps, make_opt)
        report(name, loss, sec)

    print(
        "bowl theory vs the kernels, contraction of ‖x − x*‖ per step (asymptotic rate "
        "predicted; measured over the second half of the run):"
    )
    for method, hp in (("gd", gd), ("momentum", hb), ("nesterov", nag)):
        print(f"  {method:<9} predicted {hp['rate']:.6f}   measured {measured[method]:.6f}")

    best = min(rows, key=lambda r: r[1])
    print(f"lowest loss: {best[0]} ({best[1]:.4g}, from {start:.4g})")
    return 0
