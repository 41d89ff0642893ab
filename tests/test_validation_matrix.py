"""Every optimizer x every bad input: a loud TypeError/ValueError naming the argument,
and nothing changed, so the next good step is as if the bad call never happened.

The optimizers come from optimizer_table.ROWS; the cases below are written once for all.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from optimizer_table import ROWS, assert_same_bits

NAN, INF = float("nan"), float("inf")


def _params():
    """Three parameters: two float64 of the same shape, one float32."""
    return [np.linspace(-1, 1, 5), np.linspace(2, -2, 6).astype(np.float32).reshape(2, 3),
            np.linspace(0.5, -0.3, 5)]


def _grads(params, k):
    return [np.cos(np.arange(p.size).reshape(p.shape) * 1.7 + k).astype(p.dtype) for p in params]


def _warm(row, steps=2):
    params = _params()
    opt = row.make(params)
    for k in range(steps):
        row.step(opt, _grads(params, k), loss=float(k % 2))
    return opt, params


def _misaligned(shape, dtype):
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    buf = np.zeros(n * dtype.itemsize + 1, np.uint8)
    a = buf[1:].view(dtype).reshape(shape)
    assert not a.flags.aligned
    return a


def _big_endian(a):
    return a.astype(a.dtype.newbyteorder(">" if np.little_endian else "<"))


def _nth(grads, i, value):
    out = list(grads)
    out[i] = value
    return out


# ------------------------------------------------------------------------- bad steps
# Each case: (id, make(opt, params, grads, row) -> (bad_call, undo or None), exception, regex)
def _call(row, opt, grads, **kw):
    return lambda: opt.step(grads, **kw) if kw or not row.needs_loss else opt.step(grads, loss=1.0)


STEP_CASES = [
    ("too-few-grads", lambda o, p, g, r: (_call(r, o, g[:-1]), None), ValueError, r"grads"),
    ("too-many-grads", lambda o, p, g, r: (_call(r, o, g + [g[0].copy()]), None),
     ValueError, r"grads"),
    ("no-grads", lambda o, p, g, r: (_call(r, o, []), None), ValueError, r"grads"),
    ("single-None", lambda o, p, g, r: (_call(r, o, None), None), ValueError, r"grads"),
    ("single-array-for-many", lambda o, p, g, r: (_call(r, o, g[0]), None), ValueError, r"grads"),
    ("shape-transposed", lambda o, p, g, r: (
        _call(r, o, _nth(g, 1, np.ones((3, 2), np.float32))), None),
     ValueError, r"grads\[1\].*shape"),
    ("shape-flattened", lambda o, p, g, r: (_call(r, o, _nth(g, 1, np.ones(6, np.float32))), None),
     ValueError, r"grads\[1\].*shape"),
    ("shape-longer", lambda o, p, g, r: (_call(r, o, _nth(g, 2, np.ones(6))), None),
     ValueError, r"grads\[2\].*shape"),
    ("dtype-f64-for-f32", lambda o, p, g, r: (_call(r, o, _nth(g, 1, np.ones((2, 3)))), None),
     TypeError, r"grads\[1\].*dtype"),
    ("dtype-f32-for-f64", lambda o, p, g, r: (
        _call(r, o, _nth(g, 0, np.ones(5, np.float32))), None),
     TypeError, r"grads\[0\].*dtype"),
    ("dtype-float16", lambda o, p, g, r: (_call(r, o, _nth(g, 0, np.ones(5, np.float16))), None),
     TypeError, r"grads\[0\]"),
    ("dtype-int64", lambda o, p, g, r: (_call(r, o, _nth(g, 0, np.ones(5, np.int64))), None),
     TypeError, r"grads\[0\]"),
    ("dtype-uint8", lambda o, p, g, r: (_call(r, o, _nth(g, 2, np.ones(5, np.uint8))), None),
     TypeError, r"grads\[2\]"),
    ("dtype-bool", lambda o, p, g, r: (_call(r, o, _nth(g, 0, np.ones(5, bool))), None),
     TypeError, r"grads\[0\]"),
    ("dtype-object", lambda o, p, g, r: (_call(r, o, _nth(g, 0, np.ones(5, object))), None),
     TypeError, r"grads\[0\]"),
    ("dtype-complex128", lambda o, p, g, r: (
        _call(r, o, _nth(g, 0, np.ones(5, np.complex128))), None),
     TypeError, r"grads\[0\]"),
    ("dtype-complex64", lambda o, p, g, r: (
        _call(r, o, _nth(g, 1, np.ones((2, 3), np.complex64))), None),
     TypeError, r"grads\[1\]"),
    ("dtype-str", lambda o, p, g, r: (_call(r, o, _nth(g, 0, np.array(list("abcde")))), None),
     TypeError, r"grads\[0\]"),
    ("big-endian", lambda o, p, g, r: (_call(r, o, _nth(g, 0, _big_endian(g[0]))), None),
     TypeError, r"grads\[0\].*byte order"),
    ("big-endian-f32", lambda o, p, g, r: (_call(r, o, _nth(g, 1, _big_endian(g[1]))), None),
     TypeError, r"grads\[1\]"),
    ("non-contiguous", lambda o, p, g, r: (_call(r, o, _nth(g, 0, np.ones(10)[::2])), None),
     ValueError, r"grads\[0\].*contiguous"),
    ("reversed", lambda o, p, g, r: (_call(r, o, _nth(g, 0, np.ones(5)[::-1])), None),
     ValueError, r"grads\[0\]: must be contiguous in some order"),
    ("overlapping-strides", lambda o, p, g, r: (_call(r, o, _nth(
        g, 1, np.lib.stride_tricks.as_strided(np.ones(4, np.float32), (2, 3), (4, 4)))), None),
     ValueError, r"grads\[1\]: must be contiguous in some order"),
    # a dense gradient whose strides are not its parameter's (params[1] is C-ordered)
    ("fortran-order", lambda o, p, g, r: (
        _call(r, o, _nth(g, 1, np.asfortranarray(np.ones((2, 3), np.float32)))), None),
     ValueError, r"grads\[1\]: strides \(1, 2\) \(in elements\) differ from params\[1\]'s"),
    ("transposed-view", lambda o, p, g, r: (
        _call(r, o, _nth(g, 1, np.ones((3, 2), np.float32).T)), None),
     ValueError, r"grads\[1\]: strides \(1, 2\) \(in elements\) differ from params\[1\]'s"),
    ("misaligned", lambda o, p, g, r: (
        _call(r, o, _nth(g, 0, _misaligned((5,), np.float64))), None),
     ValueError, r"grads\[0\].*aligned"),
    ("grad-is-its-param", lambda o, p, g, r: (_call(r, o, _nth(g, 0, p[0])), None),
     ValueError, r"shares memory"),
    ("grad-is-another-param", lambda o, p, g, r: (_call(r, o, _nth(g, 2, p[0])), None),
     ValueError, r"grads\[2\].*shares memory|shares memory with grads\[2\]"),
    ("grad-is-a-view-of-a-param", lambda o, p, g, r: (_call(r, o, _nth(g, 1, p[1][:, :])), None),
     ValueError, r"shares memory"),
    ("grad-is-optimizer-state", lambda o, p, g, r: (
        _call(r, o, _nth(g, 0, next(v for v in o.state[0].values()
                                    if isinstance(v, np.ndarray)))), None),
     ValueError, r"shares memory"),
    ("grad-is-a-list", lambda o, p, g, r: (_call(r, o, _nth(g, 0, g[0].tolist())), None),
     TypeError, r"grads\[0\].*ndarray"),
    ("grad-is-a-float", lambda o, p, g, r: (_call(r, o, _nth(g, 0, 1.0)), None),
     TypeError, r"grads\[0\]"),
    ("grad-is-a-string", lambda o, p, g, r: (_call(r, o, _nth(g, 2, "grad")), None),
     TypeError, r"grads\[2\]"),
    ("grads-is-a-string", lambda o, p, g, r: (_call(r, o, "grads"), None), TypeError, r"grads"),
    ("grads-is-an-int", lambda o, p, g, r: (_call(r, o, 3), None), TypeError, r"grads"),
    ("grads-is-a-dict", lambda o, p, g, r: (_call(r, o, dict(enumerate(g))), None), TypeError,
     r"grads: expected a sequence"),
    ("grads-is-a-set", lambda o, p, g, r: (_call(r, o, {1, 2, 3}), None), TypeError,
     r"grads: expected a sequence"),
]


def _read_only_param(o, p, g, r):
    p[1].flags.writeable = False
    return _call(r, o, g), lambda: p[1].flags.__setattr__("writeable", True)


STEP_CASES.append(("param-made-read-only", _read_only_param, ValueError, r"params\[1\].*read-only"))


def _loss_cases(row):
    if not row.needs_loss:
        return []
    return [
        ("loss-missing", lambda o, p, g, r: (lambda: o.step(g), None), ValueError, r"loss"),
        ("loss-nan", lambda o, p, g, r: (lambda: o.step(g, loss=NAN), None), ValueError, r"loss"),
        ("loss-string", lambda o, p, g, r: (lambda: o.step(g, loss="1.0"), None), TypeError,
         r"loss"),
        ("loss-array", lambda o, p, g, r: (lambda: o.step(g, loss=np.ones(2)), None), TypeError,
         r"loss"),
    ]


def _hyper_at_step_cases(row):
    """A hyper-parameter broken in param_groups after construction is caught by step()."""
    out = []
    for k, (over, exc, name) in enumerate(row.bad_hyper):
        if name == "variant" or set(over) - set(row.make(_params()).param_groups[0]):
            continue

        def make(o, p, g, r, over=over):
            saved = {key: o.param_groups[-1][key] for key in over}
            o.param_groups[-1].update(over)
            return _call(r, o, g), lambda: o.param_groups[-1].update(saved)

        out.append((f"group-{name}-{k}", make, exc, re.escape(name)))
    return out


def _step_matrix():
    for row in ROWS:
        for case in STEP_CASES + _loss_cases(row) + _hyper_at_step_cases(row):
            yield pytest.param(row, *case, id=f"{row.name}-{case[0]}")


def _assert_nothing_changed_and_resumes(row, opt, params, before_params, before_state, twin,
                                        twin_params):
    for a, b in zip(params, before_params):
        assert_same_bits(a, b, "params")
    assert_same_bits(opt.state_dict(), before_state, "state_dict")
    # the next good step gives what it gives on an optimizer that never saw the bad call
    for k in (5, 6):
        row.step(opt, _grads(params, k), loss=1.0 + k)
        row.step(twin, _grads(twin_params, k), loss=1.0 + k)
    for a, b in zip(params, twin_params):
        assert_same_bits(a, b, "params after resuming")
    assert_same_bits(opt.state_dict(), twin.state_dict(), "state after resuming")


@pytest.mark.parametrize("row,case,make,exc,match", list(_step_matrix()))
@pytest.mark.parametrize("warm", [0, 2], ids=["fresh", "warm"])
def test_bad_step_is_refused_and_changes_nothing(row, case, make, exc, match, warm):
    if warm == 0 and case == "grad-is-optimizer-state":
        pytest.skip("no state before the first step")
    opt, params = _warm(row, warm)
    twin, twin_params = _warm(row, warm)
    if warm == 0:
        # a first step that fails must not leave state behind either
        assert opt.state == {}
    before_params = [p.copy() for p in params]
    before_state = opt.state_dict()
    call, undo = make(opt, params, _grads(params, 9), row)
    try:
        with pytest.raises(exc, match=match):
            call()
    finally:
        if undo is not None:
            undo()
    _assert_nothing_changed_and_resumes(row, opt, params, before_params, before_state, twin,
                                        twin_params)


# ------------------------------------------------------------------------- bad construction
def _bad_params():
    ro = np.ones(4)
    ro.flags.writeable = False
    shared = np.ones(10)
    same = np.ones(4)
    return [
        ("int64", [np.ones(3, np.int64)], TypeError, r"params\[0\]"),
        ("int32-second", [np.ones(3), np.ones(3, np.int32)], TypeError, r"params\[1\]"),
        ("bool", [np.ones(3, bool)], TypeError, r"params\[0\]"),
        ("object", [np.ones(3, object)], TypeError, r"params\[0\]"),
        ("uint16", [np.ones(3, np.uint16)], TypeError, r"params\[0\]"),  # float16, complex: stepped
        ("big-endian", [_big_endian(np.ones(3))], TypeError, r"params\[0\].*byte order"),
        ("non-contiguous", [np.ones(10)[::2]], ValueError, r"params\[0\].*contiguous"),
        ("reversed", [np.ones(4)[::-1]], ValueError, r"params\[0\]: must be contiguous in some"),
        ("overlapping-strides", [np.lib.stride_tricks.as_strided(np.ones(4), (2, 3), (8, 8))],
         ValueError, r"params\[0\]: must be contiguous in some"),
        ("transposed-views-of-one-array", [shared.reshape(2, 5), shared.reshape(2, 5).T],
         ValueError, r"params\[1\].*shares memory"),
        ("misaligned", [_misaligned((4,), np.float64)], ValueError, r"params\[0\].*aligned"),
        ("read-only", [np.ones(2), ro], ValueError, r"params\[1\].*read-only"),
        ("same-array-twice", [same, same], ValueError, r"params\[1\].*shares memory"),
        ("overlapping-views", [shared[:6], shared[4:]], ValueError, r"params\[1\].*shares memory"),
        ("view-of-the-other", [shared, shared.reshape(2, 5)[1]], ValueError, r"shares memory"),
        ("list-of-lists", [[1.0, 2.0]], TypeError, r"params\[0\]"),
        ("a-float", 1.0, TypeError, r"params"),
        ("a-string", "params", TypeError, r"params"),
        ("a-dict", {"params": [np.ones(2)]}, TypeError, r"params"),
        ("empty-list", [], ValueError, r"params"),
        ("group-without-params", [{"lr": 0.1}], TypeError, r"param_group"),
        ("group-unknown-key", [{"params": [np.ones(2)], "learning_rate": 0.1}], ValueError,
         r"param_group"),
        ("group-empty", [{"params": []}], ValueError, r"params"),
        ("groups-share-an-array", [{"params": [same]}, {"params": [same]}], ValueError,
         r"shares memory"),
        ("mixed-arrays-and-groups", [np.ones(2), {"params": [np.ones(2)]}], TypeError, r"params"),
    ]


def _refuses_complex(row):
    """Whether torch has no complex form of the row's rule (QuickProp, Rprop's own variants)."""
    return row.cls == "QuickProp" or row.kwargs.get("variant", "irprop-") != "irprop-"


def _construction_matrix():
    for row in ROWS:
        cases = _bad_params()
        if _refuses_complex(row):
            cases.append(("complex", [np.ones(3, np.complex128)], TypeError,
                          r"params\[0\]: a complex128 array"))
        for name, params, exc, match in cases:
            yield pytest.param(row, params, {}, exc, match, id=f"{row.name}-params-{name}")
        for k, (over, exc, name) in enumerate(row.bad_hyper):
            yield pytest.param(row, None, over, exc, re.escape(name),
                               id=f"{row.name}-hyper-{name}-{k}")


@pytest.mark.parametrize("row,params,over,exc,match", list(_construction_matrix()))
def test_bad_construction_is_refused(row, params, over, exc, match):
    params = _params() if params is None else params
    arrays = [a for a in (params if isinstance(params, list) else [])
              if isinstance(a, np.ndarray)]
    before = [a.copy() for a in arrays]
    with pytest.raises(exc, match=match):
        row.make(params, **over)
    for a, b in zip(arrays, before):
        assert_same_bits(a, b)


# ------------------------------------------------------------------------- bad load_state_dict
def _other_state(row):
    """The state_dict of a different optimizer (another class, or another variant)."""
    other = (next((r for r in ROWS if r.cls != row.cls), None)
             or next(r for r in ROWS if r is not row))
    opt, _ = _warm(other)
    return opt.state_dict()


def _array_key(sd):
    return next(k for k, v in sd["state"][0].items() if isinstance(v, np.ndarray))


def _mutate(fn):
    def make(sd, row):
        fn(sd, row)
        return sd

    return make


LOAD_CASES = [
    ("not-a-dict", lambda sd, r: list(sd.items()), TypeError, r"state_dict"),
    ("missing-state", _mutate(lambda sd, r: sd.pop("state")), ValueError, r"state_dict.*keys"),
    ("missing-param-groups", _mutate(lambda sd, r: sd.pop("param_groups")), ValueError,
     r"state_dict.*keys"),
    ("extra-key", _mutate(lambda sd, r: sd.__setitem__("momentum", 0.9)), ValueError,
     r"state_dict.*keys"),
    ("another-optimizers-state", lambda sd, r: _other_state(r), ValueError, r"state_dict"),
    ("wrong-optimizer-name",
     _mutate(lambda sd, r: sd.__setitem__("optimizer",
                                          "Adagrad" if r.name.startswith("Rprop") else "Rprop")),
     ValueError, r"state_dict"),
    ("state-not-a-dict", _mutate(lambda sd, r: sd.__setitem__("state", [sd["state"][0]])),
     TypeError, r"state_dict\['state'\]"),
    ("state-index-out-of-range", _mutate(lambda sd, r: sd["state"].__setitem__(7, sd["state"][0])),
     ValueError, r"state_dict\['state'\].*7"),
    ("state-index-negative", _mutate(lambda sd, r: sd["state"].__setitem__(-1, sd["state"][0])),
     ValueError, r"state_dict\['state'\]"),
    ("state-index-not-a-number",
     _mutate(lambda sd, r: sd["state"].__setitem__("w", sd["state"][0])),
     ValueError, r"state_dict\['state'\]"),
    ("state-entry-missing-key", _mutate(lambda sd, r: sd["state"][0].pop(_array_key(sd))),
     ValueError, r"state_dict\['state'\]\[0\].*keys"),
    ("state-entry-extra-key",
     _mutate(lambda sd, r: sd["state"][0].__setitem__("not_a_state_array", np.zeros(5))),
     ValueError, r"state_dict\['state'\]\[0\].*keys"),
    ("state-entry-not-a-dict", _mutate(lambda sd, r: sd["state"].__setitem__(0, 1.0)), ValueError,
     r"state_dict\['state'\]\[0\]"),
    ("state-array-shape",
     _mutate(lambda sd, r: sd["state"][0].__setitem__(_array_key(sd), np.zeros(6))),
     ValueError, r"state_dict\['state'\]\[0\].*shape"),
    ("state-array-0d",
     _mutate(lambda sd, r: sd["state"][0].__setitem__(_array_key(sd), np.float64(1))),
     ValueError, r"state_dict\['state'\]\[0\].*shape"),
    ("state-array-dtype",
     _mutate(lambda sd, r: sd["state"][1].__setitem__(_array_key(sd), np.zeros((2, 3)))),
     TypeError, r"state_dict\['state'\]\[1\].*dtype"),
    ("state-array-object",
     _mutate(lambda sd, r: sd["state"][0].__setitem__(_array_key(sd), np.zeros(5, object))),
     TypeError, r"state_dict\['state'\]\[0\].*dtype"),
    ("state-array-int",
     _mutate(lambda sd, r: sd["state"][0].__setitem__(_array_key(sd), np.zeros(5, np.int64))),
     TypeError, r"state_dict\['state'\]\[0\].*dtype"),
    ("state-step-negative", _mutate(lambda sd, r: sd["state"][0].__setitem__("step", -1)),
     ValueError, r"state_dict\['state'\]\[0\]\['step'\]"),
    ("state-step-float", _mutate(lambda sd, r: sd["state"][0].__setitem__("step", 1.5)), TypeError,
     r"state_dict\['state'\]\[0\]\['step'\]"),
    ("groups-not-a-list",
     _mutate(lambda sd, r: sd.__setitem__("param_groups", sd["param_groups"][0])),
     ValueError, r"param_groups"),
    ("groups-too-many",
     _mutate(lambda sd, r: sd["param_groups"].append(dict(sd["param_groups"][0]))),
     ValueError, r"param_groups"),
    ("group-wrong-params",
     _mutate(lambda sd, r: sd["param_groups"][0].__setitem__("params", [0, 1])),
     ValueError, r"param_groups\[0\]"),
    ("group-missing-hyper", _mutate(lambda sd, r: sd["param_groups"][0].pop("lr")), ValueError,
     r"param_groups\[0\]"),
    ("group-extra-hyper",
     _mutate(lambda sd, r: sd["param_groups"][0].__setitem__("not_a_hyper_parameter", True)),
     ValueError, r"param_groups\[0\]"),
    ("group-lr-negative", _mutate(lambda sd, r: sd["param_groups"][0].__setitem__("lr", -1.0)),
     ValueError, r"lr"),
    ("group-lr-nan", _mutate(lambda sd, r: sd["param_groups"][0].__setitem__("lr", NAN)),
     ValueError, r"lr"),
    ("group-maximize-not-bool",
     _mutate(lambda sd, r: sd["param_groups"][0].__setitem__("maximize", "no")),
     TypeError, r"maximize"),
]


def _global_cases(row):
    opt, _ = _warm(row)
    sd = opt.state_dict()
    if "prev_loss" not in sd:
        return []
    return [
        ("prev-loss-nan", _mutate(lambda sd, r: sd.__setitem__("prev_loss", NAN)), ValueError,
         r"prev_loss"),
        ("prev-loss-string", _mutate(lambda sd, r: sd.__setitem__("prev_loss", "1")), TypeError,
         r"prev_loss"),
        ("variant-differs", _mutate(lambda sd, r: sd.__setitem__(
            "variant", "rprop-" if sd["variant"] != "rprop-" else "rprop+")),
         ValueError, r"variant"),
    ]


def _load_matrix():
    for row in ROWS:
        for case in LOAD_CASES + _global_cases(row):
            yield pytest.param(row, *case[1:], id=f"{row.name}-{case[0]}")


@pytest.mark.parametrize("row,corrupt,exc,match", list(_load_matrix()))
def test_bad_load_state_dict_is_refused_and_changes_nothing(row, corrupt, exc, match):
    opt, params = _warm(row, 3)
    twin, twin_params = _warm(row, 3)
    before_params = [p.copy() for p in params]
    before_state = opt.state_dict()
    bad = corrupt(opt.state_dict(), row)
    with pytest.raises(exc, match=match):
        opt.load_state_dict(bad)
    _assert_nothing_changed_and_resumes(row, opt, params, before_params, before_state, twin,
                                        twin_params)


def test_the_matrix_is_big_enough():
    n = (len(list(_step_matrix())) * 2 + len(list(_construction_matrix()))
         + len(list(_load_matrix())))
    assert n >= 40 * len(ROWS)


# ------------------------------------------------------------------------- what must work
@pytest.mark.parametrize("row", ROWS, ids=str)
def test_zero_dim_and_empty_arrays_work(row):
    shapes = [(), (0,), (3, 0), (4,), ()]
    dtypes = [np.float64, np.float32, np.float64, np.float32, np.float32]
    params = [np.full(s, 0.75, d) for s, d in zip(shapes, dtypes)]
    expect = [p.copy() for p in params]
    opt = row.make(params)
    states = [row.ref_init(p, row.kwargs) for p in expect] if row.ref_init else None
    prev_loss = None
    for k in range(4):
        grads = [np.full(p.shape, (-1.0) ** k * 0.5 + 0.25 * k, p.dtype) for p in params]
        grads[0] = grads[0][()]  # a NumPy scalar is the gradient of a 0-d parameter
        loss = float(3 - k % 3)
        row.step(opt, grads, loss=loss)
        if states is not None:
            increased = prev_loss is not None and loss > prev_loss
            for p, g, s in zip(expect, grads, states):
                row.ref_step(p, np.asarray(g), s, row.kwargs, increased)
        prev_loss = loss
    assert params[0].shape == () and params[1].shape == (0,) and params[2].shape == (3, 0)
    assert params[0] != 0.75 and params[3][0] != 0.75
    if states is not None:
        for got, want in zip(params, expect):
            if row.ref_exact:
                assert_same_bits(got, want)
            else:
                np.testing.assert_allclose(got, want, rtol=1e-6)
    # and their state survives a state_dict round trip
    again = [p.copy() for p in params]
    opt2 = row.make(again)
    opt2.load_state_dict(opt.state_dict())
    assert_same_bits(opt2.state_dict(), opt.state_dict())


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_read_only_grads_are_fine_and_untouched(row):
    params = _params()
    grads = _grads(params, 0)
    for g in grads:
        g.flags.writeable = False
    copies = [g.copy() for g in grads]
    row.step(row.make(params), grads)
    for g, c in zip(grads, copies):
        assert_same_bits(g, c)


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_one_gradient_array_may_serve_two_parameters(row):
    # gradients are only read: sharing them is safe (writing into shared memory is not)
    params = [np.linspace(-1, 1, 5), np.linspace(1, -1, 5)]
    twin = [p.copy() for p in params]
    g = np.linspace(0.3, -0.7, 5)
    row.step(row.make(params), [g, g])
    row.step(row.make(twin), [g.copy(), g.copy()])
    for a, b in zip(params, twin):
        assert_same_bits(a, b)


# ------------------------------------------------------------------------- non-finite gradients
TORCH_ROWS = [r for r in ROWS if r.torch_cls is not None]


def _assert_equal_nan_aware(got, want, exact, where):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, where
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan, err_msg=f"{where}: NaN positions")
    if exact:
        assert got[~nan].tobytes() == want[~nan].tobytes(), f"{where}: finite values differ"
    else:
        np.testing.assert_allclose(got[~nan], want[~nan],
                                   rtol=1e-5 if got.dtype == np.float32 else 1e-12,
                                   err_msg=where)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("row", TORCH_ROWS, ids=str)
def test_nan_and_inf_gradients_follow_torch(row, dtype):
    """The policy is torch's: Rprop treats sign(NaN) as 0 and keeps the NaN in prev;
    AdaGrad (and the other accumulating rules) propagate NaN/Inf into the parameter."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    shapes = [(40,), (3, 5), ()]
    params = [np.asarray(rng.standard_normal(s)).astype(dtype) for s in shapes]
    tensors = [torch.from_numpy(p.copy()) for p in params]
    opt = row.make(params)
    topt = getattr(torch.optim, row.torch_cls)(tensors, **row.torch_kwargs(row.kwargs))
    specials = np.array([np.nan, np.inf, -np.inf, 0.0], dtype)
    for k in range(8):
        grads = []
        for p in params:
            g = np.asarray(rng.standard_normal(p.shape)).astype(dtype)
            mask = rng.random(p.shape) < 0.25
            g[mask] = specials[rng.integers(0, 4, p.shape)][mask]
            grads.append(g)
        with np.errstate(all="ignore"):
            row.step(opt, grads, loss=float(k))
        for t, g in zip(tensors, grads):
            t.grad = torch.from_numpy(g.copy())
        topt.step()
    assert any(np.isnan(g).any() for g in grads)
    for i, (p, t) in enumerate(zip(params, tensors)):
        _assert_equal_nan_aware(p, t.numpy(), row.torch_exact, f"params[{i}]")
        for mine, theirs in row.torch_state.items():
            _assert_equal_nan_aware(opt.state[i][mine], topt.state[t][theirs].numpy(),
                                    row.torch_exact, f"state[{i}][{mine!r}]")


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_none_and_tuple_gradients_once_every_parameter_has_state(row):
    # Once every parameter has its state a step takes a shorter path; a None gradient
    # (skip the parameter) and a tuple of gradients must still mean what they mean there.
    rng = np.random.default_rng(5)
    a, b = np.full(6, 0.5, np.float32), np.full((2, 3), -0.25)
    alone_a, alone_b = a.copy(), b.copy()
    opt = row.make([a, b])
    opt_a, opt_b = row.make([alone_a]), row.make([alone_b])
    for k, skip in enumerate([None, None, "b", "a", None, "b"]):
        ga = rng.standard_normal(a.shape).astype(a.dtype) * (-1) ** k
        gb = rng.standard_normal(b.shape) * (-1) ** (k // 2)
        grads = (ga if skip != "a" else None, gb if skip != "b" else None)
        row.step(opt, grads if k % 2 else list(grads))
        if skip != "a":
            row.step(opt_a, [ga])
        if skip != "b":
            row.step(opt_b, [gb])
    assert_same_bits(a, alone_a)
    assert_same_bits(b, alone_b)
    assert opt.state[0]["step"] == opt_a.state[0]["step"] == 5
    assert opt.state[1]["step"] == opt_b.state[0]["step"] == 4
    for name in row.state_names:
        assert_same_bits(opt.state[0][name], opt_a.state[0][name])
        assert_same_bits(opt.state[1][name], opt_b.state[0][name])


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_a_step_with_every_state_made_takes_the_short_path(row, monkeypatch):
    # The short path hands gradients to the compiled call as given (a list, a tuple or a
    # lone array); if the call refused them every step, each step would silently go the
    # general way, correct but slower. The general path is disabled to prove it is not used.
    params = [np.full(5, 0.5, np.float32)]
    opt = row.make(params)
    row.step(opt, [np.ones(5, np.float32)])
    before = params[0].copy()

    def general_path(*args, **kwargs):
        raise AssertionError("the step went the general path")

    monkeypatch.setattr(opt, "_step_some", general_path)
    monkeypatch.setattr(opt, "_grad_list", general_path)
    for grads in ([-np.ones(5, np.float32)], (np.ones(5, np.float32),), np.ones(5, np.float32)):
        row.step(opt, grads)
    assert opt.state[0]["step"] == 4 and not np.array_equal(params[0], before)


# ------------------------------------------------------------------------- sparse aliasing
# AdaGrad with row-sparse gradients takes, in one call, dense parameters with their
# gradients and sums, sparse parameters with their sums, and each SparseRows' values and
# indices. Every array that one of them shares memory with, written or read, across the
# dense and the sparse parts, is refused with nothing written: P is the dense parameter,
# S and Q the sparse ones, Sp, Ss, Sq their sums, G the dense gradient, V and W the values
# (rows 0-1 of P, S, Sp and Ss stay 0, so that an int64 view of them is a valid index array).
def _sparse_params():
    p = np.linspace(-1, 1, 12).reshape(4, 3)
    s = np.linspace(2, -1, 12).reshape(4, 3)
    p[:2] = 0.0
    s[:2] = 0.0
    return [p, s, np.linspace(0.3, 0.9, 12).reshape(4, 3)]


def _sparse_grads(k):
    import optbowl as ob

    g = np.cos(np.arange(12.0).reshape(4, 3) + k)
    g[:2] = 0.0  # rows 0-1 of P and its sum stay 0
    return [g, ob.SparseRows([2, 3, 3, 2], np.sin(np.arange(12.0).reshape(4, 3) * 0.7 + k)),
            ob.SparseRows([3, 2, 2, 3], np.cos(np.arange(12.0).reshape(4, 3) * 1.3 - k))]


def _int_view(a):
    """The first four elements of a as an int64 index array (zeros: row 0)."""
    view = a.reshape(-1)[:4].view(np.int64)
    assert np.shares_memory(view, a) and not view.any()
    return view


def _values(call, i, values):
    import optbowl as ob

    call["grads"][i] = ob.SparseRows(call["grads"][i].indices, values)


def _indices(call, i, indices):
    import optbowl as ob

    call["grads"][i] = ob.SparseRows(indices, call["grads"][i].values)


def _put(call, key, i, value):
    call[key][i] = value


# (id, what the case changes: "grads", "sums" or "params", change(call)); call holds the
# lists params, grads and sums of one step.
SPARSE_ALIAS_CASES = [
    ("dense-grad-is-a-sparse-param", "grads", lambda c: _put(c, "grads", 0, c["params"][1])),
    ("dense-grad-is-a-sparse-sum", "grads", lambda c: _put(c, "grads", 0, c["sums"][1])),
    ("values-are-the-dense-param", "grads", lambda c: _values(c, 1, c["params"][0])),
    ("values-are-the-dense-sum", "grads", lambda c: _values(c, 1, c["sums"][0])),
    ("values-are-their-own-param", "grads", lambda c: _values(c, 1, c["params"][1])),
    ("values-are-their-own-sum", "grads", lambda c: _values(c, 1, c["sums"][1])),
    ("values-are-another-sparse-param", "grads", lambda c: _values(c, 1, c["params"][2])),
    ("values-are-another-sparse-sum", "grads", lambda c: _values(c, 2, c["sums"][1])),
    ("indices-in-the-dense-param", "grads", lambda c: _indices(c, 1, _int_view(c["params"][0]))),
    ("indices-in-the-dense-sum", "grads", lambda c: _indices(c, 1, _int_view(c["sums"][0]))),
    ("indices-in-their-own-param", "grads", lambda c: _indices(c, 1, _int_view(c["params"][1]))),
    ("indices-in-another-sparse-param", "grads",
     lambda c: _indices(c, 2, _int_view(c["params"][1]))),
    ("indices-in-their-own-sum", "grads", lambda c: _indices(c, 1, _int_view(c["sums"][1]))),
    ("indices-in-another-sparse-sum", "grads", lambda c: _indices(c, 2, _int_view(c["sums"][1]))),
    ("sparse-sum-is-the-dense-param", "sums", lambda c: _put(c, "sums", 1, c["params"][0])),
    ("sparse-sum-is-the-dense-sum", "sums", lambda c: _put(c, "sums", 1, c["sums"][0])),
    ("dense-sum-is-a-sparse-param", "sums", lambda c: _put(c, "sums", 0, c["params"][1])),
    ("dense-sum-is-a-sparse-sum", "sums", lambda c: _put(c, "sums", 0, c["sums"][2])),
    ("sparse-sums-are-one-array", "sums", lambda c: _put(c, "sums", 2, c["sums"][1])),
    ("param-in-the-dense-and-the-sparse-list", "params",
     lambda c: _put(c, "params", 1, c["params"][0])),
    ("sparse-params-are-one-array", "params", lambda c: _put(c, "params", 2, c["params"][1])),
    ("dense-and-sparse-params-overlap", "params", lambda c: _overlapping_params(c)),
]


def _overlapping_params(call):
    base = np.zeros((6, 3))
    base[:4] = call["params"][0]
    call["params"][0], call["params"][1] = base[:4], base[2:]


def _sparse_snapshot(*lists):
    """Copies of every array (values and indices of SparseRows too) of the given lists."""
    out = []
    for items in lists:
        for a in items:
            if isinstance(a, np.ndarray):
                out.append((a, a.copy()))
            else:
                out += [(a.values, a.values.copy()), (a.indices, a.indices.copy())]
    return out


@pytest.mark.parametrize("case,what,change", [pytest.param(*c, id=c[0])
                                              for c in SPARSE_ALIAS_CASES])
def test_functional_adagrad_refuses_aliasing_across_dense_and_sparse(case, what, change):
    from optbowl import functional as F

    params = _sparse_params()
    sums = [np.full(p.shape, 0.5) for p in params]
    sums[0][:2] = sums[1][:2] = 0.0  # an int64 view of rows 0-1 is a valid index array
    call = {"params": params, "grads": _sparse_grads(0), "sums": sums}
    change(call)
    before = _sparse_snapshot(params, sums, call["params"], call["grads"], call["sums"])
    with pytest.raises(ValueError, match="shares memory"):
        F.adagrad(call["params"], call["grads"], call["sums"], step=1, lr=0.1)
    for a, copy in before:
        assert_same_bits(a, copy, case)


def _sparse_step_matrix():
    for case in SPARSE_ALIAS_CASES:
        if case[1] == "params":  # an optimizer's parameters are its own
            continue
        for warm in (0, 2):
            if warm or not (case[1] == "sums" or "sum" in case[0]):  # no sums before a step
                yield pytest.param(*case, warm, id=f"{'warm' if warm else 'fresh'}-{case[0]}")


@pytest.mark.parametrize("case,what,change,warm", list(_sparse_step_matrix()))
def test_adagrad_refuses_aliasing_across_dense_and_sparse(case, what, change, warm):
    import optbowl as ob

    def make():
        params = _sparse_params()
        opt = ob.Adagrad(params, lr=0.1)
        for k in range(warm):
            opt.step(_sparse_grads(k))
        return opt, params

    opt, params = make()
    twin, twin_params = make()
    before_params = [p.copy() for p in params]
    before_state = opt.state_dict()
    sums = [opt.state[i]["sum"] for i in range(3)] if warm else [None] * 3
    call = {"params": list(params), "grads": _sparse_grads(9), "sums": list(sums)}
    change(call)
    replaced = {i: s for i, s in enumerate(call["sums"]) if s is not sums[i]}
    for i, s in replaced.items():  # a state array replaced by the user
        opt.state[i]["sum"] = s
    try:
        with pytest.raises(ValueError, match="shares memory"):
            opt.step(call["grads"])
    finally:
        for i in replaced:
            opt.state[i]["sum"] = sums[i]
    for a, b in zip(params, before_params):
        assert_same_bits(a, b, "params")
    assert_same_bits(opt.state_dict(), before_state, "state_dict")
    for k in (5, 6):  # and the next good steps are those of an optimizer that never saw it
        opt.step(_sparse_grads(k))
        twin.step(_sparse_grads(k))
    for a, b in zip(params, twin_params):
        assert_same_bits(a, b, "params after resuming")
    assert_same_bits(opt.state_dict(), twin.state_dict(), "state after resuming")


# ------------------------------------------------------------------------- torch, several calls
# Param groups whose state layouts differ (momentum buffers in one, none in the other) make
# one compiled call each. A step is all or nothing: an array the second call refuses, or
# an array one call writes that another call's array shares, is refused before either call
# writes, on the general path and on the reused plan's, and the next good step is as if the
# refused one never happened. Group 0 makes the first call, group 1 the second.
def _torch_layouts():
    pytest.importorskip("torch")  # optbowl.torch itself imports without it
    obt = pytest.importorskip("optbowl.torch")
    return {
        "SGD": (obt.SGD, {"lr": 0.1}, {"momentum": 0.9}),
        "SGD-momentum-first": (obt.SGD, {"lr": 0.1, "momentum": 0.9}, {"momentum": 0.0}),
        "RMSprop-centered": (obt.RMSprop, {"lr": 0.01}, {"centered": True}),
        "RMSprop-momentum": (obt.RMSprop, {"lr": 0.01, "momentum": 0.5}, {"momentum": 0.0}),
        "Adam-amsgrad": (obt.Adam, {"lr": 0.01}, {"amsgrad": True}),
        "AdamW-amsgrad-first": (obt.AdamW, {"lr": 0.01, "amsgrad": True}, {"amsgrad": False}),
    }


TORCH_LAYOUTS = ["SGD", "SGD-momentum-first", "RMSprop-centered", "RMSprop-momentum",
                 "Adam-amsgrad", "AdamW-amsgrad-first"]


def _torch_problem(name):
    torch = pytest.importorskip("torch")

    cls, options, second = _torch_layouts()[name]
    params = [torch.linspace(-1, 1, 5), torch.linspace(2, -2, 6).reshape(2, 3),
              torch.linspace(0.5, -0.3, 5), torch.linspace(1, 3, 4, dtype=torch.float64)]
    for p in params:
        p.requires_grad_()
    opt = cls([{"params": params[:2]}, {"params": params[2:], **second}], **options)
    assert len({(tuple(opt._present(n, g) for n in opt._state_names))
                for g in opt.param_groups}) == 2, "the groups must differ in state layout"
    return opt, params


def _torch_grads(params, k):
    import torch

    for p in params:
        n = p.numel()
        p.grad = torch.cos(torch.arange(n, dtype=p.dtype) * 1.7 + k).reshape(p.shape)


def _torch_state(opt, params):
    return [{k: v.clone() for k, v in opt.state[p].items()} if p in opt.state else None
            for p in params]


def _assert_torch_same(params, before_params, state, before_state, where):
    import torch

    for p, b in zip(params, before_params):
        assert torch.equal(p.detach(), b) and p.dtype == b.dtype, f"{where}: params"
    for s, b in zip(state, before_state):
        assert (s is None) == (b is None), f"{where}: state made"
        if s is not None:
            assert s.keys() == b.keys(), f"{where}: state keys"
            for k in s:
                assert s[k].dtype == b[k].dtype and torch.equal(s[k], b[k]), f"{where}: {k}"


def _a_state(opt, p):
    return next((t for k, t in opt.state.get(p, {}).items() if k != "step"), None)


# (id, needs state, change(opt, params) -> undo or None); params 0-1 are group 0 (the first
# call), 2-3 group 1 (the second); params 0 and 2 have one shape.
TORCH_CASES = [
    ("second-call-grad-is-its-param",
     False, lambda o, p: setattr(p[2], "grad", p[2].detach())),
    ("second-call-grad-is-a-first-call-param",
     False, lambda o, p: setattr(p[2], "grad", p[0].detach())),
    ("first-call-grad-is-a-second-call-param",
     False, lambda o, p: setattr(p[0], "grad", p[2].detach())),
    ("second-call-grad-is-a-first-call-state",
     True, lambda o, p: setattr(p[2], "grad", _a_state(o, p[0]))),
    ("first-call-grad-is-a-second-call-state",
     True, lambda o, p: setattr(p[0], "grad", _a_state(o, p[2]))),
    ("second-call-state-is-a-first-call-param", True, lambda o, p: _swap_state(o, p[2], p[0])),
    ("second-call-state-is-a-first-call-state",
     True, lambda o, p: _swap_state(o, p[2], _a_state(o, p[0]))),
]


def _swap_state(opt, p, tensor):
    name = next(k for k in opt.state[p] if k != "step")
    old = opt.state[p][name]
    opt.state[p][name] = tensor.detach()
    return lambda: opt.state[p].__setitem__(name, old)


def _torch_matrix():
    for layout in TORCH_LAYOUTS:
        for case in TORCH_CASES:
            for path in ("first-step", "general", "plan"):
                if path != "first-step" or not case[1]:  # no state before the first step
                    yield pytest.param(layout, *case, path, id=f"{layout}-{case[0]}-{path}")


@pytest.mark.parametrize("layout,case,needs_state,change,path", list(_torch_matrix()))
def test_torch_step_of_several_calls_is_all_or_nothing(layout, case, needs_state, change, path):
    opt, params = _torch_problem(layout)
    twin, twin_params = _torch_problem(layout)
    warm = 0 if path == "first-step" else 2
    for k in range(warm):
        for o, ps in ((opt, params), (twin, twin_params)):
            _torch_grads(ps, k)
            o.step()
    if path == "general":
        opt._plan = None
    assert (opt._plan is not None) == (path == "plan")
    _torch_grads(params, 9)
    if needs_state and (_a_state(opt, params[0]) is None or _a_state(opt, params[2]) is None):
        pytest.skip("a group without state tensors (SGD without momentum)")
    before_params = [p.detach().clone() for p in params]
    before_state = _torch_state(opt, params)
    undo = change(opt, params)
    try:
        with pytest.raises(ValueError, match="shares memory"):
            opt.step()
    finally:
        if undo is not None:
            undo()
    _assert_torch_same(params, before_params, _torch_state(opt, params), before_state, case)
    for k in (5, 6):
        for o, ps in ((opt, params), (twin, twin_params)):
            _torch_grads(ps, k)
            o.step()
    _assert_torch_same(params, [p.detach() for p in twin_params], _torch_state(opt, params),
                       _torch_state(twin, twin_params), f"{case}: after resuming")
    assert opt._plan is not None  # the good steps after it make a plan again


@pytest.mark.parametrize("layout", TORCH_LAYOUTS)
@pytest.mark.parametrize("overlap", ["same-tensor-storage", "overlapping-views"])
def test_torch_overlapping_params_in_groups_of_different_layouts_are_refused(layout, overlap):
    torch = pytest.importorskip("torch")

    cls, options, second = _torch_layouts()[layout]
    base = torch.linspace(-1, 1, 10)
    a, b = (base[:6], base[4:]) if overlap == "overlapping-views" else (base[:5], base[:5])
    for p in (a, b):
        p.requires_grad_()
    other = torch.linspace(0, 1, 3).requires_grad_()
    opt = cls([{"params": [a, other]}, {"params": [b], **second}], **options)
    before = base.clone()
    for step in range(2):  # refused on every step, and nothing written
        _torch_grads([a, other, b], step)
        with pytest.raises(ValueError, match=r"params\[2\].*shares memory|memory.*params\[2\]"):
            opt.step()
        assert torch.equal(base, before) and not opt.state.get(b)
    # The same overlap within one layout was already refused (one call checks its arrays).
    one = cls([{"params": [a, other, b]}], **options)
    with pytest.raises(ValueError, match="shares memory"):
        one.step()
    assert torch.equal(base, before)


def test_the_torch_matrix_is_big_enough():
    assert len(list(_torch_matrix())) >= 100


# ------------------------------------------------------------------------- NumPy, several groups
# The NumPy optimizers step every group in one compiled call (the C short step and the
# Python paths alike), so a bad array in a later group is refused before an earlier group
# moves: checked here for every optimizer, with two groups of different hyper-parameters.
GROUP_CASES = [
    ("second-group-grad-is-its-param", lambda o, p, g: _nth(g, 2, p[2])),
    ("second-group-grad-is-a-first-group-param", lambda o, p, g: _nth(g, 2, p[0])),
    ("first-group-grad-is-a-second-group-param", lambda o, p, g: _nth(g, 0, p[2])),
    ("second-group-grad-is-a-first-group-state",
     lambda o, p, g: _nth(g, 2, next(v for v in o.state[0].values() if isinstance(v, np.ndarray)
                                     and v.dtype == p[0].dtype))),
]


def _group_matrix():
    for row in ROWS:
        for case, change in GROUP_CASES:
            for warm in (0, 2):
                if warm or "state" not in case:
                    yield pytest.param(row, change, warm, id=f"{row.name}-{case}-{warm}")


@pytest.mark.parametrize("row,change,warm", list(_group_matrix()))
def test_bad_array_in_a_later_group_changes_nothing(row, change, warm):
    def make():
        params = _params()
        opt = row.make([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}])
        for k in range(warm):
            row.step(opt, _grads(params, k), loss=float(k % 2))
        return opt, params

    opt, params = make()
    twin, twin_params = make()
    before_params = [p.copy() for p in params]
    before_state = opt.state_dict()
    with pytest.raises(ValueError, match="shares memory"):
        row.step(opt, change(opt, params, _grads(params, 9)))
    _assert_nothing_changed_and_resumes(row, opt, params, before_params, before_state, twin,
                                        twin_params)


