"""Rprop is invariant to a diagonal rescaling of the parameters, bit for bit.

Statement. Let D = diag(d) with every dᵢ a power of two, g(y) = f(Dy), so that
∇g(y) = D∇f(Dy). Run Rprop on g from y₀ with step sizes (lr, (Δmin, Δmax)), and Rprop on f
from x₀ = Dy₀ with coordinate i's step sizes multiplied by dᵢ (lr·dᵢ, (Δmin·dᵢ, Δmax·dᵢ),
one param group per coordinate). Then after every step xₖ = Dyₖ and Δₖ(x) = DΔₖ(y)
exactly, in float32 and float64, for every variant: Rprop's move depends on the gradient
only through its sign (unchanged by dᵢ > 0) and on the sign of gₜgₜ₋₁ (unchanged), and
every multiplication by a power of two is exact, so the two runs round identically.
Gradient descent has no such invariance: on g it moves x by −ηD²∇f. With a D that is
not a power of two the runs agree only to rounding.
"""

import numpy as np
import pytest

import optbowl as ob
from optbowl import functions as F
from optbowl.rprop import VARIANTS


def rotated_bowl(n, seed):
    return ob.QuadraticBowl.from_eigenvalues(np.geomspace(1, 300, n), rotate=True, seed=seed)


PROBLEMS = {
    "rosenbrock": (F.rosenbrock(), np.array([-1.2, 1.0]), np.array([4.0, 0.125])),
    "rotated bowl": (rotated_bowl(6, 1), np.linspace(-1, 1, 6),
                     np.array([2.0**-6, 0.5, 1.0, 8.0, 2.0**10, 0.25])),
}


def rprop_run(fn, x0, steps, variant, dtype, scale=None, lr=0.01, step_sizes=(1e-6, 5.0),
              on_g=None):
    """Rprop with one param group per coordinate; returns (xs, step sizes) per step.

    scale: per-coordinate factors for the step sizes (the run on f); on_g: D, to run on
    g(y) = f(Dy) instead (the gradient D∇f(Dy), the loss f(Dy)).
    """
    n = x0.size
    params = [np.array([v], dtype=dtype) for v in x0]
    s = np.ones(n) if scale is None else scale
    groups = [{"params": [p], "lr": lr * s[i], "step_sizes": (step_sizes[0] * s[i],
                                                               step_sizes[1] * s[i])}
              for i, p in enumerate(params)]
    opt = ob.Rprop(groups, variant=variant)
    d = np.ones(n) if on_g is None else on_g
    xs, deltas = [], []
    for _ in range(steps):
        y = np.concatenate(params)
        x = (d * y).astype(dtype)  # exact: d is a power of two
        grad = np.asarray(fn.grad(x), dtype=np.float64).astype(dtype) * d.astype(dtype)
        loss = float(fn.f(x))
        opt.step([grad[i:i + 1] for i in range(n)], loss=loss)
        xs.append(np.concatenate(params))
        deltas.append(np.concatenate([opt.state[i]["step_size"] for i in range(n)]))
    return np.array(xs), np.array(deltas)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_rprop_is_invariant_to_power_of_two_diagonal_scaling(variant, dtype, problem):
    fn, x0, d = PROBLEMS[problem]
    y0 = (x0 / d).astype(dtype)
    x0 = (d * y0).astype(dtype)
    xs_f, steps_f = rprop_run(fn, x0, 60, variant, dtype, scale=d)
    ys_g, steps_g = rprop_run(fn, y0, 60, variant, dtype, on_g=d)
    assert xs_f.dtype == dtype
    np.testing.assert_array_equal(xs_f, (d * ys_g).astype(dtype))
    np.testing.assert_array_equal(steps_f, (d * steps_g).astype(dtype))
    assert np.ptp(xs_f, axis=0).min() > 0  # every coordinate moved


def test_gradient_descent_is_not_invariant():
    fn, x0, d = PROBLEMS["rotated bowl"]
    y = x0 / d
    x = x0.copy()
    gd_f, gd_g = ob.SGD(x, lr=1e-3), ob.SGD(y, lr=1e-3)
    for _ in range(20):
        gd_f.step(fn.grad(x))
        gd_g.step(d * fn.grad(d * y))
    assert not np.allclose(x, d * y, rtol=1e-3)


def test_any_positive_scaling_agrees_to_rounding():
    fn, x0, _ = PROBLEMS["rosenbrock"]
    d = np.array([3.0, 0.3])
    xs_f, _ = rprop_run(fn, d * (x0 / d), 40, "irprop-", np.float64, scale=d)
    ys_g, _ = rprop_run(fn, x0 / d, 40, "irprop-", np.float64, on_g=d)
    np.testing.assert_allclose(xs_f, d * ys_g, rtol=1e-12, atol=1e-14)
