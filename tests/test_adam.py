"""Adam / AdamW / AMSGrad: NumPy reference, bit for bit against torch's fused CPU kernel."""

import numpy as np
import pytest

import family
import optbowl as ob
import reference as ref

OPTIONS = [
    dict(),
    dict(lr=0.01, weight_decay=0.1, amsgrad=True),
    dict(lr=0.01, betas=(0.5, 0.9), maximize=True),
    dict(lr=0.003, betas=(0.3, 0.99), eps=1e-6),
    dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    dict(lr=0.02, weight_decay=0.05, decoupled_weight_decay=True, amsgrad=True, maximize=True),
]
# torch's fused kernel has a scalar tail (numel mod the vector width) that its compiler
# contracts differently from the vectorised body; optbowl rounds as the body does.
FUSED_SHAPES = [(1024,), (48, 16), (16,)]


def _reference_state(p):
    return {"step": 0, "exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p),
            "max_exp_avg_sq": np.zeros_like(p)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hp", OPTIONS)
def test_matches_reference(rng, dtype, hp):
    params = [rng.standard_normal(s).astype(dtype) for s in [(1,), (7,), (33, 5), ()]]
    expect = [p.copy() for p in params]
    states = [_reference_state(p) for p in expect]
    opt = ob.Adam(params, **hp)
    for _ in range(100):
        grads = family.grads_for(params, rng)
        opt.step(grads)
        for p, g, st in zip(expect, grads, states):
            ref.adam_step(p, g, st, **hp)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for got, want in zip(params, expect):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def _torch_pair(torch, params, hp, cls_name="Adam", **kind):
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    if cls_name == "AdamW":
        hp = {k: v for k, v in hp.items() if k != "decoupled_weight_decay"}
        return tparams, torch.optim.AdamW(tparams, **hp, **kind), ob.AdamW(params, **hp)
    return tparams, torch.optim.Adam(tparams, **hp, **kind), ob.Adam(params, **hp)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hp", OPTIONS)
def test_bit_identical_to_torch_fused(rng, dtype, hp):
    torch = pytest.importorskip("torch")
    params = [rng.standard_normal(s).astype(dtype) for s in FUSED_SHAPES]
    tparams, topt, opt = _torch_pair(torch, params, hp, fused=True)
    for _ in range(100):
        grads = family.grads_for(params, rng)
        for t, g in zip(tparams, grads):
            t.grad = torch.from_numpy(g.copy())
        topt.step()
        opt.step(grads)
    for i, (p, t) in enumerate(zip(params, tparams)):
        np.testing.assert_array_equal(p, t.detach().numpy())
        np.testing.assert_array_equal(opt.state[i]["exp_avg"], topt.state[t]["exp_avg"].numpy())
        np.testing.assert_array_equal(opt.state[i]["exp_avg_sq"], topt.state[t]["exp_avg_sq"].numpy())
        if hp.get("amsgrad"):
            np.testing.assert_array_equal(opt.state[i]["max_exp_avg_sq"], topt.state[t]["max_exp_avg_sq"].numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adamw_class_bit_identical_to_torch_adamw(rng, dtype):
    torch = pytest.importorskip("torch")
    params = [rng.standard_normal(s).astype(dtype) for s in FUSED_SHAPES]
    tparams, topt, opt = _torch_pair(torch, params, dict(lr=0.01, amsgrad=True), "AdamW", fused=True)
    assert opt.defaults["weight_decay"] == 1e-2 and opt.defaults["decoupled_weight_decay"] is True
    for _ in range(50):
        grads = family.grads_for(params, rng)
        for t, g in zip(tparams, grads):
            t.grad = torch.from_numpy(g.copy())
        topt.step()
        opt.step(grads)
    for p, t in zip(params, tparams):
        np.testing.assert_array_equal(p, t.detach().numpy())


@pytest.mark.parametrize("impl", ["foreach", "single", "fused"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_close_to_every_torch_path_on_any_shape(rng, impl, dtype):
    torch = pytest.importorskip("torch")
    hp = dict(lr=0.01, weight_decay=0.1, amsgrad=True)
    params = [rng.standard_normal(s).astype(dtype) for s in [(1000,), (37, 13), (3,), ()]]
    kind = {"fused": dict(fused=True), "foreach": dict(foreach=True), "single": dict(foreach=False)}[impl]
    tparams, topt, opt = _torch_pair(torch, params, hp, **kind)
    for _ in range(100):
        grads = family.grads_for(params, rng)
        for t, g in zip(tparams, grads):
            t.grad = torch.from_numpy(g.copy())
        topt.step()
        opt.step(grads)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=tol, atol=tol)


def test_lists_groups_and_dtypes(rng):
    family.check_lists_groups_and_dtypes(ob.Adam, dict(lr=0.01), dict(lr=0.05, amsgrad=True, weight_decay=0.1), rng)
    family.check_lists_groups_and_dtypes(ob.AdamW, dict(lr=0.01), dict(betas=(0.8, 0.99)), rng)


def test_state_dict_round_trip(rng):
    family.check_state_dict_round_trip(ob.Adam, dict(lr=0.01, amsgrad=True), rng)
    family.check_state_dict_round_trip(ob.AdamW, dict(lr=0.01), rng)
    with pytest.raises(ValueError, match="Adam"):
        ob.Adam(np.zeros(2)).load_state_dict(ob.AdamW(np.zeros(2)).state_dict())


@pytest.mark.parametrize(
    "name, value, error",
    [("lr", -1.0, ValueError), ("betas", (1.0, 0.999), ValueError), ("betas", (0.9, -0.1), ValueError),
     ("betas", 0.9, TypeError), ("eps", -1e-8, ValueError), ("weight_decay", -0.1, ValueError),
     ("amsgrad", "yes", TypeError), ("maximize", 0, TypeError), ("decoupled_weight_decay", None, TypeError)],
)
def test_rejects_bad_hyper_parameters(name, value, error):
    family.check_rejects(ob.Adam, name, value, error)


def test_adamw_always_decouples():
    opt = ob.AdamW(np.zeros(2))
    opt.param_groups[0]["decoupled_weight_decay"] = False
    with pytest.raises(ValueError, match="decoupled_weight_decay"):
        opt.step(np.ones(2))
