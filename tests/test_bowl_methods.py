"""Convex (positive semi-definite) bowls, gradient noise in the simulator, the error per
eigen-direction, and the line-search methods (steepest descent, conjugate gradient,
Polyak's step) on the compiled simulator."""

import math

import numpy as np
import pytest

import optbowl as ob


# ------------------------------------------------------------------ convex, not strongly
@pytest.fixture
def flat():
    """Eigenvalues 0, 0.5, 2: convex, not strongly convex, rotated, minimisers x* + t·q₁."""
    return ob.QuadraticBowl.from_eigenvalues([0.0, 0.5, 2.0], rotate=True, seed=4,
                                             minimizer=[1.0, -1.0, 2.0])


def test_psd_bowl_properties(flat):
    assert flat.mu == 0.0 and flat.L == pytest.approx(2.0) and flat.mu_range == pytest.approx(0.5)
    assert flat.condition_number == math.inf
    assert flat.null_space.shape == (3, 1)
    np.testing.assert_allclose(flat.A @ flat.null_space, 0.0, atol=1e-14)
    xs = flat.minimizer
    np.testing.assert_allclose(flat.grad(xs), 0.0, atol=1e-14)
    assert abs(float(flat.null_space[:, 0] @ xs)) < 1e-14  # the least-norm minimiser
    x = np.array([3.0, -2.0, 5.0])
    near = flat.minimizer_nearest(x)
    np.testing.assert_allclose(flat.grad(near), 0.0, atol=1e-14)
    np.testing.assert_allclose(flat.f(near), flat.min_value, atol=1e-14)
    # nearest: x − near is orthogonal to the null space
    assert abs(float(flat.null_space[:, 0] @ (x - near))) < 1e-13
    assert "κ=inf" in repr(flat)


def test_psd_bowl_with_b_outside_the_range_is_unbounded():
    with pytest.raises(ValueError, match="b: not in the range of A .* unbounded below"):
        ob.QuadraticBowl(np.diag([1.0, 0.0]), b=[1.0, 1.0])
    ob.QuadraticBowl(np.diag([1.0, 0.0]), b=[1.0, 0.0])  # in the range: fine


def test_psd_theory_acts_on_the_range(flat):
    best = flat.optimal("gd")
    assert best["lr"] == pytest.approx(2 / 2.5) and best["rate"] == pytest.approx(1.5 / 2.5)
    assert flat.rate("gd", lr=0.5) == pytest.approx(0.75)  # max(|1 − .25|, |1 − 1|) on the range
    assert flat.regime("gd", lr=0.5) == ("null", "monotone", "one-step")
    assert flat.rates("gd", lr=0.5)[0] == 1.0
    mom = flat.optimal("momentum")
    s_lo, s_hi = math.sqrt(0.5), math.sqrt(2.0)
    assert mom["rate"] == pytest.approx((s_hi - s_lo) / (s_hi + s_lo), rel=1e-12)
    # weight decay makes A + wI positive definite: every direction moves
    assert flat.regime("gd", lr=0.5, weight_decay=0.1)[0] == "monotone"
    assert flat.iterations_to(1e-6, "gd", lr=0.8) == math.ceil(math.log(1e-6) / math.log(0.6))
    with pytest.raises(ValueError, match="singular, Newton"):
        flat.rate("newton")


@pytest.mark.parametrize("method", ["gd", "momentum", "nesterov"])
def test_psd_predict_and_run_agree_and_converge_to_the_nearest_minimiser(flat, method):
    x0 = np.array([3.0, -2.0, 5.0])
    hp = {k: v for k, v in flat.optimal(method).items() if k != "rate"}
    pred = flat.predict(method, x0, 16, **hp)
    run = flat.run(method, x0, 16, **hp)
    np.testing.assert_allclose(run.x, pred.x, rtol=0, atol=1e-12)
    np.testing.assert_allclose(run.xstar, flat.minimizer_nearest(x0))
    assert run.error[-1] < 1e-3 * run.error[0]
    assert abs(run.measured_rate() - run.predicted_rate()) < 1e-8
    assert run.measured_rate() < 0.7  # the rate of the range, not the 1 of the null space
    res = ob.sweep(flat, method, x0, 16, **hp)
    np.testing.assert_allclose(res.final_error, run.final_error, rtol=1e-6)


