"""What every optimizer shares: params forms, groups, state_dict, in-place updates, bad input."""

import pickle

import numpy as np
import pytest

import optbowl as ob
from optbowl import _registry
from optimizer_table import ROWS


def make(cls, params, **kw):
    return cls(params, **kw)


CLASSES = [ob.Rprop, ob.Adagrad]
#: one table row per public class of every registered rule
FIRST_ROWS = {c: next(row for row in ROWS if row.cls == c) for c in _registry.classes("class")}


@pytest.mark.parametrize("row", FIRST_ROWS.values(), ids=FIRST_ROWS.keys())
def test_in_place_on_the_callers_arrays(row):
    a, b = np.ones(4), np.ones((2, 2), np.float32)
    ida, idb = id(a), id(b)
    opt = row.make([a, b])
    row.step(opt, [np.full(4, 0.5), np.full((2, 2), 0.5, np.float32)])
    assert id(a) == ida and id(b) == idb
    assert np.all(a != 1) and np.all(b != 1)
    assert opt.param_groups[0]["params"][0] is a


@pytest.mark.parametrize("cls", CLASSES)
def test_single_array_and_single_grad(cls):
    x = np.ones(3)
    opt = cls(x, lr=0.5)
    opt.step(np.ones(3))
    np.testing.assert_allclose(x, 0.5, rtol=1e-9)


