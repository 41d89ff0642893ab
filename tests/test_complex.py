"""Complex parameters, stepped as their real view (torch's ``view_as_real``).

torch steps a complex parameter of Rprop, Adagrad, Adam, AdamW, RMSprop and SGD as the
real tensor of its real and imaginary parts, with a gradient and state of the same view
(Rprop's first step size and Adagrad's first sum are ``value + value·1j``). optbowl does
the same, in the NumPy classes, the functional API and optbowl.torch: bit for bit as the
same optimizer on the real view, and as torch where optbowl claims torch's rounding. The
rules torch does not step complex parameters with are refused, naming the parameter.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest

import optbowl as ob
from optimizer_table import ROWS, assert_same_bits
from optbowl import functional as F

COMPLEX_ROWS = [r for r in ROWS if r.cls != "QuickProp"
                and r.kwargs.get("variant", "irprop-") == "irprop-"]
REFUSING_ROWS = [r for r in ROWS if r not in COMPLEX_ROWS]
CDTYPES = (np.complex64, np.complex128)


def _real(a):
    """The real view of a complex array (shape + (2,)), as torch's view_as_real."""
    return a[..., np.newaxis].view(a.real.dtype)


def _complex(k, shape, dtype, seed=0):
    rng = np.random.default_rng(seed + 31 * k)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


def _params(dtype):
    return [_complex(0, (3, 4), dtype), _complex(1, (5,), dtype), np.linspace(-1, 1, 6)]


def _grads(params, k):
    out = []
    for j, p in enumerate(params):
        g = np.empty_like(p)
        g[...] = (_complex(10 * k + j, p.shape, p.dtype, seed=5) if p.dtype.kind == "c"
                  else np.cos(np.arange(p.size) + k).reshape(p.shape))
        out.append(g)
    return out


def test_the_real_view_is_torchs():
    a = _complex(0, (3, 4), np.complex64)
    v = _real(a)
    assert v.shape == (3, 4, 2) and v.dtype == np.float32 and np.shares_memory(v, a)
    np.testing.assert_array_equal(v[..., 0], a.real)
    np.testing.assert_array_equal(v[..., 1], a.imag)


