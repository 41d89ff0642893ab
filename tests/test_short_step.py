"""The compiled short step (``_core.short_step``): Optimizer.step's common case in C.

It must step exactly as the Python path does, be taken whenever the step is the common
one, and hand every other case to the Python path having changed nothing. Every test runs
over every optimizer of optimizer_table.ROWS.
"""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pytest

import optbowl
from optbowl import _core
from optbowl._optimizer import Optimizer
from optimizer_table import ROWS, assert_same_bits


def _scalar_state(row):
    """Whether the row's rule keeps per-parameter scalar state (NAdam's mu_product): its
    new values are stored in Python after the compiled call, so it has no short step."""
    return bool(getattr(optbowl, row.cls).rule.scalar_state)


#: The rows whose steps the short step takes (irprop+ compares each loss with the last).
SHORT_ROWS = [r for r in ROWS if not r.needs_loss and not _scalar_state(r)]


def _params():
    # two groups' worth: float64 and float32, one 2-D; sizes that leave vector tails
    return [np.linspace(-1, 1, 37), np.linspace(2, -2, 30).astype(np.float32).reshape(5, 6),
            np.linspace(0.5, -0.3, 17)]


def _grads(params, k):
    return [np.cos(np.arange(p.size).reshape(p.shape) * 1.7 + k).astype(p.dtype) for p in params]


def _grouped(row, params, **over):
    return row.make([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}], **over)


@pytest.fixture
def python_steps(monkeypatch):
    """Counts the steps that went down Optimizer's Python path."""
    calls = []
    python_path = Optimizer._step

    def counted(self, *args):
        calls.append(self)
        return python_path(self, *args)

    monkeypatch.setattr(Optimizer, "_step", counted)
    return calls


def _assert_same_state(a, b, names):
    assert a.state.keys() == b.state.keys()
    for i in a.state:
        assert a.state[i]["step"] == b.state[i]["step"]
        for name in names:
            assert_same_bits(a.state[i][name], b.state[i][name])


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_short_steps_are_the_python_paths_bit_for_bit(row, python_steps):
    fast_params, slow_params = _params(), _params()
    fast, slow = _grouped(row, fast_params), _grouped(row, slow_params)
    for k in range(7):
        slow._short = None  # the Python path only
        grads = _grads(fast_params, k)
        given = tuple(grads) if k % 3 == 1 else grads
        row.step(fast, given, loss=float(k % 2))
        row.step(slow, [g.copy() for g in grads], loss=float(k % 2))
    for a, b in zip(fast_params, slow_params):
        assert_same_bits(a, b)
    _assert_same_state(fast, slow, row.state_names)
    assert fast.state[0]["step"] == 7
    if row.needs_loss or _scalar_state(row):  # always Python (see SHORT_ROWS)
        assert fast._short is None and python_steps.count(fast) == 7
    else:
        assert python_steps.count(fast) == 1  # the first step makes the states
    assert python_steps.count(slow) == 7


@pytest.mark.parametrize("row", SHORT_ROWS, ids=str)
def test_a_lone_array_and_equal_hyper_parameters_stay_short(row, python_steps):
    params = [np.full(9, 0.5, np.float32)]
    opt = row.make(params)
    opt.step(np.ones(9, np.float32))
    lr = opt.param_groups[0]["lr"]
    opt.param_groups[0]["lr"] = float(repr(lr))  # another object, equal: still as checked
    for k in range(3):
        opt.step(np.full(9, (-1.0) ** k, np.float32))
    assert python_steps.count(opt) == 1
    assert opt.state[0]["step"] == 4


@pytest.mark.parametrize("row", SHORT_ROWS, ids=str)
def test_a_changed_group_is_checked_and_used(row):
    # lr changed in place, then a bad lr, then the whole group dict replaced
    params, alone = _params(), _params()
    opt, ref = _grouped(row, params), _grouped(row, alone)
    row.step(opt, _grads(params, 0))
    row.step(ref, _grads(alone, 0))
    opt.param_groups[1]["lr"] = ref.param_groups[1]["lr"] = 0.125
    row.step(opt, _grads(params, 1))
    ref._short = None
    row.step(ref, _grads(alone, 1))
    before = [p.copy() for p in params]
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        row.step(opt, _grads(params, 2))
    for a, b in zip(params, before):
        assert_same_bits(a, b)
    opt.param_groups[0] = {**opt.param_groups[0], "lr": 0.0625}
    ref.param_groups[0]["lr"] = 0.0625
    row.step(opt, _grads(params, 3))
    ref._short = None
    row.step(ref, _grads(alone, 3))
    for a, b in zip(params, alone):
        assert_same_bits(a, b)
    _assert_same_state(opt, ref, row.state_names)


