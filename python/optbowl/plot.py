"""Figures of the bowl analysis (matplotlib, the optional extra ``optbowl[plot]``).

Every function draws into ``ax`` (a new figure's axes when None) and returns the axes (or
the figure, for the multi-panel :func:`regime_panels`). matplotlib is imported when a
function is first called, so ``import optbowl`` never needs it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .bowl import LINEAR_METHODS, PhaseDiagram, QuadraticBowl, SweepResult, Trajectory


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("optbowl.plot needs matplotlib: pip install 'optbowl[plot]'") from None
    return plt


def _axes(ax):
    if ax is None:  # constrained layout: labels and legends stay inside the figure
        _, ax = _pyplot().subplots(figsize=(5.5, 4.0), layout="constrained")
    return ax


def _points(path: Any) -> np.ndarray:
    return np.asarray(path.x if isinstance(path, Trajectory) else path, dtype=np.float64)


_SHORT = {"lr": "η", "momentum": "β", "dampening": "δ", "weight_decay": "w"}


def label(t: Trajectory) -> str:
    """A trajectory's legend entry: the method and its hyper-parameters (η, β, ...), the noise."""
    parts = []
    for k, v in t.hyper.items():
        if isinstance(v, (bool, np.bool_)) or v is None:
            if v:
                parts.append(k)
            continue
        if isinstance(v, (tuple, list)):
            shown = "(" + ", ".join(f"{float(e):.3g}" for e in v) + ")"
        elif isinstance(v, str):
            shown = v
        else:
            if k in ("momentum", "dampening", "weight_decay") and float(v) == 0.0:
                continue
            shown = f"{float(v):.4g}"
        parts.append(f"{_SHORT.get(k, k)}={shown}")
    if t.noise:
        parts.append(f"σ={t.noise:.3g}")
    return f"{t.method} ({', '.join(parts)})" if parts else t.method


def _style(n_points: int) -> str:
    return "-o" if n_points == 1 else "-"  # a lone point needs a marker to be seen


def contour(f: Any, paths: Sequence[Any] = (), *, bounds: Any = None, ax=None, levels: int = 30,
            labels: Optional[Sequence[str]] = None, equal: Optional[bool] = None):
    """Contours of a 2-D function (a QuadraticBowl or a Function) with optimizer paths on top.

    ``paths``: Trajectories or arrays of points (k, 2). ``bounds``: ((x0, x1), (y0, y1)),
    default the function's own, or for a bowl a square around the minimiser that holds the
    paths' starts and, up to 3× their distance, the paths (a divergent path leaves the box
    instead of stretching it to its last point). ``equal``: draw at equal aspect, so that
    the ellipses of a bowl keep their shape (default: True for a bowl). Legends show each
    trajectory's hyper-parameters.
    """
    ax = _axes(ax)
    if getattr(f, "n", getattr(f, "dim", None)) != 2:
        raise ValueError("f: contour needs a function of two variables")
    pts = [_points(p) for p in paths]
    is_bowl = isinstance(f, QuadraticBowl)
    if equal is None:
        equal = is_bowl
    if bounds is None:
        bounds = getattr(f, "bounds", None)
    if bounds is None:
        centre = f.minimizer_nearest(pts[0][0]) if pts else f.minimizer
        starts = [float(np.max(np.abs(p[0] - centre))) for p in pts if len(p)]
        reach = [float(np.max(np.abs(p[np.all(np.isfinite(p), axis=1)] - centre)))
                 for p in pts if len(p)]
        start = max(starts, default=1.0)
        half = 1.15 * max(min(max(reach, default=1.0), 3.0 * start), start, 1e-12)
        bounds = ((centre[0] - half, centre[0] + half), (centre[1] - half, centre[1] + half))
    (x0, x1), (y0, y1) = bounds
    X, Y = np.meshgrid(np.linspace(x0, x1, 200), np.linspace(y0, y1, 200))
    Z = f.f(np.stack([X, Y], -1))
    # Levels at quantiles of f over the box: as dense near the minimum as at the rim.
    ax.contour(X, Y, Z, levels=np.unique(np.quantile(Z, np.linspace(0.0, 1.0, levels + 2)[1:-1])),
               cmap="viridis", linewidths=0.8)
    for k, p in enumerate(pts):
        name = labels[k] if labels else (label(paths[k]) if isinstance(paths[k], Trajectory)
                                         else None)
        ax.plot(p[:, 0], p[:, 1], "-o", ms=2.5, lw=1.2, label=name)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    if equal:
        ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    if pts and (labels or any(isinstance(p, Trajectory) for p in paths)):
        ax.legend(fontsize="small")
    return ax