# ------------------------------------------------------------------------- memory layouts
# Parameters in any dense layout are stepped as the flat run over their memory, with a
# gradient and state of their strides. A gradient or state of other strides (dense or not),
# or one that is a permuted view of another array of the call, is refused, naming it, with
# nothing written, on a fresh and a warm optimizer; the next good steps are as if it never
# happened.
def _layout_params():
    """An F-ordered float64, a transposed float32 view and a C-ordered parameter."""
    a = np.asfortranarray(np.linspace(-1, 1, 12).reshape(3, 4))
    b = np.ascontiguousarray(np.linspace(2, -2, 24, dtype=np.float32).reshape(4, 3, 2)
                             .transpose(2, 0, 1)).transpose(1, 2, 0)  # (4, 3, 2), permuted
    return [a, b, np.linspace(0.5, -0.3, 5)]


def _layout_grads(params, k):
    out = []
    for p in params:
        g = np.empty_like(p)  # the parameter's strides
        g[...] = np.cos(np.arange(p.size).reshape(p.shape) * 1.3 + k)
        out.append(g)
    return out


def _swap_state_for(o, i, make):
    """Replace a state array of params[i] by make(it); returns the undo."""
    name = next(k for k, v in o.state[i].items() if isinstance(v, np.ndarray)
                and v.dtype != np.int8)
    old = o.state[i][name]
    o.state[i][name] = make(old)
    return lambda: o.state[i].__setitem__(name, old)