@pytest.mark.parametrize("row", [r for r in SHORT_ROWS if r.state_names], ids=str)
def test_replaced_state_arrays_are_read_each_step(row):
    params, alone = _params(), _params()
    opt, ref = _grouped(row, params), _grouped(row, alone)
    row.step(opt, _grads(params, 0))
    row.step(ref, _grads(alone, 0))
    name = row.state_names[-1]
    for o in (opt, ref):
        o.state[1][name] = o.state[1][name] + np.asarray(0.5, o.state[1][name].dtype)
    for k in (1, 2):
        row.step(opt, _grads(params, k))
        ref._short = None
        row.step(ref, _grads(alone, k))
    _assert_same_state(opt, ref, row.state_names)
    # a state array the compiled call refuses: the Python path raises, nothing is written
    before = [p.copy() for p in params]
    steps = [st["step"] for st in opt.state.values()]
    opt.state[0][name] = np.zeros(3, params[0].dtype)
    with pytest.raises(ValueError, match="shape"):
        row.step(opt, _grads(params, 3))
    for a, b in zip(params, before):
        assert_same_bits(a, b)
    assert [st["step"] for st in opt.state.values()] == steps
    # a state without one of its arrays: the Python path's KeyError, as before
    del opt.state[2][name]
    with pytest.raises(KeyError):
        row.step(opt, _grads(params, 4))


@pytest.mark.parametrize("row", SHORT_ROWS, ids=str)
def test_another_thread_inside_the_optimizer_makes_the_step_raise(row):
    params = [np.full(9, 0.5, np.float32)]
    opt = row.make(params)
    opt.step([np.ones(9, np.float32)])
    holding = threading.Event()
    done = threading.Event()

    def hold():
        with opt._exclusive("state_dict"):
            holding.set()
            done.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert holding.wait(10)
        before = params[0].copy()
        with pytest.raises(RuntimeError, match="another thread"):
            opt.step([np.ones(9, np.float32)])
        assert_same_bits(params[0], before)
    finally:
        done.set()
        t.join()
    opt.step([np.ones(9, np.float32)])  # the lock was given back
    assert opt.state[0]["step"] == 2


@pytest.mark.parametrize("row", SHORT_ROWS, ids=str)
def test_the_layout_is_remade_for_copies_and_new_groups(row, python_steps):
    params = _params()
    opt = row.make([params[0]])
    opt.step([_grads(params, 0)[0]])
    opt.add_param_group({"params": params[1:]})
    row.step(opt, _grads(params, 1))  # new parameters: their state is made in Python
    row.step(opt, _grads(params, 2))
    assert python_steps.count(opt) == 2
    for other in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert other._short is not None
        copied = [p.copy() for p in params]
        for k in (3, 4):  # a copy checks its groups once, in Python
            row.step(other, _grads(copied, k))
        assert python_steps.count(other) == 1
        assert other.state[0]["step"] == 5


def test_a_malformed_layout_is_refused():
    p = np.zeros(4, np.float32)
    from optbowl import SGD

    opt = SGD([p], lr=0.1)
    opt.step([np.ones(4, np.float32)])
    layout = opt._short
    for bad in [None, layout[:-1], (*layout[:2], "1", *layout[3:]),
                (*layout[:2], 0, *layout[3:]), (*layout[:4], None, *layout[5:])]:
        with pytest.raises(TypeError, match="layout"):
            _core.short_step(opt, bad, [np.ones(4, np.float32)])
    with pytest.raises(TypeError):
        _core.short_step(opt, layout)
    assert opt.state[0]["step"] == 1 and np.all(p == np.float32(-0.1))


@pytest.mark.parametrize("variant", ["irprop-", "rprop-", "rprop+", "backtrack"])
def test_compact_rprop_steps_short_and_as_in_python(variant, python_steps):
    from optbowl import Rprop

    fast_params, slow_params = _params(), _params()
    fast = Rprop(fast_params, lr=0.05, variant=variant, compact_state=True)
    slow = Rprop(slow_params, lr=0.05, variant=variant, compact_state=True)
    for k in range(5):
        slow._short = None
        fast.step(_grads(fast_params, k))
        slow.step(_grads(slow_params, k))
    for a, b in zip(fast_params, slow_params):
        assert_same_bits(a, b)
    _assert_same_state(fast, slow, fast._state_names)
    assert python_steps.count(fast) == 1 and python_steps.count(slow) == 5


@pytest.mark.parametrize("row", SHORT_ROWS, ids=str)
def test_a_parameter_swapped_in_param_groups_leaves_the_short_step(row, python_steps):
    # The short step knows the parameters of the last step; one swapped in param_groups
    # sends the step to Python, which takes it (Optimizer._sync_params), and the steps after
    # are short again, on the new array.
    params = _params()
    opt = _grouped(row, params)
    for k in range(2):
        row.step(opt, _grads(params, k))
    assert python_steps.count(opt) == 1
    new = params[2].copy()
    opt.param_groups[1]["params"][0] = new
    for k in (2, 3, 4):
        row.step(opt, _grads(params, k))
    assert python_steps.count(opt) == 2
    assert opt._params[2] is new and not np.array_equal(new, params[2])