def convergence(trajectories: Sequence[Trajectory], *, ax=None, predicted: bool = True,
                labels: Optional[Sequence[str]] = None, by_direction: bool = False,
                floor: float = 1e-16):
    """Error ‖xₖ − x*‖ per step on a log scale, with the prediction drawn dashed.

    For the linear methods the dashed curve is the exact predicted trajectory's error
    (:meth:`QuadraticBowl.predict` from the same start, hyper-parameters and steps), and the
    legend gives the asymptotic rate ρ; a run that follows it confirms the theory. With
    ``by_direction``, every eigen-direction i is drawn on its own, ``|Qᵀ(xₖ − x*)|ᵢ``
    (:attr:`Trajectory.eigen_error`), beside its exact prediction (for gd, (1 − ηλᵢ)ᵏ times
    its start). Errors below ``floor`` times the largest start (rounding) are not drawn, and
    the x axis ends where the last curve reaches the floor, so a fast method's curve is not
    flattened by a slow one's. Legends show each trajectory's hyper-parameters.
    """
    ax = _axes(ax)
    if isinstance(trajectories, Trajectory):
        trajectories = [trajectories]
    curves: List[Tuple[np.ndarray, Dict[str, Any]]] = []  # (values, style arguments)
    for k, t in enumerate(trajectories):
        name = labels[k] if labels else f"{label(t)}, {t.source}"
        pred = None
        if predicted and t.method in LINEAR_METHODS and t.source == "run" or (
                predicted and t.method in LINEAR_METHODS and by_direction):
            pred = t.bowl.predict(t.method, t.x[0], t.steps, **t.hyper)
        if by_direction:
            lam = t.bowl.eigenvalues
            for i in range(t.bowl.n):
                curves.append((np.abs(t.eigen_error[:, i]), dict(label=f"{name}, λ={lam[i]:.3g}")))
                if pred is not None:
                    curves.append((np.abs(pred.eigen_error[:, i]),
                                   dict(ls="--", lw=1, same=True, label=None)))
            continue
        curves.append((t.error, dict(label=name)))
        if predicted and t.method in LINEAR_METHODS:
            rho = t.bowl.rate(t.method, **t.hyper)
            ref = pred.error if pred is not None else None
            if ref is None:  # a predicted trajectory: draw its asymptotic rate
                with np.errstate(divide="ignore", over="ignore", under="ignore"):
                    ref = t.error[0] * rho ** np.arange(t.steps + 1, dtype=np.float64)
            curves.append((ref, dict(ls="--", lw=1, same=True,
                                     label=f"predicted (ρ = {rho:.4g})")))
    top = max((float(v[0]) for v, _ in curves if v.size and np.isfinite(v[0])), default=1.0)
    low = floor * top if top > 0 else floor
    last = 0
    color = None
    for values, style in curves:
        shown = np.where((values > low) & np.isfinite(values), values, np.nan)
        above = np.nonzero(np.isfinite(shown))[0]
        if above.size:
            last = max(last, int(above[-1]) + 1)
        kw = {k: v for k, v in style.items() if k != "same"}
        if style.get("same") and color is not None:
            kw["color"] = color
        if values.size == 1:  # a lone point needs a marker to be seen
            kw["marker"] = "o"
        (line,) = ax.semilogy(np.arange(values.size), shown, **kw)
        if not style.get("same"):
            color = line.get_color()
    longest = max((v.size for v, _ in curves), default=1)
    ax.set_xlim(0, max(1, min(longest - 1, last)))
    ax.set_xlabel("step k")
    ax.set_ylabel("|Qᵀ(xₖ − x*)|ᵢ" if by_direction else "‖xₖ − x*‖")
    ax.legend(fontsize="x-small")
    return ax


