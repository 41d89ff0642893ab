"""RMSprop: against the NumPy reference and against torch's single-tensor and foreach paths."""

import family
import numpy as np
import pytest
import reference as ref

import optbowl as ob

OPTIONS = [
    dict(),
    dict(lr=0.01, weight_decay=0.1, alpha=0.3),
    dict(lr=0.01, momentum=0.9),
    dict(lr=0.01, centered=True),
    dict(lr=0.005, centered=True, momentum=0.5, maximize=True, alpha=0.7, eps=1e-4),
]


def _reference_state(p):
    return {k: np.zeros_like(p) for k in ("square_avg", "grad_avg", "momentum_buffer")}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hp", OPTIONS)
def test_matches_reference(rng, dtype, hp):
    tol = 1e-4 if dtype == np.float32 else 1e-11
    family.compare_with_reference(
        rng, ob.RMSprop, hp, dtype, ref.rmsprop_step, _reference_state, tol=tol
    )


@pytest.mark.parametrize("impl", ["foreach", "single"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hp", OPTIONS)
def test_matches_torch(rng, impl, dtype, hp):
    torch = pytest.importorskip("torch")
    params = [rng.standard_normal(s).astype(dtype) for s in family.TORCH_SHAPES]
    opt = ob.RMSprop(params, **hp)
    tparams, topt = family.run_beside_torch(
        rng, torch, params, opt, lambda t: torch.optim.RMSprop(t, **hp, **family.TORCH_KIND[impl])
    )
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for i, (p, t) in enumerate(zip(params, tparams)):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(
            opt.state[i]["square_avg"], topt.state[t]["square_avg"].numpy(), rtol=tol, atol=tol
        )


def test_lists_groups_and_dtypes(rng):
    family.check_lists_groups_and_dtypes(
        ob.RMSprop, dict(lr=0.01), dict(centered=True, momentum=0.9), rng
    )


def test_state_dict_round_trip(rng):
    family.check_state_dict_round_trip(ob.RMSprop, dict(lr=0.01, centered=True, momentum=0.5), rng)


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("lr", -1.0, ValueError),
        ("alpha", -0.1, ValueError),
        ("eps", -1.0, ValueError),
        ("weight_decay", -0.1, ValueError),
        ("momentum", -0.9, ValueError),
        ("centered", 1, TypeError),
        ("maximize", None, TypeError),
        ("alpha", float("inf"), ValueError),
    ],
)
def test_rejects_bad_hyper_parameters(name, value, error):
    family.check_rejects(ob.RMSprop, name, value, error)
