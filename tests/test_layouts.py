"""Any dense memory layout: F-ordered arrays, transposed and permuted views, channels_last.

An element-wise rule needs no order: a parameter whose elements fill its memory without gaps
or overlaps is stepped as the flat run over its memory, with a gradient and state of its
strides. These tests check that such a parameter steps bit for bit as its C-ordered copy
(NumPy classes, functional API, checkpoints, optbowl.torch), that state is made in the
parameter's layout, that a gradient or state of other strides is refused with nothing
written, and that the aliasing checks see the true memory of permuted views.
"""

from __future__ import annotations

import copy
import io
import sys
import threading

import numpy as np
import pytest

import optbowl as ob
from optimizer_table import ROWS, assert_same_bits
from optbowl import functional as F

# ----------------------------------------------------------------------------- layouts
SHAPE = (3, 4, 5)


def _layouts():
    """(id, make(c_array) -> the same values in another dense layout)."""
    return [
        ("C", lambda a: a.copy()),
        ("F", lambda a: np.asfortranarray(a)),
        ("transposed", lambda a: np.ascontiguousarray(a.transpose(2, 0, 1)).transpose(1, 2, 0)),
        ("permuted", lambda a: np.ascontiguousarray(a.transpose(1, 2, 0)).transpose(2, 0, 1)),
    ]


LAYOUTS = _layouts()


def _values(k, shape=SHAPE, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed + 101 * k)
    return rng.standard_normal(shape).astype(dtype)


def _params(layout):
    """Three parameters: float64 and float32 3-D arrays in ``layout``, one 2-D array."""
    make = dict(LAYOUTS)[layout]
    return [make(_values(0)), make(_values(1, dtype=np.float32)),
            np.asfortranarray(_values(2, (6, 7))) if layout != "C" else _values(2, (6, 7))]


def _grads_like(params, k):
    """Gradients with each parameter's strides (np.empty_like keeps them)."""
    out = []
    for j, p in enumerate(params):
        g = np.empty_like(p)
        g[...] = _values(10 * k + j, p.shape, p.dtype, seed=7)
        out.append(g)
    return out


