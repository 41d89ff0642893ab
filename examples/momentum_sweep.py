"""
Why momentum really works: the rate over (η, β)
===============================================

Reproduces the (step size, momentum) map of Gabriel Goh's article "Why Momentum Really
Works" (Distill, 2017) on the bowl with eigenvalues 1 and 100 (κ = 100).
``optbowl.sweep`` runs torch's momentum loop (v = βv + g, x −= ηv; compiled,
multi-threaded) for every (η, β) of a grid and measures the contraction of the error per
step over the second half of each run. Colour is that measured rate (white where it does
not converge), and the black contours are the rate the theory predicts
(``SweepResult.predicted_rate``). The star marks the theory's optimum
(``QuadraticBowl.optimal("momentum")``: η = (2/(√λ₁ + √λₙ))², β = ((√κ − 1)/(√κ + 1))²,
rate (√κ − 1)/(√κ + 1) = 9/11), the square plain gradient descent's (rate 99/101 on
β = 0). The right panel runs both optima on the compiled loop (``QuadraticBowl.run``)
and draws the error per step with the predicted ρᵏ dashed (``optbowl.plot.convergence``).

.. code-block:: bash

   python examples/momentum_sweep.py --out figures/ [--quick]

writes ``momentum_sweep.png`` and prints the best measured rate on the grid, where it is,
and the optimum the theory predicts.
"""

import sys

import _common
import matplotlib.pyplot as plt
import numpy as np

import optbowl as ob


# %%
# The sweep and the figure
# ------------------------
# One ``ob.sweep`` call runs the whole grid; ``res.rate`` is each configuration's
# measured contraction, ``res.predicted_rate()`` the theory's.

def main(argv=None):
    args = _common.parse_args(argv, "Goh's momentum sweep on a κ = 100 bowl")
    size, steps = (48, 200) if args.quick else (150, 400)
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 100.0], rotate=True, seed=0)
    x0 = [1.0, 1.0]
    best, gd = bowl.optimal("momentum"), bowl.optimal("gd")

    lrs = np.linspace(0.0, 0.06, size + 1)[1:]  # up to 1.5x the largest stable step, 4/λₙ
    betas = np.linspace(0.0, 0.99, size)
    res = ob.sweep(bowl, "momentum", x0, steps, lr=lrs[:, None], momentum=betas[None, :])
    measured = np.where(res.diverged | ~(res.rate < 1.0), np.nan, res.rate)
    i, j = np.unravel_index(np.nanargmin(measured), measured.shape)
    print(f"best measured rate {measured[i, j]:.4f} at lr {lrs[i]:.5g}, momentum {betas[j]:.3f} "
          f"(grid {size}x{size}, {steps} steps)")
    print(f"predicted optimum rate {best['rate']:.4f} at lr {best['lr']:.5g}, "
          f"momentum {best['momentum']:.3f}")

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    mesh = left.pcolormesh(betas, lrs, measured, cmap="magma", vmin=best["rate"] - 0.02, vmax=1.0,
                           shading="nearest")
    fig.colorbar(mesh, ax=left, label="measured contraction per step")
    cs = left.contour(betas, lrs, res.predicted_rate(), levels=[0.85, 0.9, 0.95, 0.99], colors="k",
                      linewidths=0.7)
    left.clabel(cs, fontsize="x-small")
    left.plot(best["momentum"], best["lr"], "*", ms=14, color="tab:cyan", mec="k",
              label="optimum (theory)")
    left.plot(0.0, gd["lr"], "s", ms=8, color="tab:green", mec="k",
              label="gradient descent's optimum")
    left.set(xlabel="momentum β", ylabel="learning rate η", title="heavy ball on a κ = 100 bowl")
    left.legend(fontsize="small", loc="upper left")

    runs = [bowl.run("momentum", x0, steps, lr=best["lr"], momentum=best["momentum"]),
            bowl.run("gd", x0, steps, lr=gd["lr"])]
    for run in runs:
        print(f"{run.method:8s} at its optimum: measured rate {run.measured_rate():.4f}, "
              f"predicted {bowl.rate(run.method, **run.hyper):.4f}")
    ob.plot.convergence(runs, ax=right,
                        labels=["momentum (optimal η, β)", "gradient descent (optimal η)"])
    right.set_title("the two optima on the compiled loop")
    fig.tight_layout()
    _common.save(fig, args.out, "momentum_sweep", only=True)


# %%
# Run as a script (the gallery runs it so as well):

if __name__ == "__main__":
    main(sys.argv[1:])
