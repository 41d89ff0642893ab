"""bfloat16 and float16 parameters against torch, bit for bit.

torch steps a 16-bit CPU parameter with its state in the parameter's dtype and the
arithmetic in float32. Adam, AdamW and Adagrad are compared with ``fused=True`` (one
kernel: float32 arithmetic, each stored value rounded to the dtype), Rprop, RMSprop and SGD
with torch's single-tensor loop (``foreach=False``: each tensor operation rounded to the
dtype; torch has no fused Rprop or RMSprop, and its fused CPU SGD leaves 16-bit parameters
unchanged outside its scalar tail in torch 2.13, see test_torch_fused_sgd_half_vector_body).
Sizes are multiples of 32 elements (64 bytes of bfloat16), torch's vector width.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")
obt = pytest.importorskip("optbowl.torch")
import optbowl as ob  # noqa: E402

HALF = [torch.bfloat16, torch.float16]
SHAPES = [(64,), (32, 48), (2048,), (4, 8, 32)]
NP_DTYPE = {torch.bfloat16: np.dtype(ml_dtypes.bfloat16), torch.float16: np.dtype(np.float16)}


def bits(t):
    return t.detach().view(torch.int16)


def as_numpy(t):
    """A NumPy copy of a 16-bit tensor, in its own dtype."""
    return bits(t).numpy().copy().view(NP_DTYPE[t.dtype])


def make_params(dtype, shapes=SHAPES, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g).to(dtype).requires_grad_() for s in shapes]


def gradients(params, gen):
    out = []
    for p in params:
        g = torch.randn(p.shape, generator=gen).to(p.dtype)
        g[torch.rand(p.shape, generator=gen) < 0.1] = 0.0  # exact zeros: Rprop's factor 1
        out.append(g)
    return out


def train_side_by_side(make_torch, make_ours, dtype, steps=8, shapes=SHAPES):
    ref = make_params(dtype, shapes)
    ours = [p.detach().clone().requires_grad_() for p in ref]
    a, b = make_torch(ref), make_ours(ours)
    gen = torch.Generator().manual_seed(1)
    for t in range(steps):
        for p, q, g in zip(ref, ours, gradients(ref, gen)):
            p.grad, q.grad = g.clone(), g.clone()
        a.step()
        b.step()
        for k, (p, q) in enumerate(zip(ref, ours)):
            assert torch.equal(bits(p), bits(q)), f"step {t}, params[{k}] differ"
    return a, b, ref, ours


def assert_same_state(a, b, ref, ours):
    for p, q in zip(ref, ours):
        sa, sb = a.state[p], b.state[q]
        for name, value in sa.items():
            if name == "step":
                assert float(value) == float(sb[name])
                continue
            assert sb[name].dtype == p.dtype, name
            assert torch.equal(bits(value), bits(sb[name])), name


FUSED = {
    "adam": (torch.optim.Adam, obt.Adam, dict(lr=1e-2)),
    "adam-l2-amsgrad-maximize": (torch.optim.Adam, obt.Adam,
                                 dict(lr=1e-2, weight_decay=0.1, amsgrad=True, maximize=True)),
    "adam-betas": (torch.optim.Adam, obt.Adam, dict(lr=3e-3, betas=(0.6, 0.95), eps=1e-6)),
    "adamw": (torch.optim.AdamW, obt.AdamW, dict(lr=1e-2, weight_decay=0.1)),
    "adamw-amsgrad": (torch.optim.AdamW, obt.AdamW, dict(lr=1e-2, amsgrad=True)),
    "adagrad": (torch.optim.Adagrad, obt.Adagrad, dict(lr=1e-2, lr_decay=0.01, weight_decay=0.1)),
    "adagrad-init-maximize": (torch.optim.Adagrad, obt.Adagrad,
                              dict(lr=1e-2, initial_accumulator_value=0.1, maximize=True)),
}

SINGLE_TENSOR = {
    "sgd": (torch.optim.SGD, obt.SGD, dict(lr=1e-2)),
    "sgd-wd-maximize": (torch.optim.SGD, obt.SGD, dict(lr=1e-2, weight_decay=0.1, maximize=True)),
    "sgd-momentum-dampening": (torch.optim.SGD, obt.SGD,
                               dict(lr=1e-2, momentum=0.9, dampening=0.1)),
    "sgd-nesterov-wd": (torch.optim.SGD, obt.SGD,
                        dict(lr=1e-2, momentum=0.9, nesterov=True, weight_decay=0.1)),
    "rprop": (torch.optim.Rprop, obt.Rprop, dict(lr=1e-2)),
    "rprop-etas-maximize": (torch.optim.Rprop, obt.Rprop,
                            dict(lr=1e-3, etas=(0.3, 1.3), step_sizes=(1e-4, 0.1), maximize=True)),
    "rmsprop": (torch.optim.RMSprop, obt.RMSprop, dict(lr=1e-2)),
    "rmsprop-momentum": (torch.optim.RMSprop, obt.RMSprop, dict(lr=1e-2, momentum=0.9)),
    "rmsprop-centered": (torch.optim.RMSprop, obt.RMSprop, dict(lr=1e-2, centered=True)),
    "rmsprop-all": (torch.optim.RMSprop, obt.RMSprop,
                    dict(lr=1e-2, centered=True, momentum=0.9, weight_decay=0.1, maximize=True)),
}


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", list(FUSED))
def test_fused_parity(name, dtype):
    torch_cls, our_cls, kw = FUSED[name]
    a, b, ref, ours = train_side_by_side(lambda p: torch_cls(p, fused=True, **kw),
                                         lambda p: our_cls(p, **kw), dtype)
    assert_same_state(a, b, ref, ours)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", list(SINGLE_TENSOR))
def test_single_tensor_parity(name, dtype):
    torch_cls, our_cls, kw = SINGLE_TENSOR[name]
    a, b, ref, ours = train_side_by_side(lambda p: torch_cls(p, foreach=False, **kw),
                                         lambda p: our_cls(p, **kw), dtype)
    assert_same_state(a, b, ref, ours)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_torch_fused_sgd_half_vector_body(dtype):
    """Why SGD is compared with torch's single-tensor loop: torch 2.13's fused CPU SGD
    leaves a 16-bit parameter unchanged over its vectorised body (a 1024-element tensor
    does not move), where the single-tensor loop and optbowl step it."""
    p = (torch.arange(1024, dtype=torch.float32) / 1024).to(dtype).requires_grad_()
    before = p.detach().clone()
    p.grad = torch.ones_like(p)
    torch.optim.SGD([p], lr=0.5, fused=True).step()
    ours = before.clone().requires_grad_()
    ours.grad = torch.ones_like(ours)
    obt.SGD([ours], lr=0.5).step()
    assert not torch.equal(ours.detach(), before)
    if torch.equal(p.detach(), before):
        return  # torch's fused body as described above
    assert torch.equal(p.detach(), ours.detach())  # a torch that fixed it agrees with us


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", ["adam", "adagrad", "rprop", "sgd-nesterov-wd", "rmsprop-all"])
def test_numpy_classes_against_torch(name, dtype):
    """The NumPy optimizers on float16 / ml_dtypes.bfloat16 arrays step as torch does."""
    torch_cls, _, kw = {**FUSED, **SINGLE_TENSOR}[name]
    our_cls = {"adam": ob.Adam, "adagrad": ob.Adagrad, "rprop": ob.Rprop, "sgd-nesterov-wd": ob.SGD,
               "rmsprop-all": ob.RMSprop}[name]
    flag = {"fused": True} if name in FUSED else {"foreach": False}
    ref = make_params(dtype)
    arrays = [as_numpy(p) for p in ref]
    opt_t, opt_n = torch_cls(ref, **flag, **kw), our_cls(arrays, **kw)
    gen = torch.Generator().manual_seed(1)
    for t in range(6):
        grads = gradients(ref, gen)
        for p, g in zip(ref, grads):
            p.grad = g
        opt_t.step()
        opt_n.step([as_numpy(g) for g in grads])
        for k, (p, a) in enumerate(zip(ref, arrays)):
            assert a.dtype == NP_DTYPE[dtype]
            assert np.array_equal(as_numpy(p).view(np.int16), a.view(np.int16)), f"step {t}, {k}"


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_state_dict_round_trip_with_torch(dtype):
    """A 16-bit state_dict goes optbowl -> torch (fused) -> optbowl, and training continues
    bit for bit on both sides."""
    ref = make_params(dtype)
    ours = [p.detach().clone().requires_grad_() for p in ref]
    a, b = torch.optim.Adam(ref, lr=1e-2, fused=True), obt.Adam(ours, lr=1e-2)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        for p, q, g in zip(ref, ours, gradients(ref, gen)):
            p.grad, q.grad = g.clone(), g.clone()
        a.step()
        b.step()
    sd = b.state_dict()
    assert all(v.dtype == dtype for s in sd["state"].values() for k, v in s.items() if k != "step")
    c = torch.optim.Adam([p.detach().clone().requires_grad_() for p in ours], lr=1e-2, fused=True)
    c.load_state_dict(sd)
    for group in c.param_groups:  # torch keeps its fused path only when the group says so
        group["fused"] = True
    d = obt.Adam([p.detach().clone().requires_grad_() for p in ours], lr=1e-2)
    d.load_state_dict(a.state_dict())
    pc, pd = c.param_groups[0]["params"], d.param_groups[0]["params"]
    for _ in range(3):
        for p, q, g in zip(pc, pd, gradients(pc, gen)):
            p.grad, q.grad = g.clone(), g.clone()
        c.step()
        d.step()
    for p, q in zip(pc, pd):
        assert torch.equal(bits(p), bits(q))


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_grad_of_another_dtype_is_refused_and_nothing_changes(dtype):
    params = make_params(dtype, shapes=[(64,), (32,)])
    opt = obt.Adam(params, lr=1e-2)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    before = [bits(p).clone() for p in params]
    state = [{k: v.clone() for k, v in opt.state[p].items()} for p in params]
    params[1].grad_dtype = None  # torch refuses the assignment itself unless told not to
    params[1].grad = torch.ones(params[1].shape, dtype=torch.float32)
    with pytest.raises(TypeError, match=r"params\[1\]\.grad: dtype torch.float32"):
        opt.step()
    for p, b, s in zip(params, before, state):
        assert torch.equal(bits(p), b)
        for k, v in s.items():
            assert torch.equal(opt.state[p][k], v)
