"""
Every optimizer on a small MLP
==============================

A NumPy MLP learns scikit-learn's 8x8 digits (1,797 images, bundled with scikit-learn:
no download), once with each optimizer optbowl has: the five Rprop variants, AdaGrad,
SGD plain, with momentum and with Nesterov momentum, QuickProp, RMSprop, Adam and AdamW.
The forward and backward passes are NumPy; the update is optbowl's, in place, one
compiled call per step. Every run starts from the same weights, so the curves differ
only by the rule. The figure is the training loss of each; the printed table gives the
final loss and the training and test accuracy.

Run it yourself (``--quick`` is the small setting the documentation and CI run):

.. code-block:: bash

   python examples/mlp_digits.py --out figures/ [--quick]

``mlp_landscape.py`` reuses this model for the loss-landscape picture.
"""

# %%
# The data and the model
# ----------------------
# Pixels scaled to [0, 1] and a fixed 75/25 split. The network is
# x -> tanh(x W1 + b1) W2 + b2 -> softmax, trained full-batch on the mean cross-entropy;
# ``loss_and_grads`` is the backward pass, written out.
import sys

import _common
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import optbowl as ob

digits = load_digits()
X = digits.data / 16.0
y = digits.target
order = np.random.default_rng(0).permutation(len(y))
n_train = int(0.75 * len(y))
X_train, y_train = X[order[:n_train]], y[order[:n_train]]
X_test, y_test = X[order[n_train:]], y[order[n_train:]]


def init_params(hidden, seed=1):
    rng = np.random.default_rng(seed)
    return [
        rng.normal(0.0, 1.0 / np.sqrt(64), (64, hidden)),  # W1
        np.zeros(hidden),  # b1
        rng.normal(0.0, 1.0 / np.sqrt(hidden), (hidden, 10)),  # W2
        np.zeros(10),  # b2
    ]


def forward(params, x):
    W1, b1, W2, b2 = params
    h = np.tanh(x @ W1 + b1)
    logits = h @ W2 + b2
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return h, p


def cross_entropy(p, labels):
    return float(-np.mean(np.log(p[np.arange(len(labels)), labels] + 1e-300)))


def mean_loss(params, x, labels):
    return cross_entropy(forward(params, x)[1], labels)


def loss_and_grads(params, x, labels):
    """Mean cross-entropy and its gradient with respect to each parameter (backprop)."""
    W1, b1, W2, b2 = params
    h, p = forward(params, x)
    n = len(labels)
    loss = cross_entropy(p, labels)
    d_logits = p.copy()
    d_logits[np.arange(n), labels] -= 1.0
    d_logits /= n
    d_hidden = (d_logits @ W2.T) * (1.0 - h * h)
    grads = [x.T @ d_hidden, d_hidden.sum(axis=0), h.T @ d_logits, d_logits.sum(axis=0)]
    return loss, [np.ascontiguousarray(g) for g in grads]


def accuracy(params, x, labels):
    return float(np.mean(forward(params, x)[1].argmax(axis=1) == labels))


# %%
# The optimizers
# --------------
# Every one optbowl has, with hyper-parameters that suit this problem. iRprop+ is the one
# rule that reads the loss: it undoes a move only when the loss rose.

def optimizers():
    table = {f"Rprop {v}": (ob.Rprop, dict(lr=0.01, variant=v))
             for v in ("irprop-", "rprop-", "rprop+", "irprop+", "backtrack")}
    table.update({
        "Adagrad": (ob.Adagrad, dict(lr=0.1)),
        "SGD": (ob.SGD, dict(lr=0.5)),
        "SGD momentum": (ob.SGD, dict(lr=0.1, momentum=0.9)),
        "SGD Nesterov": (ob.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
        "QuickProp": (ob.QuickProp, dict(lr=0.5)),
        "RMSprop": (ob.RMSprop, dict(lr=0.003)),
        "Adam": (ob.Adam, dict(lr=0.01)),
        "AdamW": (ob.AdamW, dict(lr=0.01, weight_decay=1e-2)),
    })
    return table


def train(optimizer, hyper, epochs, hidden):
    """Full-batch training from the same initial weights; returns (params, losses)."""
    params = init_params(hidden)
    opt = optimizer(params, **hyper)
    needs_loss = getattr(opt, "variant", None) == "irprop+"
    losses = []
    for _ in range(epochs):
        loss, grads = loss_and_grads(params, X_train, y_train)
        losses.append(loss)
        if needs_loss:
            opt.step(grads, loss=loss)  # iRprop+ undoes a move only when the loss rose
        else:
            opt.step(grads)
    return params, losses


# %%
# Training and the figure
# -----------------------
# Thirteen curves, some of which coincide (iRprop+ takes iRprop-'s path while the loss
# keeps falling; AdamW's small weight decay keeps it on Adam's), so each curve has a
# colour, a line style and a marker of its own, and the markers of curve k sit k steps
# further along: a curve drawn over another still shows.

#: one (colour, line style, marker) per optimizer, no two alike in colour
STYLES = [
    ("#0072B2", "-", "o"), ("#E69F00", "--", "s"), ("#009E73", "-.", "^"),
    ("#D55E00", ":", "x"), ("#CC79A7", "--", "D"), ("#56B4E9", "-", "v"),
    ("#000000", "-.", "+"), ("#999999", ":", "*"), ("#8C564B", "-", "<"),
    ("#66A61E", "--", ">"), ("#6A3D9A", "-.", "P"), ("#17BECF", ":", "X"),
    ("#7F7F00", "-", "d"),
]


def main(argv=None):
    args = _common.parse_args(argv, "MLP on the digits data with every optbowl optimizer")
    epochs, hidden = (40, 16) if args.quick else (100, 32)

    table = optimizers()
    assert len(STYLES) >= len(table)
    fig, ax = plt.subplots(figsize=(8.0, 5.0))
    print(f"{'optimizer':16s} {'final loss':>10s} {'train acc':>9s} {'test acc':>9s}")
    every = max(2, epochs // 8)
    for k, ((label, (optimizer, hyper)), (colour, line, marker)) in enumerate(
            zip(table.items(), STYLES)):
        params, losses = train(optimizer, hyper, epochs, hidden)
        ax.semilogy(np.arange(1, epochs + 1), losses, color=colour, linestyle=line, lw=1.4,
                    marker=marker, ms=5, markevery=(k % every, every), mfc="none", label=label)
        print(
            f"{label:16s} {losses[-1]:10.2e} {accuracy(params, X_train, y_train):9.3f} "
            f"{accuracy(params, X_test, y_test):9.3f}"
        )
    ax.set(xlabel="full-batch step", ylabel="training cross-entropy",
           title=f"digits MLP (64-{hidden}-10)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _common.save(fig, args.out, "digits", only=True)


# %%
# Run as a script (the gallery runs it so as well):

if __name__ == "__main__":
    main(sys.argv[1:])