def test_gd_on_a_convex_bowl_meets_the_one_over_k_bound():
    lam = np.array([0.0, 1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0])
    bowl = ob.QuadraticBowl.from_eigenvalues(lam, rotate=True, seed=7)
    x0 = np.ones(8)
    for lr in (1.0, 0.5):  # η ≤ 1/L
        run = bowl.run("gd", x0, 2000, lr=lr)
        bound = bowl.f_bound("gd", x0, 2000, lr=lr)
        gap = run.f - bowl.min_value
        assert np.all(gap[1:] <= bound[1:] * (1 + 1e-9) + 1e-15)
        assert np.max(gap[1:] / bound[1:]) > 0.05  # and not a vacuous bound
        assert gap[0] == pytest.approx(bound[0])
    with pytest.raises(ValueError, match=r"lr: the O\(1/k\) bound holds for lr <= 1/L"):
        bowl.f_bound("gd", x0, 10, lr=1.5)
    with pytest.raises(ValueError, match="lr: the gd bound needs lr="):
        bowl.f_bound("gd", x0, 10)


# ------------------------------------------------------------------ gradient noise
def test_noise_is_reproducible_and_a_prefix_of_longer_runs():
    bowl = ob.QuadraticBowl.from_eigenvalues([0.5, 4.0], rotate=True, seed=1)
    long = bowl.run("momentum", [1.0, 1.0], 200, noise=0.3, seed=5, lr=0.1, momentum=0.5)
    short = bowl.run("momentum", [1.0, 1.0], 50, noise=0.3, seed=5, lr=0.1, momentum=0.5)
    np.testing.assert_array_equal(short.x, long.x[:51])
    again = bowl.run("momentum", [1.0, 1.0], 200, noise=0.3, seed=5, lr=0.1, momentum=0.5)
    np.testing.assert_array_equal(again.x, long.x)
    other = bowl.run("momentum", [1.0, 1.0], 200, noise=0.3, seed=6, lr=0.1, momentum=0.5)
    assert not np.array_equal(other.x, long.x)
    quiet = bowl.run("momentum", [1.0, 1.0], 200, lr=0.1, momentum=0.5)
    assert not np.array_equal(quiet.x, long.x) and quiet.noise == 0.0 and long.noise == 0.3
    assert "noise σ = 0.3" in repr(long)


def test_noise_is_added_to_the_gradient_in_the_compiled_loop():
    # gd, one coordinate: x' = x − η(λx + σξ), with ξ the generator's draws.
    bowl = ob.QuadraticBowl([[2.0]])
    t = bowl.run("gd", [1.0], 5, noise=0.5, seed=3, lr=0.1)
    xi = np.random.default_rng(3).standard_normal((5, 1))
    x, ref = 1.0, [1.0]
    for k in range(5):
        x = x - 0.1 * (2.0 * x + 0.5 * xi[k, 0])
        ref.append(x)
    np.testing.assert_allclose(t.x[:, 0], ref, rtol=1e-14)


def test_noise_argument_errors():
    bowl = ob.QuadraticBowl([[2.0]])
    with pytest.raises(ValueError, match="noise: must be >= 0"):
        bowl.run("gd", [1.0], 5, noise=-1.0, lr=0.1)
    with pytest.raises(ValueError, match="noise: must be finite"):
        bowl.run("gd", [1.0], 5, noise=math.inf, lr=0.1)
    with pytest.raises(ValueError, match="seed: given without noise"):
        bowl.run("gd", [1.0], 5, seed=1, lr=0.1)
    with pytest.raises(TypeError, match="seed: not a seed"):
        bowl.run("gd", [1.0], 5, noise=1.0, seed="x", lr=0.1)


@pytest.mark.parametrize("method, hp", [("gd", {"lr": 0.2}),
                                        ("momentum", {"lr": 0.05, "momentum": 0.7}),
                                        ("nesterov", {"lr": 0.05, "momentum": 0.6})])
