"""RAdam: the compiled rule against the plain NumPy reference (tests/reference.py), bit for
bit, through every call path (class, functional, bowl run and sweep, optbowl.torch), every
option and dtype, on the unrectified early steps (rho_t <= 5) and the rectified ones;
against torch.optim.RAdam's single-tensor path (foreach=False): bit for bit given a
correctly rounded square root in float32/float64 and in bfloat16/float16, and within a
few ulp per step with torch's own (MKL) square root. The row-driven tests (validation matrix,
properties, checkpoints, threads) run RAdam from its row in optimizer_table.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import optbowl as ob
import reference as ref
from optimizer_table import random_problem as _problem
from optbowl import functional as F

# betas[1] = 0.999: the first 5 steps unrectified (torch's default); 0.8: rectified from
# step 7 on (rho_inf = 9); 0.5: never (rho_inf = 3 <= 5); 0.0: never either.
OPTIONS = [
    dict(lr=lr, betas=betas, eps=eps, weight_decay=wd, decoupled_weight_decay=dec,
         maximize=mx)
    for lr, betas, eps, (wd, dec), mx in itertools.product(
        (1e-3, 0.3), ((0.9, 0.999), (0.95, 0.8), (0.0, 0.5), (0.5, 0.0)), (1e-8, 1e-2),
        ((0.0, False), (0.1, False), (0.1, True), (0.0, True)), (False, True))
]


def _rho(beta2, t):
    rho_inf = 2 / (1 - beta2) - 1
    return rho_inf - 2 * t * beta2**t / (1 - beta2**t)


def test_the_options_take_both_branches():
    steps = range(1, 13)
    assert [_rho(0.999, t) > 5 for t in steps] == [False] * 5 + [True] * 7
    assert [_rho(0.8, t) > 5 for t in steps] == [False] * 6 + [True] * 6
    assert not any(_rho(0.5, t) > 5 for t in steps)


def _new_state(p):
    return {"step": 0, "exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", OPTIONS, ids=lambda kw: "-".join(map(str, kw.values())))
def test_class_matches_the_numpy_reference_bit_for_bit(dtype, kw):
    p, grads = _problem(dtype)
    q, state = p.copy(), _new_state(p)
    opt = ob.RAdam(p, **kw)
    for t, g in enumerate(grads, 1):
        opt.step(g)
        ref.radam_step(q, g, state, **kw)
        assert p.tobytes() == q.tobytes(), f"step {t}"
    for name in ("exp_avg", "exp_avg_sq"):
        assert opt.state[0][name].tobytes() == state[name].tobytes(), name
    assert opt.state[0]["step"] == len(grads)


def test_the_first_five_steps_are_momentum_steps_and_the_next_are_not():
    # beta2 = 0.999: p - (lr / (1 - beta1^t)) m for t <= 5, the rectified step after
    p, grads = _problem(np.float64, 64, seed=5)
    opt = ob.RAdam(p, lr=0.1)
    for t, g in enumerate(grads[:8], 1):
        before = p.copy()
        opt.step(g)
        momentum = before - (opt.state[0]["exp_avg"] / (1 - 0.9**t)) * 0.1
        assert np.array_equal(p, momentum) == (t <= 5), f"step {t}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_and_groups_match_the_reference(dtype):
    kw = dict(lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.5)
    p1, grads = _problem(dtype, 300, seed=1)
    p2 = p1[:100].copy()
    m1, m2, v1, v2 = (np.zeros_like(p1), np.zeros_like(p2), np.zeros_like(p1),
                      np.zeros_like(p2))
    q1, q2 = p1.copy(), p2.copy()
    s1, s2 = _new_state(q1), _new_state(q2)
    for k, g in enumerate(grads, 1):
        F.radam([p1, p2], [g, g[:100]], [m1, m2], [v1, v2], step=k, **kw)
        ref.radam_step(q1, g, s1, **kw)
        ref.radam_step(q2, g[:100], s2, **kw)
    assert p1.tobytes() == q1.tobytes() and p2.tobytes() == q2.tobytes()
    assert m1.tobytes() == s1["exp_avg"].tobytes() and v2.tobytes() == s2["exp_avg_sq"].tobytes()
    # a step count per parameter: one step unrectified (t = 2), the other rectified (t = 9)
    a, b = _problem(dtype, 50, seed=7)[0], _problem(dtype, 50, seed=8)[0]
    qa, qb = a.copy(), b.copy()
    sa, sb = {**_new_state(qa), "step": 1}, {**_new_state(qb), "step": 8}
    state = [np.zeros_like(a), np.zeros_like(b)], [np.zeros_like(a), np.zeros_like(b)]
    g = _problem(dtype, 50, seed=9)[1][0]
    kw = dict(kw, decoupled_weight_decay=True, maximize=True)
    F.radam([a, b], [g, g], *state, step=[2, 9], **kw)
    ref.radam_step(qa, g, sa, **kw)
    ref.radam_step(qb, g, sb, **kw)
    assert a.tobytes() == qa.tobytes() and b.tobytes() == qb.tobytes()
    # two param groups with their own hyper-parameters step as two separate optimizers
    a, b = _problem(dtype, 64, seed=2)[0], _problem(dtype, 64, seed=3)[0]
    a2, b2 = a.copy(), b.copy()
    opt = ob.RAdam([{"params": [a], "lr": 0.1, "betas": (0.9, 0.8)},
                    {"params": [b], "weight_decay": 1.0, "decoupled_weight_decay": True,
                     "maximize": True}], lr=0.01)
    oa = ob.RAdam(a2, lr=0.1, betas=(0.9, 0.8))
    ob_ = ob.RAdam(b2, lr=0.01, weight_decay=1.0, decoupled_weight_decay=True, maximize=True)
    for g in _problem(dtype, 64, seed=4)[1]:
        opt.step([g, g])
        oa.step(g)
        ob_.step(g)
    assert a.tobytes() == a2.tobytes() and b.tobytes() == b2.tobytes()


def test_refused_calls_change_nothing():
    p, m, v = np.ones(8), np.zeros(8), np.zeros(8)
    with pytest.raises(ValueError, match="betas"):
        F.radam([p], [np.ones(8)], [m], [v], step=1, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="eps"):
        F.radam([p], [np.ones(8)], [m], [v], step=1, eps=-1.0)
    with pytest.raises(TypeError, match="decoupled_weight_decay"):
        F.radam([p], [np.ones(8)], [m], [v], step=1, decoupled_weight_decay="yes")
    with pytest.raises(ValueError, match="exp_avg_sqs"):
        F.radam([p], [np.ones(8)], [m], [np.zeros(7)], step=1)
    with pytest.raises(TypeError, match="exp_avgs"):
        F.radam([p], [np.ones(8)], [np.zeros(8, np.float32)], [v], step=1)
    with pytest.raises(ValueError, match="step"):
        F.radam([p], [np.ones(8)], [m], [v], step=0)
    assert (p == 1).all() and (m == 0).all() and (v == 0).all()
    opt = ob.RAdam(p, lr=0.1)
    opt.step(np.ones(8))
    before = p.copy(), opt.state[0]["exp_avg"].copy(), opt.state[0]["exp_avg_sq"].copy()
    for bad, exc in (({"lr": -1.0}, ValueError), ({"weight_decay": np.nan}, ValueError),
                     ({"decoupled_weight_decay": 0}, TypeError)):
        group = opt.param_groups[0]
        saved = dict(group)
        group.update(bad)
        with pytest.raises(exc, match=next(iter(bad))):
            opt.step(np.ones(8))
        group.clear()
        group.update(saved)
    assert p.tobytes() == before[0].tobytes()
    assert opt.state[0]["exp_avg"].tobytes() == before[1].tobytes()
    assert opt.state[0]["exp_avg_sq"].tobytes() == before[2].tobytes()
    assert opt.state[0]["step"] == 1


BOWL_OPTIONS = [dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1),
                dict(lr=0.2, betas=(0.9, 0.8), weight_decay=0.3, decoupled_weight_decay=True),
                dict(lr=0.1, betas=(0.5, 0.5))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", BOWL_OPTIONS, ids=str)
def test_bowl_runs_the_same_rule(dtype, kw):
    bowl = ob.QuadraticBowl(np.diag([1.0, 10.0]), np.array([1.0, -2.0]))
    x0 = np.array([2.0, 3.0])
    run = bowl.run("radam", x0, 20, dtype=dtype, **kw)
    x, state = x0.astype(dtype), _new_state(x0.astype(dtype))
    A, b = bowl.A.astype(dtype), bowl.b.astype(dtype)
    for k in range(20):
        np.testing.assert_array_equal(run.x[k], x)
        g = A @ x - b
        ref.radam_step(x, g, state, **kw)
    np.testing.assert_array_equal(run.x[20], x)


@pytest.mark.parametrize("decoupled", [False, True])
def test_sweep_lanes_rectify_each_at_its_own_step(decoupled):
    # beta2 = 0.8 rectifies from step 7, 0.9 and 0.999 from step 6, 0.5 never: lanes of
    # one sweep switch at steps of their own and must each equal their own run
    bowl = ob.QuadraticBowl(np.diag([1.0, 4.0, 10.0]), np.array([1.0, -2.0, 0.5]))
    x0 = np.array([2.0, 3.0, -1.0])
    beta2s = np.array([[0.5], [0.8], [0.9], [0.999]])
    lrs = np.array([0.01, 0.1, 0.3])
    res = ob.sweep(bowl, "radam", x0, 12, lr=lrs, betas=(0.9, beta2s), weight_decay=0.05,
                   decoupled_weight_decay=decoupled)
    assert res.shape == (4, 3)
    for i, b2 in enumerate(beta2s[:, 0]):
        for j, lr in enumerate(lrs):
            t = bowl.run("radam", x0, 12, lr=float(lr), betas=(0.9, float(b2)),
                         weight_decay=0.05, decoupled_weight_decay=decoupled)
            assert res.final_error[i, j] == t.final_error, (b2, lr)


TORCH_OPTIONS = [dict(lr=1e-3),
                 dict(lr=0.3, betas=(0.5, 0.8), eps=1e-3, weight_decay=0.013),
                 dict(lr=0.05, betas=(0.95, 0.9), weight_decay=0.1,
                      decoupled_weight_decay=True, maximize=True),
                 dict(lr=0.1, betas=(0.9, 0.5), maximize=True)]


def _beside_torch(dtype, kw, sizes, steps=10):
    torch = pytest.importorskip("torch")
    from optbowl.torch import RAdam

    tdtype = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(6)
    p0 = [torch.randn(n, generator=gen).to(tdtype) for n in sizes]
    mine = [torch.nn.Parameter(p.clone()) for p in p0]
    theirs = [torch.nn.Parameter(p.clone()) for p in p0]
    opt, topt = RAdam(mine, **kw), torch.optim.RAdam(theirs, foreach=False, **kw)
    for _ in range(steps):
        for a, b in zip(mine, theirs):
            g = (torch.randn(a.shape, generator=gen) * 3).to(tdtype)
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        topt.step()
    return opt, topt, mine, theirs


def _bits(torch, t):
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.dtype.itemsize])


def _assert_same(torch, opt, topt, mine, theirs):
    for a, b in zip(mine, theirs):
        assert torch.equal(_bits(torch, a.detach()), _bits(torch, b.detach()))
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(_bits(torch, opt.state[a][name]), _bits(torch, topt.state[b][name]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kw", TORCH_OPTIONS, ids=str)
def test_torch_drop_in_matches_torch_bit_for_bit_given_ieee_sqrt(ieee_sqrt, dtype, kw):
    torch = pytest.importorskip("torch")
    opt, topt, mine, theirs = _beside_torch(dtype, kw, (31, 203, 1000))
    _assert_same(torch, opt, topt, mine, theirs)
    state, tstate = opt.state_dict()["state"][0], topt.state_dict()["state"][0]
    assert set(state) == set(tstate) == {"step", "exp_avg", "exp_avg_sq"}
    assert state["step"].dtype == tstate["step"].dtype and float(state["step"]) == 10
    # a torch checkpoint continues here
    opt.load_state_dict(topt.state_dict())
    assert set(opt.param_groups[0]) >= set(topt.param_groups[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kw", TORCH_OPTIONS[1:3], ids=str)
def test_torch_drop_in_is_within_ulps_of_torch_own_sqrt(dtype, kw):
    # torch's own CPU sqrt of float32/float64 tensors (MKL's vsSqrt/vdSqrt) is within an
    # ulp but not correctly rounded; ours is IEEE's, so the parameters drift apart by an
    # ulp or so per rectified step (5 steps here, 3 or 4 of them rectified)
    _, _, mine, theirs = _beside_torch(dtype, kw, (203,), steps=5)
    a, b = mine[0].detach().numpy(), theirs[0].detach().numpy()
    np.testing.assert_allclose(a, b, rtol=8 * np.finfo(a.dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("kw", TORCH_OPTIONS, ids=str)
def test_torch_16_bit_parameters_match_torch_bit_for_bit(dtype, kw):
    torch = pytest.importorskip("torch")
    # a 16-bit tensor's last numel % 32 elements too, which torch rounds in a scalar loop of
    # its own (tests/test_torch_16bit_tails.py tries every size)
    opt, topt, mine, theirs = _beside_torch(dtype, kw, (32, 203, 1000))
    _assert_same(torch, opt, topt, mine, theirs)


def test_torch_drop_in_keeps_torch_signature_and_refuses_what_it_cannot_do():
    torch = pytest.importorskip("torch")
    import inspect

    from optbowl.torch import RAdam

    ours = inspect.signature(RAdam.__init__).parameters
    theirs = inspect.signature(torch.optim.RAdam.__init__).parameters
    assert list(ours) == [*theirs, "state_dtype"]  # state_dtype: a keyword torch lacks
    assert all(ours[k].default == theirs[k].default and ours[k].kind == theirs[k].kind
               for k in theirs)
    w = torch.nn.Parameter(torch.ones(4))
    assert RAdam([w]).defaults == torch.optim.RAdam([w]).defaults
    for bad, match in (({"betas": (0.9, 1.0)}, "betas"), ({"eps": -1.0}, "eps"),
                       ({"lr": -1.0}, "lr"), ({"weight_decay": -1.0}, "weight_decay"),
                       ({"foreach": True}, "foreach"), ({"capturable": True}, "capturable"),
                       ({"differentiable": True}, "differentiable")):
        with pytest.raises(ValueError, match=match):
            RAdam([w], **bad)
    with pytest.raises(TypeError, match="decoupled_weight_decay"):
        RAdam([w], decoupled_weight_decay=1)
    # a refused step leaves the parameters and the state as they were
    opt = RAdam([w], lr=0.1)
    w.grad = torch.ones(4)
    opt.step()
    before = w.detach().clone(), {k: v.clone() for k, v in opt.state[w].items()}
    opt.param_groups[0]["eps"] = -1.0
    with pytest.raises(ValueError, match="eps"):
        opt.step()
    assert torch.equal(w.detach(), before[0])
    assert all(torch.equal(opt.state[w][k], v) for k, v in before[1].items())
