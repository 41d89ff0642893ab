"""Checkpoints: state_dict at step k -> pickle or .npz round trip -> a new optimizer (and
schedule) resumes bit-identically to the run that was never interrupted."""

from __future__ import annotations

import io
import json
import pickle
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import optbowl as ob
from optbowl.checkpoint import SCHEMA_KEY
from optimizer_table import ROWS, assert_same_bits

STEPS, STOP = 12, 5


def _pickle_trip(sd):
    return pickle.loads(pickle.dumps(sd, protocol=pickle.HIGHEST_PROTOCOL))


def _npz_trip(sd):
    f = io.BytesIO()
    ob.save_state(f, sd)
    f.seek(0)
    return ob.load_state(f)


def _npz_file_trip(sd, path):
    np.savez(path, **ob.flatten_state(sd))  # the flat form in the user's own savez call
    with np.load(path, allow_pickle=False) as z:
        return ob.unflatten_state(z)


def _problem(seed):
    rng = np.random.default_rng(seed)
    shapes = [(7,), (3, 4), (), (0,), (2, 2, 3)]
    dtypes = [np.float64, np.float32, np.float64, np.float32, np.float32]
    params = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
    grads = [[rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
             for _ in range(STEPS)]
    for k in range(0, STEPS, 4):  # a parameter without a gradient now and then
        grads[k][1] = None
    losses = list(rng.standard_normal(STEPS))
    return params, grads, losses


def _groups(params):
    return [{"params": params[:2]}, {"params": params[2:], "lr": 0.02}]


@pytest.mark.parametrize("trip", ["pickle", "npz", "npz-file"])
@pytest.mark.parametrize("row", ROWS, ids=str)
def test_optimizer_resumes_bit_identically(row, trip, tmp_path):
    params, grads, losses = _problem(8)
    straight = [p.copy() for p in params]
    opt = row.make(_groups(straight))
    for g, loss in zip(grads, losses):
        row.step(opt, g, loss=loss)

    first = [p.copy() for p in params]
    opt = row.make(_groups(first))
    for g, loss in zip(grads[:STOP], losses[:STOP]):
        row.step(opt, g, loss=loss)
    sd = opt.state_dict()
    back = {"pickle": _pickle_trip, "npz": _npz_trip,
            "npz-file": lambda s: _npz_file_trip(s, tmp_path / "ckpt.npz")}[trip](sd)
    assert_same_bits(back, sd, "round trip")
    resumed = [p.copy() for p in first]
    # built with other hyper-parameters: load_state_dict must restore the saved ones
    opt2 = row.make(_groups(resumed), lr=0.5)
    opt2.load_state_dict(back)
    for g, loss in zip(grads[STOP:], losses[STOP:]):
        row.step(opt2, g, loss=loss)
    for a, b in zip(resumed, straight):
        assert_same_bits(a, b, "params")


def test_flatten_keeps_every_kind_exactly():
    state = {
        0: {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "step": 3},
        "x": [1.5, -0.0, float("inf"), float("nan"), 10**30, True, None, "s", (1, 2.0)],
        "scalars": (np.float32(0.1), np.int64(7), np.float64("nan")),
        "empty": np.zeros((0, 3)), "zero_d": np.array(2.5), "nested": {"t": ({"u": []},)},
        "be": np.arange(3, dtype=">f8"),
    }
    flat = ob.flatten_state(state)
    assert all(isinstance(v, np.ndarray) and not v.dtype.hasobject for v in flat.values())
    back = ob.unflatten_state(flat)
    assert_same_bits(back, state)
    assert type(back["scalars"][0]) is np.float32 and type(back["x"][4]) is int
    assert list(back) == list(state) and 0 in back


def test_flatten_refuses_what_npz_cannot_hold():
    with pytest.raises(TypeError, match=r"state\['bad'\]"):
        ob.flatten_state({"bad": np.array([object()])})
    with pytest.raises(TypeError, match=r"state\['s'\]"):
        ob.flatten_state({"s": {1, 2}})
    with pytest.raises(TypeError, match="key"):
        ob.flatten_state({(1, 2): 0})
    with pytest.raises(ValueError, match="flatten_state"):
        ob.unflatten_state({"a0": np.zeros(1)})


# ----------------------------------------------------------------------------- schedules
def _schedules():
    sched = getattr(ob, "schedules", None)
    if sched is None:
        return []
    out = []
    for name, kw in [("InverseTimeDecay", {}), ("InverseSquareDecay", {}),
                     ("ExponentialDecay", {"beta": 0.1}),
                     ("StepDecay", {"step_size": 3, "gamma": 0.5}),
                     ("ReduceLROnPlateau", {"patience": 1, "factor": 0.5, "cooldown": 1})]:
        if hasattr(sched, name):
            out.append(pytest.param(getattr(sched, name), kw, id=name))
    return out


@pytest.mark.parametrize("trip", ["pickle", "npz"])
@pytest.mark.parametrize("sched_cls,kw", _schedules())
@pytest.mark.parametrize("row", ROWS, ids=str)
def test_schedule_and_optimizer_resume_bit_identically(row, sched_cls, kw, trip):
    params, grads, losses = _problem(9)
    plateau = sched_cls.__name__ == "ReduceLROnPlateau"
    metrics = [1.0, 0.9, 0.9, 0.9, 0.95, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8]

    def run(opt, sched, ks):
        for k in ks:
            row.step(opt, grads[k], loss=losses[k])
            sched.step(metrics[k]) if plateau else sched.step()

    straight = [p.copy() for p in params]
    opt = row.make(straight)
    run(opt, sched_cls(opt, **kw), range(STEPS))

    first = [p.copy() for p in params]
    opt = row.make(first)
    sched = sched_cls(opt, **kw)
    run(opt, sched, range(STOP))
    trip_fn = _pickle_trip if trip == "pickle" else _npz_trip
    sd_opt, sd_sched = trip_fn(opt.state_dict()), trip_fn(sched.state_dict())
    resumed = [p.copy() for p in first]
    opt2 = row.make(resumed)
    sched2 = sched_cls(opt2, **kw)
    opt2.load_state_dict(sd_opt)
    sched2.load_state_dict(sd_sched)
    run(opt2, sched2, range(STOP, STEPS))
    for a, b in zip(resumed, straight):
        assert_same_bits(a, b, "params")


# ------------------------------------------------------------------ malformed checkpoints
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.5, -1e300, 1e-300])
    | st.sampled_from(["int", "float", "array", "scalar", "tuple", "dict", "a0", "1", "x", ""]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["int", "float", "array", "scalar", "tuple", "dict",
                                       "format", "tree", "other"]), inner, max_size=2),
    max_leaves=10,
)
_FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _flat(doc, **arrays):
    return {SCHEMA_KEY: np.array(json.dumps(doc)), **arrays}