def _strides_in_elements(a):
    return tuple(s // a.itemsize for s in a.strides)


def _run(row, layout, steps=4):
    params = _params(layout)
    opt = row.make(params)
    for k in range(steps):
        row.step(opt, _grads_like(params, k), loss=float(3 - k))
    return opt, params


def _memory_order(a):
    """A C-ordered array holding ``a``'s elements in the order of its memory (its axes
    sorted by stride): the flat run a step of ``a`` walks."""
    order = sorted(range(a.ndim), key=lambda axis: -a.strides[axis])
    return np.ascontiguousarray(a.transpose(order))


def _run_in_memory_order(row, layout, steps=4):
    """The C-ordered run over the memory-order copies of ``layout``'s parameters and
    gradients."""
    params = [_memory_order(p) for p in _params(layout)]
    opt = row.make(params)
    shaped = _params(layout)
    for k in range(steps):
        row.step(opt, [_memory_order(g) for g in _grads_like(shaped, k)], loss=float(3 - k))
    return opt, params


def test_the_layouts_are_what_they_say():
    a = _values(0)
    for name, make in LAYOUTS:
        b = make(a)
        np.testing.assert_array_equal(a, b)
        assert b.flags.c_contiguous == (name == "C")
        assert b.flags.f_contiguous == (name == "F")


@pytest.mark.parametrize("layout", [name for name, _ in LAYOUTS if name != "C"])
@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_every_optimizer_steps_any_dense_layout_as_the_c_ordered_copy(row, layout):
    # The flat run over the memory is stepped: bit for bit the C-ordered array of the same
    # elements in memory order (where a rule rounds a tensor's last elements as torch's
    # fused scalar tail, the last ones in memory)...
    c_opt, c_params = _run_in_memory_order(row, layout)
    opt, params = _run(row, layout)
    for p, q in zip(params, c_params):
        assert_same_bits(_memory_order(p), q, f"params ({layout})")
    for i in range(len(params)):
        state, ref = opt.state[i], c_opt.state[i]
        assert set(state) == set(ref), (i, layout)
        for name, v in state.items():
            want = ref[name]
            if isinstance(v, np.ndarray) and v.shape == params[i].shape and v.ndim > 1:
                assert_same_bits(_memory_order(v), want, f"state[{i}][{name!r}] ({layout})")
            else:
                assert_same_bits(v, want, f"state[{i}][{name!r}] ({layout})")
    # ...and, for a rule without such a tail, as the C-ordered copy in the array's own order
    if row.cls not in ("Adam", "AdamW"):
        c_opt, c_params = _run(row, "C")
        for p, q in zip(params, c_params):
            assert_same_bits(p, q, f"params ({layout})")
        assert_same_bits(opt.state_dict(), c_opt.state_dict(), f"state ({layout})")
    # state is made with the parameter's strides (as np.empty_like makes it); scalar state
    # (NAdam's mu_product) is 0-d
    for i, p in enumerate(params):
        for name, v in opt.state[i].items():
            if isinstance(v, np.ndarray) and name not in opt.rule.scalar_names:
                assert _strides_in_elements(v) == _strides_in_elements(p), (i, name)


@pytest.mark.parametrize("layout", ["F", "transposed"])
def test_compact_rprop_state_takes_the_parameters_layout(layout):
    c = _params("C")
    params = _params(layout)
    a = ob.Rprop(c, lr=0.05, compact_state=True)
    b = ob.Rprop(params, lr=0.05, compact_state=True)
    for k in range(4):
        a.step(_grads_like(c, k))
        b.step(_grads_like(params, k))
    for p, q in zip(params, c):
        assert_same_bits(p, q)
    assert b.state[0]["prev_sign"].dtype == np.int8
    assert _strides_in_elements(b.state[0]["prev_sign"]) == _strides_in_elements(params[0])
    assert_same_bits(a.state_dict(), b.state_dict())


def test_a_transposed_view_of_a_larger_buffer_is_a_dense_parameter():
    # A slice of contiguous rows, transposed: dense, and stepped in place in the buffer.
    buf = _values(0, (8, 6))
    keep = buf.copy()
    p = buf[2:5].T
    assert p.flags.f_contiguous and not p.flags.c_contiguous
    ref = np.ascontiguousarray(p)
    g = np.ones_like(p)
    ob.Adam(p, lr=0.1).step(g)
    ob.Adam(ref, lr=0.1).step(np.ones_like(ref))
    np.testing.assert_array_equal(buf[2:5].T, ref)
    np.testing.assert_array_equal(buf[:2], keep[:2])
    np.testing.assert_array_equal(buf[5:], keep[5:])


# ----------------------------------------------------------------------------- functional
@pytest.mark.parametrize("layout", ["F", "transposed", "permuted"])
def test_functional_steps_any_dense_layout_as_the_c_ordered_copy(layout):
    make = dict(LAYOUTS)[layout]
    runs = {}
    for name, mk in (("C", lambda a: a.copy()), (layout, make)):
        x = mk(_values(0))
        g = mk(_values(1))
        m, v, sums, buf, prev, sizes = (mk(np.zeros(SHAPE)) for _ in range(6))
        sizes[...] = 0.01
        sq, gavg, rbuf = (mk(np.zeros(SHAPE)) for _ in range(3))
        xs = [mk(_values(k + 2)) for k in range(6)]
        for step in (1, 2, 3):
            F.adam([xs[0]], [g], [m], [v], step=step, lr=0.01, weight_decay=0.1)
            F.adagrad([xs[1]], [g], [sums], step=step, lr=0.1)
            F.sgd([xs[2]], [g], [buf], step=step, lr=0.1, momentum=0.9, nesterov=True)
            F.rprop([xs[3]], [g if step % 2 else -g], [prev], [sizes])
            F.rmsprop([xs[4]], [g], [sq], [gavg], [rbuf], lr=0.01, momentum=0.5, centered=True)
            F.quickprop([xs[5]], [g * step], [np.zeros_like(x)], [np.zeros_like(x)])
        runs[name] = (xs, m, v, sums, buf, prev, sizes, sq, gavg, rbuf)
    for a, b in zip(runs["C"], runs[layout]):
        assert_same_bits(a, b)


def test_functional_state_of_other_strides_is_refused_and_nothing_is_written():
    x = np.asfortranarray(_values(0))
    g = np.asfortranarray(_values(1))
    m, v = np.zeros_like(x), np.zeros(SHAPE)  # v is C-ordered: other strides than x
    before = [x.copy(), m.copy(), v.copy()]
    with pytest.raises(ValueError, match=r"exp_avg_sqs\[0\]: strides \(20, 5, 1\).*"
                                         r"params\[0\]'s \(1, 3, 12\)"):
        F.adam([x], [g], [m], [v], step=1)
    for a, b in zip((x, m, v), before):
        assert_same_bits(a, b)


# ----------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("row", ROWS, ids=repr)
@pytest.mark.parametrize("warm", [0, 2], ids=["fresh", "warm"])
def test_a_gradient_of_other_strides_is_refused_and_nothing_changes(row, warm):
    params = _params("F")
    opt = row.make(params)
    for k in range(warm):
        row.step(opt, _grads_like(params, k), loss=1.0)
    before_params = [p.copy() for p in params]
    before_state = opt.state_dict()
    grads = _grads_like(params, 5)
    grads[0] = np.ascontiguousarray(grads[0])  # C-ordered for an F-ordered parameter
    with pytest.raises(ValueError, match=r"grads\[0\]: strides \(20, 5, 1\) \(in elements\) "
                                         r"differ from params\[0\]'s \(1, 3, 12\)"):
        row.step(opt, grads, loss=1.0)
    for a, b in zip(params, before_params):
        assert_same_bits(a, b)
    assert_same_bits(opt.state_dict(), before_state)


@pytest.mark.parametrize("bad,match", [
    (lambda: np.ones(10)[::2], r"params\[0\]: must be contiguous in some order of its axes"),
    (lambda: np.ones((4, 6))[:, :3], r"params\[0\]: must be contiguous in some order"),
    (lambda: np.ones((4, 6))[::-1], r"params\[0\]: must be contiguous in some order"),
    (lambda: np.lib.stride_tricks.as_strided(np.ones(8), (3, 4), (16, 8)),
     r"params\[0\]: must be contiguous in some order"),  # rows overlap
])
def test_arrays_with_gaps_overlaps_or_reversed_axes_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        ob.SGD(bad(), lr=0.1)
    x = np.zeros(bad().shape)
    with pytest.raises(ValueError, match=match.replace("params", "grads")):
        F.sgd([x], [bad()], step=1, lr=0.1)
    assert not x.any()  # nothing written


def test_a_swapped_parameter_of_another_layout_is_refused():
    p = np.asfortranarray(_values(0))
    opt = ob.Adam([p], lr=0.1)
    opt.step([np.asfortranarray(_values(1))])
    before = opt.state_dict()
    opt.param_groups[0]["params"][0] = np.ascontiguousarray(p)
    with pytest.raises(ValueError, match=r'param_groups\[0\]\["params"\]\[0\]: strides .* differ '
                                         r"from those of the parameter it replaces"):
        opt.step([np.ones(SHAPE)])
    opt.param_groups[0]["params"][0] = p
    assert_same_bits(opt.state_dict(), before)


# ----------------------------------------------------------------------------- aliasing
def _base():
    return np.zeros((6, 4))


@pytest.mark.parametrize("make,shares", [
    # the same memory in two layouts
    (lambda b: [b, b.T], True),
    # contiguous row blocks transposed: [2:4] overlaps [3:5] in row 3, not [4:6]
    (lambda b: [b[2:4].T, b[3:5].T], True),
    (lambda b: [b[2:4].T, b[4:6].T], False),
    (lambda b: [b[0:3], b[2:6].T], True),
    (lambda b: [b[0:2], b[2:6].T], False),
])
def test_overlap_checks_see_the_memory_of_permuted_views(make, shares):
    base = _base()
    params = make(base)
    if shares:
        with pytest.raises(ValueError, match=r"params\[1\] shares memory with params\[0\]"
                                             r"|params\[0\] shares memory with params\[1\]"):
            ob.Adam(params, lr=0.1)
        with pytest.raises(ValueError, match=r"shares memory"):
            F.sgd(params, [np.ones_like(p) for p in params], step=1, lr=0.1)
        assert not base.any()
    else:
        opt = ob.Adam(params, lr=0.1)
        opt.step([np.ones_like(p) for p in params])
        assert np.count_nonzero(base) == sum(p.size for p in params)


def test_a_gradient_that_is_a_permuted_view_of_a_parameter_is_refused():
    base = _values(0, (4, 6))
    x = base[:, :].T.copy().T  # F-ordered (4, 6)
    opt = ob.SGD([x, np.zeros((6, 4))], lr=0.1)
    before = x.copy()
    with pytest.raises(ValueError, match="shares memory"):
        opt.step([np.ones_like(x), x.T])  # the second gradient is the first parameter's memory
    assert_same_bits(x, before)


@pytest.fixture
def gil_held_until_released():
    """Make the running thread keep the GIL until it releases it itself (no forced switch)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    yield
    sys.setswitchinterval(old)


def _refused_while_running(worker_step, main_step, attempts=4):
    """The RuntimeErrors of main_step() called while worker_step() runs in another thread,
    inside its GIL-free kernel (either of the two may be the one refused)."""
    refused = []
    for _ in range(attempts):
        inside = threading.Event()

        def worker():
            inside.set()
            try:
                worker_step()  # keeps the GIL until its kernel releases it
            except RuntimeError as e:
                refused.append(e)

        t = threading.Thread(target=worker)
        t.start()
        inside.wait()
        try:
            main_step()
        except RuntimeError as e:
            refused.append(e)
        t.join()
    return refused


def test_steps_in_flight_claim_the_memory_of_permuted_views(gil_held_until_released):
    # Row blocks of one buffer, transposed: each a dense view whose memory is its rows.
    rows, cols = 2048, 2048
    buf = np.zeros((rows, cols), np.float32)
    half = rows // 2
    g = np.ones((half, cols), np.float32).T  # the parameters' layout
    top = ob.SGD([buf[:half].T], lr=1.0)
    bottom = ob.SGD([buf[half:].T], lr=1.0)  # adjacent memory, no element in common
    shifted = ob.SGD([buf[half - 1:rows - 1].T], lr=1.0)  # one row in common with top
    assert not _refused_while_running(lambda: top.step([g]), lambda: bottom.step([g]))
    np.testing.assert_array_equal(buf, np.full((rows, cols), -4.0, np.float32))
    refused = _refused_while_running(lambda: top.step([g]), lambda: shifted.step([g]))
    assert refused
    assert all("shares memory with an array of a step running" in str(e) for e in refused)
    assert ob._core.steps_in_flight() == 0


# ----------------------------------------------------------------------------- sparse AdaGrad
def test_sparse_adagrad_steps_dense_gradients_in_any_layout_and_needs_c_rows():
    table = np.asfortranarray(_values(0, (5, 4)))
    other = np.asfortranarray(_values(1, (5, 4)))
    twin = [np.ascontiguousarray(table), np.ascontiguousarray(other)]
    opt = ob.Adagrad([table, other], lr=0.1)
    ref = ob.Adagrad(twin, lr=0.1)
    g = np.asfortranarray(_values(2, (5, 4)))
    opt.step([g, g])
    ref.step([np.ascontiguousarray(g)] * 2)
    assert_same_bits(table, twin[0])
    assert_same_bits(other, twin[1])
    # a row-sparse gradient reads rows as runs of memory: an F-ordered table is refused
    before = [table.copy(), other.copy(), opt.state_dict()]
    with pytest.raises(ValueError, match=r"params\[1\]: row-sparse gradients need a C-ordered "
                                         r"parameter"):
        opt.step([g, ob.SparseRows([0, 3], np.ones((2, 4)))])
    assert_same_bits(table, before[0])
    assert_same_bits(other, before[1])
    assert_same_bits(opt.state_dict(), before[2])
    with pytest.raises(ValueError, match=r"values: must be C-contiguous"):
        ob.SparseRows([0, 3], np.asfortranarray(np.ones((2, 4))))


# ----------------------------------------------------------------------------- state_dict
@pytest.mark.parametrize("layout", ["F", "transposed"])
def test_state_dict_keeps_the_layout_and_load_copies_into_the_parameters_layout(layout):
    # RMSprop: three state arrays, and no torch tail (whose elements follow memory order)
    row = next(r for r in ROWS if r.name == "RMSprop")
    opt, params = _run(row, layout, steps=2)
    sd = opt.state_dict()
    for i, p in enumerate(params):  # a copy in the state's own layout
        for name, v in sd["state"][i].items():
            if isinstance(v, np.ndarray):
                assert _strides_in_elements(v) == _strides_in_elements(p)
                assert not np.shares_memory(v, opt.state[i][name])
    # a C-ordered state (e.g. from C-ordered parameters) loads into this layout by value
    c_opt, c_params = _run(row, "C", steps=2)
    fresh_params = [p.copy(order="K") for p in params]
    for q, p in zip(fresh_params, params):
        assert _strides_in_elements(q) == _strides_in_elements(p)
    fresh = row.make(fresh_params)
    fresh.load_state_dict(c_opt.state_dict())
    for i, p in enumerate(fresh_params):
        for v in fresh.state[i].values():
            if isinstance(v, np.ndarray):
                assert _strides_in_elements(v) == _strides_in_elements(p)
    for k in (5, 6):
        fresh.step(_grads_like(fresh_params, k))
        opt.step(_grads_like(params, k))
    for p, q in zip(fresh_params, params):
        assert_same_bits(p, q)
    assert_same_bits(fresh.state_dict(), opt.state_dict())


@pytest.mark.parametrize("layout", ["F", "transposed"])
def test_checkpoint_round_trip_of_any_layout_steps_on_bit_for_bit(layout):
    row = next(r for r in ROWS if r.name == "Rprop-irprop-")
    opt, params = _run(row, layout, steps=3)
    f = io.BytesIO()
    ob.save_state(f, opt.state_dict())
    f.seek(0)
    loaded = ob.load_state(f)
    assert_same_bits(loaded, opt.state_dict())
    twin_params = [p.copy(order="K") for p in params]
    twin = row.make(twin_params)
    twin.load_state_dict(loaded)
    for k in (4, 5):
        opt.step(_grads_like(params, k))
        twin.step(_grads_like(twin_params, k))
    assert_same_bits(twin_params, params)
    assert_same_bits(twin.state_dict(), opt.state_dict())


# ----------------------------------------------------------------------------- the bowl
def test_the_bowl_takes_its_arrays_in_any_layout():
    rng = np.random.default_rng(3)
    M = rng.standard_normal((5, 5))
    A = M @ M.T + 5 * np.eye(5)
    x0 = rng.standard_normal(10)[::2]  # a strided view
    b = np.asfortranarray(rng.standard_normal((5, 1)))[:, 0]
    c_bowl = ob.QuadraticBowl(np.ascontiguousarray(A), np.ascontiguousarray(b))
    f_bowl = ob.QuadraticBowl(np.asfortranarray(A), b)
    for method, hp in (("gd", {"lr": 0.05}), ("adam", {"lr": 0.05}), ("rprop", {"lr": 0.05})):
        a = c_bowl.run(method, np.ascontiguousarray(x0), 20, **hp)
        t = f_bowl.run(method, x0, 20, **hp)
        assert_same_bits(a.x, t.x, method)


# ----------------------------------------------------------------------------- torch
def _torch():
    return pytest.importorskip("torch")


def _resnet_block(torch, channels=16, seed=0):
    """conv-bn-relu-conv-bn + skip, small, in float32; every tensor a multiple of 16
    elements (64 bytes), the sizes torch's fused kernels step without a scalar tail."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + x)

    torch.manual_seed(seed)
    return Block()


# (optbowl.torch class, its kwargs, torch's path that optbowl claims parity with: fused=True
# where it claims fused parity, else the single-tensor loop; None: torch has no such rule)
TORCH_CONFIGS = [
    ("Rprop", {"lr": 1e-3}, {"foreach": False}),
    ("Adagrad", {"lr": 1e-2, "weight_decay": 1e-3, "lr_decay": 1e-3}, {"fused": True}),
    ("SGD", {"lr": 1e-2, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
     {"fused": True}),
    ("SGD", {"lr": 1e-2, "momentum": 0.9, "dampening": 0.1}, {"foreach": False}),
    ("RMSprop", {"lr": 1e-3, "momentum": 0.5, "centered": True}, {"foreach": False}),
    ("Adam", {"lr": 1e-3, "weight_decay": 1e-2, "amsgrad": True}, {"fused": True}),
    ("AdamW", {"lr": 1e-3}, {"fused": True}),
    ("QuickProp", {"lr": 1e-3}, None),
]


def _train(torch, make_opt, channels_last, steps=20):
    """20 steps of the block on random data; the model, its optimizer, its first parameters
    and the gradients of every step (cloned in their layout)."""
    model = _resnet_block(torch)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    first = [p.detach().clone() for p in model.parameters()]
    opt = make_opt(model.parameters())
    gen = torch.Generator().manual_seed(1)
    grads = []
    for _ in range(steps):
        x = torch.randn(4, 16, 8, 8, generator=gen)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        target = torch.randn(4, 16, 8, 8, generator=gen)
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        opt.step()
    return model, opt, first, grads


def _same_tensors(torch, a, b, where):
    for (name, x), (_, y) in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert torch.equal(x.contiguous().view(torch.int32), y.contiguous().view(torch.int32)), \
            f"{where}: {name} differs"


@pytest.mark.parametrize("cls,kwargs,torch_path", TORCH_CONFIGS,
                         ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(TORCH_CONFIGS)])
def test_channels_last_resnet_block_trains_as_torch_bit_for_bit(cls, kwargs, torch_path):
    torch = _torch()
    import optbowl.torch as obt

    ours, ours_opt, first, grads = _train(torch, lambda ps: getattr(obt, cls)(ps, **kwargs), True)
    conv = ours.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert grads[0][0].stride() == conv.stride()  # autograd's gradients have its layout
    for name in ours_opt._state_names:  # state made in the parameter's layout
        t = ours_opt.state[conv].get(name)
        if t is not None:
            assert t.stride() == conv.stride(), name
    # the same gradients on contiguous copies of the parameters: the same bits (a model in
    # another layout computes other gradients, its convolutions rounding otherwise)
    flat = [p.contiguous().requires_grad_() for p in first]
    flat_opt = getattr(obt, cls)(flat, **kwargs)
    for step in grads:
        for p, g in zip(flat, step):
            p.grad = g.contiguous()
        flat_opt.step()
    _same_tensors(torch, ours.named_parameters(),
                  [(name, p) for (name, _), p in zip(ours.named_parameters(), flat)], "contiguous")
    if torch_path is None:
        return
    theirs, _, _, their_grads = _train(
        torch, lambda ps: getattr(torch.optim, cls)(ps, **kwargs, **torch_path), True)
    if cls == "RMSprop":  # optbowl's RMSprop agrees with torch's to an ulp or so per step
        for (name, x), (_, y) in zip(ours.named_parameters(), theirs.named_parameters()):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6, msg=name)
        return
    for a, b in zip(grads, their_grads):  # the same training, step by step
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    _same_tensors(torch, ours.named_parameters(), theirs.named_parameters(), "torch")


