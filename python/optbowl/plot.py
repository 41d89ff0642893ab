"""Figures of the bowl analysis (matplotlib, the optional extra ``optbowl[plot]``).

Every function draws into ``ax`` (a new figure's axes when None) and returns the axes (or
the figure, for the multi-panel :func:`regime_panels`). matplotlib is imported when a
function is first called, so ``import optbowl`` never needs it.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .bowl import LINEAR_METHODS, QuadraticBowl, SweepResult, Trajectory


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("optbowl.plot needs matplotlib: pip install 'optbowl[plot]'") from None
    return plt


def _axes(ax):
    if ax is None:
        _, ax = _pyplot().subplots(figsize=(5.5, 4.0))
    return ax


def _points(path: Any) -> np.ndarray:
    return np.asarray(path.x if isinstance(path, Trajectory) else path, dtype=np.float64)


def contour(f: Any, paths: Sequence[Any] = (), *, bounds: Any = None, ax=None, levels: int = 30,
            labels: Optional[Sequence[str]] = None):
    """Contours of a 2-D function (a QuadraticBowl or a Function) with optimizer paths on top.

    ``paths``: Trajectories or arrays of points (k, 2). ``bounds``: ((x0, x1), (y0, y1)),
    default the function's own, or for a bowl a box around the minimiser and the paths.
    """
    ax = _axes(ax)
    if getattr(f, "n", getattr(f, "dim", None)) != 2:
        raise ValueError("f: contour needs a function of two variables")
    pts = [_points(p) for p in paths]
    if bounds is None:
        bounds = getattr(f, "bounds", None)
    if bounds is None:
        centre = f.minimizer
        spread = [np.abs(p[np.all(np.isfinite(p), axis=1)] - centre).max(axis=0)
                  for p in pts] or [np.ones(2)]
        half = 1.15 * np.maximum(np.max(spread, axis=0), 1e-12)
        bounds = ((centre[0] - half[0], centre[0] + half[0]),
                  (centre[1] - half[1], centre[1] + half[1]))
    (x0, x1), (y0, y1) = bounds
    X, Y = np.meshgrid(np.linspace(x0, x1, 200), np.linspace(y0, y1, 200))
    Z = f.f(np.stack([X, Y], -1))
    # Levels at quantiles of f over the box: as dense near the minimum as at the rim.
    ax.contour(X, Y, Z, levels=np.unique(np.quantile(Z, np.linspace(0.0, 1.0, levels + 2)[1:-1])),
               cmap="viridis", linewidths=0.8)
    for k, p in enumerate(pts):
        label = labels[k] if labels else (paths[k].method if isinstance(paths[k], Trajectory)
                                          else None)
        ax.plot(p[:, 0], p[:, 1], "-o", ms=2.5, lw=1.2, label=label)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    if pts and (labels or any(isinstance(p, Trajectory) for p in paths)):
        ax.legend(fontsize="small")
    return ax


def convergence(trajectories: Sequence[Trajectory], *, ax=None, predicted: bool = True,
                labels: Optional[Sequence[str]] = None):
    """Error ‖xₖ − x*‖ per step on a log scale, with the predicted rate ρᵏ drawn dashed.

    The dashed line starts at the first error and falls by ``bowl.rate(method, **hyper)``
    per step (linear methods only); a run that follows it confirms the theory.
    """
    ax = _axes(ax)
    if isinstance(trajectories, Trajectory):
        trajectories = [trajectories]
    for k, t in enumerate(trajectories):
        err = t.error
        steps = np.arange(err.size)
        shown = np.where(err > 0, err, np.nan)
        name = labels[k] if labels else f"{t.method} ({t.source})"
        (line,) = ax.semilogy(steps, shown, label=name)
        if predicted and t.method in LINEAR_METHODS:
            rho = t.bowl.rate(t.method, **t.hyper)
            with np.errstate(divide="ignore", over="ignore"):
                ref = err[0] * rho ** steps.astype(np.float64)
            ax.semilogy(steps, np.where(ref > 0, ref, np.nan), "--", color=line.get_color(), lw=1,
                        label=f"predicted ρ = {rho:.4g}")
    ax.set_xlabel("step k")
    ax.set_ylabel("‖xₖ − x*‖")
    ax.legend(fontsize="small")
    return ax


def lr_sweep(bowl: QuadraticBowl, method: str, lrs: Any, *, momentum: float = 0.0,
             result: Optional[SweepResult] = None, ax=None):
    """Predicted rate against the learning rate, the regime boundaries of λ₁ and λₙ marked.

    ``result``: a :class:`~optbowl.SweepResult` over the same ``lrs`` (measured rates drawn
    as dots). Vertical lines: where the fastest and slowest directions change regime
    (:meth:`QuadraticBowl.lr_boundaries`), and the optimal step.
    """
    ax = _axes(ax)
    lrs = np.asarray(lrs, dtype=np.float64).reshape(-1)
    hp = {} if method == "gd" else {"momentum": momentum}
    theory = np.array([bowl.rate(method, lr=float(lr), **hp) for lr in lrs])
    ax.plot(lrs, theory, "-", color="k", lw=1.5, label="predicted rate")
    if result is not None:
        measured = np.asarray(result.rate, dtype=np.float64).reshape(-1)
        ax.plot(lrs, np.where(np.isfinite(measured), measured, np.nan), "o", ms=3,
                label="measured rate")
    bounds = bowl.lr_boundaries(method, **hp)
    styles = {"one-step": ":", "ripple-start": "-.", "ripple-end": "-.", "non-convergent": "--"}
    for name, values in bounds.items():
        for which, lr in (("λₙ", values[-1]), ("λ₁", values[0])):
            if np.isfinite(lr) and lrs.min() <= lr <= lrs.max():
                ax.axvline(lr, ls=styles[name], lw=0.9,
                           color="tab:red" if which == "λₙ" else "tab:blue",
                           label=f"{name} ({which})")
    if method == "gd":
        ax.axvline(bowl.optimal("gd")["lr"], color="tab:green", lw=1.2, label="optimal η")
    ax.axhline(1.0, color="gray", lw=0.6)
    ax.set_xscale("log")
    ax.set_ylim(0.0, min(2.0, max(1.2, float(np.nanmax(theory[np.isfinite(theory)]))
                                  if np.any(np.isfinite(theory)) else 1.2)))
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("contraction per step")
    ax.set_title(f"{method}, κ = {bowl.condition_number:.4g}")
    ax.legend(fontsize="x-small")
    return ax


def regime_panels(curvature: float = 1.0, factors: Sequence[float] = (0.5, 1.0, 1.5, 2.0, 2.2), *,
                  steps: int = 6, x0: float = 1.0, axes=None):
    """Seed 004's 1-D panels: gradient descent on ½λx² with η = factor·η_opt, η_opt = 1/λ.

    One panel per factor, the parabola with the iterates joined as they jump; the title is
    the regime :meth:`QuadraticBowl.regime` assigns (monotone, one-step, oscillating,
    non-convergent, divergent). Returns the figure.
    """
    plt = _pyplot()
    if axes is None:
        fig, axes = plt.subplots(1, len(factors), figsize=(2.6 * len(factors), 2.6), sharey=True)
    axes = np.atleast_1d(axes)
    fig = axes[0].figure
    bowl = QuadraticBowl([[curvature]])
    for ax, factor in zip(axes, factors):
        eta = factor / curvature
        path = bowl.predict("gd", [x0], steps, lr=eta).x[:, 0]
        reach = max(abs(x0), float(np.max(np.abs(path[np.isfinite(path)])))) * 1.1
        grid = np.linspace(-reach, reach, 200)
        ax.plot(grid, 0.5 * curvature * grid**2, color="0.6", lw=1)
        ax.plot(path, 0.5 * curvature * path**2, "-o", ms=3, color="tab:red", lw=1)
        ax.set_title(f"η = {factor:g}·η_opt\n{bowl.regime('gd', lr=eta)[0]}", fontsize="small")
        ax.set_xlabel("x")
    fig.tight_layout()
    return fig


def landscape(result: Any, *, ax=None, levels: int = 30):
    """Contours of a :func:`optbowl.landscape.loss_landscape` result over (α, β)."""
    ax = _axes(ax)
    A, B = np.meshgrid(result.alphas, result.betas, indexing="ij")
    cs = ax.contour(A, B, result.values, levels=levels, cmap="viridis", linewidths=0.8)
    ax.clabel(cs, fontsize="x-small")
    ax.plot([0], [0], "k+")
    ax.set_xlabel("α (direction 1)")
    ax.set_ylabel("β (direction 2)")
    return ax
