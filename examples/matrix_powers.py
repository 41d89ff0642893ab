"""Vanishing and exploding products of matrices
==============================================

Goodfellow et al. (ch. 8, seed 003): multiplying by the same matrix W over and over, as a
recurrent network does over time, gives Wⁿ = V diag(λ)ⁿ V⁻¹ (``optbowl.matrix_power_spectrum``):
each eigen-component is scaled by λⁿ, so it vanishes where :math:`|\\lambda| < 1` and explodes
where :math:`|\\lambda| > 1`, and only eigenvalues near 1 carry information over many steps.

A deep network at initialisation multiplies by *different* random matrices, and the init
scale plays the eigenvalue's part: with entries of variance s²/d the signal's norm after
n layers is about sⁿ (``optbowl.product_gains``; typically (s·e^(−1/(2d)))ⁿ, the mean
of log χ²). s = 1 (LeCun's 1/d variance) keeps it
alive; 10% either side loses or multiplies it by orders of magnitude over 50 layers.

    python examples/matrix_powers.py --out figures/ [--quick]

Writes ``matrix_powers.png``; prints each eigen-component after n steps beside λⁿ and
the gain through depth for each init scale beside sⁿ.
"""

# %%
# Setup
# -----
import sys

import _common
import matplotlib.pyplot as plt
import numpy as np

import optbowl as ob

# %%
# One matrix, many times
# ----------------------
# W has eigenvalues 0.9, 1 and 1.1 and non-orthogonal eigenvectors; x has one unit along
# each. The coefficients of Wⁿx in the eigenbasis are exactly λⁿ.
EIGENVALUES = np.array([0.9, 1.0, 1.1])


def powers(ax, n_max):
    rng = np.random.default_rng(0)
    V = np.eye(3) + 0.5 * rng.standard_normal((3, 3))
    W = V @ np.diag(EIGENVALUES) @ np.linalg.inv(V)
    ns = np.arange(n_max + 1)
    Wn = ob.matrix_power_spectrum(W, ns)  # (n, 3, 3)
    coef = np.linalg.solve(V, (Wn @ V.sum(axis=1)).T).T  # Wⁿx in the eigenbasis
    for i, lam in enumerate(EIGENVALUES):
        ax.semilogy(ns, np.abs(coef[:, i]), label=f"component along λ = {lam:g}")
        ax.semilogy(ns, lam ** ns, "k:", lw=0.8)
        print(f"eigenvalue {lam:g}: component after {n_max} steps {coef[-1, i]:.12g}, "
              f"lambda^n {lam ** n_max:.12g}")
    direct = np.linalg.matrix_power(W, n_max)
    print(f"matrix_power_spectrum vs numpy.linalg.matrix_power at n = {n_max}: "
          f"max relative difference {np.abs(Wn[-1] - direct).max() / np.abs(direct).max():.2e}")
    ax.set(xlabel="n", ylabel="|coefficient| of Wⁿx", title="Wⁿ = V diag(λ)ⁿ V⁻¹ (dotted: λⁿ)")
    ax.legend(fontsize="small")


# %%
# Many random matrices: the init scale
# ------------------------------------
def depth(ax, dim, layers, samples):
    for scale in (0.5, 0.9, 1.0, 1.1, 1.5):
        gains = ob.product_gains(dim, layers, scale, samples=samples, seed=1)
        typical = np.exp(np.log(gains).mean(axis=0))  # geometric mean over samples
        line, = ax.semilogy(typical, label=f"scale s = {scale:g}")
        # E log‖Wx‖ = log s + ½E log(χ²_d/d) ≈ log s − 1/(2d): typical gain (s·e^{−1/(2d)})ⁿ
        predicted = (scale * np.exp(-1 / (2 * dim))) ** np.arange(layers + 1)
        ax.semilogy(predicted, ":", color=line.get_color(), lw=0.8)
        print(f"init scale {scale:g}: gain after {layers} layers {typical[-1]:.4g}, "
              f"predicted {predicted[-1]:.4g}, s^n {scale ** layers:.4g}")
    ax.set(xlabel="layers n", ylabel="‖W_n⋯W_1 x‖ / ‖x‖ (geometric mean)",
           title=f"random d = {dim} layers, entries N(0, s²/d) (dotted: (s·e^(−1/2d))ⁿ)")
    ax.legend(fontsize="small")


def figure(quick=False):
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    powers(left, 100 if quick else 150)
    depth(right, 32 if quick else 128, 50, 8 if quick else 32)
    fig.tight_layout()
    return fig


# %%
# Run
# ---
def main(argv=None):
    args = _common.parse_args(argv, "powers of a matrix and products of random matrices")
    _common.save(figure(args.quick), args.out, "matrix_powers", only=True)


if __name__ == "__main__":
    main(sys.argv[1:])
