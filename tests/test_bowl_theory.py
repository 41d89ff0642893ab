"""QuadraticBowl theory: closed forms, regimes, exact predictions, iteration counts, noise."""

import math

import numpy as np
import pytest

import optbowl as ob
from optbowl import functions as F

METHODS = ("gd", "momentum", "nesterov", "newton")


def reference_iterates(bowl, method, x0, steps, lr, momentum=0.0, dampening=0.0, weight_decay=0.0):
    """torch.optim.SGD's update written out in x-space, one step at a time (for comparison)."""
    x = np.array(x0, dtype=np.float64)
    buf = None
    out = [x.copy()]
    for _ in range(steps):
        g = bowl.A @ x - bowl.b + weight_decay * x
        if method == "newton":
            d = np.linalg.solve(bowl.A, g)
        elif method == "gd":
            d = g
        else:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            d = g + momentum * buf if method == "nesterov" else buf
        x = x - lr * d
        out.append(x.copy())
    return np.array(out)


@pytest.fixture
def rotated():
    return ob.QuadraticBowl.from_eigenvalues([0.5, 2.0, 7.0, 30.0], rotate=True, seed=3,
                                             minimizer=[1, -2, 0.5, 3])


# ------------------------------------------------------------------ construction
def test_construction_and_properties(rng):
    A = np.array([[3.0, 1.0], [1.0, 2.0]])
    bowl = ob.QuadraticBowl(A, b=[1.0, -1.0], c=2.5)
    lam = np.linalg.eigvalsh(A)
    np.testing.assert_allclose(bowl.eigenvalues, lam)
    assert bowl.eigenvalues[0] < bowl.eigenvalues[1]
    assert bowl.condition_number == pytest.approx(lam[1] / lam[0])
    np.testing.assert_allclose(A @ bowl.minimizer, [1.0, -1.0])
    np.testing.assert_array_equal(bowl.hessian, A)
    x = rng.standard_normal((5, 2))
    expect = np.array([0.5 * v @ A @ v - v @ np.array([1.0, -1.0]) + 2.5 for v in x])
    np.testing.assert_allclose(bowl.f(x), expect)
    np.testing.assert_allclose(bowl.grad(x), x @ A - [1.0, -1.0])
    assert "κ=" in repr(bowl) and "eigenvalues=[" in repr(bowl)


def test_finite_differences_of_f(rotated, rng):
    x = rng.standard_normal(4)
    h = 1e-6
    fd = np.array([(rotated.f(x + h * e) - rotated.f(x - h * e)) / (2 * h) for e in np.eye(4)])
    np.testing.assert_allclose(rotated.grad(x), fd, rtol=1e-7, atol=1e-6)
    fdh = np.array([(rotated.grad(x + h * e) - rotated.grad(x - h * e)) / (2 * h)
                    for e in np.eye(4)])
    np.testing.assert_allclose(rotated.hessian, fdh, rtol=1e-6, atol=1e-6)


def test_from_eigenvalues_rotation():
    a = ob.QuadraticBowl.from_eigenvalues([5, 1, 3], rotate=True, seed=7)
    b = ob.QuadraticBowl.from_eigenvalues([5, 1, 3], rotate=True, seed=7)
    np.testing.assert_array_equal(a.A, b.A)
    np.testing.assert_allclose(a.eigenvalues, [1, 3, 5])
    assert not a.is_axis_aligned
    assert ob.QuadraticBowl.from_eigenvalues([5, 1, 3]).is_axis_aligned
    np.testing.assert_allclose(a.eigenvectors.T @ a.eigenvectors, np.eye(3), atol=1e-12)


