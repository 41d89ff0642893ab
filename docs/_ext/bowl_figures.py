"""Figures of the quadratic-bowl page, computed at build time by optbowl.

Trajectories come from the most direct source the installed package offers, and each
figure says which one it used:

1. ``optbowl.QuadraticBowl.run`` (the bowl simulator driving the compiled rules);
2. ``optbowl.SGD`` stepping a one-dimensional bowl (the compiled kernel, called from here);
3. the exact linear recurrence x_{k+1} = x_k - lr*a*x_k + momentum*(x_k - x_{k-1}),
   when the package has neither.

The Rprop and AdaGrad figure always runs the compiled kernels.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import matplotlib.pyplot as plt
import numpy as np

import optbowl as ob

SOURCES = {
    "bowl": "optbowl.QuadraticBowl.run",
    "sgd": "optbowl.SGD on a 1-D bowl",
    "recurrence": "the exact linear recurrence",
}


def _from_bowl(a: float, x0: float, lr: float, steps: int, momentum: float) -> np.ndarray:
    bowl = ob.QuadraticBowl(np.array([[a]]))
    if momentum:
        traj = bowl.run("momentum", np.array([x0]), steps, lr=lr, momentum=momentum)
    else:
        traj = bowl.run("gd", np.array([x0]), steps, lr=lr)
    x = np.asarray(traj.x, dtype=float).reshape(-1)
    if x.size == steps:  # trajectory without the starting point
        x = np.concatenate([[x0], x])
    return x


def _from_sgd(a: float, x0: float, lr: float, steps: int, momentum: float) -> np.ndarray:
    x = np.array([x0])
    opt = ob.SGD(x, lr=lr, momentum=momentum)
    xs = [x0]
    for _ in range(steps):
        opt.step(a * x)
        xs.append(float(x[0]))
    return np.array(xs)


def _from_recurrence(a: float, x0: float, lr: float, steps: int, momentum: float) -> np.ndarray:
    xs = [x0, x0 - lr * a * x0]
    for _ in range(steps - 1):
        xs.append(xs[-1] - lr * a * xs[-1] + momentum * (xs[-1] - xs[-2]))
    return np.array(xs[: steps + 1])


def trajectory(a: float, x0: float, lr: float, steps: int,
               momentum: float = 0.0) -> Tuple[np.ndarray, str]:
    """x_0 .. x_steps of gradient descent (heavy-ball momentum if momentum > 0) on f = a x²/2."""
    attempts = []
    if hasattr(ob, "QuadraticBowl"):
        attempts.append(("bowl", _from_bowl))
    if hasattr(ob, "SGD"):
        attempts.append(("sgd", _from_sgd))
    attempts.append(("recurrence", _from_recurrence))
    errors = []
    for name, fn in attempts:
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                return fn(a, x0, lr, steps, momentum), name
        except Exception as exc:  # an API still settling: fall through, and say so
            errors.append(f"{SOURCES[name]}: {type(exc).__name__}: {exc}")
    raise RuntimeError("; ".join(errors))  # pragma: no cover - the recurrence cannot fail


def _caption(ax, sources: set) -> None:
    ax.figure.text(
        0.99, 0.01, "computed by " + ", ".join(sorted(SOURCES[s] for s in sources)),
        ha="right", va="bottom", fontsize=7, color="0.4",
    )


def gd_regimes() -> None:
    """Seed 004's five regimes of gradient descent on f(x) = a x²/2 with a = 1."""
    a, steps = 1.0, 12
    cases = [
        (0.5, "monotone\nlr < 1/a"),
        (1.0, "one-step\nlr = 1/a"),
        (1.5, "oscillating\n1/a < lr < 2/a"),
        (2.0, "non-convergent\nlr = 2/a"),
        (2.15, "divergent\nlr > 2/a"),
    ]
    fig, axes = plt.subplots(1, len(cases), figsize=(10, 2.8), sharey=True)
    used = set()
    for ax, (lr, title) in zip(axes, cases):
        x, src = trajectory(a, 1.0, lr, steps)
        used.add(src)
        ax.axhline(0.0, color="0.8", lw=0.8)
        ax.plot(np.arange(x.size), x, "o-", ms=3)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("step k", fontsize=8)
        ax.set_ylim(-2.5, 2.5)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("x_k")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _caption(axes[0], used)


