"""Train a small NumPy MLP on scikit-learn's digits with every optimizer optbowl has.

    python examples/mlp_digits.py --out figures/ [--quick]

The 8x8 digit images (1,797 of them, bundled with scikit-learn: no download) are split
into a training and a test set. A one-hidden-layer network, tanh then softmax, is trained
full-batch: forward and backward pass in NumPy, the update by optbowl, in place, one
compiled call per step. Each optimizer (the five Rprop variants, AdaGrad, SGD plain, with
momentum and with Nesterov momentum, QuickProp, RMSprop, Adam and AdamW) starts from the
same weights. The figure ``digits.png`` draws the training loss of every optimizer in one
plot; the script prints a table of the final loss and the training and test accuracy.
``mlp_landscape.py`` reuses this model for seed 002's loss-landscape picture.
"""

import sys

import _common
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import optbowl as ob

# --- the data: pixels scaled to [0, 1], a fixed 75/25 split ---------------------------
digits = load_digits()
X = digits.data / 16.0
y = digits.target
order = np.random.default_rng(0).permutation(len(y))
n_train = int(0.75 * len(y))
X_train, y_train = X[order[:n_train]], y[order[:n_train]]
X_test, y_test = X[order[n_train:]], y[order[n_train:]]


# --- the model: x -> tanh(x W1 + b1) W2 + b2 -> softmax --------------------------------
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


# --- the optimizers: every one optbowl has, with hyper-parameters that suit it ----------
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


def main(argv=None):
    args = _common.parse_args(argv, "MLP on the digits data with every optbowl optimizer")
    epochs, hidden = (40, 16) if args.quick else (100, 32)

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colours = plt.cm.tab20(np.linspace(0.0, 1.0, 20))[::2].tolist() + ["k", "tab:brown", "m"]
    ax.set_prop_cycle(color=colours)  # 13 curves, 13 colours
    print(f"{'optimizer':16s} {'final loss':>10s} {'train acc':>9s} {'test acc':>9s}")
    for label, (optimizer, hyper) in optimizers().items():
        params, losses = train(optimizer, hyper, epochs, hidden)
        style = "--" if label.startswith("Rprop") else "-"
        ax.semilogy(np.arange(1, epochs + 1), losses, style, label=label)
        print(
            f"{label:16s} {losses[-1]:10.2e} {accuracy(params, X_train, y_train):9.3f} "
            f"{accuracy(params, X_test, y_test):9.3f}"
        )
    ax.set(xlabel="full-batch step", ylabel="training cross-entropy",
           title=f"digits MLP (64-{hidden}-10)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _common.save(fig, args.out, "digits", only=True)


if __name__ == "__main__":
    main(sys.argv[1:])
