"""Bowl numerics: scaled error norms, rates at critical damping, degenerate bowls and
divergent settings answered at once, rates on f, the momentum phase diagram."""

import math
import subprocess
import sys
import time

import numpy as np
import pytest

import optbowl as ob
from optbowl.bowl import measured_rate


# ------------------------------------------------------------------ scaled norms
def test_sweep_rates_do_not_underflow_to_zero():
    # The fastest settings' errors pass below 1e-162, where a plain sum of squares is 0.
    bowl = ob.QuadraticBowl.from_eigenvalues([1, 10])
    lrs = np.array([0.05, 0.1, 0.15, 0.18])
    res = ob.sweep(bowl, "gd", [1, 1], 2000, lr=lrs)
    np.testing.assert_allclose(res.rate, [bowl.rate("gd", lr=lr) for lr in lrs], rtol=1e-9)
    assert np.all(res.final_error > 0)
    np.testing.assert_allclose(res.final_error[-1], 0.82**2000, rtol=1e-6)


def test_trajectory_error_does_not_underflow_or_overflow():
    bowl = ob.QuadraticBowl.from_eigenvalues([1, 10])
    t = bowl.run("gd", [1, 1], 2000, lr=0.18)
    np.testing.assert_allclose(t.error[-1], 0.82**2000, rtol=1e-6)
    np.testing.assert_allclose(t.measured_rate(), 0.82, rtol=1e-12)
    assert t.grad_norm[-1] > 0
    p = bowl.predict("gd", [1, 1], 2000, lr=0.18)
    np.testing.assert_allclose(p.error[-1], 0.82**2000, rtol=1e-9)
    # Errors near the largest doubles: x finite, ‖x − x*‖ finite.
    big = bowl.run("gd", [1e300, 1e300], 3, lr=0.01)
    assert np.all(np.isfinite(big.x))
    np.testing.assert_allclose(big.error[0], math.sqrt(2) * 1e300, rtol=1e-15)
    assert np.all(np.isfinite(big.error)) and np.all(np.isfinite(big.grad_norm))
    np.testing.assert_allclose(big.grad_norm[0], math.sqrt(101) * 1e300, rtol=1e-15)
    res = ob.sweep(bowl, "gd", [1e300, 1e300], 10, lr=np.array([0.01, 0.05]))
    assert not res.diverged.any()
    runs = [bowl.run("gd", [1e300, 1e300], 10, lr=lr) for lr in (0.01, 0.05)]
    np.testing.assert_allclose(res.rate, [t.measured_rate() for t in runs], rtol=1e-12)
    np.testing.assert_allclose(res.final_error, [t.final_error for t in runs], rtol=1e-12)
    # Tiny starts: subnormal-range errors keep their rate.
    tiny = ob.sweep(bowl, "gd", [1e-300, 1e-300], 20, lr=np.array([0.1]))
    np.testing.assert_allclose(tiny.rate, [0.9], rtol=1e-6)


def test_measured_rate_in_the_log_domain():
    np.testing.assert_allclose(measured_rate(1e10, 1e-300, 10), 1e-31, rtol=1e-12)
    assert measured_rate(0.0, 1.0, 3) == 0.0
    assert measured_rate(1.0, 0.0, 3) == 0.0
    assert measured_rate(1.0, np.inf, 3) == np.inf
    assert measured_rate(1.0, np.nan, 3) == np.inf


# ------------------------------------------------------------------ critical damping
def test_measured_rate_at_gohs_optimum_agrees_with_the_predicted_window():
    bowl = ob.QuadraticBowl.from_eigenvalues([1, 1e6], rotate=True, seed=0)
    best = bowl.optimal("momentum")
    hp = {k: v for k, v in best.items() if k != "rate"}
    x0 = bowl.minimizer + bowl.eigenvectors @ np.ones(2)
    run = bowl.run("momentum", x0, 200, **hp)
    # The asymptotic rate under-reads a window of a double root (k·ρᵏ) ...
    assert run.measured_rate() > best["rate"] + 1e-3
    # ... the predicted trajectory over the same window is what the run must match.
    assert abs(run.measured_rate() - run.predicted_rate()) < 1e-9
    assert bowl.regime("momentum", **hp) == ("critically-damped", "critically-damped")
    # One step off the optimum the extreme eigenvalues leave the double root.
    assert "critically-damped" not in bowl.regime("momentum", lr=hp["lr"] * 0.9,
                                                  momentum=hp["momentum"])