# (id, needs state, make(opt, params, grads) -> (grads, undo or None), regex)
LAYOUT_CASES = [
    ("c-grad-for-f-param", False,
     lambda o, p, g: (_nth(g, 0, np.ascontiguousarray(g[0])), None),
     r"grads\[0\]: strides \(4, 1\) \(in elements\) differ from params\[0\]'s \(1, 3\)"),
    ("c-grad-for-permuted-param", False,
     lambda o, p, g: (_nth(g, 1, np.ascontiguousarray(g[1])), None),
     r"grads\[1\]: strides \(6, 2, 1\) \(in elements\) differ from params\[1\]'s \(3, 1, 12\)"),
    ("f-grad-for-permuted-param", False,
     lambda o, p, g: (_nth(g, 1, np.asfortranarray(g[1])), None),
     r"grads\[1\]: strides \(1, 4, 12\) \(in elements\) differ from params\[1\]'s"),
    ("strided-grad", False,
     lambda o, p, g: (_nth(g, 0, np.asfortranarray(np.ones((3, 8)))[:, ::2]), None),
     r"grads\[0\]: must be contiguous in some order"),
    ("grad-is-a-permuted-view-of-a-param", False,  # 5 elements of params[0]'s memory
     lambda o, p, g: (_nth(g, 2, p[0].T.reshape(-1)[:5]), None),
     r"grads\[2\].*shares memory|shares memory with grads\[2\]"),
    ("c-state-for-f-param", True,
     lambda o, p, g: (g, _swap_state_for(o, 0, np.ascontiguousarray)),
     r"\(4, 1\) \(in elements\) differ from params\[0\]'s \(1, 3\)"),
    ("c-state-for-permuted-param", True,
     lambda o, p, g: (g, _swap_state_for(o, 1, np.ascontiguousarray)),
     r"\(6, 2, 1\) \(in elements\) differ from params\[1\]'s \(3, 1, 12\)"),
]


