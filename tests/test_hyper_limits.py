"""Hyper-parameters are checked as the kernels use them: rounded to the arrays' dtype.

A value that passes in float64 may overflow float32 (``etas=(0.5, 1e300)``), or round onto
the end of its range (a ``beta`` of 0.99999999999 is 1.0 in float32); the kernels would
then turn the parameters into inf or NaN. Every class, every numeric hyper-parameter,
``optbowl.functional`` and ``optbowl.torch`` refuse such values by name, before anything
is written; the narrowest dtype of a group decides. Also here: values beyond float64
(``10**400``), step counts beyond 2**53, and a group that lost a hyper-parameter.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import optbowl as ob
from optbowl import _registry
from optbowl import functional as F
from optimizer_table import assert_same_bits, required_kwargs, rule_of, state_arrays

BIG = 1e300  # finite in float64, inf in float32
NEAR_ONE = 1.0 - 1e-12  # below 1 in float64, 1.0 in float32
TINY = 1e-300  # positive in float64, 0.0 in float32

# (class, good kwargs, bad overrides, the name the message starts with)
CASES = [
    ("Rprop", {}, {"lr": BIG}, "lr"),
    ("Rprop", {}, {"etas": (0.5, BIG)}, "etas[1]"),
    ("Rprop", {}, {"etas": (NEAR_ONE, 1.2)}, "etas"),
    ("Rprop", {}, {"etas": (0.5, 1.0 + 1e-12)}, "etas"),
    ("Rprop", {}, {"etas": (TINY, 1.2)}, "etas"),
    ("Rprop", {}, {"step_sizes": (1e-6, BIG)}, "step_sizes[1]"),
    ("Rprop", {}, {"step_sizes": (TINY, 50.0)}, "step_sizes"),
    ("Rprop", {"variant": "rprop+"}, {"etas": (0.5, BIG)}, "etas[1]"),
    ("Rprop", {"variant": "backtrack"}, {"step_sizes": (1e-6, BIG)}, "step_sizes[1]"),
    ("Rprop", {"compact_state": True}, {"lr": BIG}, "lr"),
    ("Adagrad", {}, {"lr": BIG}, "lr"),
    ("Adagrad", {}, {"lr_decay": BIG}, "lr_decay"),
    ("Adagrad", {}, {"weight_decay": BIG}, "weight_decay"),
    ("Adagrad", {}, {"initial_accumulator_value": BIG}, "initial_accumulator_value"),
    ("Adagrad", {}, {"eps": BIG}, "eps"),
    ("SGD", {"lr": 0.1}, {"lr": BIG}, "lr"),
    ("SGD", {"lr": 0.1}, {"momentum": BIG}, "momentum"),
    ("SGD", {"lr": 0.1}, {"dampening": -BIG}, "dampening"),
    ("SGD", {"lr": 0.1}, {"weight_decay": BIG}, "weight_decay"),
    ("RMSprop", {}, {"lr": BIG}, "lr"),
    ("RMSprop", {}, {"alpha": BIG}, "alpha"),
    ("RMSprop", {}, {"eps": BIG}, "eps"),
    ("RMSprop", {}, {"weight_decay": BIG}, "weight_decay"),
    ("RMSprop", {}, {"momentum": BIG}, "momentum"),
    ("Adam", {}, {"lr": BIG}, "lr"),
    ("Adam", {}, {"eps": BIG}, "eps"),
    ("Adam", {}, {"weight_decay": BIG}, "weight_decay"),
    ("Adam", {}, {"betas": (0.9, NEAR_ONE)}, "betas[1]"),
    ("Adam", {}, {"betas": (NEAR_ONE, 0.999)}, "betas[0]"),
    ("Adam", {}, {"lr": 1e38}, "lr / (1 - betas[0])"),  # the first step's step size
    ("Adam", {"amsgrad": True}, {"betas": (0.9, NEAR_ONE)}, "betas[1]"),
    ("AdamW", {}, {"lr": BIG}, "lr"),
    ("AdamW", {}, {"lr": 1e20, "weight_decay": 1e20}, "lr * weight_decay"),
    ("QuickProp", {}, {"lr": BIG}, "lr"),
    ("QuickProp", {}, {"max_growth": BIG}, "max_growth"),
    ("QuickProp", {}, {"max_growth": TINY}, "max_growth"),
]
IDS = [f"{c}-{'-'.join(map(str, bad))}{'-' + str(good) if good else ''}"
       for c, good, bad, _ in CASES]


def _starts(name):
    """The message starts with the argument's name (optbowl.torch's step says the group first)."""
    return r"^(param_groups\[\d+\]: )?" + re.escape(name) + r"(?![\w\[])"


def _grad(p, k=0):
    return np.cos(np.arange(p.size).reshape(p.shape) + k).astype(p.dtype)


@pytest.mark.parametrize("cls, good, bad, name", CASES, ids=IDS)
def test_construction_refuses_what_float32_cannot_hold(cls, good, bad, name):
    p = np.ones(4, np.float32)
    before = p.copy()
    with pytest.raises(ValueError, match=_starts(name)) as info:
        getattr(ob, cls)(p, **{**good, **bad})
    assert "float32" in str(info.value) and "params[0]" in str(info.value)
    assert_same_bits(p, before)
    # the same values are fine for float64 arrays (the derived ones too, there)
    getattr(ob, cls)(np.ones(4), **{**good, **bad})


def test_the_reported_case_and_torch_agree():
    p = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"^etas\[1\]: 1e\+300 overflows float32"):
        ob.Rprop(p, lr=1e-300, etas=(0.5, 1e300))
    ob.Rprop(np.ones(3), lr=1e-300, etas=(0.5, 1e300))  # float64 holds them


@pytest.mark.parametrize("cls, good, bad, name", CASES, ids=IDS)
def test_the_narrowest_dtype_of_a_group_decides(cls, good, bad, name):
    params = [np.ones(3), np.ones(2, np.float32), np.ones(4)]
    with pytest.raises(ValueError, match=_starts(name)) as info:
        getattr(ob, cls)(params, **{**good, **bad})
    assert "params[1]" in str(info.value)
    # in a group of its own, the float32 array does not hold back the float64 ones
    groups = [{"params": [params[0], params[2]], **bad}, {"params": [params[1]]}]
    getattr(ob, cls)(groups, **good)
    with pytest.raises(ValueError, match=_starts(name)) as info:
        getattr(ob, cls)([{"params": [params[0]]}, {"params": [params[1]], **bad}], **good)
    assert "params[1]" in str(info.value)


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
@pytest.mark.parametrize("cls, good, bad, name", CASES, ids=IDS)
def test_a_group_changed_before_a_step_is_checked_in_its_dtype(cls, good, bad, name, warm):
    params = [np.linspace(-1, 1, 5).astype(np.float32), np.linspace(1, 2, 3)]
    opt = getattr(ob, cls)(params, **good)
    loss = {"loss": 1.0} if good.get("variant") == "irprop+" else {}
    if warm:
        opt.step([_grad(p) for p in params], **loss)
        opt.step([_grad(p, 1) for p in params], **loss)
    before = [p.copy() for p in params], state_arrays(opt)
    opt.param_groups[0].update(bad)
    with pytest.raises(ValueError, match=_starts(name)):
        opt.step([_grad(p, 2) for p in params], **loss)
    assert_same_bits(([p.copy() for p in params], state_arrays(opt)), before)


@pytest.mark.parametrize("cls, good, bad, name", CASES[:1] + CASES[10:11] + CASES[24:25],
                         ids=IDS[:1] + IDS[10:11] + IDS[24:25])
def test_load_state_dict_checks_groups_in_their_dtype(cls, good, bad, name):
    p = np.ones(3, np.float32)
    opt = getattr(ob, cls)(p, **good)
    opt.step(_grad(p))
    sd = opt.state_dict()
    sd["param_groups"][0].update(bad)
    before = p.copy(), state_arrays(opt), opt.param_groups[0].copy()
    with pytest.raises(ValueError, match=_starts(name)):
        opt.load_state_dict(sd)
    assert_same_bits((p.copy(), state_arrays(opt), opt.param_groups[0].copy()), before)


def _functional_call(name, params, **hyper):
    """One functional step over ``params`` with fresh state, ``hyper`` overriding."""
    grads = [_grad(p) for p in params]
    z = lambda: [np.zeros_like(p) for p in params]  # noqa: E731
    if name == "rprop":
        return lambda: F.rprop(params, grads, z(), [np.full_like(p, 0.1) for p in params],
                               **hyper)
    if name == "adagrad":
        return lambda: F.adagrad(params, grads, z(), step=1, **hyper)
    if name == "sgd":
        return lambda: F.sgd(params, grads, z(), step=1, **{"lr": 0.1, **hyper})
    if name == "quickprop":
        return lambda: F.quickprop(params, grads, z(), z(), **hyper)
    if name == "rmsprop":
        return lambda: F.rmsprop(params, grads, z(), z(), z(), **hyper)
    return lambda: F.adam(params, grads, z(), z(), z(), step=1, **hyper)


FUNCTIONAL = [
    ("rprop", {"etas": (0.5, BIG)}, "etas[1]"),
    ("rprop", {"step_size_bounds": (TINY, 50.0)}, "step_size_bounds"),
    ("adagrad", {"lr": BIG}, "lr"),
    ("adagrad", {"eps": BIG}, "eps"),
    ("sgd", {"momentum": BIG}, "momentum"),
    ("sgd", {"dampening": -BIG}, "dampening"),
    ("quickprop", {"max_growth": TINY}, "max_growth"),
    ("rmsprop", {"alpha": BIG}, "alpha"),
    ("adam", {"betas": (0.9, NEAR_ONE)}, "betas[1]"),
    ("adam", {"lr": 1e20, "weight_decay": 1e20, "decoupled_weight_decay": True},
     "lr * weight_decay"),
]


@pytest.mark.parametrize("fn, bad, name", FUNCTIONAL, ids=[f"{f}-{n}" for f, _, n in FUNCTIONAL])
def test_functional_checks_each_run_in_its_arrays_dtype(fn, bad, name):
    params = [np.ones(3), np.ones(2, np.float32)]
    before = [p.copy() for p in params]
    with pytest.raises(ValueError, match=_starts(name)) as info:
        _functional_call(fn, params, **bad)()
    assert "params[1]" in str(info.value)
    assert_same_bits([p.copy() for p in params], before)
    _functional_call(fn, [np.ones(3), np.ones(2)], **bad)()  # float64 holds the values
    # per-tensor values: the float32 tensor's own value decides
    key, value = next(iter(bad.items()))
    good = {"etas": (0.5, 1.2), "step_size_bounds": (1e-6, 50.0), "lr": 0.01, "eps": 1e-8,
            "momentum": 0.5, "dampening": 0.0, "max_growth": 1.75, "alpha": 0.9,
            "betas": (0.9, 0.999)}[key]
    per_tensor = {**bad, key: [value, good]}
    _functional_call(fn, [np.ones(3), np.ones(2, np.float32)], **per_tensor)()


# ----------------------------------------------------------------------- beyond float64
ALL = list(_registry.classes())
#: each class's real (not pair-valued) hyper-parameters, from its registry entry
HYPER = {c: [h.name for h in rule_of(c).hyper if h.kind == _registry.REAL and not h.pair]
         for c in ALL}
HUGE = [(c, h) for c in ALL for h in HYPER[c]]


@pytest.mark.parametrize("cls, name", HUGE, ids=[f"{c}-{h}" for c, h in HUGE])
def test_an_int_beyond_float64_is_a_named_value_error(cls, name):
    kw = required_kwargs(cls)
    with pytest.raises(ValueError, match=_starts(name) + ".*401 digits"):
        getattr(ob, cls)(np.ones(2), **{**kw, name: 10**400})
    with pytest.raises(ValueError, match=_starts("etas[1]")):
        ob.Rprop(np.ones(2), etas=(0.5, 10**400))


def test_functional_and_schedules_name_an_int_beyond_float64():
    x = np.ones(2)
    with pytest.raises(ValueError, match="^lr"):
        F.sgd([x], [x.copy()], None, step=1, lr=10**400)
    with pytest.raises(ValueError, match="^lr"):
        F.adagrad([x], [x.copy()], [np.zeros(2)], step=1, lr=[10**400])
    with pytest.raises(ValueError, match="^beta"):
        ob.schedules.ExponentialDecay(ob.SGD(x, lr=0.1), beta=10**400)


@pytest.mark.parametrize("step", [10**400, 2**53 + 1, -1, 0])
def test_functional_step_counts_are_bounded(step):
    x = np.ones(2)
    before = x.copy()
    with pytest.raises(ValueError, match="^step"):
        F.adagrad([x], [x.copy()], [np.zeros(2)], step=step)
    with pytest.raises(ValueError, match=r"^step\[1\]"):
        F.adam([x, x + 1], [x.copy(), x.copy()], [np.zeros(2)] * 2, [np.zeros(2)] * 2,
               step=[1, step])
    assert_same_bits(x, before)
    F.adagrad([x], [x.copy()], [np.zeros(2)], step=2**53)  # the largest count


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("count", [10**400, 2**53 + 1, -1])
def test_load_state_dict_bounds_step_counts(cls, count):
    p = np.ones(3)
    opt = getattr(ob, cls)(p, **required_kwargs(cls))
    opt.step(_grad(p))
    sd = opt.state_dict()
    sd["state"][0]["step"] = count
    before = p.copy(), state_arrays(opt)
    with pytest.raises(ValueError, match=re.escape("state_dict['state'][0]['step']")):
        opt.load_state_dict(sd)
    assert_same_bits((p.copy(), state_arrays(opt)), before)
    opt.step(_grad(p, 1))  # and the optimizer still steps


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
@pytest.mark.parametrize("cls", ALL)
def test_a_group_without_a_hyper_parameter_is_a_named_value_error(cls, warm):
    p = np.ones(3)
    opt = getattr(ob, cls)(p, **required_kwargs(cls))
    if warm:
        opt.step(_grad(p))
    before = p.copy(), state_arrays(opt)
    for name in list(opt.defaults):
        saved = opt.param_groups[0].pop(name)
        with pytest.raises(ValueError, match=_starts(name) + ": missing"):
            opt.step(_grad(p, 2))
        opt.param_groups[0][name] = saved
    assert_same_bits((p.copy(), state_arrays(opt)), before)


# ------------------------------------------------------------------------ optbowl.torch
TORCH_CASES = [
    ("Rprop", {}, {"etas": (0.5, BIG)}, "etas[1]"),
    ("Rprop", {}, {"lr": BIG}, "lr"),
    ("Rprop", {}, {"step_sizes": (1e-6, BIG)}, "step_sizes[1]"),
    ("Rprop", {}, {"etas": (NEAR_ONE, 1.2)}, "etas"),
    ("Adagrad", {}, {"eps": BIG}, "eps"),
    ("Adagrad", {}, {"initial_accumulator_value": BIG}, "initial_accumulator_value"),
    ("SGD", {"lr": 0.1}, {"momentum": BIG}, "momentum"),
    ("RMSprop", {}, {"alpha": BIG}, "alpha"),
    ("Adam", {}, {"betas": (0.9, NEAR_ONE)}, "betas[1]"),
    ("Adam", {}, {"lr": 1e38}, "lr / (1 - betas[0])"),
    ("AdamW", {}, {"lr": 1e20, "weight_decay": 1e20}, "lr * weight_decay"),
    ("QuickProp", {}, {"max_growth": TINY}, "max_growth"),
]
TORCH_IDS = [f"{c}-{'-'.join(map(str, bad))}" for c, _, bad, _ in TORCH_CASES]


@pytest.mark.parametrize("planned", [False, True], ids=["general", "plan"])
@pytest.mark.parametrize("cls, good, bad, name", TORCH_CASES, ids=TORCH_IDS)
def test_torch_checks_in_the_tensors_dtype(cls, good, bad, name, planned):
    torch = pytest.importorskip("torch")
    import optbowl.torch as obt

    p = torch.nn.Parameter(torch.ones(4, dtype=torch.float32))
    with pytest.raises(ValueError, match=_starts(name)):
        getattr(obt, cls)([p], **{**good, **bad})
    getattr(obt, cls)([torch.nn.Parameter(torch.ones(4, dtype=torch.float64))], **{**good, **bad})

    opt = getattr(obt, cls)([p], **good)
    p.grad = torch.ones(4)
    opt.step()
    if planned:
        opt.step()  # the second step runs from the plan
    before = p.detach().clone(), {k: v.clone() for k, v in opt.state[p].items()}
    opt.param_groups[0].update(bad)
    with pytest.raises(ValueError, match=_starts(name)):
        opt.step()
    assert torch.equal(p.detach(), before[0])
    for k, v in opt.state[p].items():
        assert torch.equal(v, before[1][k]), k


def test_torch_refuses_non_finite_and_huge_values_by_name():
    torch = pytest.importorskip("torch")
    import optbowl.torch as obt

    p = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    for bad, name in [({"lr": float("inf")}, "lr"), ({"etas": (0.5, float("inf"))}, "etas[1]"),
                      ({"lr": 10**400}, "lr")]:
        with pytest.raises(ValueError, match=_starts(name)):
            obt.Rprop([p], **bad)
    with pytest.raises(ValueError, match=_starts("lr") + ": missing"):
        opt = obt.SGD([p], lr=0.1)
        del opt.param_groups[0]["lr"]
        p.grad = torch.ones(2, dtype=torch.float64)
        opt.step()


# --------------------------------------------------------------- narrow storage dtypes
class _FakeDeviceArray:
    """Just enough of a CUDA array for the dtype look-up (no GPU needed)."""

    def __init__(self, typestr):
        self.typestr = typestr

    @property
    def __cuda_array_interface__(self):
        return {"shape": (3,), "typestr": self.typestr, "data": (4096, False), "version": 3,
                "strides": None}

    def __dlpack_device__(self):
        return (2, 0)


def test_device_arrays_are_checked_in_their_dtype():
    from optbowl._optimizer import _array_dtypes

    arrays = [np.ones(2), _FakeDeviceArray("<f2"), _FakeDeviceArray("<f4"),
              _FakeDeviceArray("<f2")]
    assert _array_dtypes(arrays, 3) == {np.dtype(np.float64): "params[3]",
                                        np.dtype(np.float16): "params[4]",
                                        np.dtype(np.float32): "params[5]"}


def test_float16_stores_narrow_and_computes_in_float32():
    f16 = {np.dtype(np.float16): "params[0]"}
    # lr is a kernel constant, computed in float32: 1e5 is fine for float16 arrays ...
    ob.QuickProp._check_in_dtypes({"lr": 1e5, "max_growth": 1.75, "maximize": False}, f16)
    ob.Adam._check_in_dtypes({"lr": 1e5, "betas": (0.9, 0.999), "eps": 1e-8,
                              "weight_decay": 0.0, "amsgrad": False, "maximize": False,
                              "decoupled_weight_decay": False}, f16)
    # ... but Rprop's lr is its first step size and AdaGrad's initial value its sum: state
    with pytest.raises(ValueError, match=r"^lr: 100000\.0 overflows float16, the dtype of "
                                         r"params\[0\]"):
        ob.Rprop._check_in_dtypes({"lr": 1e5, "etas": (0.5, 1.2), "step_sizes": (1e-6, 50.0),
                                   "maximize": False}, f16)
    with pytest.raises(ValueError, match="^initial_accumulator_value: 1000000.0 overflows"):
        ob.Adagrad._check_in_dtypes({"lr": 0.01, "lr_decay": 0.0, "weight_decay": 0.0,
                                     "initial_accumulator_value": 1e6, "eps": 1e-10,
                                     "maximize": False}, f16)
    with pytest.raises(ValueError, match=r"^step_sizes: .*params\[0\] \(float16\)"):
        ob.Rprop._check_in_dtypes({"lr": 0.01, "etas": (0.5, 1.2), "step_sizes": (1e-9, 50.0),
                                   "maximize": False}, f16)  # 1e-9 is 0 in float16
