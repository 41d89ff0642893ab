"""Inputs of the wrong kind get a message that says what they are and where to go.

Masked arrays (whose mask the kernels would ignore) are refused at every entry point;
torch tensors handed to the NumPy API are pointed to ``optbowl.torch``; counts in
messages are in the singular where they are one; ``step(None)`` means what torch means
by a None gradient.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import optbowl as ob
from optbowl import _registry
from optbowl import functional as F
from optimizer_table import (ROWS, assert_same_bits, functional_call, required_kwargs,
                             state_arrays)

MASKED = "MaskedArray"


def _masked(a):
    return np.ma.masked_array(a, mask=np.arange(a.size).reshape(a.shape) % 2 == 0)


def _grads(params, k=0):
    return [np.cos(np.arange(p.size).reshape(p.shape) + k).astype(p.dtype) for p in params]


def _snapshot(opt, params):
    return [p.copy() for p in params], state_arrays(opt)


@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_masked_parameters_are_refused(row):
    p = _masked(np.ones(4))
    with pytest.raises(TypeError, match=r"^params\[0\]: a numpy\.ma\.MaskedArray"):
        row.make(p)
    with pytest.raises(TypeError, match=r"^params\[1\]: a numpy\.ma\.MaskedArray"):
        row.make([np.ones(2), p])


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
@pytest.mark.parametrize("single", [False, True], ids=["list", "single"])
@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_masked_gradients_are_refused_and_nothing_changes(row, single, warm):
    params = [np.linspace(-1, 1, 4)] if single else [np.linspace(-1, 1, 4), np.ones(3)]
    opt = row.make(params[0] if single else params)
    if warm:
        row.step(opt, _grads(params)[0] if single else _grads(params))
    before = _snapshot(opt, params)
    grads = _grads(params, 1)
    grads[-1] = _masked(grads[-1])
    with pytest.raises(TypeError, match=rf"^grads\[{len(params) - 1}\]: .*{MASKED}"):
        row.step(opt, grads[0] if single else grads)
    assert_same_bits(_snapshot(opt, params), before)


@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_masked_state_in_a_state_dict_is_refused(row):
    p = np.linspace(-1, 1, 4)
    opt = row.make(p)
    row.step(opt, _grads([p])[0])
    sd = opt.state_dict()
    name = next(k for k, v in sd["state"][0].items() if isinstance(v, np.ndarray))
    sd["state"][0][name] = _masked(sd["state"][0][name])
    before = _snapshot(opt, [p])
    with pytest.raises(TypeError, match=re.escape(f"state_dict['state'][0][{name!r}]")):
        opt.load_state_dict(sd)
    assert_same_bits(_snapshot(opt, [p]), before)


@pytest.mark.parametrize("fn", _registry.names("functional"))
@pytest.mark.parametrize("which", ["params", "grads"])
def test_functional_refuses_masked_arrays(fn, which):
    params, grads = [np.ones(3), np.ones(2)], [np.ones(3), np.ones(2)]
    if which == "params":
        params[1] = _masked(params[1])
    else:
        grads[1] = _masked(grads[1])
    before = [np.asarray(p).copy() for p in params]
    with pytest.raises(TypeError, match=rf"^{which}\[1\]: .*{MASKED}"):
        functional_call(_registry.rule(fn), params, grads)
    assert_same_bits([np.ma.getdata(p).copy() for p in params], before)


def test_functional_refuses_masked_state_and_sparse_values():
    p, g = np.ones((3, 2)), np.ones((3, 2))
    with pytest.raises(TypeError, match=rf"^sums\[0\]: .*{MASKED}"):
        F.adagrad([p], [g], [_masked(np.zeros((3, 2)))], step=1)
    with pytest.raises(TypeError, match=rf"^values: .*{MASKED}"):
        ob.SparseRows([0], _masked(np.ones((1, 2))))
    with pytest.raises(TypeError, match=rf"^indices: .*{MASKED}"):
        ob.SparseRows(np.ma.masked_array([0, 2], mask=[False, True]), np.ones((2, 2)))
    before = p.copy()
    # (the sparse call names a dense tensor by its place among the dense ones)
    with pytest.raises(TypeError, match=rf"^sums\[\d\]: .*{MASKED}"):
        F.adagrad([p, np.ones((2, 2))], [ob.SparseRows([0], np.ones((1, 2))), np.ones((2, 2))],
                  [np.zeros((3, 2)), _masked(np.zeros((2, 2)))], step=1)
    assert_same_bits(p, before)


def test_masked_arrays_of_a_plain_ndarray_subclass_still_pass():
    class Tagged(np.ndarray):
        pass

    x = np.ones(3).view(Tagged)
    ob.SGD(x, lr=0.5).step(np.ones(3).view(Tagged))
    assert np.array_equal(np.asarray(x), np.full(3, 0.5))


# ------------------------------------------------------------------------- torch tensors
TORCH_HINT = r"torch tensor: optbowl\.torch"


@pytest.mark.parametrize("cls", _registry.classes())
def test_torch_tensors_in_the_numpy_api_point_to_optbowl_torch(cls):
    torch = pytest.importorskip("torch")
    kw = required_kwargs(cls)
    make = getattr(ob, cls)
    with pytest.raises(TypeError, match=r"^params\[0\]: .*" + TORCH_HINT):
        make([torch.ones(3)], **kw)
    with pytest.raises(TypeError, match=r"^params: .*" + TORCH_HINT):
        make(torch.ones(3), **kw)
    x = np.ones(3)
    opt = make(x, **kw)
    before = x.copy()
    with pytest.raises(TypeError, match=r"^grads: expected a numpy\.ndarray, got Tensor .*"
                       + TORCH_HINT):
        opt.step(torch.ones(3))
    with pytest.raises(TypeError, match=r"^grads\[0\]: .*" + TORCH_HINT):
        opt.step([torch.ones(3)])
    assert_same_bits(x, before)


def test_functional_points_torch_tensors_to_optbowl_torch():
    torch = pytest.importorskip("torch")
    x = np.ones(3)
    with pytest.raises(TypeError, match=r"^grads: .*" + TORCH_HINT):
        F.sgd([x], torch.ones(3), None, step=1, lr=0.1)
    with pytest.raises(TypeError, match=r"^grads\[0\]: .*" + TORCH_HINT):
        F.sgd([x], [torch.ones(3)], None, step=1, lr=0.1)


# ------------------------------------------------------------------------- counts
def test_messages_count_one_in_the_singular():
    x = np.ones(3)
    opt = ob.SGD(x, lr=0.1)
    with pytest.raises(ValueError, match=r"^grads: expected 1 array \(one per parameter\), got 2"):
        opt.step([x.copy(), x.copy()])
    with pytest.raises(ValueError, match=r"^grads: expected 1 array \(one per entry of params\)"):
        F.sgd([x], [x.copy(), x.copy()], None, step=1, lr=0.1)
    with pytest.raises(ValueError, match=r"^momentum_buffers: expected 1 array \(one per entry"):
        F.sgd([x], [x.copy()], [np.zeros(3), np.zeros(3)], step=1, lr=0.1, momentum=0.5)
    with pytest.raises(ValueError, match=r"^grads: expected 2 arrays \(one per entry"):
        F.sgd([x, x + 1], [x.copy()], None, step=1, lr=0.1)
    assert repr(ob.SGD(np.ones(1), lr=0.1)).endswith("; 1 array, 1 parameter)")
    assert repr(ob.SGD([np.ones(2), np.ones(3)], lr=0.1)).endswith("; 2 arrays, 5 parameters)")
    two = ob.SGD([{"params": [np.ones(2)]}, {"params": [np.ones(2), np.ones(1)], "lr": 0.2}],
                 lr=0.1)
    assert "group 0 (1 array)" in repr(two) and "group 1 (2 arrays)" in repr(two)
    table = np.ones((1, 2))
    with pytest.raises(ValueError, match=r"with 1 row$"):
        ob.Adagrad(table).step([ob.SparseRows([1], np.ones((1, 2)))])


# ------------------------------------------------------------------------- step(None)
@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_step_none_skips_the_one_parameter_as_torch_skips_a_none_grad(row):
    x = np.linspace(-1, 1, 4)
    opt = row.make(x)
    before = _snapshot(opt, [x])
    row.step(opt, None)
    assert_same_bits(_snapshot(opt, [x]), before)  # nothing moved, no state, no step counted
    row.step(opt, _grads([x])[0])
    assert opt.state[0]["step"] == 1
    before = _snapshot(opt, [x])
    row.step(opt, None)
    assert_same_bits(_snapshot(opt, [x]), before)
    assert opt.state[0]["step"] == 1


@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_step_none_of_several_parameters_says_how_to_skip_them(row):
    params = [np.ones(2), np.ones(3)]
    opt = row.make(params)
    with pytest.raises(ValueError, match=r"^grads: expected a sequence of 2 arrays \(one per "
                       r"parameter; None skips one\), got a single None"):
        row.step(opt, None)
    row.step(opt, [None, None])  # skips both
    assert opt.state == {}
