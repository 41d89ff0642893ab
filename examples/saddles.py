"""Saddles: Newton is drawn to them, and in high dimension they outnumber minima
==============================================================================

Seed 003: "Newton's method is especially sensitive to saddle points" and "in high
dimensions it is more likely that we have a saddle point than a local minimum" (d2l says
the same). Both, measured.

*Newton vs gradient descent.* On the double well f = x² + y⁴/4 − y²/2
(``optbowl.functions.double_well``: a saddle at the origin between minima at (0, ±1)),
Newton's method x ← x − H⁻¹∇f (``optbowl.landscape.newton``) looks for a zero of the
gradient and is blind to its kind: from every start with :math:`|y| < 1/\\sqrt{5}` it
converges to the saddle. Gradient descent (the compiled ``optbowl.SGD``) moves downhill, and the
negative-curvature direction pushes it off the saddle to a minimum.

*Saddles dominate.* If the Hessian at a critical point were a random symmetric matrix
(GOE), the point would be a minimum only if all d eigenvalues were positive: probability
1/2, (2 − √2)/4 ≈ 0.146, and then falling like e^(−θd²), θ = ln 3/4 (Dean & Majumdar).
``optbowl.goe_positive_fraction`` counts it.

    python examples/saddles.py --out figures/ [--quick]

Writes ``saddles.png``; prints where each run ends and the measured fractions.
"""

# %%
# Setup
# -----
import sys

import _common
import matplotlib.pyplot as plt
import numpy as np

import optbowl as ob
from optbowl.functions import double_well
from optbowl.landscape import descend, newton

STARTS = [(1.2, 0.05), (-1.0, 0.3), (0.6, -0.4), (-1.3, -0.15)]


# %%
# Newton runs to the saddle, gradient descent leaves it
# -----------------------------------------------------
def paths(ax, steps):
    xs, ys = np.meshgrid(np.linspace(-1.5, 1.5, 201), np.linspace(-1.5, 1.5, 201))
    ax.contour(xs, ys, double_well(np.stack([xs, ys], -1)), levels=25, cmap="Greys", linewidths=0.6)
    for k, start in enumerate(STARTS):
        nt = newton(double_well, start, 20)
        gd = descend(double_well, np.array(start), steps, ob.SGD, lr=0.1)
        ax.plot(nt[:, 0], nt[:, 1], "o-", color="tab:red", ms=3,
                label="Newton" if k == 0 else None)
        ax.plot(gd[:, 0], gd[:, 1], ".-", color="tab:blue", ms=2,
                label="gradient descent (η = 0.1)" if k == 0 else None)
        print(f"start {start}: Newton ends at ({nt[-1, 0]:.3g}, {nt[-1, 1]:.3g}) "
              f"{ob.classify_critical_point(double_well.hessian(nt[-1]))}; gradient descent "
              f"at ({gd[-1, 0]:.3g}, {gd[-1, 1]:.3g}) "
              f"{ob.classify_critical_point(double_well.hessian(gd[-1]))}")
    ax.plot([0, 0, 0], [-1, 0, 1], "k*", ms=10)
    ax.set(xlabel="x", ylabel="y", title="x² + y⁴/4 − y²/2: saddle at 0, minima at (0, ±1)",
           aspect="equal")
    ax.legend(fontsize="small", loc="lower right")


# %%
# Minima get rare: random Hessians
# --------------------------------
def goe(ax, dims, samples):
    r = ob.goe_positive_fraction(dims, samples, seed=0)
    shown = r.fraction > 0
    ax.errorbar(r.dims[shown], r.fraction[shown], yerr=r.stderr[shown], fmt="o",
                label=f"measured, {samples} matrices per d")
    ax.semilogy([1, 2], [0.5, (2 - np.sqrt(2)) / 4], "kx", ms=10, label="exact (d = 1, 2)")
    ax.semilogy(r.dims, r.asymptotic, ":", label="exp(−(ln 3/4) d²), large-d order")
    ax.set_xticks(r.dims)
    ax.set(xlabel="dimension d", ylabel="P(all eigenvalues > 0)",
           title="random symmetric Hessians (GOE): minima vs saddles")
    ax.legend(fontsize="small")
    for d, p, e, s in zip(r.dims, r.fraction, r.stderr, r.saddle_fraction):
        print(f"d = {d}: all positive {p:.3g} ± {e:.2g}, saddle {s:.6f}")


def figure(quick=False):
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.2))
    paths(left, 60 if quick else 120)
    goe(right, list(range(1, 6 if quick else 7)), 50_000 if quick else 1_000_000)
    fig.tight_layout()
    return fig


# %%
# Run
# ---
def main(argv=None):
    args = _common.parse_args(argv, "Newton and saddles; GOE minima vs dimension")
    _common.save(figure(args.quick), args.out, "saddles", only=True)


if __name__ == "__main__":
    main(sys.argv[1:])
