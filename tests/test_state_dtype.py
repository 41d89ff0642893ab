"""state_dtype=float32: bfloat16/float16 parameters with float32 state.

Such a parameter is stepped as the float32 rule steps a float32 parameter, from the widened
parameter and gradient and the float32 state as it is, and the parameter is rounded to its
16-bit dtype (to nearest even) once when stored; the state is never rounded. Checked here:

- against the plain NumPy references of tests/reference.py run in float32 on the widened
  parameter, the parameter rounded to 16 bits after every step (bit for bit for the rules
  whose float32 path is bit-identical to its reference, to a tolerance otherwise), every rule,
  bfloat16 and float16;
- against optbowl's own float32 step with the parameter rounded the same way, bit for bit,
  for every rule and instruction set (sizes without a float32 torch tail);
- the NumPy classes, optbowl.functional and optbowl.torch; refusals (bad values, float64
  parameters, options it cannot combine with, mixed state dtypes) that change nothing;
  state_dict round trips.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

import numpy as np
import pytest

import optbowl as ob
from optbowl import functional as F

import reference as R
from optimizer_table import REFERENCE_ROWS
from test_half import data

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
HALF = [BF16, F16]
F32 = np.dtype(np.float32)


@dataclass(frozen=True)
class Case:
    name: str
    cls: str
    kwargs: Dict[str, Any]
    ref_init: Callable[[np.ndarray, Dict[str, Any]], Dict[str, Any]]
    ref_step: Callable[..., None]  # (p, g, state, kwargs, loss_increased)
    exact: bool  # bit-identical to the reference in float32
    state_names: Tuple[str, ...]
    needs_loss: bool = False

    def __repr__(self) -> str:
        return self.name


def _zeros(*names):
    return lambda p, kw: {n: np.zeros_like(p) for n in names}


def _sgd_init(p, kw):
    return {"momentum_buffer": None}


def _sgd_step(p, g, state, kw, increased):
    R.sgd_step(p, g, state, **kw)


def _quickprop_step(p, g, state, kw, increased):
    R.quickprop_step(p, g, state, **kw)


def _rmsprop_step(p, g, state, kw, increased):
    R.rmsprop_step(p, g, state, **kw)


def _adam_init(p, kw):
    return {"step": 0, "exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p),
            "max_exp_avg_sq": np.zeros_like(p)}


def _adam_step(decoupled):
    def step(p, g, state, kw, increased):
        R.adam_step(p, g, state, decoupled_weight_decay=decoupled, **kw)

    return step


# Every rule of the registry: the rows with a reference in tests/optimizer_table.py, and the
# rules whose references (as torch documents them) are there only as functions.
CASES = [Case(r.name, r.cls, r.kwargs, r.ref_init, r.ref_step, r.ref_exact, r.state_names,
              r.needs_loss) for r in REFERENCE_ROWS] + [
    Case("SGD", "SGD", {"lr": 0.05}, _sgd_init, _sgd_step, False, ()),
    Case("SGD-nesterov", "SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                                 "weight_decay": 0.01},
         _sgd_init, _sgd_step, False, ("momentum_buffer",)),
    Case("QuickProp", "QuickProp", {"lr": 0.05, "max_growth": 1.75},
         _zeros("prev_grad", "prev_step"), _quickprop_step, False, ("prev_grad", "prev_step")),
    Case("RMSprop", "RMSprop", {"lr": 0.01, "momentum": 0.5, "centered": True},
         _zeros("square_avg", "grad_avg", "momentum_buffer"), _rmsprop_step, False,
         ("square_avg", "grad_avg", "momentum_buffer")),
    Case("Adam", "Adam", {"lr": 0.01}, _adam_init, _adam_step(False), False,
         ("exp_avg", "exp_avg_sq")),
    Case("Adam-amsgrad", "Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01},
         _adam_init, _adam_step(False), False, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
    Case("AdamW", "AdamW", {"lr": 0.01, "weight_decay": 0.01}, _adam_init, _adam_step(True),
         False, ("exp_avg", "exp_avg_sq")),
]


def test_every_rule_has_a_case():
    from optbowl import _registry

    assert {c.cls for c in CASES} >= {_registry.rule(n).cls for n in ob._core.rules}


def rounded(x, dtype):
    """float32 values rounded to dtype (to nearest even) and widened back."""
    return np.asarray(x, np.float32).astype(dtype).astype(np.float32)


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    return np.array_equal(np.ascontiguousarray(a).reshape(-1).view(np.uint8),
                          np.ascontiguousarray(b).reshape(-1).view(np.uint8))


def make(case, p, **extra):
    return getattr(ob, case.cls)(p, **{**case.kwargs, **extra})


def step(case, opt, g, loss):
    return opt.step(g, loss=loss) if case.needs_loss else opt.step(g)


def losses(steps, seed=7):
    return np.random.default_rng(seed).standard_normal(steps)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("case", CASES, ids=repr)
@pytest.mark.parametrize("n", [64, 37])
def test_against_reference(case, dtype, n):
    """The float32 reference on the widened parameter, the parameter rounded once a step."""
    p = data(n, dtype)
    opt = make(case, p, state_dtype=np.float32)
    ref_p = p.astype(np.float32)
    state = case.ref_init(ref_p, case.kwargs)
    prev_loss = None
    for t, loss in enumerate(losses(8)):
        g = data(n, dtype, seed=t + 1)
        step(case, opt, g, loss)
        increased = prev_loss is not None and loss > prev_loss
        prev_loss = loss
        with np.errstate(all="ignore"):
            case.ref_step(ref_p, g.astype(np.float32), state, case.kwargs, increased)
        ref_p[...] = rounded(ref_p, dtype)
        assert p.dtype == dtype
        for name in case.state_names:
            assert opt.state[0][name].dtype == F32, name
        if case.exact:
            assert same_bits(p, ref_p.astype(dtype)), f"step {t}"
            for name in case.state_names:
                assert same_bits(opt.state[0][name], np.asarray(state[name], np.float32)), \
                    f"step {t}, {name}"
        else:
            # a float32 result a few ulps off the reference's may round to the neighbouring
            # 16-bit value: within 2 of the 16-bit dtype's ulps, relative to the largest value
            ulp = 2.0 ** (-7 if dtype == BF16 else -10)
            scale = max(1.0, float(np.max(np.abs(ref_p))))
            np.testing.assert_allclose(p.astype(np.float32), ref_p, rtol=2 * ulp,
                                       atol=2 * ulp * scale * 1e-2, err_msg=f"step {t}")
            for name in case.state_names:
                want = np.asarray(state[name], np.float32)
                np.testing.assert_allclose(opt.state[0][name], want, rtol=1e-2,
                                           atol=1e-3 * max(1.0, float(np.max(np.abs(want)))),
                                           err_msg=f"step {t}, {name}")


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_is_the_float32_step(case, dtype, each_isa):
    """Bit for bit optbowl's float32 step of the widened parameter, rounded once a step (a
    size without float32 torch tails, and one that spans several blocks and threads)."""
    for n in (1032, 64 * 1024 + 64):
        p = data(n, dtype)
        opt = make(case, p, state_dtype=np.float32)
        p32 = p.astype(np.float32)
        opt32 = make(case, p32)
        for t, loss in enumerate(losses(4)):
            g = data(n, dtype, seed=t + 1)
            step(case, opt, g, loss)
            step(case, opt32, g.astype(np.float32), loss)
            p32[...] = rounded(p32, dtype)
            assert same_bits(p, p32.astype(dtype)), f"n={n}, step {t}"
            for name in case.state_names:
                assert same_bits(opt.state[0][name], opt32.state[0][name]), f"{name}, step {t}"


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_float32_params_unchanged(case):
    """A float32 parameter's state is float32 anyway: state_dtype changes nothing."""
    a, b = data(100, F32), data(100, F32)
    o1, o2 = make(case, a, state_dtype="float32"), make(case, b)
    for t, loss in enumerate(losses(3)):
        g = data(100, F32, seed=t + 1)
        step(case, o1, g, loss)
        step(case, o2, g.copy(), loss)
    assert same_bits(a, b)