@pytest.mark.parametrize("dtype", CDTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("row", COMPLEX_ROWS, ids=repr)
def test_a_complex_parameter_steps_as_its_real_view(row, dtype):
    params = _params(dtype)
    views = [_real(p.copy()) if p.dtype.kind == "c" else p.copy() for p in params]
    opt = row.make(params)
    twin = row.make(views)
    for k in range(4):
        grads = _grads(params, k)
        row.step(opt, grads)
        row.step(twin, [_real(g) if g.dtype.kind == "c" else g for g in grads])
    for p, v in zip(params, views):
        assert_same_bits(_real(p) if p.dtype.kind == "c" else p, v)
    scalars = opt.rule.scalar_names  # 0-d, real (NAdam's mu_product)
    for i, p in enumerate(params):
        for name, s in opt.state[i].items():
            if name in scalars:
                assert_same_bits(s, twin.state[i][name], name)
            elif isinstance(s, np.ndarray):
                assert s.dtype == p.dtype and s.shape == p.shape, name  # complex, as torch's
                assert_same_bits(_real(s) if s.dtype.kind == "c" else s, twin.state[i][name],
                                 name)


def test_the_first_state_fills_each_part_of_the_real_view_as_torch():
    p = np.zeros(4, np.complex64)
    rprop = ob.Rprop(p, lr=0.25)
    rprop.step(np.zeros(4, np.complex64))  # a zero gradient: the step size stays lr
    np.testing.assert_array_equal(rprop.state[0]["step_size"], np.full(4, 0.25 + 0.25j))
    adagrad = ob.Adagrad(np.zeros(3, np.complex128), initial_accumulator_value=0.5)
    adagrad.step(np.zeros(3, np.complex128))
    np.testing.assert_array_equal(adagrad.state[0]["sum"], np.full(3, 0.5 + 0.5j))


@pytest.mark.parametrize("dtype", CDTYPES, ids=lambda d: np.dtype(d).name)
def test_an_f_ordered_complex_parameter_steps_as_the_c_ordered_one(dtype):
    c = _complex(0, (4, 6), dtype)
    f = np.asfortranarray(c)
    a, b = ob.Adam(c, lr=0.01, amsgrad=True), ob.Adam(f, lr=0.01, amsgrad=True)
    for k in range(3):
        g = _complex(k + 1, (4, 6), dtype)
        a.step(g)
        b.step(np.asfortranarray(g))
    assert_same_bits(c, f)
    assert b.state[0]["exp_avg"].flags.f_contiguous
    assert_same_bits(a.state_dict(), b.state_dict())


@pytest.mark.parametrize("dtype", CDTYPES, ids=lambda d: np.dtype(d).name)
def test_functional_steps_complex_arrays_as_their_real_view(dtype):
    x = _complex(0, (6,), dtype)
    g = _complex(1, (6,), dtype)
    xr, gr = _real(x.copy()), _real(g)
    m, v = np.zeros_like(x), np.zeros_like(x)
    mr, vr = np.zeros_like(xr), np.zeros_like(xr)
    prev, size = np.zeros_like(x), np.full_like(x, 0.1 + 0.1j)
    prevr, sizer = np.zeros_like(xr), np.full_like(xr, 0.1)
    y, yr = x.copy(), _real(x.copy())
    for step in (1, 2, 3):
        F.adam([x], [g], [m], [v], step=step, lr=0.01, weight_decay=0.1)
        F.adam([xr], [gr], [mr], [vr], step=step, lr=0.01, weight_decay=0.1)
        F.rprop([y], [g * (-1) ** step], [prev], [size])
        F.rprop([yr], [gr * (-1) ** step], [prevr], [sizer])
    assert_same_bits(_real(x), xr)
    assert_same_bits(_real(m), mr)
    assert_same_bits(_real(y), yr)
    assert_same_bits(_real(size), sizer)


def test_state_dict_and_checkpoints_keep_complex_state():
    params = _params(np.complex64)
    opt = ob.Adagrad(params, lr=0.1)
    for k in range(2):
        opt.step(_grads(params, k))
    sd = opt.state_dict()
    assert sd["state"][0]["sum"].dtype == np.complex64
    f = io.BytesIO()
    ob.save_state(f, sd)
    f.seek(0)
    twin_params = [p.copy() for p in params]
    twin = ob.Adagrad(twin_params, lr=0.1)
    twin.load_state_dict(ob.load_state(f))
    for k in (2, 3):
        opt.step(_grads(params, k))
        twin.step(_grads(twin_params, k))
    assert_same_bits(twin_params, params)
    bad = opt.state_dict()
    bad["state"][0]["sum"] = _real(bad["state"][0]["sum"])[..., 0].copy()  # float32, not complex
    with pytest.raises(TypeError, match=r"state_dict\['state'\]\[0\]\['sum'\]: dtype float32"):
        twin.load_state_dict(bad)


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("row", REFUSING_ROWS, ids=repr)
def test_rules_torch_does_not_step_complex_with_refuse_complex_parameters(row):
    params = [np.ones(3), np.ones(4, np.complex64)]
    with pytest.raises(TypeError, match=r"params\[1\]: a complex64 array; complex parameters are "
                                        r"stepped as their real view only by"):
        row.make(params)
    assert_same_bits(params[1], np.ones(4, np.complex64))


def test_compact_rprop_refuses_complex_parameters():
    with pytest.raises(TypeError, match=r"params\[0\]: .*compact_state=True"):
        ob.Rprop(np.ones(3, np.complex128), compact_state=True)


def test_a_complex_parameter_swapped_into_a_refusing_optimizer_is_refused():
    opt = ob.QuickProp([np.ones(3)], lr=0.1)
    opt.param_groups[0]["params"][0] = np.ones(3, np.complex128)
    with pytest.raises(TypeError, match=r'param_groups\[0\]\["params"\]\[0\]: a complex128'):
        opt.step([np.ones(3)])


def test_functional_rules_torch_does_not_step_complex_with_refuse_them():
    x = np.ones(3, np.complex64)
    z = np.zeros_like(x)
    with pytest.raises(TypeError, match=r"params\[0\]: .*torch has no QuickProp"):
        F.quickprop([x], [x.copy()], [z], [z.copy()])
    with pytest.raises(TypeError, match=r"params\[0\]: .*variant 'rprop\+' is not torch's"):
        F.rprop([x], [x.copy()], [z], [z.copy()], [z.copy()], variant="rprop+")
    assert_same_bits(x, np.ones(3, np.complex64))


@pytest.mark.parametrize("row", COMPLEX_ROWS, ids=repr)
@pytest.mark.parametrize("grad", ["real-for-complex", "complex128-for-complex64"])
def test_a_gradient_of_another_kind_is_refused_and_nothing_changes(row, grad):
    params = _params(np.complex64)
    opt = row.make(params)
    row.step(opt, _grads(params, 0))
    before = [p.copy() for p in params]
    state = opt.state_dict()
    grads = _grads(params, 1)
    grads[0] = (np.ones((3, 4), np.float32) if grad == "real-for-complex"
                else grads[0].astype(np.complex128))
    with pytest.raises(TypeError, match=r"grads\[0\]: dtype"):
        row.step(opt, grads)
    assert_same_bits(params, before)
    assert_same_bits(opt.state_dict(), state)


def test_functional_state_of_another_kind_is_refused():
    x = np.ones(4, np.complex64)
    with pytest.raises(TypeError, match=r"exp_avgs\[0\]: dtype float32 does not match params\[0\] "
                                        r"\(complex64\)"):
        F.adam([x], [x.copy()], [np.zeros(4, np.float32)], [np.zeros_like(x)], step=1)
    assert_same_bits(x, np.ones(4, np.complex64))


def test_sparse_gradients_of_complex_parameters_are_refused():
    table = np.ones((4, 2), np.complex64)
    opt = ob.Adagrad(table, lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\]: row-sparse gradients do not take a complex"):
        opt.step([ob.SparseRows([1], np.ones((1, 2), np.float32))])
    with pytest.raises(TypeError, match=r"values: row-sparse gradients are real"):
        ob.SparseRows([1], np.ones((1, 2), np.complex64))
    assert_same_bits(table, np.ones((4, 2), np.complex64))


def test_the_bowl_refuses_complex_arrays():
    with pytest.raises(TypeError, match=r"A: .*complex"):
        ob.QuadraticBowl(np.eye(2, dtype=complex))
    bowl = ob.QuadraticBowl(np.eye(2))
    with pytest.raises(TypeError, match=r"x0: .*complex"):
        bowl.run("gd", np.ones(2, np.complex64), 3, lr=0.1)


# ----------------------------------------------------------------------------- torch
def _torch():
    return pytest.importorskip("torch")


def _tensors(torch, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 8, dtype=dtype, generator=gen).requires_grad_(),
            torch.randn(16, dtype=dtype, generator=gen).requires_grad_()]