def test_cli_prints_the_predicted_window_beside_the_measured_rate():
    out = subprocess.run([sys.executable, "-m", "optbowl", "bowl", "--eigenvalues", "1", "1000000",
                          "--rotate", "--method", "momentum"], capture_output=True, text=True,
                         check=True).stdout
    row = next(line for line in out.splitlines() if line.startswith("momentum"))
    cells = row.split()
    measured, predicted = float(cells[5]), float(cells[6])
    assert abs(measured - predicted) < 2e-6  # printed to 6 decimals
    assert "critically-damped" in row


def test_predicted_rate_needs_a_linear_method():
    bowl = ob.QuadraticBowl.from_eigenvalues([1, 4])
    with pytest.raises(ValueError, match="method: 'adagrad' has no predicted trajectory"):
        bowl.run("adagrad", [1, 1], 10, lr=0.1).predicted_rate()


# ------------------------------------------------------------------ degenerate bowls
@pytest.mark.parametrize("A", [[[1e308, 1e308], [1e308, 1e308]],
                               [[1.7e308, -1.7e308], [-1.7e308, 1.7e308]]])
def test_non_finite_spectra_are_refused(A):
    with pytest.raises(ValueError, match="A: its eigenvalues are not finite"):
        ob.QuadraticBowl(A)


def test_a_bowl_near_the_largest_double_is_exact():
    # (A + Aᵀ)/2 used to overflow to ∞ here and the eigenvalues came out NaN: rate 0.0,
    # iterations_to 1. Its spectrum is finite: it is accepted and answered right.
    bowl = ob.QuadraticBowl(np.diag([1e308, 1e308]))
    np.testing.assert_array_equal(bowl.eigenvalues, [1e308, 1e308])
    assert bowl.condition_number == 1.0
    assert bowl.optimal("gd") == {"lr": 1e-308, "rate": 0.0}
    assert bowl.rate("gd", lr=1e-300) == pytest.approx(1e8 - 1)
    assert bowl.iterations_to(1e-6, "gd", lr=1e-300) == math.inf
    assert bowl.iterations_to(1e-6, "gd", lr=5e-309) == 20
    wide = ob.QuadraticBowl(np.diag([1.7e308, -1.7e308]))
    np.testing.assert_array_equal(wide.eigenvalues, [-1.7e308, 1.7e308])


@pytest.mark.parametrize("method, hp", [("gd", {}), ("momentum", {"momentum": 0.5}),
                                        ("nesterov", {"momentum": 0.5}), ("newton", {})])
@pytest.mark.parametrize("lr", [1e308, 1.7e308, 1e200])
def test_divergent_settings_are_answered_at_once(method, hp, lr):
    bowl = ob.QuadraticBowl.from_eigenvalues([1, 100])
    start = time.process_time()
    assert bowl.iterations_to(1e-6, method, lr=lr, **hp) == math.inf
    assert bowl.iterations_to(1e-6, method, [1, 2], lr=lr, **hp) == math.inf
    assert bowl.rate(method, lr=lr, **hp) == math.inf or bowl.rate(method, lr=lr, **hp) > 1
    assert not math.isnan(bowl.rate(method, lr=lr, **hp))
    assert "divergent" in bowl.regime(method, lr=lr, **hp)
    assert time.process_time() - start < 5.0  # it used to loop for 74 s


