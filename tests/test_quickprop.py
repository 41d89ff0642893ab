"""QuickProp: the seed's worked example, every documented case, and the NumPy reference."""

import family
import numpy as np
import pytest
import reference as ref

import optbowl as ob


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lands_on_the_minimum_of_x_squared_at_the_second_step(dtype):
    x = np.array([3.0], dtype)
    opt = ob.QuickProp(x, lr=0.3)
    opt.step(2 * x)  # gradient step: 3 - 0.3 * 6 = 1.2
    np.testing.assert_allclose(x, [1.2], rtol=1e-6)
    opt.step(2 * x)  # the secant parabola is exact: jump to 0
    assert x[0] == 0.0


def test_quadratic_minimum_in_two_steps_per_element(rng):
    """Any separable quadratic: each element lands on its own minimum at step two."""
    a = rng.uniform(0.5, 5.0, 50)
    c = rng.standard_normal(50)
    x = rng.standard_normal(50)
    opt = ob.QuickProp(x, lr=0.01, max_growth=1e6)
    for _ in range(2):
        opt.step(a * (x - c))
    np.testing.assert_allclose(x, c, rtol=1e-9, atol=1e-12)


def test_documented_cases():
    x = np.zeros(4)
    opt = ob.QuickProp(x, lr=0.5, max_growth=2.0)
    # First step: a gradient step for every element (zero gradient: no move).
    opt.step(np.array([1.0, 1.0, 1.0, 0.0]))
    np.testing.assert_array_equal(x, [-0.5, -0.5, -0.5, 0.0])
    # Element 0: g == g_prev -> max-growth step in the previous direction.
    # Element 1: |g| grew with the same sign -> the same.
    # Element 2: g = 0 -> no move.
    # Element 3: previous step 0 -> a gradient step again.
    opt.step(np.array([1.0, 3.0, 0.0, 2.0]))
    np.testing.assert_array_equal(x, [-1.5, -1.5, -0.5, -1.0])
    np.testing.assert_array_equal(opt.state[0]["prev_step"], [-1.0, -1.0, 0.0, -1.0])
    # Element 0: same sign, much flatter: secant ratio 0.1 / 0.9, step -1 * 1/9.
    # Element 1: sign change: jump back between the two points.
    # Element 3: ratio 1.9 / 0.1 = 19, clamped to max_growth = 2: step -2.
    opt.step(np.array([0.1, -1.0, 0.0, 1.9]))
    np.testing.assert_allclose(x, [-1.5 - 1.0 / 9.0, -1.5 + 0.25, -0.5, -3.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hp", [dict(), dict(lr=0.1, max_growth=1.2), dict(lr=0.05, maximize=True)])
def test_matches_reference(rng, dtype, hp):
    params = [rng.standard_normal(s).astype(dtype) for s in [(1,), (7,), (13, 5), ()]]
    expect = [p.copy() for p in params]
    states = [{"prev_grad": np.zeros_like(p), "prev_step": np.zeros_like(p)} for p in expect]
    opt = ob.QuickProp(params, **hp)
    for k in range(40):
        grads = [
            (np.sign(p) * np.abs(p) ** 1.5 + 0.1 * rng.standard_normal(p.shape)).astype(dtype)
            for p in params
        ]
        if k % 7 == 3:
            grads[1][:2] = grads[1][:2] * 0  # exact zeros
        opt.step(grads)
        for p, g, st in zip(expect, grads, states):
            ref.quickprop_step(p, g, st, **hp)
        for got, want in zip(params, expect):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_steps_through_the_subnormal_range_match_the_reference(rng, dtype, each_isa):
    """Steps that shrink into subnormal numbers and down to zero: the float32 products with
    the previous step are taken another way there (math.hpp); the bits must not change."""
    info = np.finfo(dtype)
    n = 1000  # whole vectors and a tail on every ISA
    x = rng.standard_normal(n).astype(dtype)
    expect = x.copy()
    state = {"prev_grad": np.zeros_like(x), "prev_step": np.zeros_like(x)}
    # The first steps, lr * g, are about a thousand times the smallest normal number.
    scale = dtype(float(info.tiny) * 1e3)
    grads = [(rng.standard_normal(n) * scale / 1e-2).astype(dtype) for _ in range(3)]
    opt = ob.QuickProp(x, lr=1e-2)
    subnormal_steps = []
    for k in range(60):
        g = grads[k % 3]
        opt.step(g)
        ref.quickprop_step(expect, g, state, lr=1e-2)
        np.testing.assert_array_equal(x, expect)
        np.testing.assert_array_equal(opt.state[0]["prev_step"], state["prev_step"])
        d = state["prev_step"]
        subnormal_steps.append(int(np.count_nonzero((d != 0) & (np.abs(d) < info.tiny))))
    assert max(subnormal_steps) > n // 4  # the range was crossed, not skipped
    assert np.count_nonzero(state["prev_step"]) < n  # and some steps reached zero


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hp", [dict(), dict(max_growth=0.5, maximize=True), dict(max_growth=1e30)])
def test_every_special_value_combination_matches_the_reference(dtype, hp, each_isa):
    """Every case of the rule, and the edges between them, on each ISA's vector loop: the
    gradient, previous gradient and previous step each drawn from signed zeros, equal and
    nearby values, subnormals, the largest numbers, infinities and NaNs."""
    info = np.finfo(dtype)
    values = np.array(
        [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.0 + float(info.eps), 3.0, 1e-30,
         float(info.smallest_subnormal), -float(info.smallest_subnormal), float(info.tiny) / 3,
         float(info.max), -float(info.max), np.inf, -np.inf, np.nan, -np.nan],
        dtype,
    )
    g, g_prev, d_prev = (a.ravel().copy() for a in np.meshgrid(values, values, values))
    x = np.where(np.arange(g.size) % 2 == 0, dtype(0.25), dtype(-1e30)).astype(dtype)
    expect = x.copy()
    state = {"prev_grad": g_prev.copy(), "prev_step": d_prev.copy()}
    ob.functional.quickprop([x], [g], [g_prev], [d_prev], lr=1e-2, **hp)
    ref.quickprop_step(expect, g, state, lr=1e-2, **hp)
    np.testing.assert_array_equal(x, expect)  # a NaN's sign is not compared
    np.testing.assert_array_equal(g_prev, state["prev_grad"])
    np.testing.assert_array_equal(d_prev, state["prev_step"])


def test_converges_on_a_bowl_faster_than_gradient_descent():
    a = np.array([1.0, 10.0, 100.0])
    x, y = np.ones(3), np.ones(3)
    qp, gd = ob.QuickProp(x, lr=0.005), ob.SGD(y, lr=0.005)
    for _ in range(10):
        qp.step(a * x)
        gd.step(a * y)
    assert np.abs(x).max() < 1e-8 < np.abs(y).max()


def test_lists_groups_and_dtypes(rng):
    family.check_lists_groups_and_dtypes(ob.QuickProp, dict(lr=0.05), dict(max_growth=1.2), rng)


def test_state_dict_round_trip(rng):
    family.check_state_dict_round_trip(ob.QuickProp, dict(lr=0.05), rng)


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("lr", -1.0, ValueError),
        ("max_growth", 0.0, ValueError),
        ("max_growth", -1.0, ValueError),
        ("max_growth", float("inf"), ValueError),
        ("maximize", "yes", TypeError),
        ("lr", None, TypeError),
    ],
)
def test_rejects_bad_hyper_parameters(name, value, error):
    family.check_rejects(ob.QuickProp, name, value, error)