def test_stationary_mean_squared_error_meets_the_prediction(method, hp):
    """Monte Carlo: the run's mean of eᵢ² over its stationary part, with a batch-means error
    bar, against stationary_variance."""
    bowl = ob.QuadraticBowl.from_eigenvalues([0.5, 4.0], rotate=True, seed=11,
                                             minimizer=[1.0, -1.0])
    sigma, burn, batches, per_batch = 0.5, 500, 50, 2000
    t = bowl.run(method, bowl.minimizer, burn + batches * per_batch, noise=sigma, seed=42, **hp)
    sq = t.eigen_error[burn + 1:] ** 2  # (steps, n)
    means = sq.reshape(batches, per_batch, 2).mean(axis=1)
    estimate = means.mean(axis=0)
    error_bar = means.std(axis=0, ddof=1) / math.sqrt(batches)
    predicted = bowl.stationary_variance(method, sigma, **hp)
    assert np.all(np.abs(estimate - predicted) < 4 * error_bar), (estimate, predicted, error_bar)
    assert np.all(error_bar < 0.05 * predicted)  # and the test can tell


# ------------------------------------------------------------------ per-eigendirection error
def test_eigen_error_is_the_error_in_the_eigenbasis():
    bowl = ob.QuadraticBowl.from_eigenvalues([0.5, 3.0, 7.0], rotate=True, seed=2,
                                             minimizer=[1.0, 2.0, -1.0])
    x0 = np.array([4.0, 0.0, 1.0])
    t = bowl.run("gd", x0, 30, lr=0.2)
    assert t.eigen_error.shape == (31, 3)
    np.testing.assert_allclose(t.eigen_error, (t.x - bowl.minimizer) @ bowl.eigenvectors,
                               atol=1e-15)
    e0 = bowl.eigenvectors.T @ (x0 - bowl.minimizer)
    k = np.arange(31)[:, None]
    np.testing.assert_allclose(t.eigen_error, e0 * (1 - 0.2 * bowl.eigenvalues) ** k,
                               rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(t.eigen_error, axis=1), t.error, rtol=1e-12)
    p = bowl.predict("gd", x0, 30, lr=0.2)
    np.testing.assert_allclose(p.eigen_error, t.eigen_error, atol=1e-13)
    with pytest.raises(ValueError):
        t.eigen_error[0, 0] = 1.0


# ------------------------------------------------------------------ line search and Krylov
@pytest.fixture
def ill():
    return ob.QuadraticBowl.from_eigenvalues(np.geomspace(1.0, 50.0, 6), rotate=True, seed=5,
                                             minimizer=np.arange(6.0))


def test_steepest_descent_meets_kantorovich(ill):
    x0 = np.full(6, 3.0)
    t = ill.run("steepest", x0, 100)
    gap = t.f - ill.min_value
    q = ((50.0 - 1.0) / (50.0 + 1.0)) ** 2
    ok = gap[:-1] > 1e-20
    assert np.all(gap[1:][ok] <= q * gap[:-1][ok] * (1 + 1e-9))
    assert np.all(gap <= ill.f_bound("steepest", x0, 100) * (1 + 1e-9) + 1e-20)
    # each step is the exact line search α = gᵀg / gᵀAg
    g = ill.grad(t.x[0])
    np.testing.assert_allclose(t.x[1], t.x[0] - (g @ g) / (g @ ill.A @ g) * g, rtol=1e-13)


def test_steepest_descent_attains_kantorovich_from_the_worst_start(ill):
    Q, lam = ill.eigenvectors, ill.eigenvalues
    x0 = ill.minimizer + Q[:, 0] / lam[0] + Q[:, -1] / lam[-1]  # g ∝ q₁ + qₙ: the zigzag
    t = ill.run("steepest", x0, 8)
    gap = t.f - ill.min_value
    np.testing.assert_allclose(gap[1:] / gap[:-1], ((lam[-1] - lam[0]) / (lam[-1] + lam[0])) ** 2,
                               rtol=1e-9)