def _layout_matrix():
    for row in ROWS:
        for case, needs_state, make, match in LAYOUT_CASES:
            for warm in (0, 2):
                if warm or not needs_state:
                    yield pytest.param(row, make, match, warm, id=f"{row.name}-{case}-{warm}")


@pytest.mark.parametrize("row,make,match,warm", list(_layout_matrix()))
def test_a_gradient_or_state_of_other_strides_is_refused_and_changes_nothing(row, make, match,
                                                                          warm):
    def fresh():
        params = _layout_params()
        opt = row.make(params)
        for k in range(warm):
            row.step(opt, _layout_grads(params, k), loss=float(k % 2))
        return opt, params

    opt, params = fresh()
    twin, twin_params = fresh()
    before_params = [p.copy(order="K") for p in params]
    before_state = opt.state_dict()
    grads, undo = make(opt, params, _layout_grads(params, 9))
    try:
        with pytest.raises(ValueError, match=match):
            row.step(opt, grads, loss=1.0)
    finally:
        if undo is not None:
            undo()
    for a, b in zip(params, before_params):
        assert_same_bits(a, b, "params")
    assert_same_bits(opt.state_dict(), before_state, "state_dict")
    for k in (5, 6):
        row.step(opt, _layout_grads(params, k), loss=1.0 + k)
        row.step(twin, _layout_grads(twin_params, k), loss=1.0 + k)
    for a, b in zip(params, twin_params):
        assert_same_bits(a, b, "params after resuming")
    assert_same_bits(opt.state_dict(), twin.state_dict(), "state after resuming")


