"""Powers of a matrix through its spectrum, signals through random products, GOE minima."""

import math

import numpy as np
import pytest

import optbowl as ob


# ----------------------------------------------------------------------------- Wⁿ
@pytest.mark.parametrize("seed", range(4))
def test_power_from_the_spectrum_is_the_matrix_power(seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((5, 5)) / 2  # real, with complex eigenvalue pairs in general
    before = W.copy()
    for n in (0, 1, 2, 7, 30):
        expected = np.linalg.matrix_power(W, n)
        got = ob.matrix_power_spectrum(W, n)
        assert got.dtype == np.float64 and got.shape == (5, 5)
        assert np.allclose(got, expected, rtol=1e-9, atol=1e-12 * max(1, np.abs(expected).max()))
    stack = ob.matrix_power_spectrum(W, np.arange(4))
    assert stack.shape == (4, 5, 5)
    assert np.allclose(stack, [np.linalg.matrix_power(W, k) for k in range(4)], atol=1e-12)
    assert np.allclose(ob.matrix_power_spectrum(W, -2), np.linalg.matrix_power(np.linalg.inv(W), 2))
    assert np.array_equal(W, before)


def test_complex_matrix_and_rotation():
    c, s = math.cos(0.3), math.sin(0.3)
    R = np.array([[c, -s], [s, c]])  # eigenvalues e^{±0.3i}: |λ| = 1, neither vanishes nor explodes
    assert np.allclose(ob.matrix_power_spectrum(R, 10), [[math.cos(3), -math.sin(3)],
                                                          [math.sin(3), math.cos(3)]])
    Z = np.array([[1 + 1j, 2], [0, 0.5j]])
    assert np.allclose(ob.matrix_power_spectrum(Z, 5), np.linalg.matrix_power(Z, 5))


def test_components_vanish_or_explode_by_eigenvalue_magnitude():
    V = np.array([[1.0, 1.0], [0.0, 1.0]])
    W = V @ np.diag([0.9, 1.1]) @ np.linalg.inv(V)
    x = V @ np.array([1.0, 1.0])  # one unit along each eigenvector
    for n in (10, 100, 300):
        coef = np.linalg.solve(V, ob.matrix_power_spectrum(W, n) @ x)
        assert coef == pytest.approx([0.9**n, 1.1**n], rel=1e-9)
    # ‖Wⁿ‖^(1/n) → ρ(W) = 1.1
    assert np.linalg.norm(ob.matrix_power_spectrum(W, 400), 2) ** (1 / 400) == pytest.approx(
        1.1, rel=1e-2)


def test_bad_matrices_and_powers():
    with pytest.raises(ValueError, match="^W: not diagonalisable"):
        ob.matrix_power_spectrum([[1.0, 1.0], [0.0, 1.0]], 3)  # a Jordan block
    with pytest.raises(ValueError, match="^W:"):
        ob.matrix_power_spectrum(np.ones((2, 3)), 2)
    with pytest.raises(ValueError, match="^W:"):
        ob.matrix_power_spectrum([[np.nan]], 2)
    with pytest.raises(TypeError, match="^W:"):
        ob.matrix_power_spectrum([["a"]], 2)
    with pytest.raises(TypeError, match="^n:"):
        ob.matrix_power_spectrum(np.eye(2), 1.5)
    with pytest.raises(ValueError, match="^n:"):
        ob.matrix_power_spectrum(np.diag([1.0, 0.0]), -1)


# ----------------------------------------------------------------------------- products
@pytest.mark.parametrize("scale", [0.5, 1.0, 1.5])
def test_gain_through_depth_follows_the_init_scale(scale):
    dim, depth = 64, 40
    gains = ob.product_gains(dim, depth, scale, samples=16, seed=3)
    assert gains.shape == (16, depth + 1) and np.all(gains[:, 0] == 1)
    # log‖Wx‖ = log s + ½ log(χ²_d/d): mean log s − 1/(2d) per layer, sd ≈ 1/√(2d)
    per_layer = np.log(gains[:, -1]).mean() / depth
    expected = math.log(scale) - 1 / (2 * dim)
    assert per_layer == pytest.approx(expected, abs=4 / math.sqrt(2 * dim * depth * 16))
    assert np.array_equal(gains, ob.product_gains(dim, depth, scale, samples=16, seed=3))


def test_gain_at_great_depth_has_no_nan():
    # the signal is renormalised every layer: no NaN even where the gain itself underflows
    g = ob.product_gains(16, 2000, 0.5, seed=0)[0]
    assert np.all(np.isfinite(g)) and np.all(g >= 0) and g[-1] == 0.0
    assert np.log(g[800]) / 800 == pytest.approx(math.log(0.5) - 1 / 32, abs=0.03)
    with pytest.raises(ValueError, match="^dim:"):
        ob.product_gains(0, 3)
    with pytest.raises(ValueError, match="^scale:"):
        ob.product_gains(3, 3, -1.0)


# ----------------------------------------------------------------------------- GOE
def test_goe_positive_fraction_meets_the_exact_small_dimensions():
    r = ob.goe_positive_fraction([1, 2, 3, 4], samples=40_000, seed=7)
    assert r.dims.tolist() == [1, 2, 3, 4] and r.samples == 40_000
    assert abs(r.fraction[0] - 0.5) < 4 * r.stderr[0]
    assert abs(r.fraction[1] - (2 - math.sqrt(2)) / 4) < 4 * r.stderr[1]
    assert np.all(np.diff(r.fraction) < 0)  # minima get rarer with dimension
    assert np.all(r.fraction[1:] < r.asymptotic[1:])  # and faster than e^{-θd²} at small d
    assert r.saddle_fraction[0] == 0.0  # one variable: no saddles
    assert np.all(np.abs(r.negative - r.positive) < 5 * np.sqrt(r.positive + 1))  # symmetric
    assert r.saddle_fraction == pytest.approx(1 - 2 * r.fraction, abs=0.01)
    assert r.saddle_fraction[-1] > 0.99  # at d = 4 nearly every critical point is a saddle
    again = ob.goe_positive_fraction([1, 2, 3, 4], 40_000, seed=7)
    assert np.array_equal(r.positive, again.positive)


def test_goe_arguments():
    with pytest.raises(ValueError, match="^dims:"):
        ob.goe_positive_fraction([0, 2])
    with pytest.raises(TypeError, match="^dims:"):
        ob.goe_positive_fraction([1.5])
    with pytest.raises(ValueError, match="^samples:"):
        ob.goe_positive_fraction(2, samples=0)
