"""AdaGrad: against the NumPy reference, and bit for bit against torch's fused CPU kernel."""

import numpy as np
import pytest

import optbowl as ob
import reference as ref

OPTIONS = [
    dict(),
    dict(lr=0.3, lr_decay=0.01),
    dict(weight_decay=0.1, initial_accumulator_value=0.5),
    dict(lr=0.05, eps=1e-3, maximize=True),
    dict(lr=0.2, lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.1, eps=1e-6,
         maximize=True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hp", OPTIONS)
def test_matches_reference(rng, dtype, hp):
    shapes = [(1,), (7,), (33, 5), (), (40000,)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    expect = [p.copy() for p in params]
    opt = ob.Adagrad(params, **hp)
    iav = hp.get("initial_accumulator_value", 0.0)
    states = [ref.adagrad_init(p, iav) for p in expect]
    kw = {k: v for k, v in hp.items() if k != "initial_accumulator_value"}
    for _ in range(50):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
        opt.step(grads)
        for p, g, st in zip(expect, grads, states):
            ref.adagrad_step(p, g, st, **kw)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for got, want in zip(params, expect):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hp", OPTIONS)
def test_bit_identical_to_torch_fused(rng, dtype, hp):
    torch = pytest.importorskip("torch")
    shapes = [(1000,), (37, 13), (3,), (), (70001,)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt = ob.Adagrad(params, **hp)
    topt = torch.optim.Adagrad(tparams, fused=True, **hp)
    for _ in range(60):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
        for t, g in zip(tparams, grads):
            t.grad = torch.from_numpy(g.copy())
        topt.step()
        opt.step(grads)
        for p, t in zip(params, tparams):
            np.testing.assert_array_equal(p, t.detach().numpy())
    for i, t in enumerate(tparams):
        np.testing.assert_array_equal(opt.state[i]["sum"], topt.state[t]["sum"].numpy())
        assert opt.state[i]["step"] == int(topt.state[t]["step"])


def test_nan_and_inf_gradients_propagate_as_in_torch():
    torch = pytest.importorskip("torch")
    for dtype in (np.float32, np.float64):
        x = np.array([1.0, 2.0, 3.0, 4.0], dtype)
        t = torch.tensor(x.copy(), requires_grad=True)
        opt, topt = ob.Adagrad(x, lr=0.1), torch.optim.Adagrad([t], lr=0.1, fused=True)
        g = np.array([np.nan, np.inf, -np.inf, 1.0], dtype)
        t.grad = torch.from_numpy(g.copy())
        topt.step()
        opt.step(g)
        np.testing.assert_array_equal(x, t.detach().numpy())
