"""Worst case over a function class
==================================

The quadratic bowl predicts exactly what gradient descent does on *one* bowl. Performance
estimation asks a harder question: over *every* L-smooth convex function and every start
with ‖x₀ − x*‖ ≤ 1, how large can f(x_N) − f* be after N steps? ``optbowl.worst_case``
answers with the proved closed form where there is one (gradient descent:
(L/2)·max(1/(2Nh + 1), (1 − h)^{2N}), h = ηL) and with PEPit's semidefinite program
otherwise (momentum, Nesterov). Three numbers sit side by side for each N:

* the worst case over the class (closed form, and PEPit's SDP: they agree to 1e-6);
* the worst *quadratic* (``optbowl.worst_quadratic``: the bowl with the worst eigenvalue),
  which understates it — 2.6 times at N = 4 with η = 1/L;
* runs of the compiled SGD kernel on members of the function zoo: the Huber function
  ``optbowl.functions.huber(1/(2Nh + 1))`` attains the worst case exactly, the zoo's
  quadratic bowls stay below the worst quadratic.

    python examples/worst_case.py --out figures/ [--quick]

Writes ``worst_case.png`` and prints a table of worst_case vs PEPit vs the closed form.
Needs PEPit (``pip install "optbowl[pep]"``).
"""

# %%
# Setup
# -----
import sys

import _common
import matplotlib.pyplot as plt
import numpy as np

import optbowl as ob
from optbowl.functions import elliptic_bowl, huber, ill_conditioned_bowl
from optbowl.landscape import descend

L = 1.0


def run_f(fn, x0, lr, steps, momentum=0.0, nesterov=False):
    """f(x_N) − f* after the compiled SGD kernel's N steps on a zoo function."""
    xs = descend(fn, np.asarray(x0, dtype=float), steps, ob.SGD, lr=lr, momentum=momentum,
                 nesterov=nesterov)
    return float(fn(xs[-1]))


# %%
# Worst case, PEPit and the closed form
# -------------------------------------
# Gradient descent at settings across h = ηL ∈ (0, 2), convex and strongly convex: the
# three columns must agree (PEPit to its solver's accuracy).
SETTINGS = [(1.0, 0.0, 0.5, 4), (1.0, 0.0, 1.0, 4), (3.0, 0.0, 1 / 3, 4), (1.0, 0.0, 1.5, 3),
            (1.0, 0.0, 1.9, 5), (2.0, 0.1, 0.5, 8), (1.0, 0.1, 1.0, 10), (1.0, 0.5, 1.5, 3),
            (1.0, 0.01, 1.2, 6), (10.0, 1.0, 0.15, 4), (1.0, 0.3, 1.9, 4), (1.0, 0.0, 1.0, 12)]


def table(settings):
    print(f"{'L':>5s} {'mu':>5s} {'lr':>7s} {'N':>3s} {'worst_case':>13s} {'PEPit':>13s} "
          f"{'closed form':>13s} {'PEPit/closed - 1':>17s}")
    rows = []
    for Lc, mu, lr, N in settings:
        w = ob.worst_case("gd", L=Lc, mu=mu, lr=lr, steps=N)
        p = ob.pep_bound("gd", L=Lc, mu=mu, lr=lr, steps=N)
        c = ob.closed_form_bound("gd", L=Lc, mu=mu, lr=lr, steps=N)
        rows.append((w, p, c))
        print(f"{Lc:5g} {mu:5g} {lr:7.4g} {N:3d} {w:13.9f} {p:13.9f} {c:13.9f} {p / c - 1:17.2e}")
    return rows


# %%
# Side by side: the class, the worst quadratic, runs on the zoo
# -------------------------------------------------------------
def side_by_side(ax, Ns, lr):
    worst = [ob.worst_case("gd", L=L, lr=lr, steps=N) for N in Ns]
    pep = [ob.pep_bound("gd", L=L, lr=lr, steps=N) for N in Ns]
    quad = [ob.worst_quadratic("gd", L=L, lr=lr, steps=N).value for N in Ns]
    # the Huber that attains the bound, run from x₀ = 1 on the compiled kernel
    hub = [run_f(huber(1 / (2 * N * lr * L + 1), L=L), 1.0, lr, N) for N in Ns]
    # the zoo's quadratic bowls, scaled to L = 1, started on their flattest eigenvector
    bowls = {}
    for fn in (elliptic_bowl, ill_conditioned_bowl):
        lam = fn.bowl.eigenvalues
        scaled = ob.QuadraticBowl(fn.bowl.hessian / lam[-1])
        bowls[fn.name] = [float(scaled.run("gd", [1.0, 0.0], N, lr=lr).f[-1]) for N in Ns]
    ax.loglog(Ns, worst, "-", color="k", lw=2, label="worst case over the class (closed form)")
    ax.loglog(Ns, pep, "o", color="tab:orange", mfc="none", label="PEPit (SDP)")
    ax.loglog(Ns, hub, "x", color="tab:red", label="run on huber(1/(2Nh+1))")
    ax.loglog(Ns, quad, "--", color="tab:blue", label="worst quadratic (bowl)")
    for name, vals in bowls.items():
        ax.loglog(Ns, vals, ":", label=f"run on {name} (scaled to L = 1)")
    ax.set(xlabel="steps N", ylabel="f(x_N) − f*  (‖x₀ − x*‖ = 1)",
           title=f"gradient descent, η = {lr:g}/L")
    ax.legend(fontsize="x-small")
    return dict(zip(Ns, zip(worst, pep, quad, hub)))


def momentum_panel(ax, Ns, lr, beta):
    for method, colour in (("momentum", "tab:purple"), ("nesterov", "tab:green")):
        pep = [ob.worst_case(method, L=L, lr=lr, steps=N, momentum=beta) for N in Ns]
        quad = [ob.worst_quadratic(method, L=L, lr=lr, steps=N, momentum=beta).value for N in Ns]
        ax.semilogy(Ns, pep, "o-", color=colour, label=f"{method}: worst case (PEPit)")
        ax.semilogy(Ns, quad, "--", color=colour, label=f"{method}: worst quadratic")
        print(f"{method:8s} lr {lr:g} momentum {beta:g}: N = {Ns[-1]} worst case {pep[-1]:.6g}, "
              f"worst quadratic {quad[-1]:.6g}, ratio {pep[-1] / quad[-1]:.3f}")
    ax.set(xlabel="steps N", ylabel="f(x_N) − f*", title=f"momentum β = {beta:g}, η = {lr:g}/L")
    ax.legend(fontsize="x-small")


def figure(quick=False):
    Ns = [1, 2, 4, 8] if quick else [1, 2, 3, 4, 6, 8, 12, 16, 24]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    values = side_by_side(left, Ns, 1.0)
    momentum_panel(right, Ns if quick else Ns[:7], 0.5, 0.5)
    fig.tight_layout()
    return fig, values


# %%
# Run
# ---
def main(argv=None):
    args = _common.parse_args(argv, "worst case over L-smooth convex functions vs quadratics")
    table(SETTINGS[:10] if args.quick else SETTINGS)
    fig, values = figure(args.quick)
    for N, (worst, pep, quad, hub) in values.items():
        print(f"gd N = {N}: worst case {worst:.9f}, PEPit {pep:.9f}, worst quadratic "
              f"{quad:.9f}, huber run {hub:.9f}, worst/quadratic {worst / quad:.3f}")
    _common.save(fig, args.out, "worst_case", only=True)


if __name__ == "__main__":
    main(sys.argv[1:])
