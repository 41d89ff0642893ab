"""Lion: the compiled rule against the plain NumPy reference (tests/reference.py), bit for
bit, through every call path (class, functional, bowl, optbowl.torch), every option and
dtype; 16-bit parameters against torch's tensor operations of the reference implementation.
The row-driven tests (validation matrix, properties, checkpoints, threads) run Lion from
its row in optimizer_table.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import optbowl as ob
import reference as ref
from optimizer_table import random_problem as _problem
from optbowl import functional as F

OPTIONS = [
    dict(lr=lr, betas=betas, weight_decay=wd, maximize=mx)
    for lr, betas, wd, mx in itertools.product(
        (1e-3, 0.3), ((0.9, 0.99), (0.0, 0.5), (0.95, 0.0)), (0.0, 0.1), (False, True))
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", OPTIONS, ids=lambda kw: "-".join(map(str, kw.values())))
def test_class_matches_the_numpy_reference_bit_for_bit(dtype, kw):
    p, grads = _problem(dtype)
    q, state = p.copy(), {"exp_avg": np.zeros_like(p)}
    opt = ob.Lion(p, **kw)
    for g in grads:
        opt.step(g)
        ref.lion_step(q, g, state, **kw)
    assert p.tobytes() == q.tobytes()
    assert opt.state[0]["exp_avg"].tobytes() == state["exp_avg"].tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_and_groups_match_the_reference(dtype):
    p1, grads = _problem(dtype, 300, seed=1)
    p2 = p1[:100].copy()
    m1, m2 = np.zeros_like(p1), np.zeros_like(p2)
    q1, q2 = p1.copy(), p2.copy()
    s1, s2 = {"exp_avg": m1.copy()}, {"exp_avg": m2.copy()}
    for g in grads:
        F.lion([p1, p2], [g, g[:100]], [m1, m2], lr=0.05, betas=(0.8, 0.9), weight_decay=0.5)
        ref.lion_step(q1, g, s1, lr=0.05, betas=(0.8, 0.9), weight_decay=0.5)
        ref.lion_step(q2, g[:100], s2, lr=0.05, betas=(0.8, 0.9), weight_decay=0.5)
    assert p1.tobytes() == q1.tobytes() and p2.tobytes() == q2.tobytes()
    assert m1.tobytes() == s1["exp_avg"].tobytes() and m2.tobytes() == s2["exp_avg"].tobytes()
    # two param groups with their own hyper-parameters step as two separate optimizers
    a, b = _problem(dtype, 64, seed=2)[0], _problem(dtype, 64, seed=3)[0]
    a2, b2 = a.copy(), b.copy()
    opt = ob.Lion([{"params": [a], "lr": 0.1}, {"params": [b], "weight_decay": 1.0,
                                                   "maximize": True}], lr=0.01)
    oa, ob_ = ob.Lion(a2, lr=0.1), ob.Lion(b2, lr=0.01, weight_decay=1.0, maximize=True)
    for g in _problem(dtype, 64, seed=4)[1]:
        opt.step([g, g])
        oa.step(g)
        ob_.step(g)
    assert a.tobytes() == a2.tobytes() and b.tobytes() == b2.tobytes()


def test_every_element_moves_by_lr_and_nan_reaches_the_parameter():
    p = np.array([1.0, 1.0, 1.0, 1.0], np.float32)
    opt = ob.Lion(p, lr=0.25, betas=(0.5, 0.5))
    opt.step(np.array([3e-30, -7.0, 0.0, np.nan], np.float32))
    assert p[:3].tolist() == [0.75, 1.25, 1.0]
    assert np.isnan(p[3])  # torch's sign(NaN) is 0; here the NaN is not hidden


def test_refused_calls_change_nothing():
    p, m = np.ones(8), np.zeros(8)
    with pytest.raises(ValueError, match="betas"):
        F.lion([p], [np.ones(8)], [m], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="exp_avgs"):
        F.lion([p], [np.ones(8)], [np.zeros(7)])
    with pytest.raises(TypeError, match="exp_avgs"):
        F.lion([p], [np.ones(8)], [np.zeros(8, np.float32)])
    assert (p == 1).all() and (m == 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bowl_runs_the_same_rule(dtype):
    bowl = ob.QuadraticBowl(np.diag([1.0, 10.0]), np.array([1.0, -2.0]))
    x0 = np.array([2.0, 3.0])
    run = bowl.run("lion", x0, 20, dtype=dtype, lr=0.05, betas=(0.8, 0.95), weight_decay=0.1)
    x, state = x0.astype(dtype), {"exp_avg": np.zeros(2, dtype)}
    A, b = bowl.A.astype(dtype), bowl.b.astype(dtype)
    for k in range(20):
        np.testing.assert_array_equal(run.x[k], x)
        g = A @ x - b
        ref.lion_step(x, g, state, lr=0.05, betas=(0.8, 0.95), weight_decay=0.1)
    np.testing.assert_array_equal(run.x[20], x)


def test_torch_drop_in_matches_the_numpy_class_and_keeps_torch_state():
    torch = pytest.importorskip("torch")
    from optbowl.torch import Lion

    p, grads = _problem(np.float32, 257, seed=5)
    w = torch.nn.Parameter(torch.from_numpy(p.copy()))
    opt = Lion([w], lr=0.02, betas=(0.9, 0.99), weight_decay=0.1)
    q = p.copy()
    mine = ob.Lion(q, lr=0.02, betas=(0.9, 0.99), weight_decay=0.1)
    for g in grads:
        w.grad = torch.from_numpy(g.copy())
        opt.step()
        mine.step(g)
    assert w.detach().numpy().tobytes() == q.tobytes()
    state = opt.state_dict()["state"][0]
    assert set(state) == {"step", "exp_avg"} and float(state["step"]) == len(grads)
    with pytest.raises(ValueError, match="betas"):
        Lion([w], betas=(0.9, 1.0))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_torch_16_bit_parameters_round_as_the_reference_implementation(dtype):
    """p.mul_(1 - lr*wd); p.add_(m.lerp(g, 1-b1).sign_(), alpha=-lr); m.lerp_(g, 1-b2) on
    torch tensors of the parameter's dtype."""
    torch = pytest.importorskip("torch")
    from optbowl.torch import Lion

    tdtype = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(6)
    for n in (31, 203, 1000):
        p0 = torch.randn(n, generator=gen).to(tdtype)
        w = torch.nn.Parameter(p0.clone())
        q, m = p0.clone(), torch.zeros_like(p0)
        lr, (b1, b2), wd = 0.01, (0.9, 0.99), 0.3
        opt = Lion([w], lr=lr, betas=(b1, b2), weight_decay=wd)
        for _ in range(8):
            g = (torch.randn(n, generator=gen) * 3).to(tdtype)
            w.grad = g.clone()
            opt.step()
            q.mul_(1 - lr * wd)
            q.add_(m.lerp(g, 1 - b1).sign_(), alpha=-lr)
            m.lerp_(g, 1 - b2)
        assert torch.equal(w.detach().view(torch.int16), q.view(torch.int16)), n
        assert torch.equal(opt.state[w]["exp_avg"].view(torch.int16), m.view(torch.int16)), n