def _cl_param(torch, seed=0):
    gen = torch.Generator().manual_seed(seed)
    p = torch.randn(4, 3, 5, 6, generator=gen).contiguous(memory_format=torch.channels_last)
    return p.requires_grad_()


def test_torch_gradient_of_other_strides_is_refused_and_nothing_changes():
    torch = _torch()
    import optbowl.torch as obt

    p = _cl_param(torch)
    q = torch.zeros(3, requires_grad=True)
    opt = obt.Adam([p, q], lr=0.1)
    p.grad = torch.ones_like(p)
    q.grad = torch.ones_like(q)
    opt.step()
    opt.step()  # the second step is the reused plan's
    before = p.detach().clone()
    state = {k: v.clone() for k, v in opt.state[p].items()}
    p.grad = torch.ones(p.shape)  # contiguous, the parameter is channels_last
    with pytest.raises(ValueError, match=r"params\[0\]\.grad: strides \(90, 30, 6, 1\) differ "
                                         r"from the parameter's \(90, 1, 18, 3\)"):
        opt.step()
    assert torch.equal(p.detach(), before)
    for k, v in state.items():
        assert torch.equal(opt.state[p][k], v)
    p.grad = torch.ones_like(p)
    opt.step()  # a good step goes on


def test_torch_state_of_other_strides_is_refused_and_nothing_changes():
    torch = _torch()
    import optbowl.torch as obt

    p = _cl_param(torch)
    opt = obt.Rprop([p], lr=0.1)
    p.grad = torch.ones_like(p)
    opt.step()
    opt.state[p]["prev"] = opt.state[p]["prev"].contiguous()
    before = p.detach().clone()
    with pytest.raises(ValueError, match=r"params\[0\]: state\['prev'\]: strides .* differ from "
                                         r"the parameter's"):
        opt.step()
    assert torch.equal(p.detach(), before)


