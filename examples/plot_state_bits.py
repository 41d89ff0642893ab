"""
Optimizer state in 8 and 16 bits
================================

AdaGrad and Adam keep one or two arrays of state per parameter, as large as the
parameters: most of the bytes a step moves. ``state_bits=8`` keeps each of them as one
byte per element plus a float32 scale per block of 256 (blockwise dynamic quantization,
as in Dettmers et al., "8-bit Optimizers via Block-wise Quantization", 2022), and
``state_bits=16`` as bfloat16. Each step decodes the state, applies the same update in
float32 and encodes it again, in one pass.

Does the training notice? Two problems, each trained with 32-, 16- and 8-bit state from
the same start: the digits MLP of ``mlp_digits.py`` (float32 weights, full batch) with
Adam and AdaGrad, and a least-squares problem of 2,000 rows and 256 unknowns (300 Adam
steps). The printed table gives each run's loss reduction beside the float state's.

.. code-block:: bash

   python examples/plot_state_bits.py --out figures/ [--quick]
"""

# %%
# The problems
# ------------
# The MLP's forward and backward passes are ``mlp_digits.py``'s, on float32 weights; the
# least-squares gradient is ``Xᵀ(Xw − y)/n``.
import sys

import _common
import matplotlib.pyplot as plt
import mlp_digits
import numpy as np

import optbowl as ob

BITS = (32, 16, 8)
STYLE = {32: ("#000000", "-"), 16: ("#0072B2", "--"), 8: ("#D55E00", ":")}


def digits_run(cls, hyper, bits, epochs, hidden):
    params = [p.astype(np.float32) for p in mlp_digits.init_params(hidden)]
    opt = cls(params, state_bits=bits, **hyper)
    X = mlp_digits.X_train.astype(np.float32)
    losses = []
    for _ in range(epochs):
        loss, grads = mlp_digits.loss_and_grads(params, X, mlp_digits.y_train)
        losses.append(loss)
        opt.step([g.astype(np.float32) for g in grads])
    return np.array(losses)


def least_squares_run(bits, rows, cols, steps):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, cols)).astype(np.float32)
    y = (X @ rng.standard_normal(cols) + 0.1 * rng.standard_normal(rows)).astype(np.float32)
    w = np.zeros(cols, np.float32)
    opt = ob.Adam(w, lr=0.01, state_bits=bits)
    losses = []
    for k in range(steps + 1):
        e = X @ w - y
        losses.append(float(e @ e) / (2 * rows))
        if k < steps:
            opt.step((X.T @ e / rows).astype(np.float32))
    return np.array(losses)


# %%
# Training and the figure
# -----------------------
# One panel per problem, one colour per state format; the reduction of the loss from its
# start is printed beside the float state's.

def main(argv=None):
    args = _common.parse_args(argv, "32/16/8-bit optimizer state side by side")
    epochs, hidden = (40, 16) if args.quick else (150, 32)
    rows, cols, steps = (500, 64, 300) if args.quick else (2000, 256, 300)

    fig, axes = plt.subplots(1, 3, figsize=(12.0, 4.0))
    print(f"{'problem':24s} {'bits':>4s} {'final loss':>11s} {'reduction':>10s} {'vs float':>9s}")
    problems = [
        ("digits MLP, Adam", lambda b: digits_run(ob.Adam, {"lr": 0.01}, b, epochs, hidden)),
        ("digits MLP, AdaGrad", lambda b: digits_run(ob.Adagrad, {"lr": 0.1}, b, epochs, hidden)),
        (f"least squares {rows}x{cols}, Adam", lambda b: least_squares_run(b, rows, cols, steps)),
    ]
    for ax, (title, run) in zip(axes, problems):
        reference = None
        for bits in BITS:
            losses = run(bits)
            reduction = losses[0] - losses[-1]
            reference = reduction if reference is None else reference
            colour, line = STYLE[bits]
            ax.semilogy(losses, color=colour, linestyle=line, lw=1.6, label=f"{bits}-bit state")
            print(f"{title:24s} {bits:4d} {losses[-1]:11.4e} {reduction:10.4e} "
                  f"{reduction / reference:9.4f}")
        ax.set(title=title, xlabel="step", ylabel="training loss")
        ax.legend(fontsize=8)
    fig.tight_layout()
    _common.save(fig, args.out, "state_bits", only=True)


# %%
# Run as a script (the gallery runs it so as well):

if __name__ == "__main__":
    main(sys.argv[1:])
