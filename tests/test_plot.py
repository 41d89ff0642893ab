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
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["gd", "momentum"]
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