def _decode_or_value_error(flat):
    try:
        ob.unflatten_state(flat)
    except ValueError:
        pass  # the one way a malformed checkpoint may fail


@_FUZZ
@given(tree=_JSON)
def test_any_json_tree_decodes_or_raises_value_error(tree):
    _decode_or_value_error(_flat({"format": 1, "tree": tree}, a0=np.zeros(2), a1=np.zeros(())))


@_FUZZ
@given(doc=_JSON)
def test_any_json_document_decodes_or_raises_value_error(doc):
    _decode_or_value_error(_flat(doc, a0=np.zeros(2)))


@pytest.mark.parametrize("tree, where", [
    ({"int": 5}, "state"),
    ({"int": "1.5"}, "state"),
    ({"int": "9" * 5000}, "state"),
    ({"float": None}, "state"),
    ({"float": "one"}, "state"),
    ({"array": 7}, "state"),
    ({"array": "0"}, "state"),
    ({"array": True}, "state"),
    ({"array": -1}, "state"),
    ({"scalar": 0}, "state"),  # a0 is not 0-d
    ({"tuple": 3}, "state"),
    ({"dict": [[1]]}, "state"),
    ({"dict": [[[1], 2]]}, r"state\[0\]"),  # the key [1] holds a bare 1
    ({"dict": [[{"tuple": []}, 2]]}, "state"),
    ({"dict": 5}, "state"),
    ({"other": 1}, "state"),
    ({"int": "1", "float": "1"}, "state"),
    ({}, "state"),
    (5, "state"),
    ([{"dict": [["k", {"array": 9}]]}], r"state\[0\]\['k'\]"),
])
def test_each_malformed_entry_is_a_value_error_saying_where(tree, where):
    with pytest.raises(ValueError, match="^" + where + ":"):
        ob.unflatten_state(_flat({"format": 1, "tree": tree}, a0=np.zeros(2)))


