"""ASGD: the compiled rule against the plain NumPy reference (tests/reference.py), bit for
bit, through every call path (class, functional, bowl, optbowl.torch), every option and
dtype, its per-parameter scalar state (eta, mu) included, over enough steps that the
averaging starts; against torch.optim.ASGD's single-tensor path (foreach=False) bit for bit,
16-bit parameters included. The row-driven tests (validation matrix, properties,
checkpoints, threads) run ASGD from its row in optimizer_table.py."""

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
    dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=wd, maximize=mx)
    for lr, lambd, alpha, t0, wd, mx in itertools.product(
        (1e-2, 0.3), (1e-4, 0.5), (0.75, 2.0), (3.0, 1e6), (0.0, 0.1), (False, True))
]
STEPS = 20


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _same_scalars(st, state):
    return _same(st["eta"], np.float32(state["eta"])) and _same(st["mu"], np.float32(state["mu"]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", OPTIONS, ids=lambda kw: "-".join(map(str, kw.values())))
def test_class_matches_the_numpy_reference_bit_for_bit(dtype, kw):
    p, grads = _problem(dtype, 300, steps=STEPS)
    grads = [g * 1e-2 for g in grads]  # moderate steps: the iterates stay finite
    q, state = p.copy(), ref.asgd_init(p, kw["lr"])
    opt = ob.ASGD(p, **kw)
    for g in grads:
        opt.step(g)
        ref.asgd_step(q, g, state, **kw)
        assert _same_scalars(opt.state[0], state)
    assert p.tobytes() == q.tobytes()
    assert opt.state[0]["ax"].tobytes() == state["ax"].tobytes()
    if kw["t0"] < STEPS:  # the averaging started: ax is no longer the last iterate
        assert float(opt.state[0]["mu"]) < 1 and not np.array_equal(opt.state[0]["ax"], p)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_learning_rate_changed_between_steps_reaches_eta_one_step_late(dtype):
    p, grads = _problem(dtype, 200, steps=12)
    grads = [g * 1e-2 for g in grads]
    q, state = p.copy(), ref.asgd_init(p, 0.1)
    opt = ob.ASGD(p, lr=0.1, lambd=0.2, t0=4.0)
    etas = []
    for k, g in enumerate(grads):
        lr = 0.1 * 0.7 ** k
        opt.param_groups[0]["lr"] = lr
        etas.append(float(opt.state[0]["eta"]) if opt.state else None)
        opt.step(g)
        ref.asgd_step(q, g, state, lr=lr, lambd=0.2, t0=4.0)
        assert _same_scalars(opt.state[0], state)
    assert p.tobytes() == q.tobytes()
    # the step took the eta the step before left (that step's lr), not this step's lr
    assert etas[3] == float(np.float32(0.1 * 0.7 ** 2 / (1 + 0.2 * 0.1 * 0.7 ** 2 * 3) ** 0.75))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_and_groups_match_the_reference(dtype):
    kw = dict(lr=0.05, lambd=0.1, alpha=0.5, t0=2.0, weight_decay=0.5)
    p1, grads = _problem(dtype, 300, seed=1)
    grads = [g * 1e-2 for g in grads]
    p2 = p1[:100].copy()
    ax1, ax2 = np.zeros_like(p1), np.zeros_like(p2)
    mus = [np.array(1.0, np.float32), np.array(1.0, np.float32)]
    etas = [np.array(0.05, np.float32), np.array(0.05, np.float32)]
    q1, q2 = p1.copy(), p2.copy()
    s1, s2 = ref.asgd_init(q1, 0.05), ref.asgd_init(q2, 0.05)
    for k, g in enumerate(grads, 1):
        F.asgd([p1, p2], [g, g[:100]], [ax1, ax2], mus, etas, step=k, **kw)
        ref.asgd_step(q1, g, s1, **kw)
        ref.asgd_step(q2, g[:100], s2, **kw)
    assert p1.tobytes() == q1.tobytes() and p2.tobytes() == q2.tobytes()
    assert ax1.tobytes() == s1["ax"].tobytes() and ax2.tobytes() == s2["ax"].tobytes()
    assert _same(etas[0], np.float32(s1["eta"])) and _same(mus[1], np.float32(s2["mu"]))
    # a step count and scalar state per parameter: each tensor its own
    a, b = _problem(dtype, 50, seed=7)[0], _problem(dtype, 50, seed=8)[0]
    qa, qb = a.copy(), b.copy()
    sa, sb = ref.asgd_init(qa, 0.05), ref.asgd_init(qb, 0.05)
    for g in _problem(dtype, 50, seed=10)[1][:5]:
        ref.asgd_step(qb, g * 1e-2, sb, **kw)
    b[...] = qb
    axs = [np.zeros_like(a), sb["ax"].copy()]
    mus = [np.array(1.0, np.float32), np.array(sb["mu"], np.float32)]
    etas = [np.array(0.05, np.float32), np.array(sb["eta"], np.float32)]
    g = _problem(dtype, 50, seed=9)[1][0] * 1e-2
    F.asgd([a, b], [g, g], axs, mus, etas, step=[1, 6], **kw)
    ref.asgd_step(qa, g, sa, **kw)
    ref.asgd_step(qb, g, sb, **kw)
    assert a.tobytes() == qa.tobytes() and b.tobytes() == qb.tobytes()
    assert axs[1].tobytes() == sb["ax"].tobytes()
    assert _same(etas[1], np.float32(sb["eta"])) and _same(mus[1], np.float32(sb["mu"]))
    assert _same(etas[0], np.float32(sa["eta"])) and _same(mus[0], np.float32(sa["mu"]))
    # two param groups with their own hyper-parameters step as two separate optimizers
    a, b = _problem(dtype, 64, seed=2)[0], _problem(dtype, 64, seed=3)[0]
    a2, b2 = a.copy(), b.copy()
    opt = ob.ASGD([{"params": [a], "lr": 0.1}, {"params": [b], "weight_decay": 1.0, "t0": 1.0,
                                                   "maximize": True}], lr=0.01)
    oa, ob_ = ob.ASGD(a2, lr=0.1), ob.ASGD(b2, lr=0.01, weight_decay=1.0, t0=1.0, maximize=True)
    for g in _problem(dtype, 64, seed=4)[1]:
        opt.step([g, g])
        oa.step(g)
        ob_.step(g)
    assert a.tobytes() == a2.tobytes() and b.tobytes() == b2.tobytes()
    assert _same(opt.state[1]["mu"], ob_.state[0]["mu"])


def test_float64_scalar_state_is_kept_in_float64():
    from optbowl import _core

    group = ob.ASGD.rule.group_args({**ob.ASGD.rule.defaults, "lr": 0.1, "lambd": 0.3})
    eta32, mu32 = _core.scalar_state_after("asgd", group + (0.1, 1.0, False), 3.0)
    eta64, mu64 = _core.scalar_state_after("asgd", group + (0.1, 1.0, True), 3.0)
    assert eta64 == 0.1 / (1 + 0.3 * 0.1 * 3.0) ** 0.75 and eta32 == float(np.float32(eta64))
    assert mu32 == mu64 == 1.0
    assert _core.rules["asgd"]["scalar_state"] == ob.ASGD.rule.scalar_names == ("eta", "mu")
    # the functional form with float64 state takes and stores float64 values
    p, ax = np.ones(4), np.zeros(4)
    mu, eta = np.array(1.0), np.array(0.1)
    F.asgd([p], [np.ones(4)], [ax], [mu], [eta], step=1, lr=0.1, lambd=0.3, t0=0.0)
    assert eta.dtype == np.float64 and float(eta) == 0.1 / (1 + 0.3 * 0.1) ** 0.75
    assert p[0] == (1 - 0.3 * 0.1) * 1.0 - 0.1 and float(mu) == 1.0


def test_refused_calls_change_nothing():
    p, ax = np.ones(8), np.zeros(8)
    mu, eta = np.array(0.5, np.float32), np.array(0.1, np.float32)

    def unchanged():
        return (p == 1).all() and (ax == 0).all() and mu == np.float32(0.5) \
            and eta == np.float32(0.1)

    g = [np.ones(8)]
    with pytest.raises(ValueError, match="lr"):
        F.asgd([p], g, [ax], [mu], [eta], step=1, lr=-1.0)
    with pytest.raises(ValueError, match="t0"):
        F.asgd([p], g, [ax], [mu], [eta], step=1, t0=np.nan)
    with pytest.raises(ValueError, match="axs"):
        F.asgd([p], g, [np.zeros(7)], [mu], [eta], step=1)
    with pytest.raises(TypeError, match=r"mus\[0\]"):
        F.asgd([p], g, [ax], [np.array(0.5, np.float64)], [eta], step=1)
    with pytest.raises(TypeError, match=r"etas\[0\]"):
        F.asgd([p], g, [ax], [mu], [np.ones(2, np.float32)], step=1)
    with pytest.raises(ValueError, match="etas"):
        F.asgd([p], g, [ax], [mu], None, step=1)
    assert unchanged()
    a, b = np.ones(8), np.ones(4)
    opt = ob.ASGD([a, b], lr=0.1, t0=0.0)
    opt.step([np.ones(8), np.ones(4)])
    before = [{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in st.items()}
              for st in opt.state.values()]
    params_before = [a.copy(), b.copy()]
    with pytest.raises(ValueError):
        opt.step([np.ones(8), np.ones(5)])
    opt.param_groups[0]["lambd"] = float("inf")
    with pytest.raises(ValueError, match="lambd"):
        opt.step([np.ones(8), np.ones(4)])
    for st, was in zip(opt.state.values(), before):
        for k in was:
            assert _same(st[k], was[k]), k
    assert _same(a, params_before[0]) and _same(b, params_before[1])


def test_state_dict_round_trip_keeps_eta_and_mu():
    p, grads = _problem(np.float32, 100, steps=10)
    grads = [g * 1e-2 for g in grads]
    opt = ob.ASGD(p, lr=0.05, lambd=0.3, t0=2.0)
    for g in grads[:5]:
        opt.step(g)
    sd = opt.state_dict()
    assert set(sd["state"][0]) == {"step", "ax", "eta", "mu"}
    q = p.copy()
    other = ob.ASGD(q, lr=0.05, lambd=0.3, t0=2.0)
    other.load_state_dict(sd)
    for g in grads[5:]:
        opt.step(g)
        other.step(g)
    assert p.tobytes() == q.tobytes()
    assert _same(opt.state[0]["eta"], other.state[0]["eta"])
    assert _same(opt.state[0]["mu"], other.state[0]["mu"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bowl_runs_the_same_rule(dtype):
    bowl = ob.QuadraticBowl(np.diag([1.0, 10.0]), np.array([1.0, -2.0]))
    x0 = np.array([2.0, 3.0])
    kw = dict(lr=0.05, lambd=0.2, alpha=0.75, t0=5.0, weight_decay=0.1)
    run = bowl.run("asgd", x0, 20, dtype=dtype, **kw)
    x = x0.astype(dtype)
    state = ref.asgd_init(x, kw["lr"])
    for k in range(20):
        np.testing.assert_array_equal(run.x[k], x)
        g = (bowl.A @ x.astype(np.float64) - bowl.b).astype(dtype)  # as the simulator does
        ref.asgd_step(x, g, state, **kw)
    np.testing.assert_array_equal(run.x[20], x)
    # a sweep over t0 (the averaging starts at a different step in each lane) steps each
    # configuration as its own run
    t0s = np.array([0.0, 3.0, 1e6])
    swept = ob.sweep(bowl, "asgd", x0, 20, lr=0.05, lambd=0.2, t0=t0s)
    for t0, err in zip(t0s, swept.final_error):
        one = bowl.run("asgd", x0, 20, lr=0.05, lambd=0.2, t0=t0)
        assert err == pytest.approx(np.linalg.norm(one.x[-1] - bowl.minimizer), rel=1e-12)


# ----------------------------------------------------------------------------- torch
TORCH_OPTIONS = [dict(lr=1e-2),
                 dict(lr=0.05, lambd=0.3, alpha=0.5, t0=3.0, weight_decay=0.013),
                 dict(lr=0.02, lambd=1e-3, t0=1.0, weight_decay=0.1, maximize=True)]


def _pair(torch, dtype, sizes, seed=6):
    gen = torch.Generator().manual_seed(seed)
    p0 = [torch.randn(n, generator=gen).to(dtype) for n in sizes]
    mine = [torch.nn.Parameter(p.clone()) for p in p0]
    theirs = [torch.nn.Parameter(p.clone()) for p in p0]
    return gen, mine, theirs


def _grads(torch, gen, mine, theirs):
    for a, b in zip(mine, theirs):
        g = torch.randn(a.shape, generator=gen).to(a.dtype)
        a.grad, b.grad = g.clone(), g.clone()


def _assert_torch_same(torch, opt, topt, mine, theirs):
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[mine[0].dtype.itemsize]
    for a, b in zip(mine, theirs):
        assert torch.equal(a.detach().view(bits), b.detach().view(bits))
        assert torch.equal(opt.state[a]["ax"].view(bits), topt.state[b]["ax"].view(bits))
        for name in ("eta", "mu", "step"):
            x, y = opt.state[a][name], topt.state[b][name]
            assert x.dtype == y.dtype and x.shape == () and torch.equal(x, y), name


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
@pytest.mark.parametrize("kw", TORCH_OPTIONS, ids=str)
def test_torch_drop_in_matches_torch_single_tensor_bit_for_bit(dtype, kw):
    torch = pytest.importorskip("torch")
    from optbowl.torch import ASGD

    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    # sizes with a tail: torch rounds a 16-bit tensor's last numel % 32 elements in a scalar
    # loop of its own, and so does the kernel (multi_tensor.hpp, kTorchHalfTail)
    gen, mine, theirs = _pair(torch, getattr(torch, dtype), (31, 203, 1000))
    opt, topt = ASGD(mine, **kw), torch.optim.ASGD(theirs, foreach=False, **kw)
    for _ in range(12):
        _grads(torch, gen, mine, theirs)
        opt.step()
        topt.step()
    _assert_torch_same(torch, opt, topt, mine, theirs)


def test_torch_scheduler_and_state_dict_round_trips_continue_bit_for_bit():
    torch = pytest.importorskip("torch")
    from optbowl.torch import ASGD

    kw = dict(lr=0.05, lambd=0.2, t0=3.0, weight_decay=0.01)
    gen, mine, theirs = _pair(torch, torch.float32, (40, 300))
    opt, topt = ASGD(mine, **kw), torch.optim.ASGD(theirs, foreach=False, **kw)
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
    assert list(sd["state"][0]) == list(tsd["state"][0]) == ["step", "eta", "mu", "ax"]
    swapped_mine = [torch.nn.Parameter(t.detach().clone()) for t in theirs]
    swapped_theirs = [torch.nn.Parameter(t.detach().clone()) for t in mine]
    opt2 = ASGD(swapped_mine, **kw)
    opt2.load_state_dict(tsd)
    topt2 = torch.optim.ASGD(swapped_theirs, foreach=False, **kw)
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


def test_torch_float64_default_dtype_keeps_eta_and_mu_in_float64():
    torch = pytest.importorskip("torch")
    from optbowl.torch import ASGD

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        gen, mine, theirs = _pair(torch, torch.float64, (64,))
        kw = dict(lr=0.1, lambd=0.3, t0=2.0)
        opt, topt = ASGD(mine, **kw), torch.optim.ASGD(theirs, foreach=False, **kw)
        for _ in range(8):
            _grads(torch, gen, mine, theirs)
            opt.step()
            topt.step()
    finally:
        torch.set_default_dtype(old)
    assert opt.state[mine[0]]["eta"].dtype == torch.float64
    _assert_torch_same(torch, opt, topt, mine, theirs)


def test_torch_refused_steps_change_nothing():
    torch = pytest.importorskip("torch")
    from optbowl.torch import ASGD

    a, b = torch.nn.Parameter(torch.ones(8)), torch.nn.Parameter(torch.ones(4))
    opt = ASGD([a, b], lr=0.1, t0=0.0)
    a.grad, b.grad = torch.ones(8), torch.ones(4)
    opt.step()
    before = {k: {n: t.clone() for n, t in st.items()} for k, st in opt.state.items()}
    params_before = [a.detach().clone(), b.detach().clone()]
    b.grad = torch.ones(8)[::2]  # not dense
    with pytest.raises(ValueError, match="grad"):
        opt.step()
    b.grad = torch.ones(4)
    opt.state[b]["eta"] = torch.tensor([0.1])
    with pytest.raises(TypeError, match="eta"):
        opt.step()
    opt.state[b]["eta"] = before[b]["eta"].clone()
    for k, st in opt.state.items():
        for n, t in st.items():
            assert torch.equal(t, before[k][n]), n
    assert torch.equal(a.detach(), params_before[0]) and torch.equal(b.detach(), params_before[1])


def test_torch_drop_in_keeps_torch_signature_and_refuses_what_it_cannot_do():
    torch = pytest.importorskip("torch")
    import inspect

    from optbowl.torch import ASGD

    ours = inspect.signature(ASGD.__init__).parameters
    theirs = inspect.signature(torch.optim.ASGD.__init__).parameters
    assert list(ours) == [*theirs, "state_dtype"]  # state_dtype: a keyword torch lacks
    assert all(ours[k].default == theirs[k].default and ours[k].kind == theirs[k].kind
               for k in theirs)
    w = torch.nn.Parameter(torch.ones(4))
    for bad, match in (({"lr": -1.0}, "lr"), ({"weight_decay": -1.0}, "weight_decay"),
                       ({"t0": float("nan")}, "t0"), ({"foreach": True}, "foreach"),
                       ({"capturable": True}, "capturable"),
                       ({"differentiable": True}, "differentiable")):
        with pytest.raises(ValueError, match=match):
            ASGD([w], **bad)
