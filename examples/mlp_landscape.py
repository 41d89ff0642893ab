"""
The loss landscape of a trained MLP
===================================

Tivadar Danka's "The mathematics of optimization for deep learning" shows Li et al.'s
pictures ("Visualizing the Loss Landscape of Neural Nets", 2018): the loss on the plane
L(θ + αδ + βη) through the trained weights θ, spanned by two random directions δ, η that
are *filter-normalised* (each row of a direction rescaled to the norm of the same row of
θ, so that no layer's scale distorts the picture). This example trains the MLP of
``mlp_digits.py`` (with optbowl's Rprop, torch's iRprop-) and draws that plane with
``optbowl.landscape.loss_landscape`` and ``optbowl.plot.landscape``: contours on the
left, the surface on the right. It prints the loss at the centre, the lowest and the
mean loss on the grid, and where the lowest point is: a trained network sits in the
basin's bottom.

.. code-block:: bash

   python examples/mlp_landscape.py --out figures/ [--quick]

writes ``landscape.png``.
"""

import sys

import _common
import matplotlib.pyplot as plt
import numpy as np
from mlp_digits import X_train, accuracy, mean_loss, train, y_train

import optbowl as ob
from optbowl import landscape


# %%
# Train, then map the plane
# -------------------------
# The surface's axes carry three ticks each, so that the labels of a 3-D plot do not
# run into each other.

def main(argv=None):
    args = _common.parse_args(argv, "the loss landscape of the digits MLP (Li et al., seed 002)")
    epochs, hidden, resolution = (40, 16, 21) if args.quick else (100, 32, 51)
    params, _ = train(ob.Rprop, dict(lr=0.01), epochs, hidden)
    acc = accuracy(params, X_train, y_train)
    print(f"trained {epochs} full-batch steps: train accuracy {acc:.3f}")

    scape = landscape.loss_landscape(lambda ps: mean_loss(ps, X_train, y_train), params,
                                     span=(-1.0, 1.0), resolution=resolution, seed=0)
    i, j = np.unravel_index(np.argmin(scape.values), scape.values.shape)
    print(f"centre loss {scape.center:.4g}, lowest on the grid {scape.values.min():.4g} "
          f"at alpha {scape.alphas[i]:.2f}, beta {scape.betas[j]:.2f}; "
          f"mean on the grid {scape.values.mean():.4g}")

    fig = plt.figure(figsize=(12, 5))
    left = fig.add_subplot(1, 2, 1)
    ob.plot.landscape(scape, ax=left, levels=np.quantile(scape.values, np.linspace(0.02, 0.98, 20)))
    left.set_title(f"digits MLP (64-{hidden}-10): loss around the trained weights")
    right = fig.add_subplot(1, 2, 2, projection="3d")
    A, B = np.meshgrid(scape.alphas, scape.betas, indexing="ij")
    right.plot_surface(A, B, scape.values, cmap="viridis", linewidth=0)
    right.set(xticks=[-1.0, 0.0, 1.0], yticks=[-1.0, 0.0, 1.0],
              zticks=np.linspace(0.0, float(scape.values.max()), 3).round(1))
    right.tick_params(labelsize="small", pad=1)
    right.set_xlabel("α", labelpad=2)
    right.set_ylabel("β", labelpad=2)
    right.set_zlabel("loss", labelpad=2)
    right.set_title("the same plane as a surface")
    fig.tight_layout()
    _common.save(fig, args.out, "landscape", only=True)


# %%
# Run as a script (the gallery runs it so as well):

if __name__ == "__main__":
    main(sys.argv[1:])
