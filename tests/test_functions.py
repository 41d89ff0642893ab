"""The function zoo, critical points, Newton's method, the conditioning monitor, landscapes."""

import math

import numpy as np
import pytest

import optbowl as ob
from optbowl import functions as F
from optbowl import landscape as L


def _points(fn, rng, m=7):
    lo = np.array([b[0] for b in fn.bounds])
    hi = np.array([b[1] for b in fn.bounds])
    p = lo + (hi - lo) * rng.random((m, fn.dim))
    return p[:, 0] if fn.dim == 1 else p


@pytest.mark.parametrize("fn", F.ZOO, ids=lambda f: f.name)
def test_gradient_and_hessian_against_finite_differences(fn, rng):
    h = 1e-6
    for x in _points(fn, rng):
        if fn.dim == 1:
            fd = (fn.f(x + h) - fn.f(x - h)) / (2 * h)
            fdh = (fn.grad(x + h) - fn.grad(x - h)) / (2 * h)
            scale = 1 + abs(fn.f(x)) / max(abs(x), 1)
            assert fn.grad(x) == pytest.approx(fd, rel=1e-6, abs=1e-6 * scale)
            assert fn.hessian(x) == pytest.approx(fdh, rel=1e-6, abs=1e-5 * scale)
        else:
            E = np.eye(fn.dim)
            fd = np.array([(fn.f(x + h * e) - fn.f(x - h * e)) / (2 * h) for e in E])
            fdh = np.array([(fn.grad(x + h * e) - fn.grad(x - h * e)) / (2 * h) for e in E])
            np.testing.assert_allclose(fn.grad(x), fd, rtol=1e-6, atol=1e-5)
            np.testing.assert_allclose(fn.hessian(x), fdh, rtol=1e-6, atol=1e-4)
            np.testing.assert_allclose(fn.hessian(x), fn.hessian(x).T)


@pytest.mark.parametrize("fn", F.ZOO, ids=lambda f: f.name)
def test_vectorised_evaluation(fn, rng):
    X = _points(fn, rng, 5)
    one = [fn.f(x) for x in X]
    np.testing.assert_allclose(fn.f(X), one)
    assert np.shape(fn.grad(X)) == X.shape
    assert np.shape(fn.hessian(X)) == (X.shape if fn.dim == 1 else X.shape + (fn.dim,))


def test_seed_values():
    assert F.tanh.grad(4.0) == pytest.approx(0.0013, abs=5e-5)  # "f'(4) = 0.0013" (d2l)
    assert F.risk.f(1.0) == pytest.approx(-1.0)
    assert F.empirical_risk.f(1.0) == pytest.approx(-1.2)  # d2l's annotation (1.0, −1.2)
    assert F.rosenbrock(2.0, 10.0).f([2.0, 4.0]) == 0.0
    with pytest.raises(ValueError, match=r"x: expected points of shape \(\.\.\., 2\)"):
        F.saddle.f([1.0, 2.0, 3.0])


# ------------------------------------------------------------------ critical points
@pytest.mark.parametrize(
    "H, kind",
    [([[2, 0], [0, 3]], "minimum"), ([[-1, 0.5], [0.5, -2]], "maximum"),
     ([[2, 0], [0, -2]], "saddle"),
     (0.0, "degenerate"), ([[1, 0], [0, 0]], "degenerate"),
     ([[1, 0, 0], [0, 0, 0], [0, 0, -1]], "saddle"),
     (5.0, "minimum"), (-1e-3, "maximum")],
)
def test_classify_critical_point(H, kind):
    assert ob.classify_critical_point(H) == kind


def test_classify_critical_point_errors():
    with pytest.raises(ValueError, match="hessian: must be symmetric"):
        ob.classify_critical_point([[1, 2], [0, 1]])
    with pytest.raises(ValueError, match="hessian: expected a scalar or a square matrix"):
        ob.classify_critical_point([1, 2, 3])


def _summary(points):
    return [(round(float(np.asarray(p.x).ravel()[0]), 4), p.kind) for p in points]