def _rate_theory(lams: np.ndarray, lr: float, momentum: float) -> float:
    if hasattr(ob, "QuadraticBowl"):
        try:
            bowl = ob.QuadraticBowl.from_eigenvalues(lams)
            if momentum:
                return float(bowl.rate("momentum", lr=lr, momentum=momentum))
            return float(bowl.rate("gd", lr=lr))
        except Exception:
            pass
    worst = 0.0
    for lam in lams:
        companion = np.array([[1.0 + momentum - lr * lam, -momentum], [1.0, 0.0]])
        worst = max(worst, float(np.max(np.abs(np.linalg.eigvals(companion)))))
    return worst


def momentum_analysis() -> None:
    """Goh's picture: rate against step size, and the √κ speed-up at the optimum."""
    lam_min, lam_max = 1.0, 100.0
    lams = np.array([lam_min, lam_max])
    kappa = lam_max / lam_min
    beta_opt = ((np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)) ** 2
    lr_gd = 2.0 / (lam_min + lam_max)
    lr_mom = (2.0 / (np.sqrt(lam_min) + np.sqrt(lam_max))) ** 2

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    grid = np.linspace(1e-4, 2.0 * (1.0 + beta_opt) / lam_max * 1.04, 400)
    for beta, label in [(0.0, "gradient descent"), (0.5, "momentum β = 0.5"),
                        (beta_opt, f"momentum β* = {beta_opt:.3f}")]:
        ax1.plot(grid * lam_max, [_rate_theory(lams, lr, beta) for lr in grid], label=label)
    ax1.axhline(1.0, color="0.6", lw=0.8, ls="--")
    ax1.set_xlabel("lr · λ_max")
    ax1.set_ylabel("rate (contraction per step)")
    ax1.set_ylim(0.7, 1.1)
    ax1.axvline(lr_gd * lam_max, color="C0", lw=0.6, ls=":")
    ax1.axvline(lr_mom * lam_max, color="C2", lw=0.6, ls=":")
    ax1.set_title(f"κ = {kappa:g}: rate = spectral radius of the iteration", fontsize=9)
    ax1.legend(fontsize=7)

    steps = 120
    used = set()
    for lr, beta, label in [(lr_gd, 0.0, "GD, lr = 2/(λ₁+λₙ)"),
                            (lr_mom, beta_opt, "momentum, optimal lr and β")]:
        err = np.zeros(steps + 1)
        for lam in lams:  # the axes of a diagonal bowl evolve independently
            x, src = trajectory(lam, 1.0, lr, steps, momentum=beta)
            used.add(src)
            err = np.maximum(err, np.abs(x))
        line, = ax2.semilogy(np.arange(steps + 1), err, label=label)
        rate = _rate_theory(lams, lr, beta)
        ax2.semilogy(np.arange(steps + 1), rate ** np.arange(steps + 1), ls=":",
                     color=line.get_color())
    ax2.set_xlabel("step k")
    ax2.set_ylabel("max |x_k,i|  (dotted: rate^k)")
    ax2.set_title("error on the bowl λ = (1, 100)", fontsize=9)
    ax2.legend(fontsize=7)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _caption(ax1, used)


