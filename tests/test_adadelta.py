"""Adadelta: the compiled rule against the plain NumPy reference (tests/reference.py), bit
for bit, through every call path (class, functional, bowl, optbowl.torch), every option and
dtype; against torch.optim.Adadelta's single-tensor path (foreach=False): bit for bit given
a correctly rounded square root in float32/float64 and in bfloat16/float16, and within an
ulp or two per step with torch's own (MKL) square root. The row-driven tests (validation
matrix, properties, checkpoints, threads) run Adadelta from its row in optimizer_table.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import optbowl as ob
import reference as ref
from optimizer_table import random_problem as _problem
from optbowl import functional as F

OPTIONS = [
    dict(lr=lr, rho=rho, eps=eps, weight_decay=wd, maximize=mx)
    for lr, rho, eps, wd, mx in itertools.product(
        (1.0, 0.37), (0.9, 0.5, 0.0, 1.0), (1e-6, 1e-3), (0.0, 0.1), (False, True))
]


def _new_state(p):
    return {"square_avg": np.zeros_like(p), "acc_delta": np.zeros_like(p)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", OPTIONS, ids=lambda kw: "-".join(map(str, kw.values())))
def test_class_matches_the_numpy_reference_bit_for_bit(dtype, kw):
    p, grads = _problem(dtype)
    q, state = p.copy(), _new_state(p)
    opt = ob.Adadelta(p, **kw)
    for g in grads:
        opt.step(g)
        ref.adadelta_step(q, g, state, **kw)
    assert p.tobytes() == q.tobytes()
    for name in ("square_avg", "acc_delta"):
        assert opt.state[0][name].tobytes() == state[name].tobytes(), name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_and_groups_match_the_reference(dtype):
    kw = dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.5)
    p1, grads = _problem(dtype, 300, seed=1)
    p2 = p1[:100].copy()
    v1, v2, u1, u2 = (np.zeros_like(p1), np.zeros_like(p2), np.zeros_like(p1),
                      np.zeros_like(p2))
    q1, q2 = p1.copy(), p2.copy()
    s1, s2 = _new_state(q1), _new_state(q2)
    for g in grads:
        F.adadelta([p1, p2], [g, g[:100]], [v1, v2], [u1, u2], **kw)
        ref.adadelta_step(q1, g, s1, **kw)
        ref.adadelta_step(q2, g[:100], s2, **kw)
    assert p1.tobytes() == q1.tobytes() and p2.tobytes() == q2.tobytes()
    assert v1.tobytes() == s1["square_avg"].tobytes()
    assert u2.tobytes() == s2["acc_delta"].tobytes()
    a, b = _problem(dtype, 64, seed=2)[0], _problem(dtype, 64, seed=3)[0]
    a2, b2 = a.copy(), b.copy()
    opt = ob.Adadelta([{"params": [a], "lr": 0.1}, {"params": [b], "rho": 0.5,
                                                       "maximize": True}], lr=0.7)
    oa, ob_ = ob.Adadelta(a2, lr=0.1), ob.Adadelta(b2, lr=0.7, rho=0.5, maximize=True)
    for g in _problem(dtype, 64, seed=4)[1]:
        opt.step([g, g])
        oa.step(g)
        ob_.step(g)
    assert a.tobytes() == a2.tobytes() and b.tobytes() == b2.tobytes()


def test_refused_calls_change_nothing():
    p, v, u = np.ones(8), np.zeros(8), np.zeros(8)
    with pytest.raises(ValueError, match="rho"):
        F.adadelta([p], [np.ones(8)], [v], [u], rho=1.5)
    with pytest.raises(ValueError, match="eps"):
        F.adadelta([p], [np.ones(8)], [v], [u], eps=-1.0)
    with pytest.raises(ValueError, match="acc_deltas"):
        F.adadelta([p], [np.ones(8)], [v], [np.zeros(7)])
    with pytest.raises(TypeError, match="square_avgs"):
        F.adadelta([p], [np.ones(8)], [np.zeros(8, np.float32)], [u])
    assert (p == 1).all() and (v == 0).all() and (u == 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bowl_runs_the_same_rule(dtype):
    bowl = ob.QuadraticBowl(np.diag([1.0, 10.0]), np.array([1.0, -2.0]))
    x0 = np.array([2.0, 3.0])
    kw = dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1)
    run = bowl.run("adadelta", x0, 20, dtype=dtype, **kw)
    x, state = x0.astype(dtype), _new_state(x0.astype(dtype))
    A, b = bowl.A.astype(dtype), bowl.b.astype(dtype)
    for k in range(20):
        np.testing.assert_array_equal(run.x[k], x)
        g = A @ x - b
        ref.adadelta_step(x, g, state, **kw)
    np.testing.assert_array_equal(run.x[20], x)


TORCH_OPTIONS = [dict(lr=1.0), dict(lr=0.37, rho=0.5, eps=1e-3, weight_decay=0.013),
                 dict(lr=0.8, rho=0.95, weight_decay=0.1, maximize=True)]


def _beside_torch(dtype, kw, sizes, steps=10):
    torch = pytest.importorskip("torch")
    from optbowl.torch import Adadelta

    tdtype = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(6)
    p0 = [torch.randn(n, generator=gen).to(tdtype) for n in sizes]
    mine = [torch.nn.Parameter(p.clone()) for p in p0]
    theirs = [torch.nn.Parameter(p.clone()) for p in p0]
    opt, topt = Adadelta(mine, **kw), torch.optim.Adadelta(theirs, foreach=False, **kw)
    for _ in range(steps):
        for a, b in zip(mine, theirs):
            g = (torch.randn(a.shape, generator=gen) * 3).to(tdtype)
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        topt.step()
    return opt, topt, mine, theirs


def _bits(torch, t):
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.dtype.itemsize])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kw", TORCH_OPTIONS, ids=str)
def test_torch_drop_in_matches_torch_bit_for_bit_given_ieee_sqrt(ieee_sqrt, dtype, kw):
    torch = pytest.importorskip("torch")
    opt, topt, mine, theirs = _beside_torch(dtype, kw, (31, 203, 1000))
    for a, b in zip(mine, theirs):
        assert torch.equal(_bits(torch, a.detach()), _bits(torch, b.detach()))
        for name in ("square_avg", "acc_delta"):
            assert torch.equal(_bits(torch, opt.state[a][name]), _bits(torch, topt.state[b][name]))
    state, tstate = opt.state_dict()["state"][0], topt.state_dict()["state"][0]
    assert set(state) == set(tstate) == {"step", "square_avg", "acc_delta"}
    assert state["step"].dtype == tstate["step"].dtype and float(state["step"]) == 10


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_drop_in_is_within_ulps_of_torch_own_sqrt(dtype):
    # torch's MKL sqrt is off by an ulp on some inputs; the difference stays that small
    _, _, mine, theirs = _beside_torch(dtype, TORCH_OPTIONS[1], (203,), steps=5)
    a, b = mine[0].detach().numpy(), theirs[0].detach().numpy()
    np.testing.assert_allclose(a, b, rtol=8 * np.finfo(a.dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("kw", TORCH_OPTIONS, ids=str)
def test_torch_16_bit_parameters_match_torch_bit_for_bit(dtype, kw):
    torch = pytest.importorskip("torch")
    # a 16-bit tensor's last numel % 32 elements too, which torch rounds in a scalar loop of
    # its own (tests/test_torch_16bit_tails.py tries every size)
    opt, topt, mine, theirs = _beside_torch(dtype, kw, (32, 203, 1000))
    for a, b in zip(mine, theirs):
        assert torch.equal(_bits(torch, a.detach()), _bits(torch, b.detach()))
        for name in ("square_avg", "acc_delta"):
            assert torch.equal(_bits(torch, opt.state[a][name]), _bits(torch, topt.state[b][name]))


def test_torch_drop_in_keeps_torch_signature_and_refuses_what_it_cannot_do():
    torch = pytest.importorskip("torch")
    import inspect

    from optbowl.torch import Adadelta

    ours = inspect.signature(Adadelta.__init__).parameters
    theirs = inspect.signature(torch.optim.Adadelta.__init__).parameters
    assert list(ours) == [*theirs, "state_dtype"]  # state_dtype: a keyword torch lacks
    assert all(ours[k].default == theirs[k].default and ours[k].kind == theirs[k].kind
               for k in theirs)
    w = torch.nn.Parameter(torch.ones(4))
    for bad, match in (({"rho": 1.5}, "rho"), ({"eps": -1.0}, "eps"), ({"lr": -1.0}, "lr"),
                       ({"foreach": True}, "foreach"), ({"capturable": True}, "capturable")):
        with pytest.raises(ValueError, match=match):
            Adadelta([w], **bad)
