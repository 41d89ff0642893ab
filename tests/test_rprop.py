"""Rprop: every variant against the NumPy reference; irprop- against torch, bit for bit."""

import numpy as np
import pytest

import optbowl as ob
import reference as ref

VARIANTS = ["irprop-", "rprop-", "rprop+", "irprop+", "backtrack"]
SHAPES = [(1,), (7,), (33, 5), (), (3, 2, 2), (0,)]


def _random_grads(rng, params, zero_frac=0.1):
    gs = []
    for p in params:
        g = rng.standard_normal(p.shape).astype(p.dtype)
        g[rng.random(p.shape) < zero_frac] = 0
        gs.append(g)
    return gs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("maximize", [False, True])
def test_matches_reference(rng, dtype, variant, maximize):
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    expect = [p.copy() for p in params]
    kw = dict(etas=(0.4, 1.3), step_sizes=(1e-3, 0.7), maximize=maximize)
    opt = ob.Rprop(params, lr=0.05, variant=variant, **kw)
    states = [ref.rprop_init(p, 0.05, variant) for p in expect]
    prev_loss = None
    for k in range(60):
        # gradients of a bowl plus noise: sign changes happen often
        grads = [g + 0.5 * p for g, p in zip(_random_grads(rng, params), params)]
        loss = float(rng.standard_normal())
        opt.step(grads, loss=loss)
        increased = prev_loss is not None and loss > prev_loss
        prev_loss = loss
        for p, g, st in zip(expect, grads, states):
            ref.rprop_step(p, g, st, variant=variant, loss_increased=increased, **kw)
    for got, want in zip(params, expect):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("loss_increased", [False, True])
def test_every_special_value_combination_matches_the_reference(dtype, variant, loss_increased,
                                                               each_isa):
    """Each variant's vector loop on every combination of a gradient, a previous gradient
    (backtrack: a direction) and a step size drawn from signed zeros, subnormals, the
    bounds, the largest numbers, infinities and NaNs."""
    info = np.finfo(dtype)
    tiny = float(info.smallest_subnormal)
    specials = [0.0, -0.0, 1.0, -1.0, 0.5, -2.0, tiny, -tiny, float(info.max), -float(info.max),
                np.inf, -np.inf, np.nan]
    prevs = [-1.0, 0.0, 1.0] if variant == "backtrack" else specials
    steps = [0.0, tiny, 1e-3, 0.1, 0.7, 5.0, np.inf, np.nan]
    g, prev, step = (a.ravel().astype(dtype) for a in np.meshgrid(specials, prevs, steps))
    p = np.where(np.arange(g.size) % 2 == 0, 0.25, -1e30).astype(dtype)
    update = np.resize(np.array([0.0, -0.1, 3.0, np.nan], dtype), g.size)
    name = "direction" if variant == "backtrack" else "prev"
    state = {name: prev.copy(), "step_size": step.copy()}
    if variant in ("rprop+", "irprop+"):
        state["update"] = update.copy()
    expect = p.copy()
    kw = dict(etas=(0.4, 1.3), maximize=False)
    ob.functional.rprop([p], [g], [prev], [step], [update] if "update" in state else None,
                        step_size_bounds=(1e-3, 0.7), variant=variant,
                        loss_increased=loss_increased, **kw)
    ref.rprop_step(expect, g, state, variant=variant, step_sizes=(1e-3, 0.7),
                   loss_increased=loss_increased, **kw)
    np.testing.assert_array_equal(p, expect)  # a NaN's sign is not compared
    np.testing.assert_array_equal(prev, state[name])
    np.testing.assert_array_equal(step, state["step_size"])
    if "update" in state:
        np.testing.assert_array_equal(update, state["update"])


def test_lengths_across_chunks_and_threads(rng):
    # lengths that are not multiples of any vector width or chunk; big enough to thread
    n = ob._core.chunk_size * 3 + 17
    for variant in VARIANTS:
        params = [rng.standard_normal(n), rng.standard_normal(1023).astype(np.float64)]
        expect = [p.copy() for p in params]
        opt = ob.Rprop(params, lr=0.1, variant=variant)
        states = [ref.rprop_init(p, 0.1, variant) for p in expect]
        for _ in range(3):
            grads = _random_grads(rng, params)
            opt.step(grads, loss=1.0)
            for p, g, st in zip(expect, grads, states):
                ref.rprop_step(p, g, st, variant=variant, loss_increased=False)
        for got, want in zip(params, expect):
            np.testing.assert_array_equal(got, want)


