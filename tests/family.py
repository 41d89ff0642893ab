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