@pytest.mark.parametrize(
    "A, message",
    [([[1.0, 2.0], [0.0, 1.0]], "A: must be symmetric"),
     ([[1.0, 2.0, 3.0]], "A: expected a non-empty square"),
     ([[np.nan]], "A: must be finite"), ("abc", "A:")],
)
def test_bad_matrix(A, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ob.QuadraticBowl(A)


def test_bad_b_and_singular():
    with pytest.raises(ValueError, match=r"b: expected shape \(2,\)"):
        ob.QuadraticBowl(np.eye(2), b=[1, 2, 3])
    bowl = ob.QuadraticBowl([[1.0, 0.0], [0.0, 0.0]])
    assert bowl.condition_number == math.inf
    np.testing.assert_array_equal(bowl.minimizer, [0.0, 0.0])  # least norm (b = 0)
    with pytest.raises(ValueError, match="b: not in the range of A .* unbounded below"):
        ob.QuadraticBowl([[1.0, 0.0], [0.0, 0.0]], b=[0.0, 1.0])


# ------------------------------------------------------------------ closed forms (Goh, κ = 100)
def test_goh_kappa_100():
    bowl = ob.QuadraticBowl.from_eigenvalues([1, 100])
    gd, mom = bowl.optimal("gd"), bowl.optimal("momentum")
    assert gd["lr"] == pytest.approx(2 / 101, rel=1e-15)
    assert gd["rate"] == pytest.approx(99 / 101, rel=1e-15)
    assert mom["lr"] == pytest.approx((2 / 11) ** 2, rel=1e-14)
    assert mom["momentum"] == pytest.approx((9 / 11) ** 2, rel=1e-14)
    assert mom["rate"] == pytest.approx(9 / 11, rel=1e-14)
    assert bowl.rate("gd", lr=gd["lr"]) == pytest.approx(99 / 101, rel=1e-14)
    assert bowl.rate("momentum", lr=mom["lr"], momentum=mom["momentum"]) == \
        pytest.approx(9 / 11, rel=1e-7)
    assert bowl.optimal("newton") == {"lr": 1.0, "rate": 0.0}


@pytest.mark.parametrize("method", ["gd", "momentum", "nesterov"])
def test_optimal_is_optimal(method):
    bowl = ob.QuadraticBowl.from_eigenvalues([0.3, 1.0, 4.0, 25.0], rotate=True, seed=1)
    best = bowl.optimal(method)
    hp = {k: v for k, v in best.items() if k != "rate"}
    assert bowl.rate(method, **hp) == pytest.approx(best["rate"], rel=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(300):
        trial = {k: v * math.exp(0.2 * rng.standard_normal()) for k, v in hp.items()}
        if trial.get("momentum", 0) >= 1:
            continue
        assert bowl.rate(method, **trial) >= best["rate"] - 1e-9


@pytest.mark.parametrize("kappa", [2.0, 10.0, 100.0, 1e4])
def test_nesterov_optimum_matches_lessard_recht_packard(kappa):
    # The computed optimum agrees with the published tuning for quadratics:
    # η = 4/(3L + μ), β = (√(3κ+1) − 2)/(√(3κ+1) + 2), rate 1 − 2/√(3κ+1).
    best = ob.QuadraticBowl.from_eigenvalues([1.0, kappa]).optimal("nesterov")
    q = math.sqrt(3 * kappa + 1)
    assert best["lr"] == pytest.approx(4 / (3 * kappa + 1), rel=1e-6)
    assert best["momentum"] == pytest.approx((q - 2) / (q + 2), rel=1e-6)
    assert best["rate"] == pytest.approx(1 - 2 / q, rel=1e-7)


def test_momentum_step_is_the_heavy_ball_step():
    # torch's v = βv + g; x −= ηv is Polyak's x' = x − ηg + β(x − x_prev) with the same η.
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 9.0], rotate=True, seed=2)
    lr, beta = 0.1, 0.6
    x = bowl.predict("momentum", [1.0, 2.0], 6, lr=lr, momentum=beta).x
    for k in range(1, 6):
        np.testing.assert_allclose(x[k + 1], x[k] - lr * bowl.grad(x[k]) + beta * (x[k] - x[k - 1]),
                                   atol=1e-12)


