"""optbowl.plot renders every figure to PNG with the Agg backend."""

import subprocess
import sys

import numpy as np
import pytest

import optbowl as ob
from optbowl import functions as F
from optbowl import landscape as L

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def save(fig, tmp_path, name):
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=60)
    plt.close(fig)
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 2000
    return path


def test_import_optbowl_does_not_import_matplotlib():
    code = "import sys, optbowl; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
    assert ob.plot.contour is not None  # attribute access imports it


def test_contour_with_paths(tmp_path):
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 20.0], rotate=True, seed=1)
    paths = [bowl.predict("gd", [2.0, 1.0], 30, lr=0.09), bowl.predict("momentum", [2.0, 1.0], 30)]
    ax = ob.plot.contour(bowl, paths)
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[1].get_xydata(), paths[1].x)
    hp = paths[1].hyper
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "gd (η=0.09)", f"momentum (η={hp['lr']:.4g}, β={hp['momentum']:.4g})"]
    assert ax.get_aspect() == 1.0  # ellipses keep their shape
    save(ax.figure, tmp_path, "contour")
    ax = ob.plot.contour(F.rosenbrock(), [np.array([[-1.0, 1.5], [0.0, 0.5], [1.0, 1.0]])])
    assert ax.get_xlim() == (-2.0, 2.0)
    save(ax.figure, tmp_path, "rosenbrock")
    with pytest.raises(ValueError, match="two variables"):
        ob.plot.contour(F.risk)


def test_convergence_draws_the_predicted_rate(tmp_path):
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 10.0])
    t = bowl.predict("gd", [1.0, 1.0], 40, lr=0.15)
    run = bowl.run("rprop", [1.0, 1.0], 40, lr=0.1)
    ax = ob.plot.convergence([t, run])
    assert len(ax.lines) == 3  # gd, its predicted line, rprop (no prediction)
    k, ref = ax.lines[1].get_xydata().T
    np.testing.assert_allclose(ref, t.error[0] * bowl.rate("gd", lr=0.15) ** k)
    assert ax.get_yscale() == "log"
    save(ax.figure, tmp_path, "convergence")


def test_lr_sweep_marks_the_regime_boundaries(tmp_path):
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 10.0])
    lrs = np.logspace(-2, np.log10(0.3), 30)
    res = ob.sweep(bowl, "adagrad", [1.0, 1.0], 50, lr=lrs)
    ax = ob.plot.lr_sweep(bowl, "gd", lrs, result=res)
    xs = sorted(line.get_xdata()[0] for line in ax.lines if len(set(line.get_xdata())) == 1)
    # 1/λₙ, 2/λₙ, optimal (1/λ₁ is off-range)
    np.testing.assert_allclose(xs, sorted([0.1, 0.2, 2 / 11]))
    save(ax.figure, tmp_path, "sweep_gd")
    ax = ob.plot.lr_sweep(bowl, "momentum", np.logspace(-3, 0, 40), momentum=0.5)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "ripple-start (λₙ)" in labels and "non-convergent (λₙ)" in labels
    save(ax.figure, tmp_path, "sweep_momentum")


def test_regime_panels_like_seed_004(tmp_path):
    fig = ob.plot.regime_panels(curvature=2.0)
    titles = [ax.get_title().split("\n")[1] for ax in fig.axes]
    assert titles == ["monotone", "one-step", "oscillating", "non-convergent", "divergent"]
    save(fig, tmp_path, "regimes")


def test_landscape_plot(tmp_path):
    rng = np.random.default_rng(0)
    land = L.loss_landscape(lambda ps: float(np.sum(ps[0] ** 2)), [rng.standard_normal((3, 4))],
                            resolution=9)
    ax = ob.plot.landscape(land)
    save(ax.figure, tmp_path, "landscape")


# ------------------------------------------------------------------ figure defects
def test_a_one_point_run_is_drawn(tmp_path):
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 10.0])
    t = bowl.run("gd", [1.0, 1.0], 0, lr=0.1)
    ax = ob.plot.convergence(t)
    drawn = [line for line in ax.lines if np.isfinite(line.get_ydata()).any()]
    assert drawn and all(line.get_marker() not in (None, "None", "") for line in drawn)
    save(ax.figure, tmp_path, "one_point")


def _inside(fig, artist):
    fig.canvas.draw()
    box = artist.get_window_extent()
    W, H = fig.canvas.get_width_height()
    return box.x0 >= 0 and box.y0 >= 0 and box.x1 <= W and box.y1 <= H


def test_lr_sweep_keeps_its_labels_inside_the_figure():
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 10.0])
    ax = ob.plot.lr_sweep(bowl, "gd", np.logspace(-2, 0, 30))
    assert _inside(ax.figure, ax.xaxis.label) and _inside(ax.figure, ax.yaxis.label)
    plt.close(ax.figure)


