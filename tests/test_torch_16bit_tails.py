"""The last numel % 32 elements of a bfloat16 or float16 tensor under the rules torch runs as
single-tensor ops (Adamax, Adadelta, NAdam, RAdam, ASGD, and SGD and RMSprop, whose 16-bit
parameters follow torch's single-tensor path): torch steps them in a scalar loop of
c10::BFloat16 / c10::Half arithmetic, whose add(alpha=) rounds the product to the dtype
before the sum (the vectorised body: one float32 fused multiply-add). optbowl.torch rounds
them as that loop does (multi_tensor.hpp, kTorchHalfTail), so it agrees with torch's
single-tensor path bit for bit at every size. torch's fused Adagrad steps the last numel % 16
elements of such a tensor in a scalar loop that takes its hyper-parameters in float32 (its
vector body rounds them to the dtype); optbowl.torch's Adagrad does the same there."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import optbowl.torch as obt  # noqa: E402

# options whose every add(alpha=) is taken (L2 weight decay; Adadelta's -lr always)
CASES = [
    ("Adamax", dict(lr=0.3, betas=(0.5, 0.9), eps=1e-3, weight_decay=0.013)),
    ("Adamax", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    ("Adadelta", dict(lr=0.37, rho=0.5, eps=1e-3, weight_decay=0.013)),
    ("Adadelta", dict(lr=0.8, rho=0.95, maximize=True)),
    ("RAdam", dict(lr=0.3, betas=(0.5, 0.8), eps=1e-3, weight_decay=0.013)),
    ("RAdam", dict(lr=0.05, betas=(0.9, 0.9), weight_decay=0.1, decoupled_weight_decay=True,
                   maximize=True)),
    ("NAdam", dict(lr=0.3, betas=(0.5, 0.8), eps=1e-3, weight_decay=0.013, momentum_decay=0.1)),
    ("NAdam", dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("ASGD", dict(lr=0.3, lambd=0.1, alpha=0.5, t0=2.0, weight_decay=0.013)),
    ("ASGD", dict(lr=0.05, t0=1.0, maximize=True)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.013)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.013, maximize=True)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-3, weight_decay=0.013)),
    ("Adagrad", dict(lr=0.3, lr_decay=0.01, eps=1e-3, weight_decay=0.013)),
    ("Adagrad", dict(lr=0.05, initial_accumulator_value=0.1, maximize=True)),
]
# the path of torch each is compared with: its single-tensor one but where named here
PATHS = {"Adagrad": dict(fused=True)}


def _bits(t):
    """The bits of a 16-bit tensor; a scalar state (float32 or float64, 0-d) as it is."""
    return t.detach().view(torch.int16) if t.element_size() == 2 else t.detach()


def _steps(name, kw, dtype, sizes, steps):
    gen = torch.Generator().manual_seed(6)
    p0 = [torch.randn(n, generator=gen).to(dtype) for n in sizes]
    mine = [torch.nn.Parameter(p.clone()) for p in p0]
    theirs = [torch.nn.Parameter(p.clone()) for p in p0]
    opt = getattr(obt, name)(mine, **kw)
    topt = getattr(torch.optim, name)(theirs, **PATHS.get(name, dict(foreach=False)), **kw)
    for _ in range(steps):
        for a, b in zip(mine, theirs):
            g = (torch.randn(a.shape, generator=gen) * 3).to(dtype)
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        topt.step()
    return opt, topt, mine, theirs


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name, kw", CASES, ids=lambda x: x if isinstance(x, str) else "")
def test_every_size_from_1_to_130_matches_torch_bit_for_bit(name, kw, dtype):
    sizes = range(1, 131)
    opt, topt, mine, theirs = _steps(name, kw, getattr(torch, dtype), sizes, steps=8)
    states = [k for k in opt.state[mine[0]] if k != "step"]
    for n, a, b in zip(sizes, mine, theirs):
        assert torch.equal(_bits(a), _bits(b)), f"numel {n}"
        for k in states:
            assert torch.equal(_bits(opt.state[a][k]), _bits(topt.state[b][k])), f"{k}, numel {n}"


@pytest.mark.parametrize("name, kw", CASES[::2], ids=lambda x: x if isinstance(x, str) else "")
def test_a_tensor_past_torch_grain_size_matches_one_torch_thread(name, kw):
    # torch cuts a tensor of more than 32768 elements into one part per intra-op thread,
    # each with its own tail; with one thread its tail is the whole tensor's, as here
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sizes = (2 * 32768 + 31, 2 * 32768 + 30, 32768 + 29)
        opt, topt, mine, theirs = _steps(name, kw, torch.bfloat16, sizes, steps=8)
    finally:
        torch.set_num_threads(threads)
    for n, a, b in zip(sizes, mine, theirs):
        assert torch.equal(_bits(a), _bits(b)), f"numel {n}"



@pytest.mark.parametrize("name, kw", [CASES[6], CASES[8]], ids=["NAdam", "ASGD"])
def test_16_bit_parameters_keep_float32_scalar_state_through_a_state_dict(name, kw):
    # torch's load_state_dict casts every floating-point state tensor but step to its
    # parameter's dtype; the scalar state (mu_product, eta, mu) is kept as saved instead,
    # so a resumed optimizer continues exactly as one that never stopped
    opt, _, mine, _ = _steps(name, kw, torch.bfloat16, (31, 64), steps=3)
    sd = {"state": {i: {k: v.clone() for k, v in st.items()} for i, st in
                    opt.state_dict()["state"].items()},
          "param_groups": opt.state_dict()["param_groups"]}
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in mine]
    opt2 = getattr(obt, name)(resumed, **kw)
    opt2.load_state_dict(sd)
    for p in resumed:
        for k in opt._rule.scalar_names:
            assert opt2.state[p][k].dtype == torch.float32, k
    gen = torch.Generator().manual_seed(9)
    for _ in range(4):
        for a, b in zip(mine, resumed):
            a.grad = (torch.randn(a.shape, generator=gen) * 3).to(torch.bfloat16)
            b.grad = a.grad.clone()
        opt.step()
        opt2.step()
    for a, b in zip(mine, resumed):
        assert torch.equal(_bits(a), _bits(b))
        for k, t in opt.state[a].items():
            assert torch.equal(t, opt2.state[b][k]), k
