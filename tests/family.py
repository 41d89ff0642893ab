"""Checks every optimizer of the family must pass, called from each optimizer's test file."""

import numpy as np
import pytest


def grads_for(params, rng):
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


def check_lists_groups_and_dtypes(cls, hp, group_hp, rng, steps=5):
    """A list of float32 and float64 arrays in two groups moves exactly as two separate
    optimizers, one per group, would move them."""
    a = [rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal(7)]
    b = [rng.standard_normal(4), rng.standard_normal((2, 2)).astype(np.float32)]
    a2, b2 = [x.copy() for x in a], [x.copy() for x in b]
    opt = cls([{"params": a}, {"params": b, **group_hp}], **hp)
    opt_a, opt_b = cls(a2, **hp), cls(b2, **{**hp, **group_hp})
    for _ in range(steps):
        ga, gb = grads_for(a, rng), grads_for(b, rng)
        opt.step(ga + gb)
        opt_a.step(ga)
        opt_b.step(gb)
    for x, y in zip(a + b, a2 + b2):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, b[:1] + a[1:]))  # they did move


def check_state_dict_round_trip(cls, hp, rng, steps=4):
    """Save after some steps, restore into a fresh optimizer: both continue identically."""
    p = [rng.standard_normal((6, 2)), rng.standard_normal(9).astype(np.float32)]
    opt = cls(p, **hp)
    for _ in range(steps):
        opt.step(grads_for(p, rng))
    sd = opt.state_dict()
    q = [x.copy() for x in p]
    other = cls(q, **hp)
    other.load_state_dict(sd)
    for _ in range(steps):
        g = grads_for(p, rng)
        opt.step(g)
        other.step(g)
    for x, y in zip(p, q):
        np.testing.assert_array_equal(x, y)
    for i in opt.state:
        for key, value in opt.state[i].items():
            np.testing.assert_array_equal(value, other.state[i][key])
    # The saved copy did not change with the optimizer.
    assert sd["state"][0]["step"] == steps


def check_rejects(cls, name, value, error=ValueError, **valid):
    """A bad hyper-parameter is refused with its name in the message, at construction, in a
    param group and (changed later in param_groups) at step, without touching anything.
    ``valid``: keyword arguments that make a working optimizer (lr where it has no default)."""
    extra = {k: v for k, v in valid.items() if k != name}
    with pytest.raises(error, match=name):
        cls(np.zeros(3), **{**extra, name: value})
    with pytest.raises(error, match=name):
        cls([{"params": [np.zeros(3)], name: value}], **valid)
    x = np.ones(3)
    opt = cls(x, **valid)
    opt.param_groups[0][name] = value
    with pytest.raises(error, match=name):
        opt.step(np.ones(3))
    np.testing.assert_array_equal(x, np.ones(3))
    assert opt.state == {}


SMALL_SHAPES = [(1,), (7,), (33, 5), ()]
TORCH_SHAPES = [(1000,), (37, 13), (3,), ()]
# Sizes without the scalar tail (the last numel mod 8 float32 or mod 4 float64 elements) that
# torch's fused CPU kernels round otherwise: the NumPy SGD rounds it as torch's foreach path
# (Adam's tails, and optbowl.torch.SGD(fused=True)'s, are tested in test_torch_tails.py).
FUSED_SHAPES = [(1024,), (48, 16), (16,)]
TORCH_KIND = {
    "fused": dict(fused=True),
    "foreach": dict(foreach=True),
    "single": dict(foreach=False),
}


def compare_with_reference(rng, cls, hp, dtype, reference_step, new_state, *, steps=100, tol):
    """Run cls and the element-wise NumPy reference side by side; they agree to ``tol``."""
    params = [rng.standard_normal(s).astype(dtype) for s in SMALL_SHAPES]
    expect = [p.copy() for p in params]
    states = [new_state(p) for p in expect]
    opt = cls(params, **hp)
    for _ in range(steps):
        grads = grads_for(params, rng)
        opt.step(grads)
        for p, g, st in zip(expect, grads, states):
            reference_step(p, g, st, **hp)
    for got, want in zip(params, expect):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def run_beside_torch(rng, torch, params, opt, torch_opt_factory, *, steps=100):
    """Step ``opt`` and a torch optimizer over copies of ``params`` with the same gradients.
    Returns the torch parameters and optimizer."""
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = torch_opt_factory(tparams)
    for _ in range(steps):
        grads = grads_for(params, rng)
        for t, g in zip(tparams, grads):
            t.grad = torch.from_numpy(g.copy())
        topt.step()
        opt.step(grads)
    return tparams, topt