@pytest.mark.parametrize("case,bad,match", [
    ("grads", lambda x, g, m, v: (x, np.ascontiguousarray(g), m, v), r"grads\[0\]: strides"),
    ("exp_avgs", lambda x, g, m, v: (x, g, np.ascontiguousarray(m), v), r"exp_avgs\[0\]: strides"),
    ("exp_avg_sqs", lambda x, g, m, v: (x, g, m, np.ascontiguousarray(v)),
     r"exp_avg_sqs\[0\]: strides"),
    ("grad-is-a-view-of-the-param", lambda x, g, m, v: (x, x.T.T, m, v), r"shares memory"),
])
def test_functional_refuses_other_strides_and_writes_nothing(case, bad, match):
    from optbowl import functional as F

    x = np.asfortranarray(np.linspace(-1, 1, 12).reshape(3, 4))
    g, m, v = (np.asfortranarray(np.full((3, 4), c)) for c in (0.5, 0.1, 0.2))
    arrays = bad(x, g, m, v)
    before = [a.copy() for a in arrays]
    with pytest.raises(ValueError, match=match):
        F.adam(*([a] for a in arrays), step=2)
    for a, b in zip(arrays, before):
        assert_same_bits(a, b)


# torch: a CPU parameter in any dense layout (here transposed 2-D ones, in both calls of a
# step of two state layouts) with a gradient or state of other strides is refused, naming
# it, before either call writes, on the first step, the general path and the reused plan's.
def _torch_layout_problem(name):
    torch = pytest.importorskip("torch")

    cls, options, second = _torch_layouts()[name]
    params = [torch.linspace(-1, 1, 6).reshape(3, 2).t(), torch.linspace(2, -2, 6),
              torch.linspace(0.5, -0.3, 12).reshape(4, 3).t(),
              torch.linspace(1, 3, 4, dtype=torch.float64)]
    for p in params:
        p.requires_grad_()
    return cls([{"params": params[:2]}, {"params": params[2:], **second}], **options), params