@pytest.mark.parametrize("value", [None, np.float32, "float32", np.dtype(np.float32)])
def test_accepted_values(value):
    p = data(16, BF16)
    opt = ob.Adam(p, state_dtype=value)
    opt.step(data(16, BF16, seed=1))
    assert opt.state[0]["exp_avg"].dtype == (BF16 if value is None else F32)


@pytest.mark.parametrize("value, error", [
    (np.float64, ValueError), ("float64", ValueError), (np.float16, ValueError),
    (int, ValueError), (np.int8, ValueError), (3, TypeError), (True, TypeError),
    ("garbage", TypeError), (object(), TypeError), (32, TypeError),
])
@pytest.mark.parametrize("cls", ["Adam", "Rprop", "SGD", "Lion"])
def test_bad_values(cls, value, error):
    p = data(16, BF16)
    kw = {"lr": 0.1} if cls == "SGD" else {}
    with pytest.raises(error, match="^state_dtype"):
        getattr(ob, cls)(p, state_dtype=value, **kw)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("case", CASES[:1] + CASES[-3:], ids=repr)
def test_float64_params_refused(case, dtype):
    p = data(16, F32).astype(dtype)
    before = p.copy()
    with pytest.raises(ValueError, match="^state_dtype.*float64|^state_dtype.*complex128"):
        make(case, p, state_dtype=np.float32)
    opt = make(case, [data(8, BF16)], state_dtype=np.float32)
    with pytest.raises(ValueError, match="^state_dtype"):
        opt.add_param_group({"params": [p]})
    assert same_bits(p, before)


