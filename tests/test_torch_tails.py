"""Every tensor size bit-identical to torch's fused CPU kernels, their scalar tails included.

torch's fused Adam, AdamW and SGD step the last numel % (32 bytes / itemsize) elements of each
tensor in a scalar loop that rounds otherwise than their vectorised body (Adam's second moment,
SGD's momentum buffer); optbowl rounds those elements as that loop does. Sizes 1 to 130 cover
every tail length after every body length up to 16 vectors; the large odd sizes put the tail
behind several chunks and threads. The NumPy classes follow the same rule (Adam, AdamW,
Adagrad: torch's fused kernel; SGD: torch's foreach and single-tensor paths, which round every
element as the fused body, see test_torch_interop.py).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
obt = pytest.importorskip("optbowl.torch")

import optbowl as ob  # noqa: E402

DTYPES = [torch.float32, torch.float64]
# every size from 1 to 130, and a size past the parallel threshold (several chunks, threads)
SIZES = list(range(1, 131)) + [1031, 4099, ob._core.parallel_min + 13]
STEPS = 4

ADAM = [
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.02, betas=(0.3, 0.5), eps=1e-6, maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, amsgrad=True, weight_decay=0.2, maximize=True)),
]
SGD = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, weight_decay=0.1, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.02, momentum=0.5, nesterov=True, weight_decay=0.2, maximize=True)),
]
ADAGRAD = [
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, eps=1e-3, maximize=True)),
]


def tensors(dtype, seed, sizes=SIZES):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g, dtype=dtype) for n in sizes]


def state_names(opt, p):
    return sorted(k for k, v in opt.state[p].items() if k != "step" and torch.is_tensor(v))


def assert_same(ours, theirs, opt_ours, opt_theirs, where):
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert torch.equal(a, b), f"{where}: params[{i}] (numel {a.numel()}) differs"
        for name in state_names(opt_theirs, b):
            x, y = opt_ours.state[a][name], opt_theirs.state[b][name]
            assert torch.equal(x, y), f"{where}: params[{i}] (numel {a.numel()}) state {name}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "hp"), ADAM + SGD + ADAGRAD)
def test_every_size_bit_identical_to_torch_fused(dtype, name, hp):
    start = tensors(dtype, 0)
    theirs = [t.clone().requires_grad_() for t in start]
    ours = [t.clone().requires_grad_() for t in start]
    opt_theirs = getattr(torch.optim, name)(theirs, fused=True, **hp)
    opt_ours = getattr(obt, name)(ours, fused=True, **hp)
    for step in range(STEPS):
        for a, b, g in zip(ours, theirs, tensors(dtype, step + 1)):
            a.grad, b.grad = g.clone(), g.clone()
        opt_theirs.step()
        opt_ours.step()
        assert_same(ours, theirs, opt_ours, opt_theirs, f"{name} {hp} step {step + 1}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "hp"), ADAM[:2] + ADAM[3:4] + ADAGRAD[1:])
def test_numpy_classes_follow_the_same_tails(dtype, name, hp):
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    start = tensors(tdtype, 0, SIZES[:130])
    theirs = [t.clone().requires_grad_() for t in start]
    ours = [t.numpy().copy() for t in start]
    opt_theirs = getattr(torch.optim, name)(theirs, fused=True, **hp)
    opt_ours = getattr(ob, name)(ours, **hp)
    for step in range(STEPS):
        grads = tensors(tdtype, step + 1, SIZES[:130])
        for b, g in zip(theirs, grads):
            b.grad = g.clone()
        opt_theirs.step()
        opt_ours.step([g.numpy() for g in grads])
    for i, (a, b) in enumerate(zip(ours, theirs)):
        np.testing.assert_array_equal(a, b.detach().numpy(), err_msg=f"params[{i}]")
        for key in state_names(opt_theirs, b):
            np.testing.assert_array_equal(opt_ours.state[i][key], opt_theirs.state[b][key].numpy(),
                                          err_msg=f"params[{i}] {key}")


def mlp(seed, dtype):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    return net.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("name", "hp"),
    [("Adam", dict(lr=1e-3)), ("AdamW", dict(lr=1e-3)), ("SGD", dict(lr=0.1, momentum=0.9)),
     ("Adam", dict(lr=1e-3, amsgrad=True)), ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True))],
)
def test_mlp_trained_50_steps_bit_identical_to_torch_fused(dtype, name, hp):
    """A 64-128-10 MLP: its 10-element output bias is all tail (and the first difference
    used to appear there at steps 2 to 18, then spread to every weight)."""
    ref, net = mlp(0, dtype), mlp(0, dtype)
    opt_ref = getattr(torch.optim, name)(ref.parameters(), fused=True, **hp)
    opt = getattr(obt, name)(net.parameters(), fused=True, **hp)
    gen = torch.Generator().manual_seed(1)
    for step in range(50):
        x = torch.randn(32, 64, generator=gen, dtype=dtype)
        y = torch.randint(0, 10, (32,), generator=gen)
        for model, o in ((ref, opt_ref), (net, opt)):
            o.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            o.step()
        for k, (a, b) in enumerate(zip(net.parameters(), ref.parameters())):
            assert torch.equal(a, b), f"step {step + 1}: parameter {k} ({tuple(a.shape)}) differs"