def test_cg_is_exact_in_as_many_steps_as_distinct_eigenvalues():
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 2.0, 5.0, 11.0, 30.0], rotate=True, seed=3,
                                             minimizer=[1.0, 2.0, 3.0, 4.0, 5.0])
    t = bowl.run("cg", np.zeros(5), 5)
    assert t.error[-1] < 1e-12 * t.error[0]
    assert t.error[4] > 1e-6 * t.error[0]  # not before
    three = ob.QuadraticBowl.from_eigenvalues([1.0, 1.0, 4.0, 4.0, 9.0, 9.0], rotate=True, seed=8,
                                              minimizer=np.ones(6))
    t3 = three.run("cg", np.zeros(6), 6)
    assert t3.error[3] < 1e-12 * t3.error[0]
    t32 = three.run("cg", np.zeros(6), 3, dtype=np.float32)
    assert t32.error[3] < 1e-5 * t32.error[0]


def test_cg_meets_its_chebyshev_bound():
    lam = np.geomspace(1.0, 1e3, 60)
    bowl = ob.QuadraticBowl.from_eigenvalues(lam, rotate=True, seed=1, minimizer=np.ones(60))
    x0 = np.zeros(60)
    t = bowl.run("cg", x0, 40)
    e = t.eigen_error
    a_norm = np.sqrt(np.sum(lam * e**2, axis=1))
    r = (math.sqrt(1e3) - 1) / (math.sqrt(1e3) + 1)
    k = np.arange(41)
    assert np.all(a_norm <= 2 * r**k * a_norm[0] * (1 + 1e-9))
    gap = t.f - bowl.min_value
    assert np.all(gap <= bowl.f_bound("cg", x0, 40) * (1 + 1e-9) + 1e-20)


def test_polyak_step_decreases_the_distance_by_its_identity(ill):
    x0 = np.full(6, -2.0)
    t = ill.run("polyak", x0, 50)
    gap = t.f - ill.min_value
    # ‖e′‖² = ‖e‖² − 3(f − f*)²/‖g‖² on a quadratic with α = (f − f*)/‖g‖²
    pred = t.error[:-1] ** 2 - 3 * gap[:-1] ** 2 / t.grad_norm[:-1] ** 2
    np.testing.assert_allclose(t.error[1:11] ** 2, pred[:10], rtol=1e-9)
    assert np.all(np.diff(t.error) <= 1e-15)
    assert t.hyper == {"f_star": ill.min_value}
    # with a wrong f* (too low) it still moves, but does not stop at the minimum
    low = ill.run("polyak", x0, 50, f_star=ill.min_value - 1.0)
    assert low.error[-1] > t.error[-1]


def test_line_search_argument_errors(ill):
    with pytest.raises(ValueError, match="lr: not a hyper-parameter of 'steepest'"):
        ill.run("steepest", np.zeros(6), 3, lr=0.1)
    with pytest.raises(ValueError, match="f_star: must not be NaN"):
        ill.run("polyak", np.zeros(6), 3, f_star=math.nan)
    with pytest.raises(ValueError, match="f_star: must be finite"):
        ill.run("polyak", np.zeros(6), 3, f_star=-math.inf)
    with pytest.raises(ValueError, match="method: 'cg' chooses its own step"):
        ob.sweep(ill, "cg", np.zeros(6), 3)
    with pytest.raises(ValueError, match="lr: 'steepest' chooses its own steps"):
        ill.f_bound("steepest", np.zeros(6), 3, lr=0.1)


def test_line_search_methods_with_noise_and_zero_gradient(ill):
    at_min = ob.QuadraticBowl.from_eigenvalues([1.0, 2.0, 3.0], rotate=True, seed=0)
    for method in ("steepest", "cg", "polyak"):  # g = 0 exactly from the start: stays
        t = at_min.run(method, np.zeros(3), 3)
        np.testing.assert_array_equal(t.x, np.zeros((4, 3)))
    for method in ("steepest", "cg", "polyak"):
        n = ill.run(method, np.zeros(6), 20, noise=0.01, seed=1)
        assert np.all(np.isfinite(n.x))