def test_complex64_params_stepped():
    """A complex64 parameter is stepped as its float32 real view: its state is complex64."""
    p = (data(8, F32) + 1j * data(8, F32, seed=3)).astype(np.complex64)
    q = p.copy()
    o1, o2 = ob.Adam(p, state_dtype=np.float32), ob.Adam(q)
    g = (data(8, F32, seed=1) - 1j * data(8, F32, seed=2)).astype(np.complex64)
    o1.step(g)
    o2.step(g.copy())
    assert o1.state[0]["exp_avg"].dtype == np.complex64
    assert same_bits(p, q)


@pytest.mark.parametrize("kwargs, match", [
    ({"state_bits": 8}, "state_bits=8"), ({"state_bits": 16}, "state_bits=16"),
])
@pytest.mark.parametrize("cls", ["Adam", "AdamW", "Adagrad"])
def test_state_bits_refused(cls, kwargs, match):
    with pytest.raises(ValueError, match=f"^state_dtype.*{match}"):
        getattr(ob, cls)(data(16, F32), state_dtype=np.float32, **kwargs)


def test_compact_state_refused():
    with pytest.raises(ValueError, match="^state_dtype.*compact_state"):
        ob.Rprop(data(16, BF16), compact_state=True, state_dtype=np.float32)


def _snapshot(p, opt):
    return p.copy(), copy.deepcopy(opt.state)


def _unchanged(p, opt, snap):
    p0, state0 = snap
    assert same_bits(p, p0)
    for i, st in state0.items():
        for k, v in st.items():
            if isinstance(v, np.ndarray):
                assert same_bits(opt.state[i][k], v), k
            else:
                assert opt.state[i][k] == v


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_refused_step_changes_nothing(dtype):
    p = data(64, dtype)
    opt = ob.Adam(p, state_dtype=np.float32)
    opt.step(data(64, dtype, seed=1))
    snap = _snapshot(p, opt)
    with pytest.raises(TypeError, match="grads"):
        opt.step(data(64, F32, seed=2))  # a float32 gradient for a 16-bit parameter
    _unchanged(p, opt, snap)
    opt.state[0]["exp_avg_sq"] = opt.state[0]["exp_avg_sq"].astype(dtype)  # mixed state
    with pytest.raises(TypeError, match="state_dtype=float32"):
        opt.step(data(64, dtype, seed=2))
    assert same_bits(p, snap[0])


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_functional_takes_float32_state(dtype):
    """optbowl.functional: float32 state arrays beside 16-bit parameters are this step."""
    p, q = data(64, dtype), data(64, dtype)
    opt = ob.Adam(q, lr=0.01, state_dtype=np.float32)
    m, v = np.zeros(64, np.float32), np.zeros(64, np.float32)
    for t in range(3):
        g = data(64, dtype, seed=t + 1)
        F.adam([p], [g], [m], [v], step=[t + 1], lr=0.01)
        opt.step(g.copy())
    assert same_bits(p, q)
    assert same_bits(m, opt.state[0]["exp_avg"]) and same_bits(v, opt.state[0]["exp_avg_sq"])


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_functional_refusals_name_the_array(dtype):
    p = data(64, dtype)
    before = p.copy()
    g = data(64, dtype, seed=1)
    mixed = ([np.zeros(64, np.float32)], [np.zeros(64, dtype)])
    with pytest.raises(TypeError, match=r"exp_avg_sqs\[0\].*state_dtype=float32"):
        F.adam([p], [g], *mixed, step=[1])
    with pytest.raises(TypeError, match=r"exp_avgs\[0\].*float64.*state_dtype=float32"):
        F.adam([p], [g], [np.zeros(64)], [np.zeros(64)], step=[1])
    with pytest.raises(TypeError, match=r"compact"):
        F.rprop([p], [g], [np.zeros(64, np.int8)], [np.full(64, 0.01, np.float32)],
                compact_state=True)
    with pytest.raises(TypeError, match=r"grads\[0\]"):  # the gradient stays 16-bit
        F.adam([p], [g.astype(np.float32)], [np.zeros(64, np.float32)],
               [np.zeros(64, np.float32)], step=[1])
    assert same_bits(p, before)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("case", [c for c in CASES if c.name in
                                  ("Adam", "Rprop-irprop+", "NAdam", "ASGD", "RMSprop",
                                   "Adagrad")],
                         ids=repr)