def test_critical_points_of_the_d2l_functions():
    # risk on [−1, 2]: local minimum near −0.3, global minimum near 1.1 (d2l's annotations)
    pts = ob.find_critical_points(F.risk)
    assert [p.kind for p in pts] == ["minimum", "maximum", "minimum"]
    assert pts[0].x == pytest.approx(-0.27385, abs=1e-4) \
        and pts[2].x == pytest.approx(1.09041, abs=1e-4)
    assert pts[2].value < pts[0].value
    for p in pts:
        assert abs(F.risk.grad(p.x)) < 1e-9
    # the minimum of the empirical risk moves to about 1.0
    emp = [p for p in ob.find_critical_points(F.empirical_risk) if p.kind == "minimum"]
    best = min(emp, key=lambda p: p.value)
    assert best.x == pytest.approx(1.017, abs=1e-3) and best.value < -1.2
    # x³: f' = f'' = 0 at 0 — the second-order test cannot call it a minimum
    assert _summary(ob.find_critical_points(F.cubic)) == [(0.0, "degenerate")]
    # x² − y²: a saddle with one positive and one negative curvature
    (s,) = ob.find_critical_points(F.saddle)
    assert s.kind == "saddle" and np.allclose(s.x, 0) and np.allclose(s.eigenvalues, [-2, 2])
    assert ob.find_critical_points(F.tanh) == []  # vanishing gradient, but no critical point


def test_critical_points_of_the_other_functions():
    pts = ob.find_critical_points(F.x_plus_sin)
    np.testing.assert_allclose([p.x for p in pts], [-3 * math.pi, -math.pi, math.pi, 3 * math.pi],
                               atol=1e-6)
    assert {p.kind for p in pts} == {"degenerate"}
    (m,) = ob.find_critical_points(F.rosenbrock())
    np.testing.assert_allclose(m.x, [1.0, 1.0], atol=1e-9)
    assert m.kind == "minimum"
    for fn in (F.elliptic_bowl, F.ill_conditioned_bowl, F.cosh_cx()):
        (p,) = ob.find_critical_points(fn)
        assert p.kind == "minimum" and np.allclose(p.x, 0, atol=1e-12)
    kinds = [p.kind for p in ob.find_critical_points(F.sin_minus_square)]
    assert kinds == ["minimum", "maximum"] * 3
    cps = ob.find_critical_points(F.x_cos_cx())
    assert [p.kind for p in cps] == ["minimum", "maximum"] * 3
    for p in cps:
        assert abs(F.x_cos_cx().grad(p.x)) < 1e-9
    narrow = ob.find_critical_points(F.risk, bounds=(0.5, 1.5))
    assert _summary(narrow) == [(1.0904, "minimum")]


def test_find_critical_points_errors():
    with pytest.raises(TypeError, match="f: expected a function with grad and hessian"):
        ob.find_critical_points(lambda x: x**2, (0, 1))
    with pytest.raises(ValueError, match="bounds: expected 1 finite"):
        ob.find_critical_points(F.risk, bounds=(2, 1))


# ------------------------------------------------------------------ Newton's method
def test_newton_d2l_numbers():
    # d2l "Newton's Method": cosh(0.5x) from 10 reaches 0; x·cos(0.15πx) from 10 ends at
    # the maximum 26.8341 (η = 1) or 7.2699 (η = 0.5).
    assert L.newton(F.cosh_cx(), 10.0, 10)[-1] == pytest.approx(0.0, abs=1e-12)
    f = F.x_cos_cx()
    far = L.newton(f, 10.0, 10)
    assert far[-1] == pytest.approx(26.8341, abs=5e-5)
    assert L.newton(f, 10.0, 10, lr=0.5)[-1] == pytest.approx(7.2699, abs=5e-5)
    # the failure: it converged to a critical point where the Hessian is negative
    assert ob.classify_critical_point(f.hessian(far[-1])) == "maximum"
    assert abs(f.grad(far[-1])) < 1e-8


def test_newton_on_a_bowl_is_one_step():
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 50.0], rotate=True, seed=2,
                                             minimizer=[3.0, -1.0])
    path = L.newton(bowl, [0.0, 0.0], 2)
    np.testing.assert_allclose(path[1], [3.0, -1.0])


