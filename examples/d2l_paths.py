"""
d2l's optimizer paths
=====================

Reproduces figures of "Dive into Deep Learning" (Zhang et al.; its chapter "Optimization
Algorithms") with optbowl's compiled optimizers:

* 20 steps from (-5, -2) on f = 0.1x₁² + 2x₂² (``optbowl.functions.ill_conditioned_bowl``)
  with d2l's settings: gradient descent with η = 0.4, and η = 0.6 which diverges along
  x₂; momentum with η = 0.6, β = 0.5; AdaGrad with η = 0.4; RMSProp with η = 0.4,
  γ = 0.9. Every path is ``QuadraticBowl.run``: the gradient and the update computed by
  optbowl's C++ loops.
* d2l's 1-D panels: 10 steps of gradient descent on f(x) = x² from x = 10 with a
  learning rate too small (0.05), good (0.2) and too large (1.1), and with η = 2 on
  x·cos(cx), c = 0.15π, where it settles in a local minimum (``optbowl.SGD`` driven by
  ``optbowl.landscape.descend``).

The printed end points are d2l's printed ones (its AdaGrad and RMSProp put ε inside the
square root and torch outside, which moves the sixth digit at most).

.. code-block:: bash

   python examples/d2l_paths.py --out figures/ [--quick]

writes ``d2l-paths.png`` and ``d2l-steps.png``.
"""

import sys

import _common
import matplotlib.pyplot as plt
import numpy as np

import optbowl as ob
from optbowl import functions, landscape

START = [-5.0, -2.0]
#: label -> (method of QuadraticBowl.run, hyper-parameters in torch's names)
PATHS = {
    "gradient descent η=0.4": ("gd", dict(lr=0.4)),
    "gradient descent η=0.6": ("gd", dict(lr=0.6)),
    "momentum η=0.6, β=0.5": ("momentum", dict(lr=0.6, momentum=0.5)),
    "AdaGrad η=0.4": ("adagrad", dict(lr=0.4)),
    "RMSProp η=0.4, γ=0.9": ("rmsprop", dict(lr=0.4, alpha=0.9)),
}


# %%
# The 2-D paths
# -------------
# Each panel's frame holds its whole path (d2l's box, widened where a path overshoots it).
# Gradient descent with η = 0.6 multiplies x₂ by 1 − 0.6·4 = −1.4 per step: its panel
# shows the steps that stay within four times d2l's box and says where step 20 ends.

def frame(points, box, margin=0.08):
    """The smallest box holding ``box`` and ``points``, with a margin on every side."""
    lo = np.minimum(points.min(axis=0), [box[0][0], box[1][0]])
    hi = np.maximum(points.max(axis=0), [box[0][1], box[1][1]])
    pad = margin * (hi - lo)
    return ((lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1]))


def paths_figure(steps):
    f = functions.ill_conditioned_bowl  # 0.1x₁² + 2x₂² = ½xᵀ diag(0.2, 4) x
    box = np.asarray(f.bounds, dtype=float)
    fig, axes = plt.subplots(2, 3, figsize=(12, 7))
    for ax, (label, (method, hyper)) in zip(axes.flat, PATHS.items()):
        path = f.bowl.run(method, START, steps, **hyper)
        x1, x2 = path.x[-1]
        print(f"{label:24s} step {steps}: x1 {x1: .6f}  x2 {x2: .6f}  f {path.f[-1]:.6g}")
        # a diverging run: the steps that stay within 4x the box (about its first seven)
        reach = 4.0 * np.abs(box).max(axis=1)
        inside = np.all(np.abs(path.x) <= reach, axis=1)
        shown = path.x[: np.argmin(inside) if not inside.all() else len(inside)]
        ob.plot.contour(f, [shown], bounds=frame(shown, box), ax=ax, labels=[label])
        if len(shown) < len(path.x):
            ax.set_title(f"diverges: shown to step {len(shown) - 1}; "
                         f"step {steps} at x₂ = {x2:.4g}", fontsize="small")
    axes.flat[-1].set_visible(False)
    fig.suptitle(f"d2l: {steps} steps from (-5, -2) on f = 0.1x₁² + 2x₂²")
    fig.tight_layout()
    return fig


# %%
# The 1-D panels
# --------------
# The regime of each learning rate is ``QuadraticBowl.regime``'s label.

def steps_figure(steps):
    square = ob.QuadraticBowl([[2.0]])  # x² = ½·2·x²: η_opt = 0.5
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    for ax, lr in zip(axes, (0.05, 0.2, 1.1)):
        x = square.run("gd", [10.0], steps, lr=lr).x[:, 0]
        regime = square.regime("gd", lr=lr)[0]
        print(f"x^2, lr {lr:<4g} step {steps}: x {x[-1]: .6f}  ({regime})")
        reach = max(10.0, float(np.abs(x).max()))
        grid = np.linspace(-reach, reach, 200)
        ax.plot(grid, grid**2, color="0.6")
        ax.plot(x, x**2, "-o", ms=3, color="tab:orange")
        ax.set_title(f"f(x) = x², η = {lr:g}: {regime}", fontsize="small")
    f = functions.x_cos_cx()  # c = 0.15π
    x = landscape.descend(f, 10.0, steps, ob.SGD, lr=2.0)
    curvature = float(f.hessian(x[-1]))
    print(f"x cos(cx), lr 2 step {steps}: x {x[-1]: .6f}  f'' {curvature:.4f} (a local minimum)")
    grid = np.linspace(-13.0, 13.0, 300)
    axes[3].plot(grid, f.f(grid), color="0.6")
    axes[3].plot(x, f.f(x), "-o", ms=3, color="tab:orange")
    axes[3].set_title("f(x) = x·cos(0.15πx), η = 2: a local minimum", fontsize="small")
    for ax in axes:
        ax.set_xlabel("x")
    fig.tight_layout()
    return fig


# %%
# Both figures
# ------------

def main(argv=None):
    args = _common.parse_args(argv, "d2l's 2-D optimizer paths and 1-D learning-rate panels")
    steps = 20  # d2l's; quick or not, the whole example takes a second
    _common.save(paths_figure(steps), args.out, "d2l-paths")
    _common.save(steps_figure(10), args.out, "d2l-steps")


# %%
# Run as a script (the gallery runs it so as well):

if __name__ == "__main__":
    main(sys.argv[1:])