def test_backtrack_semantics():
    # f(x) = x^2 from 1 with lr 0.75: moves to 0.25, then overshoots? no: same sign, grows.
    x = np.array([1.0, 5.0, 0.0])
    opt = ob.Rprop(x, lr=0.75, etas=(0.5, 2.0), variant="backtrack")
    opt.step(np.array([2.0, 10.0, 0.0]))
    # first step moves by lr; zero grad: untouched
    np.testing.assert_array_equal(x, [0.25, 4.25, 0.0])
    opt.step(np.array([0.5, 8.5, 0.0]))                  # same sign: step 1.5
    np.testing.assert_array_equal(x, [-1.25, 2.75, 0.0])
    # element 0 flips: back to 0.25, step 0.75, forward to -0.5
    opt.step(np.array([-2.5, 5.5, 0.0]))
    np.testing.assert_array_equal(x, [-0.5, -0.25, 0.0])
    st = opt.state[0]
    np.testing.assert_array_equal(st["direction"], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(st["step_size"], [0.75, 3.0, 0.75])


def test_rprop_plus_undoes_previous_move():
    x = np.array([0.0])
    opt = ob.Rprop(x, lr=1.0, etas=(0.5, 2.0), variant="rprop+")
    opt.step(np.array([1.0]))   # x = -1
    opt.step(np.array([1.0]))   # step 2: x = -3
    opt.step(np.array([-1.0]))  # sign change: undo the last move (x = -1), step 1
    np.testing.assert_array_equal(x, [-1.0])
    opt.step(np.array([-1.0]))  # prev was zeroed: no adaptation, move by 1
    np.testing.assert_array_equal(x, [0.0])


def test_irprop_plus_undoes_only_when_loss_rises():
    for loss, expect in [(0.5, -3.0), (2.0, -1.0)]:
        x = np.array([0.0])
        opt = ob.Rprop(x, lr=1.0, etas=(0.5, 2.0), variant="irprop+")
        opt.step(np.array([1.0]), loss=3.0)
        opt.step(np.array([1.0]), loss=1.0)
        opt.step(np.array([-1.0]), loss=loss)
        np.testing.assert_array_equal(x, [expect])


def test_irprop_plus_needs_loss():
    x = np.zeros(3)
    opt = ob.Rprop(x, variant="irprop+")
    with pytest.raises(ValueError, match="loss"):
        opt.step(np.ones(3))
    assert opt.state == {}


# ----------------------------------------------------------------------------- torch parity
torch = None


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize(
    "hp",
    [
        dict(lr=0.01),
        dict(lr=0.3, etas=(0.3, 1.7), step_sizes=(1e-4, 0.2)),  # lr above step_max
        dict(lr=1e-8, step_sizes=(1e-6, 1.0), maximize=True),   # lr below step_min
    ],
)
def test_irprop_minus_bit_identical_to_torch(rng, dtype, foreach, hp):
    torch = _torch()
    shapes = [(1000,), (37, 13), (3,), (), (65537,)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt = ob.Rprop(params, **hp)
    topt = torch.optim.Rprop(tparams, foreach=foreach, **hp)
    for k in range(60):
        grads = _random_grads(rng, params, zero_frac=0.2)
        for g in grads:
            if g.size > 10:
                g.flat[::13] = np.nan
                g.flat[5] = np.inf
        for t, g in zip(tparams, grads):
            t.grad = torch.from_numpy(g.copy())
        topt.step()
        opt.step(grads)
        for p, t in zip(params, tparams):
            np.testing.assert_array_equal(p, t.detach().numpy())
    for i, t in enumerate(tparams):
        st = topt.state[t]
        np.testing.assert_array_equal(opt.state[i]["prev"], st["prev"].numpy())
        np.testing.assert_array_equal(opt.state[i]["step_size"], st["step_size"].numpy())


def test_nan_gradient_policy_matches_torch():
    torch = _torch()
    for dtype in (np.float32, np.float64):
        x = np.array([1.0, 2.0, 3.0], dtype)
        t = torch.tensor(x.copy(), requires_grad=True)
        opt, topt = ob.Rprop(x, lr=0.1), torch.optim.Rprop([t], lr=0.1)
        for g in ([1.0, np.nan, -1.0], [np.nan, 1.0, 1.0], [1.0, 1.0, 1.0]):
            g = np.array(g, dtype)
            t.grad = torch.from_numpy(g.copy())
            topt.step()
            opt.step(g)
            np.testing.assert_array_equal(x, t.detach().numpy())
            np.testing.assert_array_equal(opt.state[0]["prev"], topt.state[t]["prev"].numpy())
