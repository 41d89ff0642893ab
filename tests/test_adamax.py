"""Adamax: the compiled rule against the plain NumPy reference (tests/reference.py), bit for
bit, through every call path (class, functional, bowl, optbowl.torch), every option and
dtype; against torch.optim.Adamax's single-tensor path (foreach=False) bit for bit, 16-bit
parameters included. The row-driven tests (validation matrix, properties, checkpoints,
threads) run Adamax from its row in optimizer_table.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import optbowl as ob
import reference as ref
from optimizer_table import random_problem as _problem
from optbowl import functional as F

OPTIONS = [
    dict(lr=lr, betas=betas, eps=eps, weight_decay=wd, maximize=mx)
    for lr, betas, eps, wd, mx in itertools.product(
        (2e-3, 0.3), ((0.9, 0.999), (0.0, 0.5), (0.95, 0.0)), (1e-8, 1e-2), (0.0, 0.1),
        (False, True))
]


def _new_state(p):
    return {"step": 0, "exp_avg": np.zeros_like(p), "exp_inf": np.zeros_like(p)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", OPTIONS, ids=lambda kw: "-".join(map(str, kw.values())))
def test_class_matches_the_numpy_reference_bit_for_bit(dtype, kw):
    p, grads = _problem(dtype)
    q, state = p.copy(), _new_state(p)
    opt = ob.Adamax(p, **kw)
    for g in grads:
        opt.step(g)
        ref.adamax_step(q, g, state, **kw)
    assert p.tobytes() == q.tobytes()
    for name in ("exp_avg", "exp_inf"):
        assert opt.state[0][name].tobytes() == state[name].tobytes(), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_and_groups_match_the_reference(dtype):
    kw = dict(lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.5)
    p1, grads = _problem(dtype, 300, seed=1)
    p2 = p1[:100].copy()
    m1, m2, u1, u2 = (np.zeros_like(p1), np.zeros_like(p2), np.zeros_like(p1),
                      np.zeros_like(p2))
    q1, q2 = p1.copy(), p2.copy()
    s1, s2 = _new_state(q1), _new_state(q2)
    for k, g in enumerate(grads, 1):
        F.adamax([p1, p2], [g, g[:100]], [m1, m2], [u1, u2], step=k, **kw)
        ref.adamax_step(q1, g, s1, **kw)
        ref.adamax_step(q2, g[:100], s2, **kw)
    assert p1.tobytes() == q1.tobytes() and p2.tobytes() == q2.tobytes()
    assert m1.tobytes() == s1["exp_avg"].tobytes() and u2.tobytes() == s2["exp_inf"].tobytes()
    # a step count per parameter: the bias correction of each its own
    a, b = _problem(dtype, 50, seed=7)[0], _problem(dtype, 50, seed=8)[0]
    qa, qb = a.copy(), b.copy()
    sa, sb = _new_state(qa), {**_new_state(qb), "step": 4}
    state = [np.zeros_like(a), np.zeros_like(b)], [np.zeros_like(a), np.zeros_like(b)]
    g = _problem(dtype, 50, seed=9)[1][0]
    F.adamax([a, b], [g, g], *state, step=[1, 5], **kw)
    ref.adamax_step(qa, g, sa, **kw)
    ref.adamax_step(qb, g, sb, **kw)
    assert a.tobytes() == qa.tobytes() and b.tobytes() == qb.tobytes()
    # two param groups with their own hyper-parameters step as two separate optimizers
    a, b = _problem(dtype, 64, seed=2)[0], _problem(dtype, 64, seed=3)[0]
    a2, b2 = a.copy(), b.copy()
    opt = ob.Adamax([{"params": [a], "lr": 0.1}, {"params": [b], "weight_decay": 1.0,
                                                     "maximize": True}], lr=0.01)
    oa, ob_ = ob.Adamax(a2, lr=0.1), ob.Adamax(b2, lr=0.01, weight_decay=1.0, maximize=True)
    for g in _problem(dtype, 64, seed=4)[1]:
        opt.step([g, g])
        oa.step(g)
        ob_.step(g)
    assert a.tobytes() == a2.tobytes() and b.tobytes() == b2.tobytes()


def test_refused_calls_change_nothing():
    p, m, u = np.ones(8), np.zeros(8), np.zeros(8)
    with pytest.raises(ValueError, match="betas"):
        F.adamax([p], [np.ones(8)], [m], [u], step=1, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="eps"):
        F.adamax([p], [np.ones(8)], [m], [u], step=1, eps=-1.0)
    with pytest.raises(ValueError, match="exp_infs"):
        F.adamax([p], [np.ones(8)], [m], [np.zeros(7)], step=1)
    with pytest.raises(TypeError, match="exp_avgs"):
        F.adamax([p], [np.ones(8)], [np.zeros(8, np.float32)], [u], step=1)
    assert (p == 1).all() and (m == 0).all() and (u == 0).all()
    opt = ob.Adamax(p, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        opt.param_groups[0]["lr"] = -1.0
        opt.step(np.ones(8))
    assert (p == 1).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bowl_runs_the_same_rule(dtype):
    bowl = ob.QuadraticBowl(np.diag([1.0, 10.0]), np.array([1.0, -2.0]))
    x0 = np.array([2.0, 3.0])
    kw = dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)
    run = bowl.run("adamax", x0, 20, dtype=dtype, **kw)
    x, state = x0.astype(dtype), _new_state(x0.astype(dtype))
    A, b = bowl.A.astype(dtype), bowl.b.astype(dtype)
    for k in range(20):
        np.testing.assert_array_equal(run.x[k], x)
        g = A @ x - b
        ref.adamax_step(x, g, state, **kw)
    np.testing.assert_array_equal(run.x[20], x)


TORCH_OPTIONS = [dict(lr=2e-3), dict(lr=0.3, betas=(0.5, 0.9), eps=1e-3, weight_decay=0.013),
                 dict(lr=0.05, betas=(0.95, 0.0), weight_decay=0.1, maximize=True)]


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
@pytest.mark.parametrize("kw", TORCH_OPTIONS, ids=str)
def test_torch_drop_in_matches_torch_single_tensor_bit_for_bit(dtype, kw):
    torch = pytest.importorskip("torch")
    from optbowl.torch import Adamax

    tdtype = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(6)
    # a 16-bit tensor's last numel % 32 elements too (torch's scalar loop, which adds the
    # weight-decay term otherwise; tests/test_torch_16bit_tails.py tries every size)
    sizes = (31, 203, 1000)
    p0 = [torch.randn(n, generator=gen).to(tdtype) for n in sizes]
    mine = [torch.nn.Parameter(p.clone()) for p in p0]
    theirs = [torch.nn.Parameter(p.clone()) for p in p0]
    opt, topt = Adamax(mine, **kw), torch.optim.Adamax(theirs, foreach=False, **kw)
    for _ in range(10):
        for a, b in zip(mine, theirs):
            g = (torch.randn(a.shape, generator=gen) * 3).to(tdtype)
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        topt.step()
    bits = torch.int16 if tdtype.itemsize == 2 else torch.int32 if tdtype.itemsize == 4 \
        else torch.int64
    for a, b in zip(mine, theirs):
        assert torch.equal(a.detach().view(bits), b.detach().view(bits))
        for name in ("exp_avg", "exp_inf"):
            assert torch.equal(opt.state[a][name].view(bits), topt.state[b][name].view(bits))
    state, tstate = opt.state_dict()["state"][0], topt.state_dict()["state"][0]
    assert set(state) == set(tstate) == {"step", "exp_avg", "exp_inf"}
    assert state["step"].dtype == tstate["step"].dtype and float(state["step"]) == 10
    # a torch checkpoint continues here, and ours in torch
    opt.load_state_dict(topt.state_dict())
    assert set(opt.param_groups[0]) >= set(topt.param_groups[0])


def test_torch_drop_in_keeps_torch_signature_and_refuses_what_it_cannot_do():
    torch = pytest.importorskip("torch")
    import inspect

    from optbowl.torch import Adamax

    ours = inspect.signature(Adamax.__init__).parameters
    theirs = inspect.signature(torch.optim.Adamax.__init__).parameters
    assert list(ours) == [*theirs, "state_dtype"]  # state_dtype: a keyword torch lacks
    assert all(ours[k].default == theirs[k].default and ours[k].kind == theirs[k].kind
               for k in theirs)
    w = torch.nn.Parameter(torch.ones(4))
    for bad, match in (({"betas": (0.9, 1.0)}, "betas"), ({"eps": -1.0}, "eps"),
                       ({"lr": -1.0}, "lr"), ({"foreach": True}, "foreach"),
                       ({"capturable": True}, "capturable")):
        with pytest.raises(ValueError, match=match):
            Adamax([w], **bad)
