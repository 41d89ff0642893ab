"""Adam / AdamW / AMSGrad: NumPy reference, bit for bit against torch's fused CPU kernel."""

import family
import numpy as np
import pytest
import reference as ref

import optbowl as ob

OPTIONS = [
    dict(),
    dict(lr=0.01, weight_decay=0.1, amsgrad=True),
    dict(lr=0.01, betas=(0.5, 0.9), maximize=True),
    dict(lr=0.003, betas=(0.3, 0.99), eps=1e-6),
    dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    dict(lr=0.02, weight_decay=0.05, decoupled_weight_decay=True, amsgrad=True, maximize=True),
]


def _reference_state(p):
    return {
        "step": 0,
        "exp_avg": np.zeros_like(p),
        "exp_avg_sq": np.zeros_like(p),
        "max_exp_avg_sq": np.zeros_like(p),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hp", OPTIONS)
def test_matches_reference(rng, dtype, hp):
    tol = 1e-4 if dtype == np.float32 else 1e-11
    family.compare_with_reference(rng, ob.Adam, hp, dtype, ref.adam_step, _reference_state, tol=tol)


def _beside_torch(rng, torch, params, hp, cls_name="Adam", **kind):
    if cls_name == "AdamW":
        hp = {k: v for k, v in hp.items() if k != "decoupled_weight_decay"}
    opt = getattr(ob, cls_name)(params, **hp)
    tparams, topt = family.run_beside_torch(
        rng, torch, params, opt, lambda t: getattr(torch.optim, cls_name)(t, **hp, **kind)
    )
    return opt, tparams, topt


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_amsgrad_maximum_keeps_a_nan_from_either_side(dtype, each_isa):
    """max(max_exp_avg_sq, exp_avg_sq) is NaN where either is, as torch's maximum: every
    combination of a gradient, a second moment and its running maximum drawn from zeros,
    ordinary values, infinities and NaNs, through each ISA's vector loop."""
    specials = [0.0, 1.0, -2.0, 1e-30, np.inf, np.nan]
    g, v, vmax = (a.ravel().astype(dtype) for a in np.meshgrid(specials, specials, specials))
    v, vmax = np.abs(v), np.abs(vmax)  # second moments: never negative
    p, m = np.ones_like(g), np.full_like(g, 0.5)
    state = {"step": 2, "exp_avg": m.copy(), "exp_avg_sq": v.copy(), "max_exp_avg_sq": vmax.copy()}
    expect = p.copy()
    ob.functional.adam([p], [g], [m], [v], [vmax], step=3, lr=0.01, amsgrad=True)
    with np.errstate(all="ignore"):  # inf - inf and inf / inf on purpose
        ref.adam_step(expect, g, state, lr=0.01, amsgrad=True)
    np.testing.assert_array_equal(np.isnan(vmax), np.isnan(state["max_exp_avg_sq"]))
    np.testing.assert_allclose(vmax, state["max_exp_avg_sq"], rtol=1e-6)
    np.testing.assert_array_equal(np.isnan(p), np.isnan(expect))
    assert np.isnan(vmax).any() and not np.isnan(vmax).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hp", OPTIONS)
def test_bit_identical_to_torch_fused(rng, dtype, hp):
    torch = pytest.importorskip("torch")
    params = [rng.standard_normal(s).astype(dtype) for s in family.FUSED_SHAPES]
    opt, tparams, topt = _beside_torch(rng, torch, params, hp, fused=True)
    for i, (p, t) in enumerate(zip(params, tparams)):
        np.testing.assert_array_equal(p, t.detach().numpy())
        np.testing.assert_array_equal(opt.state[i]["exp_avg"], topt.state[t]["exp_avg"].numpy())
        np.testing.assert_array_equal(
            opt.state[i]["exp_avg_sq"], topt.state[t]["exp_avg_sq"].numpy()
        )
        if hp.get("amsgrad"):
            np.testing.assert_array_equal(
                opt.state[i]["max_exp_avg_sq"], topt.state[t]["max_exp_avg_sq"].numpy()
            )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adamw_class_bit_identical_to_torch_adamw(rng, dtype):
    torch = pytest.importorskip("torch")
    params = [rng.standard_normal(s).astype(dtype) for s in family.FUSED_SHAPES]
    opt, tparams, _ = _beside_torch(
        rng, torch, params, dict(lr=0.01, amsgrad=True), "AdamW", fused=True
    )
    assert opt.defaults["weight_decay"] == 1e-2 and opt.defaults["decoupled_weight_decay"] is True
    for p, t in zip(params, tparams):
        np.testing.assert_array_equal(p, t.detach().numpy())


@pytest.mark.parametrize("impl", ["foreach", "single", "fused"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_close_to_every_torch_path_on_any_shape(rng, impl, dtype):
    torch = pytest.importorskip("torch")
    hp = dict(lr=0.01, weight_decay=0.1, amsgrad=True)
    params = [rng.standard_normal(s).astype(dtype) for s in family.TORCH_SHAPES]
    _, tparams, _ = _beside_torch(rng, torch, params, hp, **family.TORCH_KIND[impl])
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=tol, atol=tol)


def test_lists_groups_and_dtypes(rng):
    family.check_lists_groups_and_dtypes(
        ob.Adam, dict(lr=0.01), dict(lr=0.05, amsgrad=True, weight_decay=0.1), rng
    )
    family.check_lists_groups_and_dtypes(ob.AdamW, dict(lr=0.01), dict(betas=(0.8, 0.99)), rng)


def test_state_dict_round_trip(rng):
    family.check_state_dict_round_trip(ob.Adam, dict(lr=0.01, amsgrad=True), rng)
    family.check_state_dict_round_trip(ob.AdamW, dict(lr=0.01), rng)
    with pytest.raises(ValueError, match="Adam"):
        ob.Adam(np.zeros(2)).load_state_dict(ob.AdamW(np.zeros(2)).state_dict())


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("lr", -1.0, ValueError),
        ("betas", (1.0, 0.999), ValueError),
        ("betas", (0.9, -0.1), ValueError),
        ("betas", 0.9, TypeError),
        ("eps", -1e-8, ValueError),
        ("weight_decay", -0.1, ValueError),
        ("amsgrad", "yes", TypeError),
        ("maximize", 0, TypeError),
        ("decoupled_weight_decay", None, TypeError),
    ],
)
def test_rejects_bad_hyper_parameters(name, value, error):
    family.check_rejects(ob.Adam, name, value, error)


def test_adamw_always_decouples():
    opt = ob.AdamW(np.zeros(2))
    opt.param_groups[0]["decoupled_weight_decay"] = False
    with pytest.raises(ValueError, match="decoupled_weight_decay"):
        opt.step(np.ones(2))