def test_torch_non_dense_parameters_are_refused():
    torch = _torch()
    import optbowl.torch as obt

    p = torch.zeros(8, 6)[:, ::2].requires_grad_()
    p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match=r"params\[0\]: must be contiguous in some order"):
        obt.SGD([p], lr=0.1).step()
    assert not p.detach().any()


@pytest.mark.parametrize("cls,kwargs", [("Adam", {"fused": True}), ("Rprop", {}),
                                        ("SGD", {"momentum": 0.9})])
def test_torch_a_state_saved_in_another_layout_loads_into_the_parameters_layout(cls, kwargs):
    torch = _torch()
    import optbowl.torch as obt

    # trained contiguous and saved; the parameter then moved to channels_last (as
    # model.to(memory_format=...) moves it) and the state loaded: copied into its layout
    flat = _cl_param(torch).detach().contiguous().requires_grad_()
    flat_opt = getattr(obt, cls)([flat], lr=1e-2, **kwargs)
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        flat.grad = torch.randn(flat.shape, generator=gen)
        flat_opt.step()
    saved = copy.deepcopy(flat_opt.state_dict())  # torch's loaded state shares its tensors
    cl = flat.detach().clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    opt = getattr(obt, cls)([cl], lr=1e-2, **kwargs)
    opt.load_state_dict(saved)
    for name, t in opt.state[cl].items():
        if name != "step":
            assert t.stride() == cl.stride(), name
            assert torch.equal(t, flat_opt.state[flat][name])
    for _ in range(2):  # and steps on as the contiguous one does
        g = torch.randn(flat.shape, generator=gen)
        flat.grad = g
        cl.grad = g.contiguous(memory_format=torch.channels_last)
        flat_opt.step()
        opt.step()
    assert torch.equal(cl.detach(), flat.detach())