def test_state_dict_round_trip(case, dtype):
    n = 48
    p, q = data(n, dtype), data(n, dtype)
    o1 = make(case, p, state_dtype=np.float32)
    for t in range(3):
        step(case, o1, data(n, dtype, seed=t + 1), 0.5)
    sd = o1.state_dict()
    for name in case.state_names:
        assert sd["state"][0][name].dtype == F32
    q[...] = p
    o2 = make(case, q, state_dtype=np.float32)
    o2.load_state_dict(sd)
    for t in range(3, 6):
        g = data(n, dtype, seed=t + 1)
        step(case, o1, g, 0.5)
        step(case, o2, g.copy(), 0.5)
    assert same_bits(p, q)
    for name in case.state_names:
        assert same_bits(o1.state[0][name], o2.state[0][name])
    # into 16-bit state: refused, naming state_dtype, nothing changed
    o3 = make(case, q.copy())
    with pytest.raises(TypeError, match="state_dtype"):
        o3.load_state_dict(o1.state_dict())
    assert o3.state == {}


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_16bit_state_loads_widened(dtype):
    """A 16-bit state loads into float32 state exactly (state_dtype set on a running job)."""
    p = data(32, dtype)
    o1 = ob.Adam(p)
    o1.step(data(32, dtype, seed=1))
    sd = o1.state_dict()
    o2 = ob.Adam(p.copy(), state_dtype=np.float32)
    o2.load_state_dict(sd)
    for name in ("exp_avg", "exp_avg_sq"):
        assert o2.state[0][name].dtype == F32
        assert same_bits(o2.state[0][name], sd["state"][0][name].astype(np.float32))


# ------------------------------------------------------------------ optbowl.torch
TORCH_KWARGS = {
    "Rprop": {"lr": 0.01}, "Adagrad": {"lr": 0.05}, "SGD": {"lr": 0.05, "momentum": 0.9},
    "RMSprop": {"lr": 0.01, "momentum": 0.5, "centered": True}, "Adam": {"lr": 0.01},
    "AdamW": {"lr": 0.01}, "QuickProp": {"lr": 0.05}, "Lion": {"lr": 0.01},
    "Adamax": {"lr": 0.01}, "Adadelta": {"lr": 1.0}, "RAdam": {"lr": 0.01},
    "NAdam": {"lr": 0.01}, "ASGD": {"lr": 0.01},
}


def _torch():
    return pytest.importorskip("torch")


# every class, and SGD without momentum (no state in torch: a float32 buffer kept here)
TORCH_CASES = sorted(TORCH_KWARGS.items()) + [("SGD", {"lr": 0.05})]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("cls, kw", TORCH_CASES, ids=[f"{c}-{len(k)}" for c, k in TORCH_CASES])
def test_torch_is_the_numpy_step(cls, kw, dtype):
    """optbowl.torch with state_dtype=torch.float32: the NumPy class's step, bit for bit
    (which the tests above hold against the references), float32 state tensors."""
    torch = _torch()
    import optbowl.torch as obt

    tdtype = getattr(torch, dtype)
    ndtype = BF16 if dtype == "bfloat16" else F16
    x = data(70, ndtype)
    w = torch.from_numpy(x.astype(np.float32)).to(tdtype).requires_grad_()
    topt = getattr(obt, cls)([w], state_dtype=torch.float32, **kw)
    nopt = getattr(ob, cls)(x, state_dtype=np.float32, **kw)
    for t in range(5):
        g = data(70, ndtype, seed=t + 1)
        w.grad = torch.from_numpy(g.astype(np.float32)).to(tdtype)
        topt.step()
        nopt.step(g)
        got = w.detach().view(torch.int16).numpy().view(np.uint16)
        assert np.array_equal(got, x.view(np.uint16)), f"step {t}"
    for name, t_state in topt.state[w].items():
        if isinstance(t_state, torch.Tensor) and t_state.shape == w.shape:
            assert t_state.dtype == torch.float32, name
            assert same_bits(t_state.numpy(), nopt.state[0][name]), name