# ------------------------------------------------------------------ conditioning monitor
def test_conditioning_trace_on_a_bowl_is_exact():
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 10.0], rotate=True, seed=1)
    points = np.array([[1.0, 2.0], [-0.5, 0.3], [2.0, -1.0]])
    for lr in (0.05, 0.19, 0.25):
        tr = L.conditioning_trace(bowl, points, lr)
        g = bowl.grad(points)
        np.testing.assert_allclose(tr.gTg, np.sum(g * g, axis=1))
        np.testing.assert_allclose(tr.gTHg, np.einsum("mi,ij,mj->m", g, bowl.A, g))
        np.testing.assert_allclose(tr.actual_change, tr.predicted_change, rtol=1e-10, atol=1e-12)
    # beyond 2/λmax the second-order term wins along the steep direction
    tr = L.conditioning_trace(bowl, bowl.eigenvectors[:, 1][None, :], 0.25)
    assert tr.ill_conditioned[0]


def test_conditioning_along_a_trajectory_of_a_function():
    f = F.rosenbrock()
    path = L.descend(f, [-1.0, 1.5], 30, ob.Rprop, lr=0.01)
    tr = L.conditioning_trace(f, path, 1e-3)
    assert tr.gTg.shape == (31,)
    assert np.all(tr.gTHg > 0) or np.any(tr.gTHg < 0)
    small = L.conditioning_trace(f, path, 1e-7)
    np.testing.assert_allclose(small.actual_change, small.predicted_change, rtol=1e-3, atol=1e-16)
    one_d = L.conditioning_trace(F.x_plus_sin, np.array([2.5, 1.0]), 0.1)
    assert one_d.gTg == pytest.approx((1 + np.cos([2.5, 1.0])) ** 2)


def test_descend_drives_an_optbowl_optimizer():
    path = L.descend(F.x_plus_sin, 2.5, 5, ob.Rprop, lr=0.1)
    x = np.array([2.5])
    opt = ob.Rprop(x, lr=0.1)
    expect = [2.5]
    for _ in range(5):
        opt.step(np.atleast_1d(F.x_plus_sin.grad(x)))
        expect.append(float(x[0]))
    np.testing.assert_array_equal(path, expect)
    plus = L.descend(F.rosenbrock(), [0.0, 0.0], 3, ob.Rprop, lr=0.1, variant="irprop+")
    assert plus.shape == (4, 2)


# ------------------------------------------------------------------ loss landscape
def _quadratic_loss(params):
    return sum(0.5 * float(np.sum(p * p)) for p in params)


def test_landscape_values_directions_and_normalisation(rng):
    params = [rng.standard_normal((4, 3, 2)), rng.standard_normal((5, 4)), rng.standard_normal(5)]
    land = L.loss_landscape(_quadratic_loss, params, resolution=7, span=(-0.5, 0.5), seed=4)
    d1, d2 = land.directions
    for p, u in zip(params[:2], d1):
        np.testing.assert_allclose(np.linalg.norm(u.reshape(u.shape[0], -1), axis=1),
                                   np.linalg.norm(p.reshape(p.shape[0], -1), axis=1))
    assert not np.any(d1[2]) and not np.any(d2[2])  # biases not perturbed
    assert land.center == pytest.approx(_quadratic_loss(params))
    assert land.values[3, 3] == pytest.approx(land.center)
    i, j = 1, 5
    point = [p + land.alphas[i] * u + land.betas[j] * v for p, u, v in zip(params, d1, d2)]
    assert land.values[i, j] == pytest.approx(_quadratic_loss(point))
    again = L.loss_landscape(_quadratic_loss, params, resolution=7, span=(-0.5, 0.5), seed=4)
    np.testing.assert_array_equal(land.values, again.values)


def test_landscape_leaves_params_alone_and_checks_directions(rng):
    params = [rng.standard_normal((3, 3))]
    before = params[0].copy()

    def loss(ps):
        ps[0] += 1.0  # a careless loss that writes into its input
        return float(np.sum(ps[0]))

    L.loss_landscape(loss, params, resolution=3)
    np.testing.assert_array_equal(params[0], before)
    with pytest.raises(ValueError, match=r"directions\[0\]: shapes do not match"):
        L.loss_landscape(_quadratic_loss, params, directions=([np.ones(3)], [np.ones((3, 3))]))
    layer = L.random_directions(params, seed=1, normalization="layer")
    assert np.linalg.norm(layer[0][0]) == pytest.approx(np.linalg.norm(params[0]))
