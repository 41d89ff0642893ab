"""Rprop does not care how each coordinate is scaled
===================================================

Rprop moves each coordinate by its own step size, following only the *sign* of the
gradient. Rescale the parameters, y = D⁻¹x with D diagonal and positive, and minimise
g(y) = f(Dy): the gradient becomes D∇f, whose signs are those of ∇f. So Rprop on g with
step sizes divided by D walks exactly the path Rprop walks on f — bit for bit when D's
entries are powers of two, since multiplying by them rounds nothing. Gradient descent has
no such invariance: on g its step in x is −ηD²∇f, so a badly scaled coordinate either
crawls or blows up, and the ill-conditioning a rescaling introduces is the learner's
problem.

Here f is a κ = 100 rotated bowl and D = diag(1/64, 16) (a badly scaled parameterisation,
κ of g in the tens of millions). Rprop (``optbowl.Rprop``, one param group per coordinate
for the per-coordinate step sizes) gives the same path for f and for g mapped back by D;
gradient descent on g, at its largest stable step, barely moves along the scaled-down
coordinate.

    python examples/rprop_invariance.py --out figures/ [--quick]

Writes ``rprop_invariance.png``; prints whether the two Rprop paths are bit-identical.
"""

# %%
# Setup
# -----
import sys

import _common
import matplotlib.pyplot as plt
import numpy as np

import optbowl as ob

BOWL = ob.QuadraticBowl.from_eigenvalues([1.0, 100.0], rotate=True, seed=3)
D = np.array([2.0**-6, 16.0])
X0 = np.array([-1.0, 0.8])


# %%
# Rprop on f and on g(y) = f(Dy)
# ------------------------------
def rprop(x0, steps, scale, on_g, variant="irprop-"):
    """Rprop with per-coordinate step sizes lr·scaleᵢ; on_g: run on g(y) = f(Dy)."""
    params = [np.array([v]) for v in x0]
    groups = [{"params": [p], "lr": 0.05 * s, "step_sizes": (1e-9 * s, 1.0 * s)}
              for p, s in zip(params, scale)]
    opt = ob.Rprop(groups, variant=variant)
    d = D if on_g else np.ones(2)
    path = [np.concatenate(params)]
    for _ in range(steps):
        x = d * np.concatenate(params)
        grad = d * BOWL.grad(x)  # ∇g(y) = D∇f(Dy)
        opt.step([grad[:1], grad[1:]], loss=float(BOWL.f(x)))
        path.append(np.concatenate(params))
    return np.array(path)


def gd_on_g(steps):
    y = X0 / D
    A = np.diag(D) @ BOWL.hessian @ np.diag(D)  # g's Hessian
    lr = 1.9 / np.linalg.eigvalsh(A)[-1]
    opt = ob.SGD(y, lr=lr)
    path = [D * y]
    for _ in range(steps):
        opt.step(D * BOWL.grad(D * y))
        path.append(D * y)
    return np.array(path), np.linalg.cond(A)


def figure(quick=False):
    steps = 60 if quick else 150
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    for variant in ("irprop-", "rprop+", "backtrack"):
        on_f = rprop(X0, steps, np.ones(2), on_g=False, variant=variant)
        on_g = D * rprop(X0 / D, steps, 1 / D, on_g=True, variant=variant)
        print(f"Rprop {variant:9s}: path on f and D·(path on g) bit-identical: "
              f"{np.array_equal(on_f, on_g)}; final error {np.linalg.norm(on_f[-1]):.3e}")
        if variant == "irprop-":
            left.plot(on_f[:, 0], on_f[:, 1], "o-", ms=6, mfc="none", color="tab:blue",
                      label="Rprop on f")
            left.plot(on_g[:, 0], on_g[:, 1], "x", ms=5, color="tab:orange",
                      label="Rprop on g(y) = f(Dy), step sizes ÷ D, shown as x = Dy")
            right.semilogy(np.linalg.norm(on_f, axis=1), color="tab:blue", label="Rprop on f")
            right.semilogy(np.linalg.norm(on_g, axis=1), ":", lw=3, color="tab:orange",
                           label="Rprop on g")
    gd, cond = gd_on_g(steps)
    print(f"gradient descent on g (kappa {cond:.3g}): final error {np.linalg.norm(gd[-1]):.3e}")
    left.plot(gd[:, 0], gd[:, 1], ".-", color="tab:green", label="gradient descent on g")
    right.semilogy(np.linalg.norm(gd, axis=1), color="tab:green",
                   label=f"gradient descent on g (κ = {cond:.2g})")
    xs, ys = np.meshgrid(np.linspace(-1.2, 1.2, 200), np.linspace(-1.2, 1.2, 200))
    left.contour(xs, ys, BOWL.f(np.stack([xs, ys], -1)), levels=15, cmap="Greys",
                 linewidths=0.6)
    left.set(xlabel="x₁", ylabel="x₂", aspect="equal",
             title="κ = 100 bowl; D = diag(1/64, 16)")
    left.legend(fontsize="x-small", loc="lower right")
    right.set(xlabel="step", ylabel="‖x_k − x*‖", title="error per step")
    right.legend(fontsize="small")
    fig.tight_layout()
    return fig


# %%
# Run
# ---
def main(argv=None):
    args = _common.parse_args(argv, "Rprop's invariance to diagonal rescaling")
    _common.save(figure(args.quick), args.out, "rprop_invariance", only=True)


if __name__ == "__main__":
    main(sys.argv[1:])