# ------------------------------------------------------------------ rates against the full
#                                                                    iteration matrix
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("lr, beta", [(0.01, 0.3), (0.05, 0.9), (0.08, 0.0), (0.2, 0.5)])
def test_rate_is_the_spectral_radius_in_x_space(rotated, method, lr, beta):
    n = rotated.n
    A, identity = rotated.A, np.eye(n)
    if method in ("gd", "newton"):
        M = identity - lr * (A if method == "gd" else identity)
        hp = {"lr": lr}
    else:
        # state (x, v): v' = βv + Ax; x' = x − η(v') or x − η(Ax + βv')
        top = (identity - lr * A, -lr * beta * identity) if method == "momentum" else \
            (identity - lr * (1 + beta) * A, -lr * beta * beta * identity)
        M = np.block([[top[0], top[1]], [A, beta * identity]])
        hp = {"lr": lr, "momentum": beta}
    expect = np.max(np.abs(np.linalg.eigvals(M)))
    assert rotated.rate(method, **hp) == pytest.approx(expect, rel=1e-6, abs=1e-12)


# ------------------------------------------------------------------ regimes (seed 004)
@pytest.mark.parametrize(
    "factor, label",
    [(0.5, "monotone"), (1.0, "one-step"), (1.5, "oscillating"), (2.0, "non-convergent"),
     (2.5, "divergent")],
)
@pytest.mark.parametrize("curvature", [0.3, 1.0, 7.0])
def test_seed_004_one_dimensional_regimes(factor, label, curvature):
    bowl = ob.QuadraticBowl([[curvature]])
    eta = factor / curvature
    assert bowl.regime("gd", lr=eta) == (label,)
    x = bowl.predict("gd", [1.0], 8, lr=eta).x[:, 0]
    if label == "monotone":
        assert np.all(np.diff(x) < 0) and np.all(x > 0)
    elif label == "one-step":
        assert np.all(np.abs(x[1:]) < 1e-15)
    elif label == "oscillating":
        assert np.all(x[1:] * x[:-1] < 0) and np.all(np.diff(np.abs(x)) < 0)
    elif label == "non-convergent":
        np.testing.assert_allclose(np.abs(x), 1.0, rtol=1e-12)
        assert np.all(x[1:] * x[:-1] < 0)
    else:
        assert np.all(np.diff(np.abs(x)) > 0)


def test_regimes_per_eigenvalue_and_rate_agree(rotated):
    lam = rotated.eigenvalues
    eta = 1.0 / lam[1]
    labels = rotated.regime("gd", lr=eta)
    assert labels[0] == "monotone" and labels[1] == "one-step"
    assert labels[2] == "divergent" and labels[3] == "divergent"
    rates = rotated.rates("gd", lr=eta)
    np.testing.assert_allclose(rates, np.abs(1 - eta * lam))


@pytest.mark.parametrize(
    "method, beta",
    [("gd", 0.0)] + [(m, b) for m in ("momentum", "nesterov") for b in (0.0, 0.25, 0.8)]
)
def test_lr_boundaries_separate_the_regimes(method, beta):
    bowl = ob.QuadraticBowl.from_eigenvalues([2.0])
    hp = {} if method == "gd" else {"momentum": beta}
    bounds = bowl.lr_boundaries(method, **hp)
    for name, values in bounds.items():
        lr = float(values[0])
        below = bowl.regime(method, lr=lr * (1 - 1e-6), **hp)[0]
        above = bowl.regime(method, lr=lr * (1 + 1e-6), **hp)[0]
        if name == "non-convergent":
            assert (below, above) == ("oscillating", "divergent") \
                or below == "ripple" and above == "divergent"
            assert bowl.regime(method, lr=lr, **hp)[0] == "non-convergent"
            assert bowl.rate(method, lr=lr, **hp) == pytest.approx(1.0, rel=1e-9)
        elif name == "one-step":
            assert (below, above) == ("monotone", "oscillating")
        elif beta > 0 and name == "ripple-start":
            assert (below, above) == ("monotone", "ripple")
        elif beta > 0 and name == "ripple-end":
            assert below == "ripple" and above in ("oscillating",)


