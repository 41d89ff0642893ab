"""
Gradient descent's regimes on a bowl, and Rprop
===============================================

Reproduces two pictures of the CMU 11-785 lecture "Neural Networks: Optimization Part 1":

* slides 41-50: gradient descent on the 1-D bowl ½λx² with a learning rate
  η = factor·η_opt, η_opt = 1/λ. Below η_opt the iterates creep monotonically to the
  minimum, at η_opt they land on it in one step, between η_opt and 2η_opt they oscillate
  inwards, at 2η_opt they bounce between ±x₀ for ever, and beyond it they diverge.
* slides 104-113: Rprop on a 1-D bowl. Each step moves by the step size Δ against the
  gradient's sign; Δ grows by η₊ = 1.2 while the sign holds and shrinks by η₋ = 0.5 when
  it flips (the minimum was overshot).

.. code-block:: bash

   python examples/bowl_regimes.py --out figures/ [--quick]

writes ``regimes.png`` and ``rprop.png``.
"""

import sys

import _common
import matplotlib.pyplot as plt
import numpy as np

import optbowl as ob

FACTORS = (0.5, 1.0, 1.5, 2.0, 2.2)  # η / η_opt
VARIANTS = ("backtrack", "rprop+", "irprop-")


# %%
# The five regimes
# ----------------
# The panels are ``optbowl.plot.regime_panels``. Every setting also runs on the compiled
# loop (``QuadraticBowl.run``), and the script prints the regime optbowl assigns, the
# predicted contraction per step :math:`|1 - \eta\lambda|` and the one the run measured.

def regimes(steps):
    bowl = ob.QuadraticBowl([[1.0]])  # λ = 1, η_opt = 1
    for factor in FACTORS:
        lr = factor * bowl.optimal("gd")["lr"]
        run = bowl.run("gd", [1.0], steps, lr=lr)
        same = np.allclose(run.x, bowl.predict("gd", [1.0], steps, lr=lr).x, rtol=1e-12, atol=0.0)
        print(f"eta = {factor:g} eta_opt: regime {bowl.regime('gd', lr=lr)[0]:15s} "
              f"predicted rate {bowl.rate('gd', lr=lr):.6f} "
              f"measured rate {run.measured_rate():.6f} run matches prediction: {same}")
    fig, axes = plt.subplots(1, len(FACTORS), figsize=(13, 2.8))  # each panel its own scale
    return ob.plot.regime_panels(1.0, FACTORS, steps=min(steps, 6), axes=axes)


# %%
# Rprop's step size
# -----------------
# ``backtrack`` is the slides' version (return to the previous point, shrink, step
# forward again), ``rprop+`` Riedmiller and Braun's, ``irprop-`` torch's. Left: the path
# of ``backtrack`` on the bowl; right: Δ per step for each variant, read from the
# optimizer's state, each variant's path checked against ``bowl.run``'s.

def rprop(steps):
    bowl = ob.QuadraticBowl([[1.0]], b=[2.0])  # f = ½x² − 2x, minimum at x = 2
    x0, lr = -3.0, 0.1
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for variant in VARIANTS:
        # the optimizer itself, to read its step sizes Δ; the path must equal bowl.run's
        x = np.array([x0])
        opt = ob.Rprop(x, lr=lr, variant=variant)
        xs, deltas = [x0], []
        for _ in range(steps):
            opt.step(bowl.grad(x))
            xs.append(float(x[0]))
            deltas.append(float(opt.state[0]["step_size"][0]))
        run = bowl.run("rprop", [x0], steps, lr=lr, variant=variant)
        same = np.array_equal(run.x[:, 0], np.array(xs))
        err = run.error
        print(f"Rprop {variant:9s}: step size {lr:g} grew to {max(deltas):.4g}, "
              f"ends at {deltas[-1]:.3g}; error {err[0]:.3g} -> {err[-1]:.3g}; "
              f"same path as bowl.run: {same}")
        right.semilogy(np.arange(1, steps + 1), deltas, "-o", ms=2.5, label=variant)
        if variant == "backtrack":
            grid = np.linspace(-3.5, 6.0, 200)
            left.plot(grid, bowl.f(grid[:, None]), color="0.6")
            left.plot(run.x[:, 0], run.f, "-o", ms=3, color="tab:red", lw=1)
            left.set(xlabel="w", ylabel="E(w)",
                     title=f"Rprop (backtrack) from w = {x0:g}, Δ₀ = {lr:g}")
    right.set(xlabel="step", ylabel="step size Δ",
              title="Δ ×1.2 while the sign holds, ×0.5 when it flips")
    right.legend(fontsize="small")
    fig.tight_layout()
    return fig


# %%
# Both figures
# ------------

def main(argv=None):
    args = _common.parse_args(argv, "seed 004's bowl regimes and Rprop's step-size adaptation")
    steps = 30 if args.quick else 60
    _common.save(regimes(steps), args.out, "regimes")
    _common.save(rprop(steps), args.out, "rprop")


# %%
# Run as a script (the gallery runs it so as well):

if __name__ == "__main__":
    main(sys.argv[1:])