def rprop_on_bowl() -> None:
    """Every Rprop variant and AdaGrad on an ill-conditioned diagonal bowl (compiled kernels)."""
    n, steps = 2000, 150
    lam = np.logspace(0.0, 4.0, n)
    results: Dict[str, List[float]] = {}

    def run(name, make_opt, needs_loss=False):
        x = np.ones(n)
        opt = make_opt(x)
        losses = [0.5 * float(lam @ (x * x))]
        for _ in range(steps):
            g = lam * x
            if needs_loss:
                opt.step(g, loss=losses[-1])
            else:
                opt.step(g)
            losses.append(0.5 * float(lam @ (x * x)))
        results[name] = losses

    for variant in ("irprop-", "rprop-", "rprop+", "irprop+", "backtrack"):
        run(f"Rprop {variant}", lambda x, v=variant: ob.Rprop(x, lr=0.1, variant=v),
            needs_loss=variant == "irprop+")
    run("AdaGrad lr=0.5", lambda x: ob.Adagrad(x, lr=0.5))

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, losses in results.items():
        ax.semilogy(losses, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("f(x)")
    ax.set_ylim(1e-14, None)
    ax.set_title(f"f(x) = ½ Σ λᵢ xᵢ², {n} parameters, λ log-spaced over [1, 10⁴]", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _caption_text = "computed by optbowl.Rprop and optbowl.Adagrad (compiled kernels)"
    fig.text(0.99, 0.01, _caption_text, ha="right", va="bottom", fontsize=7, color="0.4")


def _computed_by(fig, text: str) -> None:
    # supxlabel: the constrained layout keeps room for it below the axes' own labels
    fig.supxlabel("computed by " + text, x=0.99, ha="right", fontsize=7, color="0.4")


def convex_bound() -> None:
    """Gradient descent on a convex, not strongly convex bowl against the O(1/k) bound."""
    lam = np.array([0.0, 1e-4, 1e-3, 1e-2, 0.1, 1.0])
    bowl = ob.QuadraticBowl.from_eigenvalues(lam, rotate=True, seed=7)
    x0 = np.ones(lam.size)
    fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
    runs = [bowl.run("gd", x0, 3000, lr=lr) for lr in (1.0, 0.3)]
    ob.plot.suboptimality(runs, ax=ax)
    ax.set_xscale("log")
    ax.set_title("eigenvalues 0, 1e-4 … 1: f(x_k) − f* ≤ ‖x₀ − x*‖²/(2ηk), x* nearest x₀",
                 fontsize=9)
    _computed_by(fig, "optbowl.QuadraticBowl.run and f_bound")


def line_search_bounds() -> None:
    """Steepest descent, conjugate gradient, Polyak and gd on κ = 100, with their bounds."""
    bowl = ob.QuadraticBowl.from_eigenvalues(np.geomspace(1.0, 100.0, 30), rotate=True, seed=2,
                                             minimizer=np.ones(30))
    x0 = np.zeros(30)
    steps = 120
    runs = [bowl.run("gd", x0, steps, lr=1.0 / bowl.L), bowl.run("steepest", x0, steps),
            bowl.run("cg", x0, 40), bowl.run("polyak", x0, steps)]
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    ob.plot.suboptimality(runs, ax=ax)
    ax.set_title("30 eigenvalues over [1, 100]: runs (solid) and their bounds (dashed)",
                 fontsize=9)
    _computed_by(fig, "optbowl.QuadraticBowl.run (steepest, cg, polyak: line search in C++)")


def noise_floor() -> None:
    """SGD with gradient noise: the error settles at the floor stationary_variance predicts."""
    bowl = ob.QuadraticBowl.from_eigenvalues([0.2, 1.0, 5.0], rotate=True, seed=3,
                                             minimizer=[1.0, -1.0, 0.5])
    sigma, steps = 0.5, 4000
    x0 = bowl.minimizer + 3.0
    fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
    for lr in (0.3, 0.1, 0.03):
        t = bowl.run("gd", x0, steps, noise=sigma, seed=0, lr=lr)
        gap = t.f - bowl.min_value
        window = 50
        smooth = np.convolve(gap, np.ones(window) / window, mode="valid")
        (line,) = ax.semilogy(np.arange(smooth.size) + window // 2, smooth,
                              label=f"gd η={lr:g}, σ={sigma:g} (run, moving mean)")
        floor = 0.5 * float(bowl.eigenvalues @ bowl.stationary_variance("gd", sigma, lr=lr))
        ax.axhline(floor, color=line.get_color(), ls="--", lw=1,
                   label=f"predicted E[f − f*] = {floor:.3g}")
    ax.set_xlabel("step k")
    ax.set_ylabel("f(x_k) − f*")
    ax.set_title("the noise floor ½ Σ λᵢ Var(eᵢ), Var(eᵢ) = ησ²/(λᵢ(2 − ηλᵢ))", fontsize=9)
    ax.legend(fontsize=7)
    _computed_by(fig, "optbowl.QuadraticBowl.run(noise=σ) and stationary_variance")


def minibatch_floor(quick: bool = False) -> dict:
    """Minibatch SGD on a least-squares bowl: the floor falls like 1/batch size.

    f(x) = ‖Xx − y‖²/(2N) is the bowl A = XᵀX/N, b = Xᵀy/N. A minibatch of B rows drawn
    with replacement gives the gradient plus noise of covariance S/B, S the covariance of
    one row's gradient at x*; stationary_variance with σᵢ² = (QᵀSQ)ᵢᵢ/B predicts the floor.
    (Additive noise is an approximation: a batch's noise also grows with the error itself,
    a relative correction of order ηλ; at η = 0.05 batch size 1 measured 30 % above the
    prediction, at η = 0.01 all sizes agree within a few per cent.) Returns
    {batch: (measured, predicted)}.
    """
    rng = np.random.default_rng(0)
    N, n = 2000, 4
    X = rng.standard_normal((N, n)) * np.array([2.0, 1.0, 0.7, 0.4])
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.5 * rng.standard_normal(N)
    bowl = ob.QuadraticBowl(X.T @ X / N, X.T @ y / N, float(y @ y) / (2 * N))
    xs = bowl.minimizer
    per_row = X * (X @ xs - y)[:, None]  # each row's gradient at x*
    S = np.cov(per_row.T, bias=True)
    Q = bowl.eigenvectors
    s_diag = np.diag(Q.T @ S @ Q)
    lr = 0.01
    steps, burn = (3000, 500) if quick else (40000, 2000)
    out = {}
    for batch in (1, 4, 16, 64):
        x = xs.copy()
        opt = ob.SGD(x, lr=lr)
        gaps = []
        for k in range(steps):
            rows = rng.integers(0, N, batch)
            Xb = X[rows]
            opt.step(Xb.T @ (Xb @ x - y[rows]) / batch)
            if k >= burn:
                gaps.append(float(bowl.f(x)) - bowl.min_value)
        var = bowl.stationary_variance("gd", np.sqrt(s_diag / batch), lr=lr)
        out[batch] = (float(np.mean(gaps)), 0.5 * float(bowl.eigenvalues @ var))
    return out


def minibatch_figure() -> None:
    """The figure of minibatch_floor: measured and predicted floors against the batch size."""
    res = minibatch_floor()
    batches = np.array(sorted(res))
    measured = np.array([res[b][0] for b in batches])
    predicted = np.array([res[b][1] for b in batches])
    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    ax.loglog(batches, measured, "o", label="measured: minibatch optbowl.SGD, η = 0.01")
    ax.loglog(batches, predicted, "--", label="predicted: stationary_variance, σ² = S/B")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("stationary E[f − f*]")
    ax.set_title("least squares, N = 2000 rows, 4 features: the floor falls like 1/B", fontsize=9)
    ax.legend(fontsize=7)
    _computed_by(fig, "optbowl.SGD on minibatches; optbowl.QuadraticBowl.stationary_variance")


def by_direction() -> None:
    """The error along each eigenvector, run and exact prediction."""
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 5.0, 20.0], rotate=True, seed=1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    ob.plot.convergence(bowl.run("gd", [1.0, 1.0, 1.0], 60, lr=0.09), by_direction=True, ax=ax1)
    best = bowl.optimal("momentum")
    ob.plot.convergence(bowl.run("momentum", [1.0, 1.0, 1.0], 60, lr=best["lr"],
                                 momentum=best["momentum"]), by_direction=True, ax=ax2)
    ax1.set_title("gd: (1 − ηλᵢ)ᵏ per direction, the flat one last", fontsize=9)
    ax2.set_title("momentum at Goh's optimum: k·ρᵏ at λ₁ and λₙ (critically damped)", fontsize=9)
    _computed_by(fig, "optbowl.QuadraticBowl.run (solid) and predict (dashed)")


def phase_diagram() -> None:
    """Momentum's phase diagram on one eigenvalue, and on a κ = 10 bowl."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    lrs = np.linspace(0.01, 4.2, 240)
    betas = np.linspace(0.0, 0.99, 160)
    ob.plot.phase_diagram(ob.QuadraticBowl([[1.0]]).phase_diagram("momentum", lr=lrs,
                                                                  momentum=betas), ax=ax1)
    ax1.set_title("heavy ball on ½λx², λ = 1 (Goh's diagram)", fontsize=9)
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 10.0])
    ob.plot.phase_diagram(bowl.phase_diagram("momentum", lr=np.linspace(0.005, 0.42, 240),
                                             momentum=betas), ax=ax2)
    best = bowl.optimal("momentum")
    ax2.plot([best["lr"]], [best["momentum"]], "r*", ms=9)
    ax2.set_title("λ = 1, 10: the slowest direction; ★ Goh's optimum", fontsize=9)
    _computed_by(fig, "optbowl.QuadraticBowl.phase_diagram")
