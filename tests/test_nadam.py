"""NAdam: the compiled rule against the plain NumPy reference (tests/reference.py), bit for
bit, through every call path (class, functional, bowl, optbowl.torch), every option and
dtype, its per-parameter scalar state (mu_product) included; against torch.optim.NAdam's
single-tensor path (foreach=False): bit for bit given a correctly rounded sqrt in float32 and
float64 (torch's CPU sqrt of those is MKL's, within an ulp), bit for bit as it is in bfloat16
and float16. The row-driven tests (validation matrix, properties, checkpoints, threads) run
NAdam from its row in optimizer_table.py."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest

import optbowl as ob
import reference as ref
from optimizer_table import random_problem as _problem
from optbowl import functional as F

OPTIONS = [
    dict(lr=lr, betas=betas, eps=eps, weight_decay=wd, momentum_decay=md,
         decoupled_weight_decay=dec, maximize=mx)
    for lr, betas, eps, wd, md, dec, mx in itertools.product(
        (2e-3, 0.3), ((0.9, 0.999), (0.3, 0.7)), (1e-8,), (0.0, 0.1), (4e-3, 0.3),
        (False, True), (False, True))
    if not (dec and wd == 0.0)
]
STEPS = 30  # mu_product moves away from 1 on every step


def _new_state(p):
    return ref.nadam_init(p)


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", OPTIONS, ids=lambda kw: "-".join(map(str, kw.values())))
def test_class_matches_the_numpy_reference_bit_for_bit(dtype, kw):
    p, grads = _problem(dtype, 300, steps=STEPS)
    q, state = p.copy(), _new_state(p)
    opt = ob.NAdam(p, **kw)
    for g in grads:
        opt.step(g)
        ref.nadam_step(q, g, state, **kw)
        assert _same(opt.state[0]["mu_product"], np.float32(state["mu_product"]))
    assert p.tobytes() == q.tobytes()
    for name in ("exp_avg", "exp_avg_sq"):
        assert opt.state[0][name].tobytes() == state[name].tobytes(), name
    assert opt.state[0]["mu_product"].shape == () and opt.state[0]["step"] == STEPS
    assert float(opt.state[0]["mu_product"]) < 1e-6  # it did matter


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_learning_rate_and_betas_changed_between_steps_follow_the_reference(dtype):
    p, grads = _problem(dtype, 200, steps=20)
    q, state = p.copy(), _new_state(p)
    opt = ob.NAdam(p, lr=0.1, momentum_decay=0.2)
    for k, g in enumerate(grads):
        lr, betas = 0.1 * 0.8 ** k, ((0.9, 0.999) if k < 10 else (0.5, 0.99))
        opt.param_groups[0]["lr"] = lr
        opt.param_groups[0]["betas"] = betas
        opt.step(g)
        ref.nadam_step(q, g, state, lr=lr, betas=betas, momentum_decay=0.2)
    assert p.tobytes() == q.tobytes()
    assert _same(opt.state[0]["mu_product"], np.float32(state["mu_product"]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_and_groups_match_the_reference(dtype):
    kw = dict(lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.5, momentum_decay=0.1)
    p1, grads = _problem(dtype, 300, seed=1)
    p2 = p1[:100].copy()
    m1, m2, v1, v2 = (np.zeros_like(p1), np.zeros_like(p2), np.zeros_like(p1),
                      np.zeros_like(p2))
    mp1, mp2 = np.array(1.0, np.float32), np.array(1.0, np.float32)
    q1, q2 = p1.copy(), p2.copy()
    s1, s2 = _new_state(q1), _new_state(q2)
    for k, g in enumerate(grads, 1):
        F.nadam([p1, p2], [g, g[:100]], [m1, m2], [v1, v2], [mp1, mp2], step=k, **kw)
        ref.nadam_step(q1, g, s1, **kw)
        ref.nadam_step(q2, g[:100], s2, **kw)
    assert p1.tobytes() == q1.tobytes() and p2.tobytes() == q2.tobytes()
    assert m1.tobytes() == s1["exp_avg"].tobytes() and v2.tobytes() == s2["exp_avg_sq"].tobytes()
    assert _same(mp1, np.float32(s1["mu_product"])) and _same(mp2, np.float32(s2["mu_product"]))
    # a step count and a mu_product per parameter: tensors whose scalar state differs run
    # as groups of their own within one call
    a, b = _problem(dtype, 50, seed=7)[0], _problem(dtype, 50, seed=8)[0]
    qa, qb = a.copy(), b.copy()
    sa, sb = _new_state(qa), _new_state(qb)
    g0 = _problem(dtype, 50, seed=10)[1]
    for g in g0[:4]:
        ref.nadam_step(qb, g, sb, **kw)
    b[...] = qb
    arrays = ([np.zeros_like(a), sb["exp_avg"].copy()], [np.zeros_like(a), sb["exp_avg_sq"].copy()])
    products = [np.array(1.0, np.float32), np.array(sb["mu_product"], np.float32)]
    g = _problem(dtype, 50, seed=9)[1][0]
    F.nadam([a, b], [g, g], *arrays, products, step=[1, 5], **kw)
    ref.nadam_step(qa, g, sa, **kw)
    ref.nadam_step(qb, g, sb, **kw)
    assert a.tobytes() == qa.tobytes() and b.tobytes() == qb.tobytes()
    assert _same(products[0], np.float32(sa["mu_product"]))
    assert _same(products[1], np.float32(sb["mu_product"]))
    # two param groups with their own hyper-parameters step as two separate optimizers
    a, b = _problem(dtype, 64, seed=2)[0], _problem(dtype, 64, seed=3)[0]
    a2, b2 = a.copy(), b.copy()
    opt = ob.NAdam([{"params": [a], "lr": 0.1}, {"params": [b], "weight_decay": 1.0,
                                                    "decoupled_weight_decay": True,
                                                    "maximize": True}], lr=0.01)
    oa = ob.NAdam(a2, lr=0.1)
    ob_ = ob.NAdam(b2, lr=0.01, weight_decay=1.0, decoupled_weight_decay=True, maximize=True)
    for g in _problem(dtype, 64, seed=4)[1]:
        opt.step([g, g])
        oa.step(g)
        ob_.step(g)
    assert a.tobytes() == a2.tobytes() and b.tobytes() == b2.tobytes()
    assert _same(opt.state[1]["mu_product"], ob_.state[0]["mu_product"])


def test_a_parameter_skipped_keeps_its_own_mu_product():
    a, b = np.ones(40, np.float32), np.ones(40, np.float32)
    a2, b2 = a.copy(), b.copy()
    opt = ob.NAdam([a, b], lr=0.1)
    oa, ob_ = ob.NAdam(a2, lr=0.1), ob.NAdam(b2, lr=0.1)
    rng = np.random.default_rng(0)
    for k in range(8):
        g = rng.standard_normal(40).astype(np.float32)
        opt.step([g, None if k % 3 == 0 else g])
        oa.step(g)
        if k % 3:
            ob_.step(g)
    assert a.tobytes() == a2.tobytes() and b.tobytes() == b2.tobytes()
    assert _same(opt.state[0]["mu_product"], oa.state[0]["mu_product"])
    assert _same(opt.state[1]["mu_product"], ob_.state[0]["mu_product"])
    assert opt.state[0]["mu_product"] != opt.state[1]["mu_product"]


def test_the_compiled_entry_names_its_scalar_state_and_advances_it():
    from optbowl import _core

    assert _core.rules["nadam"]["scalar_state"] == ob.NAdam.rule.scalar_names == ("mu_product",)
    assert _core.rules["adam"]["scalar_state"] == ()
    group = ob.NAdam.rule.group_args({**ob.NAdam.rule.defaults})
    state = {"step": 0, "mu_product": np.float32(1.0), "exp_avg": np.zeros(1),
             "exp_avg_sq": np.zeros(1)}
    ref.nadam_step(np.zeros(1), np.zeros(1), state)
    (after,) = _core.scalar_state_after("nadam", group + (1.0, False), 1.0)
    assert after == float(state["mu_product"])
    # float64 state: the product in double
    (after64,) = _core.scalar_state_after("nadam", group + (1.0, True), 1.0)
    assert after64 == 0.9 * (1.0 - 0.5 * 0.96 ** 0.004) != after
    with pytest.raises(ValueError, match="name"):
        _core.scalar_state_after("adam", (0.1,), 1.0)


def test_refused_calls_change_nothing():
    p, m, v = np.ones(8), np.zeros(8), np.zeros(8)
    mp = np.array(0.5, np.float32)

    def unchanged():
        return (p == 1).all() and (m == 0).all() and (v == 0).all() and mp == np.float32(0.5)

    g = [np.ones(8)]
    with pytest.raises(ValueError, match="betas"):
        F.nadam([p], g, [m], [v], [mp], step=1, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="momentum_decay"):
        F.nadam([p], g, [m], [v], [mp], step=1, momentum_decay=-1.0)
    with pytest.raises(ValueError, match="exp_avg_sqs"):
        F.nadam([p], g, [m], [np.zeros(7)], [mp], step=1)
    with pytest.raises(TypeError, match=r"mu_products\[0\]"):
        F.nadam([p], g, [m], [v], [np.array(0.5, np.float16)], step=1)
    with pytest.raises(TypeError, match=r"mu_products\[0\]"):
        F.nadam([p], g, [m], [v], [np.ones(1, np.float32)], step=1)
    with pytest.raises(TypeError, match=r"mu_products\[0\]"):
        F.nadam([p], g, [m], [v], [0.5], step=1)
    with pytest.raises(ValueError, match="mu_products"):
        F.nadam([p], g, [m], [v], [mp, mp], step=1)
    frozen = np.array(0.5, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match=r"mu_products\[0\]"):
        F.nadam([p], g, [m], [v], [frozen], step=1)
    with pytest.raises(TypeError, match="step"):
        F.nadam([p], g, [m], [v], [mp], step=1.5)
    assert unchanged()
    # the class: a refused step (a bad gradient among good ones) leaves mu_product as it was
    a, b = np.ones(8), np.ones(4)
    opt = ob.NAdam([a, b], lr=0.1)
    opt.step([np.ones(8), np.ones(4)])
    before = [dict(st, mu_product=st["mu_product"].copy()) for st in opt.state.values()]
    with pytest.raises(ValueError):
        opt.step([np.ones(8), np.ones(5)])
    with pytest.raises(TypeError):
        opt.step([np.ones(8), np.ones(4, np.float32)])
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.step([np.ones(8), np.ones(4)])
    for st, was in zip(opt.state.values(), before):
        assert _same(st["mu_product"], was["mu_product"]) and st["step"] == was["step"] == 1


def test_state_dict_round_trip_keeps_mu_product():
    p, grads = _problem(np.float32, 100, steps=10)
    opt = ob.NAdam(p, lr=0.05)
    for g in grads[:5]:
        opt.step(g)
    sd = opt.state_dict()
    assert sd["state"][0]["mu_product"].dtype == np.float32
    q = p.copy()
    other = ob.NAdam(q, lr=0.05)
    other.load_state_dict(sd)
    for g in grads[5:]:
        opt.step(g)
        other.step(g)
    assert p.tobytes() == q.tobytes()
    assert _same(opt.state[0]["mu_product"], other.state[0]["mu_product"])
    bad = opt.state_dict()
    bad["state"][0]["mu_product"] = np.array(0.5)  # float64: not the state's dtype
    with pytest.raises(TypeError, match="mu_product"):
        other.load_state_dict(bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bowl_runs_the_same_rule(dtype):
    bowl = ob.QuadraticBowl(np.diag([1.0, 10.0]), np.array([1.0, -2.0]))
    x0 = np.array([2.0, 3.0])
    kw = dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1, momentum_decay=0.2)
    run = bowl.run("nadam", x0, 20, dtype=dtype, **kw)
    x, state = x0.astype(dtype), _new_state(x0.astype(dtype))
    for k in range(20):
        np.testing.assert_array_equal(run.x[k], x)
        g = (bowl.A @ x.astype(np.float64) - bowl.b).astype(dtype)  # as the simulator does
        ref.nadam_step(x, g, state, **kw)
    np.testing.assert_array_equal(run.x[20], x)
    # a sweep steps each configuration as its own run
    lrs = np.array([0.01, 0.05, 0.2])
    swept = ob.sweep(bowl, "nadam", x0, 20, lr=lrs, betas=(0.8, 0.95), eps=1e-6,
                     weight_decay=0.1, momentum_decay=0.2)
    for lr, err in zip(lrs, swept.final_error):
        one = bowl.run("nadam", x0, 20, lr=lr, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1,
                       momentum_decay=0.2)
        assert err == pytest.approx(np.linalg.norm(one.x[-1] - bowl.minimizer), rel=1e-12)


# ----------------------------------------------------------------------------- torch
TORCH_OPTIONS = [dict(lr=2e-3),
                 dict(lr=0.3, betas=(0.5, 0.9), eps=1e-3, weight_decay=0.013, momentum_decay=0.3),
                 dict(lr=0.05, betas=(0.95, 0.0), weight_decay=0.1, decoupled_weight_decay=True,
                      maximize=True)]


def _bits(torch, dtype):
    return {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[dtype.itemsize]


def _pair(torch, dtype, sizes, seed=6):
    gen = torch.Generator().manual_seed(seed)
    p0 = [torch.randn(n, generator=gen).to(dtype) for n in sizes]
    mine = [torch.nn.Parameter(p.clone()) for p in p0]
    theirs = [torch.nn.Parameter(p.clone()) for p in p0]
    return gen, mine, theirs


def _grads(torch, gen, mine, theirs):
    for a, b in zip(mine, theirs):
        g = (torch.randn(a.shape, generator=gen) * 3).to(a.dtype)
        a.grad, b.grad = g.clone(), g.clone()


def _assert_torch_same(torch, opt, topt, mine, theirs):
    bits = _bits(torch, mine[0].dtype)
    for a, b in zip(mine, theirs):
        assert torch.equal(a.detach().view(bits), b.detach().view(bits))
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(opt.state[a][name].view(bits), topt.state[b][name].view(bits))
        mp, tmp = opt.state[a]["mu_product"], topt.state[b]["mu_product"]
        assert mp.dtype == tmp.dtype and mp.shape == () and torch.equal(mp, tmp)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kw", TORCH_OPTIONS, ids=str)
def test_torch_drop_in_matches_torch_single_tensor_given_ieee_sqrt(ieee_sqrt, dtype, kw):
    import torch

    from optbowl.torch import NAdam

    gen, mine, theirs = _pair(torch, getattr(torch, dtype), (31, 203, 1000))
    opt, topt = NAdam(mine, **kw), torch.optim.NAdam(theirs, foreach=False, **kw)
    for _ in range(STEPS):
        _grads(torch, gen, mine, theirs)
        opt.step()
        topt.step()
    _assert_torch_same(torch, opt, topt, mine, theirs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_drop_in_is_within_a_few_ulp_of_torch_as_it_is(dtype):
    # torch's CPU sqrt of float32/float64 tensors is MKL's vsSqrt/vdSqrt (VML_HA: within an
    # ulp, not always correctly rounded); the kernel's is IEEE's, so each step's denominator
    # may differ from torch's by its last bit, and the parameters by a few ulp
    torch = pytest.importorskip("torch")
    from optbowl.torch import NAdam

    kw = TORCH_OPTIONS[1]
    gen, mine, theirs = _pair(torch, getattr(torch, dtype), (31, 203, 1000))
    opt, topt = NAdam(mine, **kw), torch.optim.NAdam(theirs, foreach=False, **kw)
    for _ in range(STEPS):
        _grads(torch, gen, mine, theirs)
        opt.step()
        topt.step()
    eps = np.finfo(dtype).eps  # parameters of order 1, moved by steps of order lr
    for a, b in zip(mine, theirs):
        got, want = a.detach().numpy(), b.detach().numpy()
        assert np.all(np.abs(got - want) <= 8 * eps * (1 + np.abs(want)))
        assert not np.array_equal(got, want) or dtype == "float64"  # MKL's sqrt did differ
        assert torch.equal(opt.state[a]["mu_product"], topt.state[b]["mu_product"])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("kw", TORCH_OPTIONS, ids=str)
def test_torch_drop_in_matches_torch_in_16_bits_bit_for_bit(dtype, kw):
    torch = pytest.importorskip("torch")
    pytest.importorskip("ml_dtypes")
    from optbowl.torch import NAdam

    # sizes with a tail: torch rounds a 16-bit tensor's last numel % 32 elements in a scalar
    # loop of its own, and so does the kernel (multi_tensor.hpp, kTorchHalfTail)
    gen, mine, theirs = _pair(torch, getattr(torch, dtype), (31, 257, 1000))
    opt, topt = NAdam(mine, **kw), torch.optim.NAdam(theirs, foreach=False, **kw)
    for _ in range(12):
        _grads(torch, gen, mine, theirs)
        opt.step()
        topt.step()
    _assert_torch_same(torch, opt, topt, mine, theirs)


def test_torch_scheduler_and_state_dict_round_trips_continue_bit_for_bit(ieee_sqrt):
    import torch

    from optbowl.torch import NAdam

    kw = dict(lr=0.05, weight_decay=0.01, momentum_decay=0.1)
    gen, mine, theirs = _pair(torch, torch.float32, (40, 300))
    opt, topt = NAdam(mine, **kw), torch.optim.NAdam(theirs, foreach=False, **kw)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.7)
    tsched = torch.optim.lr_scheduler.ExponentialLR(topt, gamma=0.7)
    for _ in range(6):
        _grads(torch, gen, mine, theirs)
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
    _assert_torch_same(torch, opt, topt, mine, theirs)
    # deep copies: a state_dict holds the optimizer's own tensors, and loading one into
    # another optimizer of the same dtype would share them
    sd, tsd = copy.deepcopy(opt.state_dict()), copy.deepcopy(topt.state_dict())
    assert list(sd["state"][0]) == list(tsd["state"][0]) == [
        "step", "mu_product", "exp_avg", "exp_avg_sq"]
    assert sd["state"][0]["mu_product"].dtype == torch.float32
    # torch's state into ours and ours into torch: both continue as one torch optimizer
    swapped_mine = [torch.nn.Parameter(t.detach().clone()) for t in theirs]
    swapped_theirs = [torch.nn.Parameter(t.detach().clone()) for t in mine]
    opt2 = NAdam(swapped_mine, **kw)
    opt2.load_state_dict(tsd)
    topt2 = torch.optim.NAdam(swapped_theirs, foreach=False, **kw)
    topt2.load_state_dict(sd)
    for _ in range(6):
        for group in zip(mine, theirs, swapped_mine, swapped_theirs):
            g = torch.randn(group[0].shape, generator=gen)
            for p in group:
                p.grad = g.clone()
        for o in (opt, topt, opt2, topt2):
            o.step()
    _assert_torch_same(torch, opt, topt, mine, theirs)
    _assert_torch_same(torch, opt2, topt, swapped_mine, theirs)
    _assert_torch_same(torch, opt, topt2, mine, swapped_theirs)


def test_torch_float64_default_dtype_keeps_mu_product_in_float64(ieee_sqrt):
    import torch

    from optbowl.torch import NAdam

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        gen, mine, theirs = _pair(torch, torch.float64, (64,))
        opt, topt = NAdam(mine, lr=0.1), torch.optim.NAdam(theirs, lr=0.1, foreach=False)
        for _ in range(10):
            _grads(torch, gen, mine, theirs)
            opt.step()
            topt.step()
    finally:
        torch.set_default_dtype(old)
    assert opt.state[mine[0]]["mu_product"].dtype == torch.float64
    _assert_torch_same(torch, opt, topt, mine, theirs)
    # the functional form with float64 mu_products is the same computation
    _, mine, theirs = _pair(torch, torch.float64, (64,), seed=3)
    p = mine[0].detach().numpy()
    m, v, mp = np.zeros(64), np.zeros(64), np.array(1.0)
    gen = torch.Generator().manual_seed(4)
    torch.set_default_dtype(torch.float64)
    try:
        topt = torch.optim.NAdam(theirs, lr=0.1, foreach=False)
        for k in range(1, 6):
            g = torch.randn(64, generator=gen, dtype=torch.float64)
            theirs[0].grad = g.clone()
            topt.step()
            F.nadam([p], [g.numpy()], [m], [v], [mp], step=k, lr=0.1)
    finally:
        torch.set_default_dtype(old)
    assert p.tobytes() == theirs[0].detach().numpy().tobytes()
    assert mp.dtype == np.float64 and float(mp) == topt.state[theirs[0]]["mu_product"].item()


def test_torch_refused_steps_change_nothing():
    torch = pytest.importorskip("torch")
    from optbowl.torch import NAdam

    a, b = torch.nn.Parameter(torch.ones(8)), torch.nn.Parameter(torch.ones(4))
    opt = NAdam([a, b], lr=0.1)
    a.grad, b.grad = torch.ones(8), torch.ones(4)
    opt.step()
    before = {k: {n: (t.clone() if torch.is_tensor(t) else t) for n, t in st.items()}
              for k, st in opt.state.items()}
    params_before = [a.detach().clone(), b.detach().clone()]
    b.grad = torch.ones(8)[::2]  # not dense
    with pytest.raises(ValueError, match="grad"):
        opt.step()
    b.grad = torch.ones(4)
    opt.state[b]["mu_product"] = torch.tensor(0.5, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="mu_product"):
        opt.step()
    opt.state[b]["mu_product"] = before[b]["mu_product"].clone()
    for k, st in opt.state.items():
        for n, t in st.items():
            assert torch.equal(t, before[k][n]), n
    assert torch.equal(a.detach(), params_before[0]) and torch.equal(b.detach(), params_before[1])


def test_torch_drop_in_keeps_torch_signature_and_refuses_what_it_cannot_do():
    torch = pytest.importorskip("torch")
    import inspect

    from optbowl.torch import NAdam

    ours = inspect.signature(NAdam.__init__).parameters
    theirs = inspect.signature(torch.optim.NAdam.__init__).parameters
    assert list(ours) == [*theirs, "state_dtype"]  # state_dtype: a keyword torch lacks
    assert all(ours[k].default == theirs[k].default and ours[k].kind == theirs[k].kind
               for k in theirs)
    w = torch.nn.Parameter(torch.ones(4))
    for bad, match in (({"betas": (0.9, 1.0)}, "betas"), ({"eps": -1.0}, "eps"),
                       ({"lr": -1.0}, "lr"), ({"momentum_decay": -1.0}, "momentum_decay"),
                       ({"foreach": True}, "foreach"), ({"capturable": True}, "capturable"),
                       ({"differentiable": True}, "differentiable")):
        with pytest.raises(ValueError, match=match):
            NAdam([w], **bad)
