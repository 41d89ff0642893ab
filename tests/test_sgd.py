"""SGD: against the NumPy reference, and bit for bit against torch (fused, foreach, single)."""

import family
import numpy as np
import pytest
import reference as ref

import optbowl as ob

OPTIONS = [
    dict(lr=0.1),
    dict(lr=0.1, weight_decay=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.02, momentum=0.5, nesterov=True, weight_decay=0.2, maximize=True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hp", OPTIONS)
def test_matches_reference(rng, dtype, hp):
    tol = 2e-5 if dtype == np.float32 else 1e-12
    family.compare_with_reference(rng, ob.SGD, hp, dtype, ref.sgd_step, lambda p: {}, tol=tol)


@pytest.mark.parametrize("impl", ["fused", "foreach", "single"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hp", OPTIONS)
def test_bit_identical_to_torch(rng, impl, dtype, hp):
    torch = pytest.importorskip("torch")
    shapes = family.FUSED_SHAPES if impl == "fused" else family.TORCH_SHAPES
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    opt = ob.SGD(params, **hp)
    tparams, topt = family.run_beside_torch(
        rng, torch, params, opt, lambda t: torch.optim.SGD(t, **hp, **family.TORCH_KIND[impl])
    )
    for i, (p, t) in enumerate(zip(params, tparams)):
        np.testing.assert_array_equal(p, t.detach().numpy())
        if hp.get("momentum"):
            np.testing.assert_array_equal(
                opt.state[i]["momentum_buffer"], topt.state[t]["momentum_buffer"].numpy()
            )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_tail_within_an_ulp_or_so(rng, dtype):
    torch = pytest.importorskip("torch")
    hp = dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)
    params = [rng.standard_normal(s).astype(dtype) for s in family.TORCH_SHAPES]
    tparams, _ = family.run_beside_torch(
        rng, torch, params, ob.SGD(params, **hp), lambda t: torch.optim.SGD(t, fused=True, **hp)
    )
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=tol, atol=tol)


def test_first_step_buffer_is_the_gradient():
    x = np.array([1.0, 2.0])
    opt = ob.SGD(x, lr=0.1, momentum=0.9, dampening=0.5)
    opt.step(np.array([1.0, -1.0]))
    np.testing.assert_array_equal(opt.state[0]["momentum_buffer"], [1.0, -1.0])  # no dampening yet
    np.testing.assert_allclose(x, [0.9, 2.1])
    opt.step(np.array([1.0, -1.0]))
    np.testing.assert_allclose(opt.state[0]["momentum_buffer"], [1.4, -1.4])


def test_plain_gradient_descent_on_a_bowl():
    x = np.array([4.0, -2.0])
    opt = ob.SGD(x, lr=0.25)
    for _ in range(60):
        opt.step(2 * x)
    np.testing.assert_allclose(x, 0.0, atol=1e-15)


def test_lists_groups_and_dtypes(rng):
    family.check_lists_groups_and_dtypes(
        ob.SGD, dict(lr=0.1, momentum=0.9), dict(lr=0.01, nesterov=True), rng
    )


def test_state_dict_round_trip(rng):
    family.check_state_dict_round_trip(ob.SGD, dict(lr=0.05, momentum=0.8, weight_decay=0.1), rng)


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("lr", -0.1, ValueError),
        ("lr", "fast", TypeError),
        ("momentum", -0.5, ValueError),
        ("weight_decay", -1.0, ValueError),
        ("dampening", float("nan"), ValueError),
        ("nesterov", 1, TypeError),
        ("maximize", "no", TypeError),
    ],
)
def test_rejects_bad_hyper_parameters(name, value, error):
    family.check_rejects(ob.SGD, name, value, error, lr=0.1)


def test_nesterov_needs_momentum_and_no_dampening():
    with pytest.raises(ValueError, match="nesterov"):
        ob.SGD(np.zeros(2), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="nesterov"):
        ob.SGD(np.zeros(2), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(TypeError):
        ob.SGD(np.zeros(2))  # lr has no default