def test_deep_nesting_is_a_value_error_not_a_recursion_error():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ValueError, match="nested too deeply"):
        ob.unflatten_state({SCHEMA_KEY: np.array('{"format": 1, "tree": ' + deep + "}")})
    tree: object = None
    for _ in range(500):  # within the JSON reader's reach, beyond the decoder's
        tree = [tree]
    with pytest.raises(ValueError, match="nested deeper than"):
        ob.unflatten_state(_flat({"format": 1, "tree": tree}))


@pytest.mark.parametrize("flat", [
    {SCHEMA_KEY: np.array("not json")},
    {SCHEMA_KEY: np.array("[]")},
    {SCHEMA_KEY: np.array('{"format": 1}')},
    {SCHEMA_KEY: np.array('{"format": 2, "tree": null}')},
    {SCHEMA_KEY: np.array('{"format": 1, "tree": null, "more": 1}')},
    {SCHEMA_KEY: np.zeros(3)},
    {SCHEMA_KEY: np.array(["{}", "{}"])},
    {},
])
def test_a_malformed_schema_is_a_value_error(flat):
    with pytest.raises(ValueError, match="^flat"):
        ob.unflatten_state(flat)


def _saved(state):
    f = io.BytesIO()
    ob.save_state(f, state)
    return f.getvalue()


@pytest.mark.parametrize("data", [
    b"",
    b"not a zip file at all",
    _saved({"x": np.arange(100.0)})[:200],  # truncated
    _saved({"x": np.arange(100.0)})[:-30],
])
def test_a_damaged_file_is_a_value_error(data):
    with pytest.raises(ValueError, match="^file"):
        ob.load_state(io.BytesIO(data))


def test_an_npy_file_is_a_value_error_and_a_pickle_is_never_loaded(tmp_path):
    f = io.BytesIO()
    np.save(f, np.zeros(3))
    f.seek(0)
    with pytest.raises(ValueError, match="^file: an .npy array"):
        ob.load_state(f)
    f = io.BytesIO()
    np.savez(f, **{SCHEMA_KEY: np.array('{"format": 1, "tree": {"array": 0}}'),
                   "a0": np.array([object()], dtype=object)})
    f.seek(0)
    with pytest.raises(ValueError, match="pickle"):
        ob.load_state(f)


def test_load_state_reads_each_array_once():
    """The peak memory of a load is the arrays once, plus the reader's buffers: no second
    full-size copy (a 2 GiB state used to peak at 4 GiB)."""
    big = np.arange(4 * 2**20, dtype=np.float64)  # 32 MiB
    data = _saved({"big": big})
    tracemalloc.start()
    try:
        state = ob.load_state(io.BytesIO(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(state["big"], big)
    assert peak < 1.5 * big.nbytes, peak / big.nbytes


def test_save_state_writes_without_copying_the_arrays():
    big = np.arange(8 * 2**20, dtype=np.float64)  # 64 MiB; NumPy writes 16 MiB at a time
    f = io.BytesIO()
    f.write(b"\0" * (big.nbytes + 4096))  # the file's memory, counted before
    f.seek(0)
    tracemalloc.start()
    try:
        ob.save_state(f, {"big": big})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * big.nbytes, peak / big.nbytes