def _torch_layout_grads(params, k):
    import torch

    for p in params:
        g = torch.empty_like(p)  # the parameter's strides
        g.copy_(torch.cos(torch.arange(p.numel(), dtype=p.dtype) * 1.7 + k).reshape(p.shape))
        p.grad = g


def _torch_other_state(o, p):
    name = next(k for k in o.state[p] if k != "step")
    old = o.state[p][name]
    o.state[p][name] = old.contiguous()
    return lambda: o.state[p].__setitem__(name, old)


TORCH_LAYOUT_CASES = [
    ("first-call-grad-of-other-strides", False,
     lambda o, p: setattr(p[0], "grad", p[0].grad.contiguous()),
     r"params\[0\]\.grad: strides \(3, 1\) differ from the parameter's \(1, 2\)"),
    ("second-call-grad-of-other-strides", False,
     lambda o, p: setattr(p[2], "grad", p[2].grad.contiguous()),
     r"params\[2\]\.grad: strides \(4, 1\) differ from the parameter's \(1, 3\)"),
    ("second-call-grad-with-gaps", False,
     lambda o, p: setattr(p[2], "grad", torch_strided(p[2])),
     r"params\[2\]\.grad: must be contiguous in some order"),
    ("first-call-state-of-other-strides", True, lambda o, p: _torch_other_state(o, p[0]),
     r"params\[0\]: state\[.*\]: strides \(3, 1\) differ from the parameter's \(1, 2\)"),
    ("second-call-state-of-other-strides", True, lambda o, p: _torch_other_state(o, p[2]),
     r"params\[2\]: state\[.*\]: strides \(4, 1\) differ from the parameter's \(1, 3\)"),
]