def suboptimality(trajectories: Sequence[Trajectory], *, ax=None, bounds: bool = True,
                  labels: Optional[Sequence[str]] = None, floor: float = 1e-30):
    """f(xₖ) − f* per step on a log scale, with each method's upper bound dashed
    (:meth:`QuadraticBowl.f_bound`: gd's O(1/k) bound on a convex bowl, Kantorovich's for
    steepest descent, the Chebyshev bound of conjugate gradient)."""
    ax = _axes(ax)
    if isinstance(trajectories, Trajectory):
        trajectories = [trajectories]
    for k, t in enumerate(trajectories):
        gap = np.asarray(t.f, dtype=np.float64) - t.bowl.min_value
        shown = np.where((gap > floor) & np.isfinite(gap), gap, np.nan)
        steps = np.arange(gap.size)
        name = labels[k] if labels else label(t)
        (line,) = ax.semilogy(steps, shown, _style(gap.size), label=name)
        if bounds and t.method in ("gd", "steepest", "cg"):
            lr = t.hyper.get("lr") if t.method == "gd" else None
            b = t.bowl.f_bound(t.method, t.x[0], t.steps, lr=lr)
            what = {"gd": "‖x₀ − x*‖²/(2ηk)", "steepest": "((κ−1)/(κ+1))²ᵏ",
                    "cg": "4((√κ−1)/(√κ+1))²ᵏ"}[t.method]
            ax.semilogy(steps, np.where(b > floor, b, np.nan), "--", lw=1,
                        color=line.get_color(), label=f"bound {what}")
    ax.set_xlabel("step k")
    ax.set_ylabel("f(xₖ) − f*")
    ax.legend(fontsize="x-small")
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
    hp: Dict[str, Any] = {} if method == "gd" else {"momentum": momentum}
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
        # Each panel its own y range: one shared with the divergent panel flattens the rest.
        fig, axes = plt.subplots(1, len(factors), figsize=(2.6 * len(factors), 2.6))
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


def phase_diagram(diagram: PhaseDiagram, *, ax=None):
    """A :class:`~optbowl.bowl.PhaseDiagram`: the rate as colour over (lr, momentum), the
    regimes' borders drawn, and the contour rate = 1 (beyond it: divergence)."""
    ax = _axes(ax)
    rate = np.where(np.isfinite(diagram.rate), diagram.rate, np.nan)
    mesh = ax.pcolormesh(diagram.lr, diagram.momentum, np.minimum(rate, 1.5), shading="nearest",
                         cmap="viridis_r", vmin=0.0, vmax=1.5)
    ax.figure.colorbar(mesh, ax=ax, label="rate (clipped at 1.5)")
    names = sorted(set(diagram.regime.ravel().tolist()))
    code = np.vectorize(names.index)(diagram.regime).astype(float)
    if len(names) > 1:
        ax.contour(diagram.lr, diagram.momentum, code, levels=np.arange(len(names)) + 0.5,
                   colors="white", linewidths=0.8)
    if np.nanmin(rate) < 1.0 < np.nanmax(np.where(np.isfinite(diagram.rate), diagram.rate, 2.0)):
        ax.contour(diagram.lr, diagram.momentum, np.where(np.isfinite(diagram.rate),
                                                           diagram.rate, 10.0),
                   levels=[1.0], colors="red", linewidths=1.2)
    for name in names:  # each regime labelled at its cell nearest the centre of its cells
        i, j = np.nonzero(diagram.regime == name)
        k = int(np.argmin((i - i.mean()) ** 2 + (j - j.mean()) ** 2))
        ax.text(diagram.lr[j[k]], diagram.momentum[i[k]], name, fontsize="x-small",
                ha="center", va="center", color="white")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("momentum β")
    ax.set_title(f"{diagram.method}: rate and regime of the slowest direction", fontsize="small")
    return ax


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
