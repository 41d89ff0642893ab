"""Newton is drawn to saddles, gradient descent leaves them; BFGS and Levenberg–Marquardt."""

import numpy as np
import pytest

import optbowl as ob
from optbowl import functions as F
from optbowl.landscape import descend, newton, scipy_path

pytest.importorskip("scipy", reason="BFGS and Levenberg–Marquardt come from SciPy")


def test_double_well_has_a_saddle_between_two_minima():
    points = ob.find_critical_points(F.double_well)
    kinds = {tuple(np.round(p.x, 9)): p.kind for p in points}
    assert kinds == {(0.0, -1.0): "minimum", (0.0, 0.0): "saddle", (0.0, 1.0): "minimum"}
    p = np.random.default_rng(0).uniform(-1.5, 1.5, (50, 2))
    h = 1e-6
    for i in range(2):
        e = np.eye(2)[i] * h
        assert np.allclose(F.double_well.grad(p)[:, i],
                           (F.double_well(p + e) - F.double_well(p - e)) / (2 * h), atol=1e-7)
        assert np.allclose(F.double_well.hessian(p)[:, :, i],
                           (F.double_well.grad(p + e) - F.double_well.grad(p - e)) / (2 * h),
                           atol=1e-6)


@pytest.mark.parametrize("start", [(0.8, 0.3), (-1.0, -0.44), (1.2, 0.05)])
def test_newton_runs_to_the_saddle_and_gradient_descent_escapes(start):
    # Newton on y is y ← 2y³/(3y² − 1), which shrinks |y| for y² < 1/5: there it runs to the
    # saddle, where the Hessian diag(2, 3y² − 1) is indefinite
    to_saddle = newton(F.double_well, start, 30)[-1]
    assert np.allclose(to_saddle, 0.0, atol=1e-12)
    gd = descend(F.double_well, np.array(start), 300, ob.SGD, lr=0.1)[-1]
    assert np.allclose(gd, [0.0, np.sign(start[1])], atol=1e-9)  # the minimum on its side


def test_rosenbrock_residuals_square_to_f():
    rosen = F.rosenbrock(1.5, 30.0)
    p = np.random.default_rng(1).normal(size=(20, 2))
    r = rosen.residuals(p)
    assert np.allclose((r * r).sum(-1), rosen(p))
    J = rosen.residual_jacobian(p)
    assert np.allclose(2 * np.einsum("mji,mj->mi", J, r), rosen.grad(p))


@pytest.mark.parametrize("method", ["BFGS", "lm"])
def test_bfgs_and_levenberg_marquardt_reach_rosenbrocks_minimum(method):
    rosen = F.rosenbrock()
    path = scipy_path(rosen, [-1.2, 1.0], method)
    assert path.shape[1] == 2 and np.array_equal(path[0], [-1.2, 1.0])
    assert np.allclose(path[-1], [1.0, 1.0], atol=1e-6)
    assert 3 < len(path) < 100
    values = rosen(path)
    assert values[-1] < 1e-12 and (method != "lm" or np.all(np.diff(values) <= 0))
    # gradient descent at its largest stable step gets nowhere near in as many steps
    gd = descend(rosen, np.array([-1.2, 1.0]), len(path), ob.SGD, lr=1e-3)[-1]
    assert rosen(gd) > 1e3 * values[-1]


def test_scipy_path_arguments():
    with pytest.raises(ValueError, match="^method:"):
        scipy_path(F.rosenbrock(), [0.0, 0.0], "newton")
    with pytest.raises(TypeError, match="^f:"):
        scipy_path(F.double_well, [0.5, 0.5], "lm")
    with pytest.raises(ValueError, match="^x0:"):
        scipy_path(F.rosenbrock(), [np.nan, 0.0])
    with pytest.raises(ValueError, match="^max_iter:"):
        scipy_path(F.rosenbrock(), [0.0, 0.0], max_iter=0)