def torch_strided(p):
    import torch

    return torch.zeros(p.shape[0], 2 * p.shape[1], dtype=p.dtype)[:, ::2]


def _torch_layout_matrix():
    for layout in TORCH_LAYOUTS:
        for case in TORCH_LAYOUT_CASES:
            for path in ("first-step", "general", "plan"):
                if path != "first-step" or not case[1]:
                    yield pytest.param(layout, *case, path, id=f"{layout}-{case[0]}-{path}")


@pytest.mark.parametrize("layout,case,needs_state,change,match,path",
                         list(_torch_layout_matrix()))
def test_torch_other_strides_are_refused_and_change_nothing(layout, case, needs_state, change,
                                                           match, path):
    opt, params = _torch_layout_problem(layout)
    twin, twin_params = _torch_layout_problem(layout)
    warm = 0 if path == "first-step" else 2
    for k in range(warm):
        for o, ps in ((opt, params), (twin, twin_params)):
            _torch_layout_grads(ps, k)
            o.step()
    if path == "general":
        opt._plan = None
    assert (opt._plan is not None) == (path == "plan")
    _torch_layout_grads(params, 9)
    if needs_state and (_a_state(opt, params[0]) is None or _a_state(opt, params[2]) is None):
        pytest.skip("a group without state tensors (SGD without momentum)")
    before_params = [p.detach().clone() for p in params]
    before_state = _torch_state(opt, params)
    undo = change(opt, params)
    try:
        with pytest.raises(ValueError, match=match):
            opt.step()
    finally:
        if undo is not None:
            undo()
    _assert_torch_same(params, before_params, _torch_state(opt, params), before_state, case)
    for k in (5, 6):
        for o, ps in ((opt, params), (twin, twin_params)):
            _torch_layout_grads(ps, k)
            o.step()
    _assert_torch_same(params, [p.detach() for p in twin_params], _torch_state(opt, params),
                       _torch_state(twin, twin_params), f"{case}: after resuming")