@pytest.mark.parametrize("cls", CLASSES)
def test_param_groups_have_their_own_hyper_parameters(cls):
    a, b = np.ones(3), np.ones(3)
    opt = cls([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    opt.step([np.ones(3), np.ones(3)])
    np.testing.assert_allclose(a, 0.9, rtol=1e-9)
    np.testing.assert_allclose(b, 0.5, rtol=1e-9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]


def test_live_lr_changes_adagrad():
    x = np.ones(1)
    opt = ob.Adagrad(x, lr=0.1)
    opt.step(np.ones(1))
    opt.param_groups[0]["lr"] = 0.0
    opt.step(np.ones(1))
    assert x[0] == pytest.approx(0.9)


@pytest.mark.parametrize("row", FIRST_ROWS.values(), ids=FIRST_ROWS.keys())
def test_none_grad_skips_the_parameter(row):
    a, b = np.ones(3), np.ones(3)
    opt = row.make([a, b])
    row.step(opt, [np.ones(3), None])
    assert np.all(b == 1) and 1 not in opt.state
    row.step(opt, [np.ones(3), np.ones(3)])
    assert opt.state[0]["step"] == 2 and opt.state[1]["step"] == 1
    a_before, b_before = a.copy(), b.copy()
    row.step(opt, [None, np.ones(3)])  # both have state now: a None still skips its parameter
    assert np.array_equal(a, a_before) and not np.array_equal(b, b_before)
    assert opt.state[0]["step"] == 2 and opt.state[1]["step"] == 2


def test_a_state_array_replaced_between_steps_is_the_one_stepped():
    x = np.ones(3)
    opt = ob.Rprop(x, lr=0.1)
    opt.step(np.ones(3))
    new_sizes = np.full(3, 0.25)
    opt.state[0]["step_size"] = new_sizes
    opt.step(np.ones(3))  # same sign: the new step sizes grow by eta_plus and move x
    np.testing.assert_array_equal(new_sizes, np.full(3, 0.25 * 1.2))
    np.testing.assert_allclose(x, 1.0 - 0.1 - 0.25 * 1.2)


@pytest.mark.parametrize(
    "cls,kw",
    [(ob.Rprop, {"variant": v}) for v in ("irprop-", "rprop-", "rprop+", "irprop+", "backtrack")]
    + [(ob.Adagrad, {"lr_decay": 0.1, "initial_accumulator_value": 0.2})],
)
def test_state_dict_round_trip_resumes_exactly(rng, cls, kw):
    def run(opt, params, grads_seq, losses):
        for g, loss in zip(grads_seq, losses):
            opt.step(g, loss=loss)

    params = [rng.standard_normal(5), rng.standard_normal((3, 4)).astype(np.float32)]
    grads_seq = [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(20)]
    losses = list(rng.standard_normal(20))
    straight = [p.copy() for p in params]
    run(cls(straight, lr=0.1, **kw), straight, grads_seq, losses)

    first = [p.copy() for p in params]
    opt = cls(first, lr=0.1, **kw)
    run(opt, first, grads_seq[:7], losses[:7])
    sd = pickle.loads(pickle.dumps(opt.state_dict()))
    resumed = [p.copy() for p in first]
    opt2 = cls(resumed, lr=0.1, **kw)
    opt2.load_state_dict(sd)
    run(opt2, resumed, grads_seq[7:], losses[7:])
    for a, b in zip(resumed, straight):
        np.testing.assert_array_equal(a, b)


def test_state_dict_is_a_copy():
    x = np.ones(2)
    opt = ob.Rprop(x)
    opt.step(np.ones(2))
    sd = opt.state_dict()
    opt.step(np.ones(2))
    assert np.all(sd["state"][0]["step_size"] == 0.01)
    assert np.all(opt.state[0]["step_size"] == 0.012)


def test_repr_shows_hyper_parameters():
    opt = ob.Rprop([np.zeros(10), np.zeros(5)], lr=0.1, variant="rprop+")
    r = repr(opt)
    assert "lr=0.1" in r and "etas=(0.5, 1.2)" in r and "variant='rprop+'" in r \
        and "15 parameters" in r
    r = repr(ob.Adagrad([{"params": [np.zeros(2)]}, {"params": [np.zeros(3)], "lr": 1.0}]))
    assert "group 1" in r and "lr=1.0" in r


# ----------------------------------------------------------------------------- bad input
BAD_HYPER = [
    (ob.Rprop, dict(lr=-1.0), ValueError, "lr"),
    (ob.Rprop, dict(lr=float("nan")), ValueError, "lr"),
    (ob.Rprop, dict(lr="1"), TypeError, "lr"),
    (ob.Rprop, dict(etas=(1.5, 1.2)), ValueError, "etas"),
    (ob.Rprop, dict(etas=(0.5, 0.9)), ValueError, "etas"),
    (ob.Rprop, dict(etas=0.5), TypeError, "etas"),
    (ob.Rprop, dict(step_sizes=(0.0, 1.0)), ValueError, "step_sizes"),
    (ob.Rprop, dict(step_sizes=(2.0, 1.0)), ValueError, "step_sizes"),
    (ob.Rprop, dict(variant="rprop"), ValueError, "variant"),
    (ob.Rprop, dict(maximize=1), TypeError, "maximize"),
    (ob.Adagrad, dict(lr=-0.1), ValueError, "lr"),
    (ob.Adagrad, dict(lr_decay=-0.1), ValueError, "lr_decay"),
    (ob.Adagrad, dict(weight_decay=float("inf")), ValueError, "weight_decay"),
    (ob.Adagrad, dict(initial_accumulator_value=-1.0), ValueError, "initial_accumulator_value"),
    (ob.Adagrad, dict(eps=-1e-10), ValueError, "eps"),
]


@pytest.mark.parametrize("cls,kw,exc,name", BAD_HYPER)
def test_bad_hyper_parameters(cls, kw, exc, name):
    with pytest.raises(exc, match=name):
        cls(np.zeros(3), **kw)


BAD_PARAMS = [
    (np.zeros(3, np.int64), TypeError, r"params\[0\]"),
    (np.zeros(3, ">f8"), TypeError, r"params\[0\]"),
    (np.zeros(3, np.clongdouble), TypeError, r"params\[0\]"),  # complex64/128: real views
    (np.zeros((3, 4))[:, ::2], ValueError, r"params\[0\].*contiguous"),
    ([1.0, 2.0], TypeError, r"params\[0\]"),
    ("abc", TypeError, "params"),
    ([], ValueError, "params"),
]


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("params,exc,match", BAD_PARAMS)
def test_bad_params(cls, params, exc, match):
    with pytest.raises(exc, match=match):
        cls([params] if isinstance(params, np.ndarray) else params)


@pytest.mark.parametrize("cls", CLASSES)
def test_read_only_and_shared_params_refused(cls):
    ro = np.zeros(3)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"params\[0\].*read-only"):
        cls(ro)
    a = np.zeros(10)
    with pytest.raises(ValueError, match="shares memory"):
        cls([a, a])
    with pytest.raises(ValueError, match="shares memory"):
        cls([a[:6], a[4:]])


def _bad_steps():
    p = [np.ones(4), np.ones((2, 3), np.float32)]
    good = [np.ones(4), np.ones((2, 3), np.float32)]
    ro = np.ones(4)
    ro.setflags(write=False)
    yield "count", p, good[:1], ValueError, "grads"
    yield "shape", p, [np.ones(5), good[1]], ValueError, r"grads\[0\].*shape"
    yield "dtype", p, [good[0], np.ones((2, 3))], TypeError, r"grads\[1\].*dtype"
    yield "int", p, [np.ones(4, np.int32), good[1]], TypeError, r"grads\[0\]"
    yield "object", p, [np.ones(4, object), good[1]], TypeError, r"grads\[0\]"
    yield "list", p, [[1.0, 1.0, 1.0, 1.0], good[1]], TypeError, r"grads\[0\]"
    yield "strided", p, [np.ones(8)[::2], good[1]], ValueError, r"grads\[0\].*contiguous"
    yield "alias", p, "alias", ValueError, r"grads\[0\].*shares memory"
    yield "big-endian", p, [np.ones(4, ">f8"), good[1]], TypeError, r"grads\[0\]"
    yield "not-a-list", p, 3.0, TypeError, "grads"
    yield "read-only-ok", p, [ro, good[1]], None, None  # grads may be read-only


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("case", list(_bad_steps()), ids=lambda c: c[0])
def test_bad_step_changes_nothing(cls, case):
    _, params, grads, exc, match = case
    params = [p.copy() for p in params]
    if isinstance(grads, str):  # a gradient that is the parameter itself
        grads = [params[0], np.ones((2, 3), np.float32)]
    opt = cls(params, lr=0.1)
    opt.step([np.full_like(p, 0.5) for p in params])
    before_p = [p.copy() for p in params]
    before_s = {i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                for i, s in opt.state.items()}
    if exc is None:
        opt.step(grads)
        return
    with pytest.raises(exc, match=match):
        opt.step(grads)
    for a, b in zip(params, before_p):
        np.testing.assert_array_equal(a, b)
    for i, s in before_s.items():
        for k, v in s.items():
            np.testing.assert_array_equal(opt.state[i][k], v)


@pytest.mark.parametrize("cls", CLASSES)
def test_first_step_rejected_leaves_no_state(cls):
    opt = cls([np.ones(3)])
    with pytest.raises(TypeError):
        opt.step([np.ones(3, np.float32)])
    assert opt.state == {}


def test_hyper_parameter_broken_after_construction_is_caught_at_step():
    x = np.ones(3)
    opt = ob.Adagrad(x)
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.step(np.ones(3))
    np.testing.assert_array_equal(x, 1.0)


@pytest.mark.parametrize("cls", CLASSES)
def test_load_state_dict_refuses_bad_input(cls):
    x = np.ones(3)
    opt = cls(x)
    opt.step(np.ones(3), loss=1.0)
    sd = opt.state_dict()
    other = (ob.Adagrad if cls is ob.Rprop else ob.Rprop)(np.ones(3))
    other.step(np.ones(3), loss=1.0)
    with pytest.raises(ValueError):
        opt.load_state_dict(other.state_dict())
    bad = opt.state_dict()
    name = next(k for k, v in bad["state"][0].items() if isinstance(v, np.ndarray))
    bad["state"][0][name] = np.ones(4)
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)
    bad["state"][0][name] = np.ones(3, np.float32)
    with pytest.raises(TypeError, match="dtype"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    del bad["param_groups"]
    with pytest.raises(ValueError, match="keys"):
        opt.load_state_dict(bad)
    # nothing changed
    after = opt.state_dict()
    for k in sd["state"][0]:
        np.testing.assert_array_equal(after["state"][0][k], sd["state"][0][k])


def test_zero_d_and_empty_arrays_work():
    a, b = np.array(2.0), np.zeros((0, 3))
    for cls in CLASSES:
        opt = cls([a, b], lr=0.5)
        opt.step([np.array(1.0), np.zeros((0, 3))])
    assert a.shape == () and a < 2.0


def test_threads_setting():
    n = ob.get_num_threads()
    ob.set_num_threads(1)
    assert ob.get_num_threads() == 1
    ob.set_num_threads(0)
    assert ob.get_num_threads() == n
    with pytest.raises(ValueError, match="n"):
        ob.set_num_threads(-1)
