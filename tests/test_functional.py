"""optbowl.functional: stateless calls equal the classes step for step."""

import family
import numpy as np
import pytest

import optbowl as ob
from optbowl import _registry
from optbowl import functional as F
from optimizer_table import functional_call


def _pair(rng, dtype=np.float64):
    params = [rng.standard_normal((5, 3)).astype(dtype), rng.standard_normal(4).astype(dtype)]
    return params, [p.copy() for p in params]


CASES = [
    (
        ob.SGD,
        dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda p, g, st, t, hp: F.sgd(p, g, st["momentum_buffer"], step=t, **hp),
        ("momentum_buffer",),
    ),
    (
        ob.Adam,
        dict(lr=0.01, amsgrad=True, weight_decay=0.1),
        lambda p, g, st, t, hp: F.adam(
            p, g, st["exp_avg"], st["exp_avg_sq"], st["max_exp_avg_sq"], step=t, **hp
        ),
        ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    ),
    (
        ob.RMSprop,
        dict(lr=0.01, centered=True, momentum=0.5),
        lambda p, g, st, t, hp: F.rmsprop(
            p, g, st["square_avg"], st["grad_avg"], st["momentum_buffer"], **hp
        ),
        ("square_avg", "grad_avg", "momentum_buffer"),
    ),
    (
        ob.QuickProp,
        dict(lr=0.05, max_growth=1.5),
        lambda p, g, st, t, hp: F.quickprop(p, g, st["prev_grad"], st["prev_step"], **hp),
        ("prev_grad", "prev_step"),
    ),
    (
        ob.Adagrad,
        dict(lr=0.1, lr_decay=0.01, weight_decay=0.1),
        lambda p, g, st, t, hp: F.adagrad(p, g, st["sum"], step=t, **hp),
        ("sum",),
    ),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, hp, call, names", CASES, ids=[c[0].__name__ for c in CASES])
def test_functional_equals_class(rng, dtype, cls, hp, call, names):
    params, fparams = _pair(rng, dtype)
    opt = cls(params, **hp)
    state = {name: [np.zeros_like(p) for p in fparams] for name in names}
    for t in range(1, 8):
        grads = family.grads_for(params, rng)
        opt.step(grads)
        call(fparams, grads, state, t, hp)
        for a, b in zip(params, fparams):
            np.testing.assert_array_equal(a, b)
    for i in range(2):
        for name in names:
            np.testing.assert_array_equal(opt.state[i][name], state[name][i])


@pytest.mark.parametrize("variant", ["irprop-", "rprop+", "backtrack"])
def test_rprop_functional_equals_class(rng, variant):
    params, fparams = _pair(rng)
    opt = ob.Rprop(params, lr=0.1, etas=(0.4, 1.3), step_sizes=(1e-4, 2.0), variant=variant)
    prevs = [np.zeros_like(p) for p in fparams]
    sizes = [np.full_like(p, 0.1) for p in fparams]
    updates = [np.zeros_like(p) for p in fparams] if variant == "rprop+" else None
    for _ in range(10):
        grads = family.grads_for(params, rng)
        opt.step(grads)
        F.rprop(
            fparams,
            grads,
            prevs,
            sizes,
            updates,
            etas=(0.4, 1.3),
            step_size_bounds=(1e-4, 2.0),
            variant=variant,
        )
        for a, b in zip(params, fparams):
            np.testing.assert_array_equal(a, b)


def test_per_tensor_hyper_parameters_equal_param_groups(rng):
    params, fparams = _pair(rng)
    opt = ob.Adam(
        [{"params": [params[0]], "lr": 0.1, "betas": (0.5, 0.9)}, {"params": [params[1]]}], lr=0.01
    )
    m = [np.zeros_like(p) for p in fparams]
    v = [np.zeros_like(p) for p in fparams]
    for t in range(1, 5):
        grads = family.grads_for(params, rng)
        opt.step(grads)
        F.adam(fparams, grads, m, v, step=t, lr=[0.1, 0.01], betas=[(0.5, 0.9), (0.9, 0.999)])
    for a, b in zip(params, fparams):
        np.testing.assert_array_equal(a, b)


def test_single_arrays_and_optional_state():
    x = np.array([1.0, -2.0])
    F.sgd(x, 2 * x, step=1, lr=0.25)  # no buffers needed without momentum
    np.testing.assert_array_equal(x, [0.5, -1.0])
    sq = np.zeros(2)
    F.rmsprop(x, 2 * x, sq, lr=0.1, alpha=0.0)  # grad_avgs / momentum_buffers unused
    np.testing.assert_allclose(x, [0.4, -0.9])


def test_sparse_adagrad_through_functional():
    p, s = np.ones((3, 2)), np.zeros((3, 2))
    F.adagrad([p], [ob.SparseRows([1], np.ones((1, 2)))], [s], step=1, lr=0.5)
    np.testing.assert_allclose(p, [[1, 1], [0.5, 0.5], [1, 1]], rtol=1e-9)


def test_arguments_are_checked_by_name():
    x, buf = np.ones(2), np.zeros(2)
    with pytest.raises(ValueError, match="lr"):
        F.sgd([x], [x.copy()], [buf], step=1, lr=-1.0)
    with pytest.raises(ValueError, match="momentum_buffers"):
        F.sgd([x], [x.copy()], None, step=1, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="lr"):
        F.sgd([x], [x.copy()], [buf], step=1, lr=[0.1, 0.2])
    with pytest.raises(ValueError, match="step"):
        F.adam([x], [x.copy()], [np.zeros(2)], [np.zeros(2)], step=0)
    with pytest.raises(ValueError, match="max_exp_avg_sqs"):
        F.adam([x], [x.copy()], [np.zeros(2)], [np.zeros(2)], step=1, amsgrad=True)
    with pytest.raises(ValueError, match="grad_avgs"):
        F.rmsprop([x], [x.copy()], [np.zeros(2)], centered=True)
    with pytest.raises(ValueError, match="betas"):
        F.adam([x], [x.copy()], [np.zeros(2)], [np.zeros(2)], step=1, betas=(1.5, 0.9))
    with pytest.raises(ValueError, match="max_growth"):
        F.quickprop([x], [x.copy()], [np.zeros(2)], [np.zeros(2)], max_growth=0.0)
    with pytest.raises(ValueError, match="etas"):
        F.rprop([x], [x.copy()], [np.zeros(2)], [np.ones(2)], etas=(1.5, 1.2))
    with pytest.raises(ValueError, match="grads"):
        F.sgd([x], [x.copy(), x.copy()], [buf], step=1, lr=0.1)
    with pytest.raises(TypeError, match=r"exp_avgs\[0\]"):
        F.adam([x], [x.copy()], [np.zeros(2, np.float32)], [np.zeros(2)], step=1)
    np.testing.assert_array_equal(x, 1.0)


# ------------------------------------------------------------- per-tensor lists, names
def _two_tensor_calls(**hyper):
    """Every function over two float64 tensors, with per-tensor ``hyper``."""
    params = [np.ones(3), np.ones(2)]
    grads = [np.full(3, 0.5), np.full(2, 0.5)]
    return params, {
        r.name: lambda r=r, **kw: functional_call(r, params, grads, **kw)
        for r in _registry.rules("functional")
    }


# (function, per-tensor hyper-parameter, a second value equal to the first but not of its kind)
EQUAL_BUT_WRONG = [
    (fn, name, first, second)
    for fn in _registry.names("functional")
    for name, first, second in [("maximize", False, 0), ("maximize", True, 1)]
] + [
    ("adagrad", "lr", 1.0, True),
    ("sgd", "lr", 1.0, True),
    ("sgd", "momentum", 0.0, False),
    ("sgd", "nesterov", False, 0.0),
    ("quickprop", "lr", 1.0, True),
    ("rmsprop", "centered", False, 0),
    ("rmsprop", "alpha", 1.0, True),
    ("adam", "amsgrad", False, 0),
    ("adam", "eps", 0.0, False),
    ("adam", "decoupled_weight_decay", False, 0),
]


@pytest.mark.parametrize("fn, name, first, second", EQUAL_BUT_WRONG,
                         ids=[f"{f}-{n}-{b!r}" for f, n, _, b in EQUAL_BUT_WRONG])
def test_each_per_tensor_value_is_checked_even_if_it_equals_the_last(fn, name, first, second):
    params, calls = _two_tensor_calls()
    before = [p.copy() for p in params]
    with pytest.raises(TypeError, match="^" + name):
        calls[fn](**{name: [first, second]})
    assert all(np.array_equal(p, b) for p, b in zip(params, before))
    calls[fn](**{name: [first, first]})  # the same value twice is fine


def test_rprop_names_its_own_arguments():
    params, grads = [np.ones(2), np.ones(2)], [np.ones(2), np.ones(2)]
    prevs = [np.zeros(2), np.zeros(2)]
    with pytest.raises(TypeError, match=r"^step_sizes\[1\]: expected a numpy\.ndarray"):
        F.rprop(params, grads, prevs, [np.full(2, 0.1), [0.1, 0.1]])
    with pytest.raises(ValueError, match=r"^step_sizes\[1\]: shape"):
        F.rprop(params, grads, prevs, [np.full(2, 0.1), np.full(3, 0.1)])
    with pytest.raises(ValueError, match=r"^step_sizes: expected 2 arrays"):
        F.rprop(params, grads, prevs, [np.full(2, 0.1)])
    with pytest.raises(ValueError, match=r"^step_size_bounds: expected 0 < step_min"):
        F.rprop(params, grads, prevs, [np.full(2, 0.1)] * 2, step_size_bounds=(1.0, 0.5))
    with pytest.raises(ValueError, match=r"^step_size_bounds\[0\]: must not be NaN"):
        F.rprop(params, grads, prevs, [np.full(2, 0.1), np.full(2, 0.1)],
                step_size_bounds=(float("nan"), 0.5))