def test_a_divergent_path_does_not_stretch_the_contours(tmp_path):
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 100.0], rotate=True, seed=0)
    x0 = bowl.minimizer + bowl.eigenvectors @ np.ones(2)
    paths = [bowl.predict("gd", x0, 60, lr=0.03), bowl.predict("gd", x0, 60, lr=0.0199)]
    assert np.max(np.abs(paths[0].x)) > 1e17
    ax = ob.plot.contour(bowl, paths)
    (a, b), (c, d) = ax.get_xlim(), ax.get_ylim()
    start = np.max(np.abs(x0 - bowl.minimizer))
    assert b - a <= 2 * 1.15 * 3 * start + 1e-9 and d - c == pytest.approx(b - a)
    assert ax.get_aspect() == 1.0
    save(ax.figure, tmp_path, "divergent_contour")


def test_regime_panels_have_their_own_y_axes():
    fig = ob.plot.regime_panels(curvature=2.0)
    tops = [ax.get_ylim()[1] for ax in fig.axes]
    assert tops[-1] > 5 * tops[0]  # the divergent panel no longer sets the others' range
    plt.close(fig)


def test_convergence_x_and_y_ranges_follow_the_visible_curves(tmp_path):
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 100.0])
    fast = bowl.predict("momentum", [1.0, 1.0], 2000)
    slow = bowl.predict("gd", [1.0, 1.0], 2000)
    ax = ob.plot.convergence([fast, slow])
    low, _ = ax.get_ylim()
    assert low > 1e-18  # nothing drawn below rounding: the fast curve is cut at 1e-16
    assert ax.get_xlim()[1] < 2000  # both reach 1e-16 before 2000 steps
    assert ax.get_xlim()[1] >= 1000  # gd (rate 0.98) takes about 1800
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("η=" in t and "β=" in t for t in texts)
    save(ax.figure, tmp_path, "ranges")


def test_convergence_by_direction_draws_the_exact_predicted_curves(tmp_path):
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 4.0, 10.0], rotate=True, seed=2)
    run = bowl.run("gd", [1.0, 2.0, 3.0], 40, lr=0.15)
    ax = ob.plot.convergence(run, by_direction=True)
    assert len(ax.lines) == 6  # each direction and its prediction
    pred = bowl.predict("gd", [1.0, 2.0, 3.0], 40, lr=0.15)
    for i in range(3):
        drawn, predicted = ax.lines[2 * i].get_ydata(), ax.lines[2 * i + 1].get_ydata()
        shown = np.isfinite(drawn)  # down to 1e-16 of the start: below is rounding
        assert shown.sum() >= 20
        np.testing.assert_allclose(drawn[shown], np.abs(run.eigen_error[shown, i]))
        np.testing.assert_allclose(predicted[shown], np.abs(pred.eigen_error[shown, i]))
        e0 = np.abs(pred.eigen_error[0, i])
        exact = e0 * np.abs(1 - 0.15 * bowl.eigenvalues[i]) ** np.arange(41)
        np.testing.assert_allclose(predicted[shown], exact[shown], rtol=1e-10)
    save(ax.figure, tmp_path, "by_direction")


def test_suboptimality_draws_each_bound(tmp_path):
    bowl = ob.QuadraticBowl.from_eigenvalues([0.0, 0.01, 0.1, 1.0], rotate=True, seed=1)
    pd = ob.QuadraticBowl.from_eigenvalues([1.0, 3.0, 20.0], rotate=True, seed=1)
    runs = [bowl.run("gd", np.ones(4), 200, lr=1.0)]
    ax = ob.plot.suboptimality(runs)
    np.testing.assert_allclose(ax.lines[1].get_ydata()[1:],
                               bowl.f_bound("gd", np.ones(4), 200, lr=1.0)[1:])
    assert np.all(ax.lines[0].get_ydata()[1:] <= ax.lines[1].get_ydata()[1:] * (1 + 1e-9))
    save(ax.figure, tmp_path, "convex_bound")
    ax = ob.plot.suboptimality([pd.run("steepest", np.ones(3), 30), pd.run("cg", np.ones(3), 3)])
    assert len(ax.lines) == 4
    save(ax.figure, tmp_path, "line_search_bounds")


def test_phase_diagram_plot(tmp_path):
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 10.0])
    diagram = bowl.phase_diagram("momentum", lr=np.linspace(0.005, 0.5, 40),
                                 momentum=np.linspace(0.0, 0.99, 30))
    ax = ob.plot.phase_diagram(diagram)
    texts = {t.get_text() for t in ax.texts}
    assert {"ripple", "divergent"} <= texts
    save(ax.figure, tmp_path, "phase")
