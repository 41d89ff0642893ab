"""Rprop(compact_state=True): int8 sign codes instead of the float prev.

Equal to the float state wherever g * prev does not underflow (NaN and inf included),
and different, as documented, where it does.
"""

import numpy as np
import pytest

import optbowl as ob

VARIANTS = ["irprop-", "rprop-", "rprop+", "irprop+", "backtrack"]


def _grads(rng, params, step):
    out = []
    for p in params:
        g = np.asarray(rng.standard_normal(p.shape) + 0.3 * p).astype(p.dtype)
        g[rng.random(p.shape) < 0.15] = 0
        if g.size > 20 and step % 7 == 3:
            g.flat[::17] = np.nan
            g.flat[4] = np.inf
            g.flat[6] = -np.inf
        out.append(g)
    return out


def _codes(prev):
    return np.where(np.isnan(prev), 2, np.sign(np.nan_to_num(prev, nan=0.0))).astype(np.int8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", VARIANTS)
def test_equal_to_float_state_without_underflow(rng, dtype, variant):
    n = ob._core.chunk_size * 2 + 5  # several chunks, threads, a ragged tail
    shapes = [(n,), (33, 5), (), (1,)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    compact = [p.copy() for p in params]
    full = ob.Rprop(params, lr=0.05, variant=variant)
    small = ob.Rprop(compact, lr=0.05, variant=variant, compact_state=True)
    for k in range(25):
        grads = _grads(rng, params, k)
        loss = float(rng.standard_normal())
        full.step(grads, loss=loss)
        small.step(grads, loss=loss)
        for a, b in zip(params, compact):
            np.testing.assert_array_equal(a, b)
    name = "direction" if variant == "backtrack" else "prev"
    for i in range(len(shapes)):
        got = small.state[i]["direction" if variant == "backtrack" else "prev_sign"]
        assert got.dtype == np.int8
        np.testing.assert_array_equal(got, _codes(full.state[i][name]))
        np.testing.assert_array_equal(small.state[i]["step_size"], full.state[i]["step_size"])
        if variant in ("rprop+", "irprop+"):
            np.testing.assert_array_equal(small.state[i]["update"], full.state[i]["update"])


@pytest.mark.parametrize("dtype,tiny", [(np.float32, 1e-23), (np.float64, 1e-170)])
def test_documented_difference_when_product_underflows(dtype, tiny):
    # g * prev underflows to zero: the float state sees no sign (f = 1), the code does.
    tiny = dtype(tiny)
    assert tiny * tiny == 0
    x_full, x_small = np.zeros(2, dtype), np.zeros(2, dtype)
    full = ob.Rprop(x_full, lr=0.1)
    small = ob.Rprop(x_small, lr=0.1, compact_state=True)
    first = np.array([tiny, tiny], dtype)
    second = np.array([tiny, -tiny], dtype)  # same sign, then a sign change
    for g in (first, second):
        full.step(g)
        small.step(g)
    lr = dtype(0.1)
    # float state: f = 1 for both; both elements move by step = lr
    np.testing.assert_array_equal(full.state[0]["step_size"], [lr, lr])
    np.testing.assert_array_equal(x_full, [-2 * lr, 0])
    # compact state: same sign grows the step, the sign change shrinks it and stops the move
    np.testing.assert_array_equal(small.state[0]["step_size"], [lr * dtype(1.2), lr * dtype(0.5)])
    np.testing.assert_array_equal(x_small, [-lr - lr * dtype(1.2), -lr])
    np.testing.assert_array_equal(small.state[0]["prev_sign"], [1, 0])


def test_float_state_matches_torch_where_compact_differs():
    torch = pytest.importorskip("torch")
    x = np.zeros(2, np.float32)
    t = torch.zeros(2, requires_grad=True)
    opt, topt = ob.Rprop(x, lr=0.1), torch.optim.Rprop([t], lr=0.1)
    for g in ([1e-23, 1e-23], [1e-23, -1e-23]):
        g = np.array(g, np.float32)
        t.grad = torch.from_numpy(g.copy())
        topt.step()
        opt.step(g)
    np.testing.assert_array_equal(x, t.detach().numpy())
    np.testing.assert_array_equal(opt.state[0]["step_size"], topt.state[t]["step_size"].numpy())


def test_compact_state_dict_round_trip_and_mismatch(rng):
    x = rng.standard_normal(10).astype(np.float32)
    opt = ob.Rprop(x, compact_state=True)
    opt.step(rng.standard_normal(10).astype(np.float32))
    sd = opt.state_dict()
    assert sd["compact_state"] is True
    y = x.copy()
    again = ob.Rprop(y, compact_state=True)
    again.load_state_dict(sd)
    g = rng.standard_normal(10).astype(np.float32)
    opt.step(g)
    again.step(g)
    np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="compact_state"):
        ob.Rprop(x.copy()).load_state_dict(sd)
    assert "compact_state=True" in repr(opt)


def test_compact_state_argument_checked():
    with pytest.raises(TypeError, match="compact_state"):
        ob.Rprop(np.zeros(3), compact_state="yes")


def test_core_rejects_float_prev_in_compact_mode():
    p, g, prev, step = (np.zeros(4, np.float32) for _ in range(4))
    groups = [(0.5, 1.2, 1e-6, 50.0, False)]
    with pytest.raises(TypeError, match=r"prevs\[0\].*int8"):
        ob._core.rprop("irprop-", [p], [g], [prev], [step], None, groups, [1], True, True)
    with pytest.raises(ValueError, match=r"prevs\[0\]: shape"):
        ob._core.rprop("irprop-", [p], [g], [np.zeros(3, np.int8)], [step], None, groups, [1],
                       True, True)