def test_momentum_ripple_and_rate_sqrt_beta():
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 100.0])
    labels = bowl.regime("momentum", lr=0.01, momentum=0.9)
    assert labels == ("ripple", "ripple")
    assert bowl.rate("momentum", lr=0.01, momentum=0.9) == pytest.approx(math.sqrt(0.9), rel=1e-12)
    assert bowl.regime("momentum", lr=0.05, momentum=0.5) == ("monotone", "divergent")


def test_newton_regimes_and_rate():
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 50.0], rotate=True, seed=4)
    assert bowl.regime("newton") == ("one-step", "one-step")
    assert bowl.regime("newton", lr=0.5) == ("monotone", "monotone")
    assert bowl.regime("newton", lr=2.0) == ("non-convergent", "non-convergent")
    assert bowl.rate("newton", lr=1.7) == pytest.approx(0.7)


# ------------------------------------------------------------------ exact predictions
@pytest.mark.parametrize(
    "method, hp",
    [
        ("gd", {"lr": 0.05}),
        ("gd", {"lr": 0.06, "weight_decay": 0.3}),
        ("momentum", {"lr": 0.03, "momentum": 0.7}),
        ("momentum", {"lr": 0.04, "momentum": 0.5, "dampening": 0.3, "weight_decay": 0.1}),
        ("nesterov", {"lr": 0.03, "momentum": 0.8}),
        ("nesterov", {"lr": 0.02, "momentum": 0.6, "weight_decay": 0.2}),
        ("newton", {"lr": 0.7}),
    ],
)
def test_predict_is_the_recurrence(rotated, method, hp):
    x0 = np.array([3.0, -1.0, 2.0, 0.5])
    pred = rotated.predict(method, x0, 40, **hp)
    ref = reference_iterates(rotated, method, x0, 40, **hp)
    np.testing.assert_allclose(pred.x, ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(pred.f, rotated.f(ref), rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(pred.grad_norm, np.linalg.norm(rotated.grad(ref), axis=1),
                               rtol=1e-8, atol=1e-9)
    assert pred.source == "predict" and pred.steps == 40 and len(pred) == 41
    assert "final error" in repr(pred)


def test_predicted_contraction_matches_rate(rotated):
    x0 = np.array([3.0, -1.0, 2.0, 0.5])
    for method in ("gd", "momentum", "nesterov"):
        best = rotated.optimal(method)
        hp = {k: v for k, v in best.items() if k != "rate"}
        hp["lr"] *= 0.9  # off the double roots: a clean geometric tail
        t = rotated.predict(method, x0, 120, **hp)
        assert t.measured_rate(60) == pytest.approx(rotated.rate(method, **hp), rel=0.02)


def test_d2l_printed_trajectories():
    # d2l "Gradient Descent": f(x) = x², x0 = 10, 10 epochs.
    one = ob.QuadraticBowl([[2.0]])
    for eta, printed in [(0.2, 0.060466), (0.05, 3.486784), (1.1, 61.917364)]:
        assert one.predict("gd", [10.0], 10, lr=eta).x[-1, 0] == pytest.approx(printed, abs=5e-7)
    # f = x1² + 2x2² from (−5, −2), η = 0.1, 20 epochs: "x1: -0.057646, x2: -0.000073".
    x = F.elliptic_bowl.bowl.predict("gd", [-5.0, -2.0], 20, lr=0.1).x[-1]
    np.testing.assert_allclose(x, [-0.057646, -0.000073], atol=5e-7)
    # d2l "Momentum": f = 0.1x1² + 2x2².
    bowl = F.ill_conditioned_bowl.bowl
    cases = [
        ("gd", {"lr": 0.4}, [-0.943467, -0.000073]),
        ("gd", {"lr": 0.6}, [-0.387814, -1673.365109]),
        ("momentum", {"lr": 0.6, "momentum": 0.5}, [0.007188, 0.002553]),
        ("momentum", {"lr": 0.6, "momentum": 0.25}, [-0.126340, -0.186632]),
    ]
    for method, hp, printed in cases:
        np.testing.assert_allclose(bowl.predict(method, [-5.0, -2.0], 20, **hp).x[-1], printed,
                                   atol=5e-7)


# ------------------------------------------------------------------ iterations
@pytest.mark.parametrize("method", METHODS)
def test_iterations_to_is_exact_for_a_start(rotated, method):
    x0 = np.array([3.0, -1.0, 2.0, 0.5])
    best = rotated.optimal(method)
    hp = {k: v for k, v in best.items() if k != "rate"}
    if method == "newton":
        hp = {"lr": 0.6}
    k = rotated.iterations_to(1e-6, method, x0, **hp)
    t = rotated.predict(method, x0, 3 * k + 50, **hp)
    rel = t.error / t.error[0]
    assert rel[k] <= 1e-6 and np.all(rel[k:] <= 1e-6)
    assert rel[k - 1] > 1e-6
    worst = rotated.iterations_to(1e-6, method, **hp)
    assert worst >= k


def test_iterations_to_worst_case_gd_closed_form():
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 100.0])
    rho = 99 / 101
    assert bowl.iterations_to(1e-6, "gd") == math.ceil(math.log(1e-6) / math.log(rho))
    assert bowl.iterations_to(1e-6, "gd", lr=0.03) == math.inf
    assert bowl.iterations_to(1e-6, "newton") == 1
    assert bowl.iterations_to(2.0, "gd") == 0
    assert bowl.iterations_to(1e-6, "gd", [0.0, 0.0]) == 0