def _grads_for(torch, params, k):
    gen = torch.Generator().manual_seed(100 + k)
    return [torch.randn(p.shape, dtype=p.dtype, generator=gen) for p in params]


def _train(torch, make, params, steps=10):
    opt = make(params)
    for k in range(steps):
        for p, g in zip(params, _grads_for(torch, params, k)):
            p.grad = g
        opt.step()
    return opt


def _real_twin(torch, params):
    """Real leaf tensors holding the real views of ``params``."""
    return [torch.view_as_real(p.detach()).clone().requires_grad_() for p in params]


def _train_real(torch, make, params, cdtype, steps=10):
    """The same training on the real views (the real views of the same gradients)."""
    opt = make(params)
    for k in range(steps):
        complex_like = [torch.empty(p.shape[:-1], dtype=cdtype) for p in params]
        for p, g in zip(params, _grads_for(torch, complex_like, k)):
            p.grad = torch.view_as_real(g).clone()
        opt.step()
    return opt


def _bits(torch, a, b):
    return torch.equal(torch.view_as_real(a.detach()) if a.is_complex() else a.detach(),
                       torch.view_as_real(b.detach()) if b.is_complex() else b.detach())


# (class, kwargs, torch's path on the complex tensors, whether optbowl equals it bit for bit,
# torch's path on their real views that optbowl equals bit for bit, or None).
# Rprop: torch steps view_as_real, and optbowl equals it. RMSprop: to an ulp or so, as for
# real tensors. SGD: torch's complex arithmetic does not step the real view (it rounds
# lr * g apart from the add, where its real path fuses them), so optbowl, which steps the
# real view, equals torch's SGD on view_as_real(p) and is an ulp or so from its complex
# path. Adagrad, Adam, AdamW: torch's fused path, whose rounding optbowl has, refuses complex
# tensors; optbowl equals it on the real views, and its single-tensor path to a few ulps.
TORCH_COMPLEX = [
    ("Rprop", {"lr": 1e-2}, {"foreach": False}, True, {"foreach": False}),
    ("Rprop", {"lr": 1e-2, "maximize": True}, {"foreach": True}, True, {"foreach": True}),
    ("SGD", {"lr": 1e-2, "momentum": 0.9, "weight_decay": 1e-2}, {"foreach": False}, False,
     {"foreach": False}),
    ("SGD", {"lr": 1e-2, "momentum": 0.9, "nesterov": True}, {"foreach": True}, False,
     {"fused": True}),
    ("SGD", {"lr": 1e-2}, {"foreach": False}, False, {"foreach": False}),
    ("RMSprop", {"lr": 1e-2, "momentum": 0.5, "centered": True}, {"foreach": False}, False, None),
    ("Adagrad", {"lr": 1e-1, "lr_decay": 1e-2, "initial_accumulator_value": 0.1},
     {"foreach": False}, False, {"fused": True}),
    ("Adam", {"lr": 1e-2, "amsgrad": True, "weight_decay": 1e-2}, {"foreach": False}, False,
     {"fused": True}),
    ("AdamW", {"lr": 1e-2}, {"foreach": False}, False, {"fused": True}),
]


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
@pytest.mark.parametrize("cls,kwargs,complex_path,exact,real_path", TORCH_COMPLEX,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(TORCH_COMPLEX)])
def test_torch_complex_parameters_step_as_their_real_view(cls, kwargs, complex_path, exact,
                                                          real_path, dtype):
    torch = _torch()
    import optbowl.torch as obt

    cdtype = getattr(torch, dtype)
    ours = _tensors(torch, cdtype)
    opt = _train(torch, lambda ps: getattr(obt, cls)(ps, **kwargs), ours)
    # the state is complex, as torch keeps it
    for name, t in opt.state[ours[0]].items():
        if name != "step":
            assert t.dtype == cdtype and t.shape == ours[0].shape, name
    # optbowl on the real views: the same bits
    real = _real_twin(torch, _tensors(torch, cdtype))
    _train_real(torch, lambda ps: getattr(obt, cls)(ps, **kwargs), real, cdtype)
    for a, b in zip(ours, real):
        assert torch.equal(torch.view_as_real(a.detach()), b.detach())
    # torch on the complex tensors
    theirs = _tensors(torch, cdtype)
    _train(torch, lambda ps: getattr(torch.optim, cls)(ps, **kwargs, **complex_path), theirs)
    for a, b in zip(ours, theirs):
        if exact:
            assert _bits(torch, a, b), cls
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # torch on the real views, on the path whose rounding optbowl claims
    if real_path is not None:
        if real_path.get("fused"):
            with pytest.raises(RuntimeError, match="fused"):  # torch's fused: no complex
                _train(torch, lambda ps: getattr(torch.optim, cls)(ps, **kwargs, **real_path),
                       _tensors(torch, cdtype), steps=1)
        theirs = _real_twin(torch, _tensors(torch, cdtype))
        _train_real(torch, lambda ps: getattr(torch.optim, cls)(ps, **kwargs, **real_path),
                    theirs, cdtype)
        for a, b in zip(ours, theirs):
            assert torch.equal(torch.view_as_real(a.detach()), b.detach())