@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_torch_channels_last_steps_reuse_the_plan(dtype, monkeypatch):
    # The step after the first reuses what it found (optbowl.torch's _Plan): a channels_last
    # parameter, its gradient of the same strides and its state, complex ones too.
    torch = _torch()
    import optbowl.torch as obt

    taken = [0]
    run = obt._Plan._run

    def counted(self, *args):
        done = run(self, *args)
        taken[0] += done
        return done

    monkeypatch.setattr(obt._Plan, "_run", counted)
    gen = torch.Generator().manual_seed(0)
    dt = getattr(torch, dtype)
    cl = torch.randn(4, 3, 5, 6, dtype=dt, generator=gen)
    p = cl.contiguous(memory_format=torch.channels_last).requires_grad_()
    q = cl.clone().requires_grad_()
    a, b = obt.Adam([p], lr=0.01, fused=True), obt.Adam([q], lr=0.01, fused=True)
    for _ in range(4):
        g = torch.randn(cl.shape, dtype=dt, generator=gen)
        p.grad = g.contiguous(memory_format=torch.channels_last)
        q.grad = g
        a.step()
        b.step()
    assert taken[0] == 6  # 3 steps of each optimizer
    assert torch.equal(p.detach(), q.detach())


def test_empty_arrays_of_any_strides_step():
    # no element, no order: an empty gradient's strides are not compared
    p = np.zeros((0, 3, 4)).transpose(2, 0, 1)
    g = np.zeros((4, 0, 3))
    opt = ob.Adam([p, np.zeros(3)], lr=0.1)
    opt.step([g, np.ones(3)])
    opt.step([np.zeros((0, 4, 3)).transpose(1, 0, 2), np.ones(3)])
    assert opt.state[0]["step"] == 2