def test_iterations_to_worst_case_is_attained_along_an_eigenvector():
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 30.0], rotate=True, seed=5)
    hp = {"lr": 0.05, "momentum": 0.6}
    worst = bowl.iterations_to(1e-4, "momentum", **hp)
    along = [bowl.iterations_to(1e-4, "momentum", bowl.eigenvectors[:, i], **hp) for i in range(2)]
    assert worst == max(along)


# ------------------------------------------------------------------ per-axis steps and scaling
def test_per_axis_learning_rates_on_an_axis_aligned_bowl():
    bowl = ob.QuadraticBowl(np.diag([0.5, 8.0]), b=[1.0, 2.0])
    np.testing.assert_allclose(bowl.per_axis_lr, [2.0, 0.125])
    scaled = bowl.diagonally_scaled()
    assert bowl.condition_number == pytest.approx(16.0)
    assert scaled.condition_number == pytest.approx(1.0)
    # gd with η = 1 on the scaled bowl is gd with ηᵢ = 1/aᵢᵢ on the original: one step.
    assert scaled.regime("gd", lr=1.0) == ("one-step", "one-step")
    y = scaled.predict("gd", [0.0, 0.0], 1, lr=1.0).x[-1]
    np.testing.assert_allclose(y * np.sqrt(bowl.per_axis_lr), bowl.minimizer)


def test_diagonal_scaling_of_a_rotated_bowl():
    bowl = ob.QuadraticBowl(np.array([[100.0, 5.0], [5.0, 1.0]]))
    scaled = bowl.diagonally_scaled()
    np.testing.assert_allclose(np.diag(scaled.A), [1.0, 1.0])
    assert scaled.condition_number < bowl.condition_number
    np.testing.assert_allclose(scaled.condition_number, (1 + 0.5) / (1 - 0.5))
    x = np.array([0.3, -0.7])
    d = np.sqrt(bowl.per_axis_lr)
    assert scaled.f(x / d) == pytest.approx(bowl.f(x))