def test_torch_complex_state_dict_round_trips_with_torch():
    torch = _torch()
    import optbowl.torch as obt

    theirs = _tensors(torch, torch.complex64)
    t_opt = _train(torch, lambda ps: torch.optim.Rprop(ps, lr=1e-2, foreach=False), theirs,
                   steps=3)
    ours = [p.detach().clone().requires_grad_() for p in theirs]
    o_opt = obt.Rprop(ours, lr=1e-2)
    o_opt.load_state_dict(copy.deepcopy(t_opt.state_dict()))  # (a live one shares tensors)
    assert o_opt.state[ours[0]]["step_size"].dtype == torch.complex64
    for k in range(3, 6):
        for ps in (theirs, ours):
            for p, g in zip(ps, _grads_for(torch, ps, k)):
                p.grad = g
        t_opt.step()
        o_opt.step()
    for a, b in zip(ours, theirs):
        assert _bits(torch, a, b)
    # and back: optbowl's complex state loads into torch
    back = torch.optim.Rprop([p.detach().clone().requires_grad_() for p in ours], lr=1e-2)
    back.load_state_dict(o_opt.state_dict())
    sd = back.state_dict()["state"][0]
    assert sd["prev"].dtype == torch.complex64
    assert torch.equal(sd["prev"], o_opt.state[ours[0]]["prev"])


