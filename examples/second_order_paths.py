"""BFGS and Levenberg–Marquardt beside gradient descent and Newton
=================================================================

Seed 004 lists the second-order alternatives to gradient descent: Newton's method, the
quasi-Newton BFGS (Broyden–Fletcher–Goldfarb–Shanno), which builds its Hessian estimate
from gradient differences, and Levenberg–Marquardt for sums of squares, which blends a
Gauss–Newton step with gradient descent. On Rosenbrock's valley
f = (1 − x)² + 100(y − x²)² from d2l's (−1.2, 1):

* gradient descent (the compiled ``optbowl.SGD``, at a step near the largest stable one)
  crawls along the curved valley;
* Newton's method (``optbowl.landscape.newton``) needs the Hessian, and jumps;
* BFGS (``scipy.optimize.minimize(method="BFGS")``) needs gradients only;
* Levenberg–Marquardt (``scipy.optimize.least_squares(method="lm")``) treats f as ‖r‖²
  with r = (1 − x, 10(y − x²)) (``rosenbrock().residuals``).

``optbowl.landscape.scipy_path`` records the two SciPy paths (no hand-written
quasi-Newton).

    python examples/second_order_paths.py --out figures/ [--quick]

Writes ``second_order_paths.png``; prints how many iterations each needs to
f < 1e-10.
"""

# %%
# Setup
# -----
import sys

import _common
import matplotlib.pyplot as plt
import numpy as np

import optbowl as ob
from optbowl.functions import rosenbrock
from optbowl.landscape import descend, newton, scipy_path

START = np.array([-1.2, 1.0])


# %%
# Four paths on Rosenbrock's valley
# ---------------------------------
def runs(gd_steps):
    rosen = rosenbrock()
    return rosen, {
        "gradient descent (η = 1e-3)": descend(rosen, START, gd_steps, ob.SGD, lr=1e-3),
        "Newton": newton(rosen, START, 20),
        "BFGS (SciPy)": scipy_path(rosen, START, "BFGS"),
        "Levenberg–Marquardt (SciPy)": scipy_path(rosen, START, "lm"),
    }


def figure(quick=False):
    rosen, paths = runs(2000 if quick else 20000)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    xs, ys = np.meshgrid(np.linspace(-1.6, 1.6, 300), np.linspace(-0.6, 1.8, 300))
    left.contour(xs, ys, np.log10(rosen(np.stack([xs, ys], -1)) + 1e-3), levels=25,
                 cmap="Greys", linewidths=0.6)
    for (label, path), colour in zip(paths.items(), ["tab:blue", "tab:red", "tab:green",
                                                     "tab:purple"]):
        values = rosen(path)
        below = np.flatnonzero(values < 1e-10)
        print(f"{label:28s}: {len(path) - 1:6d} iterations, ends at "
              f"({path[-1, 0]:.6f}, {path[-1, 1]:.6f}), f {values[-1]:.3e}; f < 1e-10 after "
              f"{below[0] if below.size else 'more than ' + str(len(path) - 1)}")
        left.plot(path[:, 0], path[:, 1], ".-", ms=3, lw=1, color=colour, label=label)
        right.semilogy(np.maximum(values, 1e-30), ".-", ms=3, color=colour, label=label)
    left.plot(1, 1, "k*", ms=12)
    left.set(xlabel="x", ylabel="y", xlim=(-1.6, 1.6), ylim=(-0.6, 1.8),
             title="Rosenbrock from (−1.2, 1) (Newton leaves the frame once)")
    left.legend(fontsize="small", loc="lower right")
    right.set(xscale="symlog", xlabel="iteration", ylabel="f(x_k)", ylim=(1e-30, 1e3),
              title="f along each path")
    right.legend(fontsize="small")
    fig.tight_layout()
    return fig


# %%
# Run
# ---
def main(argv=None):
    args = _common.parse_args(argv, "BFGS and Levenberg-Marquardt beside gradient descent, Newton")
    _common.save(figure(args.quick), args.out, "second_order_paths", only=True)


if __name__ == "__main__":
    main(sys.argv[1:])