# ------------------------------------------------------------------ gradient noise
@pytest.mark.parametrize(
    "method, hp",
    [("gd", {"lr": 0.1}), ("momentum", {"lr": 0.05, "momentum": 0.8}),
     ("nesterov", {"lr": 0.05, "momentum": 0.7}),
     ("momentum", {"lr": 0.08, "momentum": 0.5, "dampening": 0.5}), ("newton", {"lr": 0.5})],
)
def test_stationary_variance_against_a_seeded_simulation(method, hp):
    bowl = ob.QuadraticBowl.from_eigenvalues([0.5, 4.0], rotate=True, seed=11)
    sigma = np.array([0.3, 1.0])
    var = bowl.stationary_variance(method, sigma, **hp)
    rng = np.random.default_rng(123)
    chains, burn, keep = 4000, 400, 400
    Q = bowl.eigenvectors
    x = np.tile(bowl.minimizer, (chains, 1))
    buf = None
    samples = []
    for k in range(burn + keep):
        noise = (rng.standard_normal((chains, 2)) * sigma) @ Q.T
        g = x @ bowl.A - bowl.b + noise
        if method == "newton":
            d = np.linalg.solve(bowl.A, g.T).T
        elif method == "gd":
            d = g
        else:
            beta, damp = hp["momentum"], hp.get("dampening", 0.0)
            buf = g.copy() if buf is None else beta * buf + (1 - damp) * g
            d = g + beta * buf if method == "nesterov" else buf
        x = x - hp["lr"] * d
        if k >= burn:
            samples.append((x - bowl.minimizer) @ Q)
    measured = np.var(np.concatenate(samples), axis=0)
    np.testing.assert_allclose(measured, var, rtol=0.05)


def test_momentum_variance_formula_equals_the_lyapunov_solution():
    bowl = ob.QuadraticBowl.from_eigenvalues([0.2, 1.0, 9.0])
    hp = bowl._hyper("momentum", {"lr": 0.1, "momentum": 0.7})
    formula = bowl.stationary_variance("momentum", 0.5, lr=0.1, momentum=0.7)
    np.testing.assert_allclose(formula, bowl._lyapunov("momentum", hp, np.full(3, 0.5)), rtol=1e-10)
    assert np.all(np.isinf(bowl.stationary_variance("gd", 1.0, lr=0.3)[2:]))


# ------------------------------------------------------------------ argument checks
def test_hyper_parameter_errors(rotated):
    with pytest.raises(ValueError, match="method: expected one of"):
        rotated.rate("adam", lr=0.1)
    with pytest.raises(ValueError, match="momentum: 'momentum' needs momentum="):
        rotated.rate("momentum", lr=0.1)
    with pytest.raises(ValueError, match="lr: 'gd' needs lr="):
        rotated.rate("gd", weight_decay=0.1)
    with pytest.raises(ValueError, match="dampening: not a hyper-parameter of 'nesterov'"):
        rotated.rate("nesterov", lr=0.1, momentum=0.5, dampening=0.1)
    with pytest.raises(ValueError, match="lr: must be >= 0"):
        rotated.rate("gd", lr=-1.0)
    with pytest.raises(TypeError, match="lr: expected a real number"):
        rotated.rate("gd", lr="big")
    with pytest.raises(ValueError, match=r"x0: expected shape \(4,\)"):
        rotated.predict("gd", [1.0, 2.0], 3, lr=0.1)
    with pytest.raises(ValueError, match="steps: must be >= 0"):
        rotated.predict("gd", np.zeros(4), -1, lr=0.1)
    with pytest.raises(ValueError, match="eps: must be > 0"):
        rotated.iterations_to(0.0, "gd", lr=0.1)
    with pytest.raises(ValueError, match="positive semi-definite"):
        ob.QuadraticBowl(np.diag([-1.0, 2.0])).optimal("gd")
