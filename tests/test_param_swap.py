"""A parameter swapped in ``param_groups`` (``opt.param_groups[0]["params"][0] = new``, as
torch users do): every optimizer steps the array that ``param_groups`` holds, whether the
optimizer has stepped before or not and whichever path the step takes.

NumPy optimizers keep state by position: the array put in a place takes that place's state
(and step count), so it must have the shape and dtype of the one it replaces; anything else
is refused naming ``param_groups[g]["params"][i]``, with nothing changed. optbowl.torch's
optimizers keep state by tensor, as torch.optim does: a tensor put in a group starts with
fresh state, of any shape.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from optbowl import _registry
from optimizer_table import ROWS, assert_same_bits


def _params():
    return [np.linspace(-1, 1, 7), np.linspace(2, -2, 6).astype(np.float32).reshape(2, 3),
            np.linspace(0.5, -0.3, 5)]


def _grads(params, k):
    return [np.cos(np.arange(p.size).reshape(p.shape) * 1.7 + k).astype(p.dtype) for p in params]


def _make(row, params):
    return row.make([{"params": params[:2]}, {"params": params[2:]}])


def _step(row, opt, grads, path):
    """One step down ``path``: "short" (the compiled short step, once every state is there),
    "python" (Python's short step: the compiled one switched off) or "general" (a
    ``found_inf`` flag sends a step past both short ones)."""
    if path == "python":
        opt._short = None
    if path == "general":
        return opt.step(grads, loss=1.0, found_inf=False) if row.needs_loss \
            else opt.step(grads, found_inf=False)
    return row.step(opt, grads)


PATHS = ["short", "python", "general"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("warm", [0, 2], ids=["cold", "warm"])
@pytest.mark.parametrize("row", ROWS, ids=str)
def test_a_swapped_parameter_is_stepped_with_its_places_state(row, warm, path):
    params, twin_params = _params(), _params()
    opt, twin = _make(row, params), _make(row, twin_params)
    for k in range(warm):
        row.step(opt, _grads(params, k))
        row.step(twin, _grads(twin_params, k))
    old = params[2]
    kept = old.copy()
    new = (old * 0.5 - 0.25).astype(old.dtype)
    opt.param_groups[1]["params"][0] = new
    twin_params[2][...] = new  # the twin keeps its array and takes the new values
    for k in (3, 4):
        _step(row, opt, _grads(params, k), path)
        _step(row, twin, _grads(twin_params, k), path)
    assert_same_bits(old, kept, "the array swapped out")
    assert_same_bits(new, twin_params[2], "the array swapped in")
    for a, b in zip(params[:2], twin_params[:2]):
        assert_same_bits(a, b)
    assert_same_bits(opt.state_dict(), twin.state_dict(), "state")
    assert opt._params[2] is new


def _bad_swaps():
    shared = np.zeros(9)
    read_only = np.zeros(5)
    read_only.flags.writeable = False
    return [
        ("shape", lambda o, p: o.param_groups[1]["params"].__setitem__(0, np.zeros(6)),
         ValueError, r'param_groups\[1\]\["params"\]\[0\]: shape \(6,\)'),
        ("2-d", lambda o, p: o.param_groups[1]["params"].__setitem__(0, np.zeros((5, 1))),
         ValueError, r'param_groups\[1\]\["params"\]\[0\]: shape'),
        ("dtype", lambda o, p: o.param_groups[1]["params"].__setitem__(
            0, np.zeros(5, np.float32)), TypeError, r'param_groups\[1\]\["params"\]\[0\]: dtype'),
        ("f32-for-f32-shape", lambda o, p: o.param_groups[0]["params"].__setitem__(
            1, np.zeros((3, 2), np.float32)), ValueError, r'param_groups\[0\]\["params"\]\[1\]'),
        ("read-only", lambda o, p: o.param_groups[1]["params"].__setitem__(0, read_only),
         ValueError, r'param_groups\[1\]\["params"\]\[0\]: is read-only'),
        ("int", lambda o, p: o.param_groups[1]["params"].__setitem__(0, np.zeros(5, np.int64)),
         TypeError, r'param_groups\[1\]\["params"\]\[0\]'),
        ("list", lambda o, p: o.param_groups[1]["params"].__setitem__(0, [0.0] * 5),
         TypeError, r'param_groups\[1\]\["params"\]\[0\]'),
        ("non-contiguous", lambda o, p: o.param_groups[1]["params"].__setitem__(
            0, np.zeros(10)[::2]), ValueError, r'param_groups\[1\]\["params"\]\[0\].*contiguous'),
        ("another-parameter", lambda o, p: o.param_groups[1]["params"].__setitem__(0, p[0][:5]),
         ValueError, r"shares memory"),
        ("overlapping-views", lambda o, p: (
            o.param_groups[0]["params"].__setitem__(0, shared[:7]),
            o.param_groups[1]["params"].__setitem__(0, shared[4:])), ValueError,
         r"shares memory"),
        ("appended", lambda o, p: o.param_groups[1]["params"].append(np.zeros(3)), ValueError,
         r'param_groups\[1\]\["params"\]: holds 2 arrays, the group has 1'),
        ("removed", lambda o, p: o.param_groups[0]["params"].pop(), ValueError,
         r'param_groups\[0\]\["params"\]: holds 1 arrays'),
        ("not-a-list", lambda o, p: o.param_groups[1].__setitem__("params", p[2]), TypeError,
         r'param_groups\[1\]\["params"\]: expected a list'),
        ("group-appended", lambda o, p: o.param_groups.append({"params": [np.zeros(2)]}),
         ValueError, r"param_groups: .*add_param_group"),
    ]


@pytest.mark.parametrize("case,swap,exc,match", [pytest.param(*c, id=c[0]) for c in _bad_swaps()])
@pytest.mark.parametrize("warm", [0, 2], ids=["cold", "warm"])
@pytest.mark.parametrize("row", ROWS, ids=str)
def test_a_bad_swap_is_refused_naming_it_and_changes_nothing(row, warm, case, swap, exc, match):
    params, twin_params = _params(), _params()
    opt, twin = _make(row, params), _make(row, twin_params)
    for k in range(warm):
        row.step(opt, _grads(params, k))
        row.step(twin, _grads(twin_params, k))
    groups = [dict(g, params=list(g["params"])) for g in opt.param_groups]
    before_params = [p.copy() for p in params]
    before_state = opt.state_dict()
    swap(opt, params)
    for call in (lambda: row.step(opt, _grads(params, 9)), opt.state_dict,
                 lambda: opt.load_state_dict(before_state)):
        with pytest.raises(exc, match=match):
            call()
    for a, b in zip(params, before_params):
        assert_same_bits(a, b, "params")
    opt.param_groups[:] = groups  # put back: the optimizer goes on as if nothing happened
    assert_same_bits(opt.state_dict(), before_state, "state")
    for k in (5, 6):
        row.step(opt, _grads(params, k))
        row.step(twin, _grads(twin_params, k))
    for a, b in zip(params, twin_params):
        assert_same_bits(a, b, "params after resuming")
    assert_same_bits(opt.state_dict(), twin.state_dict(), "state after resuming")


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_a_whole_list_replaced_and_swapped_back(row):
    params, twin_params = _params(), _params()
    opt, twin = _make(row, params), _make(row, twin_params)
    for k in range(2):
        row.step(opt, _grads(params, k))
        row.step(twin, _grads(twin_params, k))
    copies = [p.copy() for p in params[:2]]
    opt.param_groups[0]["params"] = copies  # a new list of equal arrays: state by position
    row.step(opt, _grads(params, 2))
    row.step(twin, _grads(twin_params, 2))
    for a, b in zip(copies, twin_params[:2]):
        assert_same_bits(a, b)
    opt.param_groups[0]["params"] = params[:2]  # back to the first arrays, one step behind
    for p, c in zip(params[:2], copies):
        p[...] = c
    row.step(opt, _grads(params, 3))
    row.step(twin, _grads(twin_params, 3))
    for a, b in zip(params, twin_params):
        assert_same_bits(a, b)
    fresh = _make(row, [p.copy() for p in params])
    fresh.load_state_dict(opt.state_dict())
    assert_same_bits(fresh.state_dict(), opt.state_dict())


# ------------------------------------------------------------------------- optbowl.torch
def _torch_case(name):
    """optbowl.torch's class ``name`` and the options of the table's row of that class with
    the most options it takes (so that its state is as full as the rule keeps it)."""
    obt = pytest.importorskip("optbowl.torch")
    cls = getattr(obt, name)
    takes = set(inspect.signature(cls).parameters)
    rows = [row for row in ROWS if row.cls == name and set(row.kwargs) <= takes]
    return cls, dict(max(rows, key=lambda row: len(row.kwargs)).kwargs) if rows else {}


@pytest.mark.parametrize("path", ["plan", "general"])
@pytest.mark.parametrize("warm", [0, 2], ids=["cold", "warm"])
@pytest.mark.parametrize("name", _registry.classes("torch"))
@pytest.mark.parametrize("shape", [(16,), (4, 2)], ids=["same-shape", "other-shape"])
def test_torch_follows_param_groups_with_fresh_state_for_a_new_tensor(name, warm, path, shape):
    torch = pytest.importorskip("torch")
    cls, options = _torch_case(name)

    def tensors():
        return [torch.linspace(-1, 1, 16).requires_grad_(),
                torch.linspace(2, -2, 8, dtype=torch.float64).requires_grad_()]

    params, twin_params = tensors(), tensors()
    opt, twin = cls(params, **options), cls(twin_params, **options)

    def grads(ps, k):
        for i, p in enumerate(ps):
            p.grad = torch.cos(torch.arange(p.numel(), dtype=p.dtype) * 1.7 + k + i).reshape(
                p.shape)

    for k in range(warm):
        for o, ps in ((opt, params), (twin, twin_params)):
            grads(ps, k)
            o.step()
    old, kept = params[0], params[0].detach().clone()
    new = torch.linspace(0.3, -0.6, int(np.prod(shape))).reshape(shape).requires_grad_()
    alone = new.detach().clone().requires_grad_()
    opt.param_groups[0]["params"][0] = new
    solo = cls([alone], **options)  # the new tensor's fresh state, as torch.optim gives it
    for k in (3, 4):
        if path == "general":
            opt._plan = None
        grads([new, params[1]], k)
        opt.step()
        grads([twin_params[0], twin_params[1]], k)
        twin.step()
        grads([alone], k)
        solo.step()
    assert torch.equal(old.detach(), kept), "the tensor swapped out moved"
    assert torch.equal(new.detach(), alone.detach()), "the tensor swapped in"
    assert torch.equal(params[1].detach(), twin_params[1].detach())
    for key, t in opt.state[new].items():
        assert torch.equal(t, solo.state[alone][key]), key
