"""``python -m optbowl bowl``: the convergence analysis of a quadratic bowl.

Prints κ, the optimal hyper-parameters of each method (or the ones given), the predicted
rate, the iterations to shrink the error by ``--eps`` and the regime along every
eigenvalue; where the method's loop is compiled into the simulator, the contraction
measured on it over steps 100-200, beside the exact predicted trajectory's contraction over
the same window (the asymptotic rate differs from both where the error goes like k·ρᵏ,
in the critically-damped regime). ``--plot out.png`` saves the contours with the predicted
paths (two eigenvalues) and the convergence curves with the predicted rates.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from . import _core
from ._cli_args import integer, number
from .bowl import LINEAR_METHODS, QuadraticBowl


def add_parser(sub) -> None:
    p = sub.add_parser("bowl", help="rates, optimal steps and regimes of "
                                    "gd/momentum/nesterov/newton on a bowl",
                       description=__doc__.split("\n\n", 1)[1].replace("``", ""))
    p.add_argument("--eigenvalues", type=number(), nargs="+", default=[1.0, 100.0],
                   help="eigenvalues of A (default: 1 100); all > 0 unless --lr is given")
    p.add_argument("--method", nargs="+", choices=tuple(LINEAR_METHODS),
                   default=list(LINEAR_METHODS), help="methods to analyse (default: all)")
    p.add_argument("--lr", type=number(0.0, low_open=True),
                   help="learning rate (default: each method's optimal one)")
    p.add_argument("--momentum", type=number(0.0, 1.0, high_open=True),
                   help="momentum β of the momentum and nesterov methods, in [0, 1); needs --lr "
                        "(default with --lr: 0; without --lr every method runs at its optimal "
                        "hyper-parameters, so --momentum alone is refused)")
    p.add_argument("--eps", type=number(0.0, 1.0, low_open=True, high_open=True),
                   default=1e-6, help="error reduction for the iteration count, in (0, 1) "
                                      "(default 1e-6)")
    p.add_argument("--rotate", action="store_true",
                   help="rotate the bowl by a random orthogonal matrix")
    p.add_argument("--seed", type=integer(0), default=0,
                   help="seed of the rotation (default 0)")
    p.add_argument("--steps", type=integer(0), default=0,
                   help="steps to draw (default: enough to reach --eps)")
    p.add_argument("--plot", metavar="PATH", help="save the figure (needs matplotlib)")
    p.set_defaults(run=run)


def _hyper(bowl: QuadraticBowl, method: str, args: argparse.Namespace) -> dict:
    if args.lr is None:
        return {k: v for k, v in bowl.optimal(method).items() if k != "rate"}
    hp = {"lr": args.lr}
    if method in ("momentum", "nesterov"):
        hp["momentum"] = 0.0 if args.momentum is None else args.momentum
    return hp


def run(args: argparse.Namespace) -> int:
    if args.momentum is not None:
        if args.lr is None:
            raise ValueError("--momentum: needs --lr (without --lr every method runs at its "
                             "optimal hyper-parameters)")
        if not {"momentum", "nesterov"} & set(args.method):
            raise ValueError("--momentum: applies to the methods momentum and nesterov only, "
                             f"and --method is {' '.join(args.method)}")
    bowl = QuadraticBowl.from_eigenvalues(args.eigenvalues, rotate=args.rotate, seed=args.seed)
    x0 = bowl.minimizer + bowl.eigenvectors @ np.ones(bowl.n)
    compiled = set(_core.bowl_methods())
    # Everything is computed before anything is printed: a refused value (e.g. a bowl that
    # is not positive semi-definite, or Newton on a singular one) ends the command with one
    # line.
    results = []
    for method in args.method:
        hp = _hyper(bowl, method, args)
        rate = bowl.rate(method, **hp)
        iters = bowl.iterations_to(args.eps, method, **hp)
        measured = window = "—"
        if method in compiled:
            # Steps 100-200 of the run, and of the exact prediction over the same window.
            traj = bowl.run(method, x0, 200, **hp)
            measured = f"{traj.measured_rate():.6f}"
            window = f"{traj.predicted_rate():.6f}"
        regimes = ", ".join(bowl.regime(method, **hp))
        results.append((method, hp, rate, iters, measured, window, regimes))
    print(bowl)
    print(f"{'method':<9} {'lr':>11} {'momentum':>9} {'rate':>9} "
          f"{'iters to ' + format(args.eps, 'g'):>14} "
          f"{'measured':>9} {'predicted':>9}  regimes (λ ascending)")
    for method, hp, rate, iters, measured, window, regimes in results:
        beta = f"{hp['momentum']:.6g}" if "momentum" in hp else "—"
        shown_iters = "∞" if math.isinf(iters) else str(iters)
        print(f"{method:<9} {hp['lr']:>11.6g} {beta:>9} {rate:>9.6f} {shown_iters:>14} "
              f"{measured:>9} {window:>9}  {regimes}")
    rows = [(method, hp, iters) for method, hp, _, iters, *_ in results]
    if not args.plot:
        return 0
    from . import plot

    plt = plot._pyplot()
    finite = [it for _, _, it in rows if not math.isinf(it)]
    steps = args.steps or int(min(max(finite, default=100), 2000))
    paths = [bowl.predict(m, x0, steps, **hp) for m, hp, _ in rows]
    panels = 2 if bowl.n == 2 else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2))
    axes = np.atleast_1d(axes)
    if bowl.n == 2:
        plot.contour(bowl, paths, ax=axes[0])
    plot.convergence(paths, ax=axes[-1])
    fig.suptitle(repr(bowl), fontsize="small")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    plt.close(fig)
    print(f"figure saved to {args.plot}")
    return 0