def test_torch_first_complex_state_fills_each_part_as_torch():
    torch = _torch()
    import optbowl.torch as obt

    p = torch.zeros(8, dtype=torch.complex64, requires_grad=True)
    p.grad = torch.zeros_like(p)
    opt = obt.Rprop([p], lr=0.25)
    opt.step()
    assert torch.equal(opt.state[p]["step_size"], torch.full((8,), 0.25 + 0.25j))
    q = torch.zeros(8, dtype=torch.complex128, requires_grad=True)
    ada = obt.Adagrad([q], initial_accumulator_value=0.5)
    ref = torch.optim.Adagrad([q.detach().clone().requires_grad_()], initial_accumulator_value=0.5)
    assert torch.equal(ada.state[q]["sum"], ref.state_dict()["state"][0]["sum"])


def test_torch_quickprop_refuses_complex_parameters_and_nothing_changes():
    torch = _torch()
    import optbowl.torch as obt

    p = torch.ones(8, dtype=torch.complex64, requires_grad=True)
    p.grad = torch.ones_like(p)
    with pytest.raises(TypeError, match=r"params\[0\]: a torch.complex64 tensor; .*torch has no "
                                        r"QuickProp"):
        obt.QuickProp([p], lr=0.1).step()
    assert torch.equal(p.detach(), torch.ones(8, dtype=torch.complex64))


def test_torch_a_conjugate_view_is_refused_with_how_to_resolve_it():
    torch = _torch()
    import optbowl.torch as obt

    p = torch.ones(8, dtype=torch.complex64, requires_grad=True)
    p.grad = torch.full((8,), 1 + 1j).conj()  # a lazy conjugate
    assert p.grad.is_conj()
    with pytest.raises(ValueError, match=r"params\[0\]\.grad: a lazy conjugate.*resolve_conj"):
        obt.SGD([p], lr=0.1).step()
    assert torch.equal(p.detach(), torch.ones(8, dtype=torch.complex64))


def test_torch_complex_and_channels_last_layouts_together():
    torch = _torch()
    import optbowl.torch as obt

    gen = torch.Generator().manual_seed(0)
    c = torch.randn(2, 3, 4, 4, dtype=torch.complex64, generator=gen)
    cl = c.contiguous(memory_format=torch.channels_last).requires_grad_()
    flat = c.clone().requires_grad_()
    a, b = obt.Adam([cl], lr=0.1), obt.Adam([flat], lr=0.1)
    for k in range(3):
        g = torch.randn(c.shape, dtype=c.dtype, generator=gen)
        cl.grad = g.contiguous(memory_format=torch.channels_last)
        flat.grad = g.clone()
        a.step()
        b.step()
    assert a.state[cl]["exp_avg"].stride() == cl.stride()
    assert torch.equal(cl.detach(), flat.detach())
