"""``python -m optbowl demo``: every optimizer of optbowl on a 1-million-parameter bowl.

The bowl is f(x) = ½ Σ λᵢ xᵢ² with λ taking up to 1,000 log-spaced levels over [1, κ], each
on an equal share of the coordinates: an ill-conditioned quadratic whose gradient λ∘x NumPy
computes. Each phase runs one optimizer from x₀ = 1, timing only its step, and the NumPy
phases time what a user would write without optbowl on the same arrays, in the same run.

Gradient descent, heavy-ball momentum and Nesterov run at the hyper-parameters the bowl
theory calls optimal (``QuadraticBowl.optimal``: those that minimise the worst-case
asymptotic rate ρ = maxᵢ ρ(λᵢ), not the loss after a given number of steps). The theory's
exact trajectory (``QuadraticBowl.predict`` on the bowl of the levels, each weighted by its
share) predicts the error ‖xₖ − x*‖ of the million-parameter run; the demo prints the
predicted and the measured contraction per step over the same window (they agree within
1e-6) beside ρ, which the contraction reaches only as k → ∞.
"""

from __future__ import annotations

import argparse
import importlib
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from . import QuadraticBowl, __version__, _check, _registry, get_num_threads
from ._cli_args import integer, number
from .bowl import measured_rate

#: At most this many distinct eigenvalues: the prediction's bowl is this size.
LEVELS = 1000