@pytest.mark.parametrize("cls", ["Adam", "NAdam", "Rprop", "ASGD", "Adagrad"])
def test_torch_state_dict_keeps_float32(cls):
    torch = _torch()
    import optbowl.torch as obt

    kw = TORCH_KWARGS[cls]
    w1 = torch.randn(40, generator=torch.Generator().manual_seed(0)).bfloat16().requires_grad_()
    w2 = w1.detach().clone().requires_grad_()
    o1 = getattr(obt, cls)([w1], state_dtype=torch.float32, **kw)
    for t in range(3):
        w1.grad = torch.randn(40, generator=torch.Generator().manual_seed(t + 1)).bfloat16()
        o1.step()
    sd = copy.deepcopy(o1.state_dict())
    w2.data.copy_(w1.detach())
    o2 = getattr(obt, cls)([w2], state_dtype=torch.float32, **kw)
    o2.load_state_dict(sd)
    for name, v in o1.state[w1].items():
        if isinstance(v, torch.Tensor) and v.shape == w1.shape:
            assert o2.state[w2][name].dtype == torch.float32
            assert torch.equal(o2.state[w2][name], v)
    for t in range(3, 6):
        g = torch.randn(40, generator=torch.Generator().manual_seed(t + 1)).bfloat16()
        w1.grad, w2.grad = g, g.clone()
        o1.step()
        o2.step()
    assert torch.equal(w1, w2)
    # without state_dtype: cast to the parameter's dtype, as torch's load_state_dict does
    w3 = w1.detach().clone().requires_grad_()
    o3 = getattr(obt, cls)([w3], **kw)
    o3.load_state_dict(copy.deepcopy(o1.state_dict()))
    for name, v in o3.state[w3].items():
        if isinstance(v, torch.Tensor) and v.shape == w3.shape:
            assert v.dtype == torch.bfloat16
    # a 16-bit state into float32 state: widened exactly
    w4 = w3.detach().clone().requires_grad_()
    o4 = getattr(obt, cls)([w4], state_dtype=torch.float32, **kw)
    o4.load_state_dict(copy.deepcopy(o3.state_dict()))
    for name, v in o3.state[w3].items():
        if isinstance(v, torch.Tensor) and v.shape == w3.shape:
            assert o4.state[w4][name].dtype == torch.float32
            assert torch.equal(o4.state[w4][name], v.float())


def test_torch_refusals():
    torch = _torch()
    import optbowl.torch as obt

    w = torch.zeros(8, dtype=torch.bfloat16, requires_grad=True)
    for value, error in [(torch.float64, ValueError), (torch.int32, ValueError),
                         (torch.bfloat16, ValueError), ("garbage", TypeError), (3, TypeError),
                         (np.float64, ValueError)]:
        with pytest.raises(error, match="^state_dtype"):
            obt.Adam([w], state_dtype=value)
    for kw in ({"state_bits": 8}, {"state_bits": 16}):
        with pytest.raises(ValueError, match="^state_dtype.*state_bits"):
            obt.Adam([torch.zeros(8, requires_grad=True)], state_dtype=torch.float32, **kw)
    for dtype in (torch.float64, torch.complex128):
        with pytest.raises(ValueError, match="^state_dtype"):
            obt.SGD([torch.zeros(8, dtype=dtype, requires_grad=True)], lr=0.1,
                    state_dtype=torch.float32)
    # accepted spellings
    for value in (torch.float32, np.float32, "float32", None):
        obt.Adam([w], state_dtype=value)
    # a state tensor of another dtype is refused before anything is written
    opt = obt.Adam([w], state_dtype=torch.float32)
    w.grad = torch.ones(8, dtype=torch.bfloat16)
    opt.step()
    before = w.detach().clone()
    opt.state[w]["exp_avg"] = opt.state[w]["exp_avg"].bfloat16()
    with pytest.raises(ValueError, match="float32"):
        opt.step()
    assert torch.equal(w, before)


def test_torch_pickle_keeps_state_dtype():
    torch = _torch()
    import pickle

    import optbowl.torch as obt

    w = torch.zeros(8, dtype=torch.float16, requires_grad=True)
    opt = obt.Adam([w], state_dtype=torch.float32)
    w.grad = torch.ones(8, dtype=torch.float16)
    opt.step()
    clone = pickle.loads(pickle.dumps(opt))
    assert clone._state_dtype is torch.float32