def test_cli_with_a_huge_learning_rate_returns_at_once():
    proc = subprocess.run([sys.executable, "-m", "optbowl", "bowl", "--lr", "1e308"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "∞" in proc.stdout and "divergent" in proc.stdout
    assert "RuntimeWarning" not in proc.stderr  # overflow is the answer, not an accident


# ------------------------------------------------------------------ rates on f
@pytest.mark.parametrize("method, hp", [("gd", {"lr": 0.1}),
                                        ("momentum", {"lr": 0.05, "momentum": 0.6}),
                                        ("nesterov", {"lr": 0.05, "momentum": 0.6})])
def test_rate_on_f_is_the_square_and_matches_runs(method, hp):
    bowl = ob.QuadraticBowl.from_eigenvalues([0.5, 3.0, 12.0], rotate=True, seed=2,
                                             minimizer=[1.0, 2.0, 3.0])
    rho = bowl.rate(method, **hp)
    assert bowl.rate(method, on="f", **hp) == rho**2
    t = bowl.run(method, [3.0, 1.0, 0.0], 120, **hp)
    p = bowl.predict(method, [3.0, 1.0, 0.0], 120, **hp)
    gap, pgap = t.f - bowl.min_value, p.f - bowl.min_value
    assert gap[120] > 1e-9  # well above the rounding of f
    measured = float(measured_rate(gap[60], gap[120], 60))
    assert abs(measured - float(measured_rate(pgap[60], pgap[120], 60))) < 1e-7
    if method == "gd":  # one real dominant root: the window reads ρ²
        np.testing.assert_allclose(measured, rho**2, rtol=1e-6)
    with pytest.raises(ValueError, match="on: expected one of"):
        bowl.rate(method, on="g", **hp)


# ------------------------------------------------------------------ phase diagram
def test_phase_diagram_agrees_with_rate_and_regime_per_cell():
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 10.0])
    lrs = np.linspace(0.01, 0.5, 9)
    betas = np.linspace(0.0, 0.95, 7)
    for method in ("momentum", "nesterov"):
        pd = bowl.phase_diagram(method, lr=lrs, momentum=betas)
        assert pd.rate.shape == pd.regime.shape == (7, 9)
        for i, beta in enumerate(betas):
            for j, lr in enumerate(lrs):
                rates = bowl.rates(method, lr=lr, momentum=beta)
                assert pd.rate[i, j] == pytest.approx(rates.max(), rel=1e-14, abs=1e-15)
                slowest = int(np.argmax(rates))
                assert pd.regime[i, j] == bowl.regime(method, lr=lr, momentum=beta)[slowest]
        assert {"ripple", "divergent", "monotone"} <= set(pd.regime.ravel().tolist())
        assert "converge" in repr(pd)


def test_phase_diagram_of_one_eigenvalue_is_gohs():
    # Heavy ball on ½λx²: ripple exactly for (1 − √β)² < ηλ < (1 + √β)².
    bowl = ob.QuadraticBowl([[2.0]])
    lrs = np.linspace(0.02, 1.9, 60)
    betas = np.linspace(0.05, 0.9, 40)
    pd = bowl.phase_diagram("momentum", lr=lrs, momentum=betas)
    B, E = np.meshgrid(betas, lrs, indexing="ij")
    x = E * 2.0
    inside = ((1 - np.sqrt(B)) ** 2 < x - 1e-9) & (x + 1e-9 < (1 + np.sqrt(B)) ** 2)
    assert np.array_equal(pd.regime == "ripple", inside)
    np.testing.assert_allclose(pd.rate[inside], np.sqrt(B[inside]), rtol=1e-12)


def test_phase_diagram_argument_errors():
    bowl = ob.QuadraticBowl.from_eigenvalues([1.0, 10.0])
    with pytest.raises(ValueError, match="method: expected one of"):
        bowl.phase_diagram("gd", lr=[0.1], momentum=[0.1])
    with pytest.raises(ValueError, match="lr: expected finite values"):
        bowl.phase_diagram("momentum", lr=[-0.1], momentum=[0.1])
    with pytest.raises(TypeError, match="momentum: expected a non-empty"):
        bowl.phase_diagram("momentum", lr=[0.1], momentum=[])


# ------------------------------------------------------------------ QuickProp's two steps
@pytest.mark.parametrize("max_growth", [1.75, 0.5])
def test_quickprop_two_steps_need_the_uncapped_secant(max_growth):
    a = 4.0
    threshold = 1.0 / (1.0 + max_growth) / a  # η a ≥ 1/(1 + μ)
    for lr, exact in ((threshold * 1.01, True), (threshold * 0.9, False)):
        x = np.array([3.0])
        opt = ob.QuickProp(x, lr=lr, max_growth=max_growth)
        opt.step(a * x)
        opt.step(a * x)
        assert bool(abs(x[0]) < 1e-12) == exact, (lr, x)