def add_parser(sub) -> None:
    desc = __doc__.split("\n\n", 1)[1].replace("``", "") if __doc__ else None
    p = sub.add_parser(
        "demo", help="minimise a 1M-parameter ill-conditioned bowl with every optimizer, timed "
                     "against NumPy, the bowl theory's predictions beside the measured",
        description=desc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=integer(2), default=1_000_000,
                   help="number of parameters (default 1,000,000)")
    p.add_argument("--steps", type=integer(2, 10_000), default=200,
                   help="optimizer steps per phase, in [2, 10000] (default 200)")
    p.add_argument("--condition", type=number(1.0, 1e12), default=1e4,
                   help="condition number κ of the bowl, in [1, 1e12] (default 1e4)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.set_defaults(run=run)


def _bowl(n: int, kappa: float, dtype) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(λ per coordinate, x₀, the distinct levels (float64), how many coordinates each has)."""
    m = min(n, LEVELS)
    levels = np.logspace(0.0, np.log10(kappa), m).astype(dtype)
    bounds = np.arange(m + 1) * n // m
    counts = np.diff(bounds)
    lam = np.repeat(levels, counts)
    return lam, np.ones(n, dtype), levels.astype(np.float64), counts


def _loss(lam: np.ndarray, x: np.ndarray) -> float:
    return 0.5 * float(np.dot(lam.astype(np.float64), np.square(x, dtype=np.float64)))


def _norm(x: np.ndarray) -> float:
    return float(np.linalg.norm(x.astype(np.float64)))


def _maker(cls: Any, hyper: Dict[str, Any], needs_loss: bool) -> Callable[[np.ndarray], Any]:
    """``x -> step(g)`` of ``cls(x, **hyper)``; with the loss of the current point where
    the step needs it."""
    def make(x: np.ndarray) -> Callable[[np.ndarray], None]:
        opt = cls(x, **hyper)
        if needs_loss:
            return lambda g: opt.step(g, loss=0.5 * float(np.dot(g, x)))
        return opt.step

    return make


def _numpy_maker(numpy: Any, hyper: Dict[str, Any]) -> Callable[[np.ndarray], Any]:
    """``x -> step(g)`` of a NumPy competitor made for the one array x."""
    def make(x: np.ndarray) -> Callable[[np.ndarray], None]:
        step = numpy([x], hyper)
        return lambda g: step([g])

    return make


def _phase(lam, x0, steps, make_step: Callable[[np.ndarray], Callable[[np.ndarray], None]],
           dtype: Any = None):
    """Run `steps` updates from x0 (as ``dtype``, else x0's); return (final loss, seconds
    per step (step timing only), the error ‖x − x*‖ = ‖x‖ at steps 0, steps // 2 and
    steps)."""
    x = x0.copy() if dtype is None else x0.astype(dtype)
    step = make_step(x)
    g = np.empty_like(x)
    spent = 0.0
    mid = steps // 2
    errors = {0: _norm(x)}
    for k in range(steps):
        np.multiply(lam, x, out=g, casting="unsafe")
        t0 = time.perf_counter()
        step(g)
        spent += time.perf_counter() - t0
        if k + 1 in (mid, steps):
            errors[k + 1] = _norm(x)
    return _loss(lam, x), spent / steps, errors


def run(args: argparse.Namespace) -> int:
    dtype = np.dtype(args.dtype)
    lam, x0, levels, counts = _bowl(args.size, args.condition, dtype)
    start = _loss(lam, x0)
    share = (f"each on {counts[0]:,} coordinates" if counts.min() == counts.max()
             else f"each on {counts.min():,}-{counts.max():,} coordinates")
    print(
        f"optbowl {__version__} demo: f(x) = ½ Σ λᵢ xᵢ², {args.size:,} {dtype.name} parameters, "
        f"λ: {levels.size:,} log-spaced levels over [1, {args.condition:g}] {share} "
        f"(κ = {args.condition:g}), {get_num_threads()} thread(s); from x₀ = 1, "
        f"loss at the start {start:.4g}"
    )
    package = importlib.import_module(__package__)
    rows: List[Tuple[str, float, float]] = []

    def report(name: str, loss: float, sec: float, numpy_sec: float = 0.0) -> None:
        extra = (f"   NumPy {numpy_sec * 1e3:8.3f} ms/step   speed-up {numpy_sec / sec:5.1f}x"
                 if numpy_sec else "")
        print(f"  {name:<22} {args.steps} steps   loss {loss:10.4g}   "
              f"optbowl {sec * 1e3:7.3f} ms/step{extra}", flush=True)
        rows.append((name, loss, sec))

    # The theory's bowl: one eigenvalue per level, the start error of a level the norm of
    # its coordinates' (√count), so its ‖eₖ‖ is the million-parameter run's.
    theory = QuadraticBowl.from_eigenvalues(levels.tolist())
    theory_x0 = np.sqrt(counts.astype(np.float64))
    measured: Dict[str, Dict[int, float]] = {}
    optimal: Dict[str, Dict[str, float]] = {}
    phases = [(rule, phase) for rule in _registry.rules() for phase in rule.demo]
    for rule, phase in [p for p in phases if not p[1].bfloat16] + [
            p for p in phases if p[1].bfloat16 and _check.BFLOAT16 is not None]:
        # A bfloat16 phase: parameters, gradients and state in 16 bits, float32 arithmetic
        # (as torch steps them); the loss is computed in float64 all the same.
        cls = getattr(package, phase.cls or rule.cls)
        hyper: Dict[str, Any] = dict(phase.hyper)
        if phase.theory:
            optimal[phase.theory] = theory.optimal(phase.theory)
            hyper.update({k: v for k, v in optimal[phase.theory].items() if k != "rate"})
        if phase.curvature_lr:
            hyper["lr"] = 1.0 / float(lam.max())
        loss, sec, errors = _phase(lam, x0, args.steps, _maker(cls, hyper, phase.needs_loss),
                                   dtype=_check.BFLOAT16 if phase.bfloat16 else None)
        if phase.theory:
            measured[phase.theory] = errors
        numpy_sec = 0.0
        label = phase.label.format(**hyper)
        if phase.numpy is not None:
            np_loss, numpy_sec, _ = _phase(lam, x0, args.steps, _numpy_maker(phase.numpy, hyper))
            if not np.isclose(np_loss, loss, rtol=1e-3):
                raise RuntimeError(f"NumPy {label} ended at loss {np_loss}, optbowl at {loss}")
        report(label, loss, sec, numpy_sec)

    mid, end = args.steps // 2, args.steps
    print(
        f"bowl theory vs the kernels: contraction of ‖x − x*‖ per step over steps {mid}→{end}, "
        f"predicted (QuadraticBowl.predict, hyper-parameters rounded to {dtype.name} as the "
        f"kernels round them) and measured (the runs above); ρ = the asymptotic rate it tends "
        f"to as k → ∞"
    )
    print(f"  {'method':<9} {'lr':>10} {'momentum':>9} {'predicted':>10} {'measured':>10} "
          f"{'|diff|':>8} {'ρ':>10}   ‖e_{end}‖/‖e_0‖ predicted, measured")
    for method, hp in optimal.items():
        # The hyper-parameters as the kernels use them: rounded to the parameters' dtype.
        hyper = {k: float(dtype.type(v)) for k, v in hp.items() if k != "rate"}
        err = theory.predict(method, theory_x0, end, **hyper).error
        predicted = float(measured_rate(err[mid], err[end], end - mid))
        m = measured[method]
        got = float(measured_rate(m[mid], m[end], end - mid))
        beta = f"{hp['momentum']:.6g}" if "momentum" in hp else "—"
        print(f"  {method:<9} {hp['lr']:>10.4g} {beta:>9} {predicted:>10.6f} {got:>10.6f} "
              f"{abs(predicted - got):>8.1e} {hp['rate']:>10.6f}   "
              f"{err[end] / err[0]:.6g}, {m[end] / m[0]:.6g}")
    print("  'optimal' minimises the worst-case asymptotic rate ρ over the spectrum, not the "
          f"loss after {end} steps: early on momentum's slow oscillation along large λ can "
          "leave a higher loss")

    best = min(rows, key=lambda r: r[1])
    print(f"lowest loss: {best[0]} ({best[1]:.4g}, from {start:.4g})")
    return 0
