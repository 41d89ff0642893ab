"""optbowl.torch's reused step plan (_Plan): the same results as the general path, and
every change between steps seen (or sent to the general path)."""

import copy
import gc
import math
import weakref

import numpy as np
import pytest

torch = pytest.importorskip("torch")
obt = pytest.importorskip("optbowl.torch")
from optbowl import _core  # noqa: E402

SHAPES = [(37, 5), (11,), (3, 4, 2), (4099,)]
# Sizes of whole 64-byte lines against torch's fused kernels (every other size, their scalar
# tails included, is tested in test_torch_tails.py).
FUSED_SHAPES = [(48, 16), (16,), (2, 8, 4), (1024,)]

# (class, constructor options): every optimizer of the adapter, with and without options
# that change its state layout or counts.
CASES = {
    "rprop": (obt.Rprop, dict(lr=0.01)),
    "adagrad": (obt.Adagrad, dict(lr=0.1, lr_decay=0.01, weight_decay=0.01)),
    "sgd": (obt.SGD, dict(lr=0.1, weight_decay=0.01)),
    "sgd-momentum": (obt.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1)),
    "sgd-nesterov": (obt.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    "rmsprop-centered": (obt.RMSprop, dict(lr=0.01, centered=True, momentum=0.5)),
    "adam": (obt.Adam, dict(lr=0.01)),
    "adam-amsgrad": (obt.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    "adamw": (obt.AdamW, dict(lr=0.01)),
    "quickprop": (obt.QuickProp, dict(lr=0.01)),
}


def make_params(dtype=torch.float32, seed=0, shapes=SHAPES):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in shapes]


class Twins:
    """One optimizer that reuses its plan and one that never does (its plan dropped after
    every step), on equal parameters, fed equal gradients."""

    def __init__(self, cls, options, groups=None, dtype=torch.float32, shapes=SHAPES):
        self.params = [make_params(dtype, shapes=shapes), make_params(dtype, shapes=shapes)]
        if groups is None:
            self.opts = [cls(ps, **options) for ps in self.params]
        else:
            self.opts = [cls(groups(ps), **options) for ps in self.params]
        self.gen = torch.Generator().manual_seed(1)

    def grads(self, skip=()):
        for i, p in enumerate(self.params[0]):
            if i in skip:
                g = None
            else:
                g = torch.randn(p.shape, generator=self.gen, dtype=p.dtype)
                g[torch.rand(p.shape, generator=self.gen) < 0.1] = 0.0
            for ps in self.params:
                ps[i].grad = None if g is None else g.clone()

    def step(self, skip=()):
        self.grads(skip)
        for opt in self.opts:
            opt.step()
        self.opts[1]._plan = None

    def apply(self, fn):
        """fn(params, opt) on both twins."""
        for ps, opt in zip(self.params, self.opts):
            fn(ps, opt)

    def change_between_steps(self, fn, skip=()):
        """Two steps, fn(params, opt) on both twins, two more steps; then equal."""
        self.step(skip)
        self.step(skip)
        self.apply(fn)
        self.step()
        self.step()
        self.assert_equal()

    def assert_equal(self):
        for a, b in zip(*self.params):
            assert torch.equal(a, b)
        sa, sb = (opt.state_dict() for opt in self.opts)
        assert sa["param_groups"] == sb["param_groups"]
        assert sa["state"].keys() == sb["state"].keys()
        for k in sa["state"]:
            assert sa["state"][k].keys() == sb["state"][k].keys()
            for name, t in sa["state"][k].items():
                assert torch.equal(t, sb["state"][k][name]), (k, name)


@pytest.fixture
def fast_steps(monkeypatch):
    """The number of steps the plan took."""
    taken = [0]
    run = obt._Plan._run

    def counted(self, *args):
        done = run(self, *args)
        taken[0] += done
        return done

    monkeypatch.setattr(obt._Plan, "_run", counted)
    return taken


def torch_twin(name, options, params):
    return getattr(torch.optim, name)(params, **options)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_plan_equals_general_path(case, dtype, fast_steps):
    cls, options = CASES[case]
    t = Twins(cls, options, dtype=dtype)
    for step in range(8):
        # Parameter 1 has no gradient on steps 3 and 4: the plan goes back to the general
        # path and is made again.
        t.step(skip={1} if step in (3, 4) else ())
        t.assert_equal()
    # Steps 1, 2, 4 and 6, 7 reuse a plan; 0, 3 and 5 find none or a changed one.
    assert fast_steps[0] == 5


@pytest.mark.parametrize("case", ["rprop", "adagrad", "sgd-momentum", "adam-amsgrad"])
def test_plan_matches_torch_bit_for_bit(case, fast_steps):
    cls, options = CASES[case]
    ours = make_params(shapes=FUSED_SHAPES)
    ref = [p.detach().clone().requires_grad_() for p in ours]
    opt = cls(ours, **options)
    if cls is obt.Adagrad or cls is obt.Adam:
        ref_opt = torch_twin(cls.__name__, dict(options, fused=True), ref)
    else:
        ref_opt = torch_twin(cls.__name__, dict(options, foreach=False), ref)
    gen = torch.Generator().manual_seed(3)
    for _ in range(6):
        for a, b in zip(ours, ref):
            g = torch.randn(a.shape, generator=gen)
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        ref_opt.step()
    assert fast_steps[0] == 5
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)
    for a, b in zip(ours, ref):
        for name, t in ref_opt.state[b].items():
            assert torch.equal(opt.state[a][name], t), name


def test_scheduler_keeps_the_plan(fast_steps):
    t = Twins(obt.Adam, dict(lr=0.01))
    scheds = [torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5) for opt in t.opts]
    for _ in range(6):
        t.step()
        for s in scheds:
            s.step()
    t.assert_equal()
    assert fast_steps[0] == 5  # a new lr is checked and used without a new plan
    assert t.opts[0].param_groups[0]["lr"] == 0.01 * 0.5 ** 6


def test_changed_value_is_checked_and_nothing_written(fast_steps):
    t = Twins(obt.Rprop, dict(lr=0.01))
    t.step()
    t.step()
    before = [p.detach().clone() for p in t.params[0]]
    steps = [float(s["step"]) for s in t.opts[0].state.values()]
    t.opts[0].param_groups[0]["etas"] = (0.5, math.nan)
    t.grads()
    with pytest.raises(ValueError, match=r"param_groups\[0\]: etas"):
        t.opts[0].step()
    for a, b in zip(before, t.params[0]):
        assert torch.equal(a, b)
    assert [float(s["step"]) for s in t.opts[0].state.values()] == steps
    # Fixed again, the steps go on as the twin's.
    t.opts[0].param_groups[0]["etas"] = (0.5, 1.2)
    t.opts[1].step()
    t.opts[0].step()
    t.opts[1]._plan = None
    t.assert_equal()


@pytest.mark.parametrize("value", [[0.8, 0.99], (0.8, 0.99)])
def test_pair_changed_in_place_or_replaced(value, fast_steps):
    t = Twins(obt.Adam, dict(lr=0.01))
    t.apply(lambda ps, opt: opt.param_groups[0].__setitem__("betas", list(value)))
    t.step()
    t.step()
    # A list changed in place: the plan remembered a copy.
    t.apply(lambda ps, opt: opt.param_groups[0]["betas"].__setitem__(0, 0.5))
    t.step()
    t.assert_equal()
    assert fast_steps[0] == 2
    t.apply(lambda ps, opt: opt.param_groups[0].__setitem__("betas", value))
    t.step()
    t.step()
    t.assert_equal()


def test_other_values_kept_in_a_group(fast_steps):
    # Values the optimizer does not read, changed or not: an array compares unequal.
    t = Twins(obt.Rprop, dict(lr=0.01))
    t.apply(lambda ps, opt: opt.param_groups[0].update(name="all", mask=np.ones(3), seen=0))
    for k in range(4):
        t.step()
        t.apply(lambda ps, opt: opt.param_groups[0].update(mask=np.ones(3), seen=k))
    t.apply(lambda ps, opt: opt.param_groups[0].pop("mask"))  # state_dicts compare as equal
    t.assert_equal()
    assert fast_steps[0] == 3


def test_tensor_lr_read_every_step(fast_steps):
    t = Twins(obt.SGD, dict(lr=torch.tensor(0.1), momentum=0.9))
    for k in range(4):
        t.step()
        t.apply(lambda ps, opt: opt.param_groups[0]["lr"].fill_(0.1 / (k + 2)))
    t.assert_equal()
    assert fast_steps[0] == 0  # a tensor's value may change in place: no plan


def test_new_parameter_memory_is_used(fast_steps):
    def move(ps, opt):  # as Module.to() and .double() do: same Parameter, new memory
        ps[0].data = ps[0].data.clone()

    Twins(obt.Adagrad, dict(lr=0.1)).change_between_steps(move)
    assert fast_steps[0] == 2


@pytest.mark.parametrize("how", ["state dict replaced", "state tensor replaced",
                                 "state dropped", "whole state loaded"])
def test_state_changes_are_seen(how, fast_steps):
    def change(ps, opt):
        if how == "state dict replaced":
            opt.state[ps[2]] = {k: v.clone() for k, v in opt.state[ps[2]].items()}
            opt.state[ps[2]]["exp_avg"].mul_(0.5)
        elif how == "state tensor replaced":
            opt.state[ps[0]]["max_exp_avg_sq"] = torch.full_like(ps[0], 2.0)
        elif how == "state dropped":
            del opt.state[ps[1]]
        else:
            opt.load_state_dict(copy.deepcopy(opt.state_dict()))
            opt.state[ps[3]]["exp_avg_sq"].add_(1.0)

    Twins(obt.Adam, dict(lr=0.01, amsgrad=True)).change_between_steps(change)
    assert fast_steps[0] == 2


@pytest.mark.parametrize("how", ["param appended", "params reordered", "group added",
                                 "momentum switched on", "momentum switched off"])
def test_group_changes_are_seen(how, fast_steps):
    def change(ps, opt):
        if how == "param appended":
            opt.param_groups[1]["params"].append(ps[3])
        elif how == "params reordered":
            opt.param_groups[0]["params"].reverse()
        elif how == "group added":
            opt.add_param_group({"params": [ps[3]], "momentum": 0.9})
        elif how == "momentum switched on":
            opt.param_groups[0]["momentum"] = 0.9  # momentum buffers from now on
        else:
            opt.param_groups[1]["momentum"] = 0.0  # the buffers kept, no longer used

    t = Twins(obt.SGD, dict(lr=0.1),
              groups=lambda ps: [{"params": ps[:2]}, {"params": ps[2:3], "momentum": 0.5}])
    t.change_between_steps(change, skip={3})
    assert fast_steps[0] == 2


def test_equal_parameters_reordered(fast_steps):
    # Parameters of one shape swapped in their group's list: each gradient still steps
    # its own parameter.
    t = Twins(obt.Adam, dict(lr=0.01), shapes=[(8,)] * 4)
    t.change_between_steps(lambda ps, opt: opt.param_groups[0]["params"].reverse())
    assert fast_steps[0] == 2


def test_bad_gradient_raises_as_the_general_path(fast_steps):
    t = Twins(obt.Rprop, dict(lr=0.01))
    t.step()
    t.step()
    before = [p.detach().clone() for p in t.params[0]]
    for bad, error, match in [
        (lambda p: setattr(p, "grad_dtype", None) or p.grad.double(), TypeError,
         r"params\[2\]\.grad: dtype"),
        (lambda p: p.grad.to_sparse(), TypeError, r"params\[2\]\.grad: sparse"),
        (lambda p: torch.randn(p.shape[::-1]).permute(2, 1, 0), ValueError,
         r"params\[2\]\.grad: strides .* differ from the parameter's"),
        (lambda p: torch.randn(*p.shape[:-1], 2 * p.shape[-1])[..., ::2], ValueError,
         r"params\[2\]\.grad: must be contiguous"),
    ]:
        t.grads()
        p = t.params[0][2]
        p.grad = bad(p)
        with pytest.raises(error, match=match):
            t.opts[0].step()
        for a, b in zip(before, t.params[0]):
            assert torch.equal(a, b)
    assert fast_steps[0] == 1


def test_gradients_that_require_grad(fast_steps):
    t = Twins(obt.Rprop, dict(lr=0.01))
    for _ in range(3):
        t.grads()
        for ps in t.params:
            for p in ps:
                p.grad.requires_grad_()
        for opt in t.opts:
            opt.step()
        t.opts[1]._plan = None
    t.assert_equal()
    assert fast_steps[0] == 2


def test_gradients_are_not_kept(fast_steps):
    params = make_params()
    opt = obt.Rprop(params, lr=0.01)
    for _ in range(3):
        for p in params:
            p.grad = torch.randn(p.shape)
        opt.step()
    assert fast_steps[0] == 2
    refs = [weakref.ref(p.grad) for p in params]
    for p in params:
        p.grad = None
    gc.collect()
    assert all(r() is None for r in refs)


def test_counters_advance_with_versions(fast_steps):
    params = make_params()
    opt = obt.Adagrad(params, lr=0.1)
    for p in params:
        p.grad = torch.ones(p.shape)
    opt.step()
    counters = [opt.state[p]["step"] for p in params]
    versions = [c._version for c in counters]
    param_versions = [p._version for p in params]
    opt.step()
    opt.step()
    assert fast_steps[0] == 2
    assert [float(c) for c in counters] == [3.0] * len(params)
    assert all(c._version > v for c, v in zip(counters, versions))
    assert all(p._version > v for p, v in zip(params, param_versions))


def test_counters_of_another_dtype(fast_steps):
    # A checkpoint's float16 counters: no plan (its counters advance through
    # torch._foreach_add_), and the steps go on as the twin's.
    t = Twins(obt.Adam, dict(lr=0.01))
    t.step()

    def half(ps, opt):
        for p in ps:
            opt.state[p]["step"] = opt.state[p]["step"].half()

    t.change_between_steps(half)
    assert fast_steps[0] == 2  # the two steps before the change
    assert all(s["step"].dtype is torch.float16 and float(s["step"]) == 5.0
               for s in t.opts[0].state.values())


def test_add_one():
    f32, f64, one = np.zeros((), np.float32), np.full((), 2.0), np.zeros(1, np.float32)
    _core.add_one([f32, f64, one])
    assert (float(f32), float(f64), float(one[0])) == (1.0, 3.0, 1.0)
    read_only = np.zeros(())
    read_only.flags.writeable = False
    for bad, error, match in [
        ([f32, 1.0], TypeError, r"counters\[1\]: expected an ndarray"),
        ([f32, np.zeros((), np.int64)], TypeError, r"counters\[1\]: expected float32 or float64"),
        ([f32, np.zeros((), np.dtype(">f8"))], TypeError, r"counters\[1\]: expected float32"),
        ([f32, np.zeros(2)], ValueError, r"counters\[1\]: expected one element"),
        ([f32, read_only], ValueError, r"counters\[1\]: is read-only"),
    ]:
        with pytest.raises(error, match=match):
            _core.add_one(bad)
        assert float(f32) == 1.0  # nothing written


@pytest.mark.parametrize("case", ["sgd-momentum", "rmsprop-centered", "adam-amsgrad"])
def test_plan_of_several_layouts_checks_them_all_and_steps(case, fast_steps):
    # Groups of different state layouts make a batch each; the plan checks the arrays of
    # every batch before the first runs (_core.check_calls) and still takes the steps.
    cls, options = CASES[case]
    off = {"sgd-momentum": {"momentum": 0.0}, "rmsprop-centered": {"centered": False},
           "adam-amsgrad": {"amsgrad": False}}[case]
    t = Twins(cls, options, groups=lambda ps: [{"params": ps[:2]}, {"params": ps[2:], **off}])
    for _ in range(5):
        t.step()
    t.assert_equal()
    assert fast_steps[0] == 4
    assert len(t.opts[0]._plan.batches) == 2 and t.opts[0]._plan.calls is not None
    # a gradient of the second batch that is a parameter of the first: refused before the
    # first batch's call, by the plan's check and then by the general path, which raises
    before = [p.detach().clone() for p in t.params[0]]
    t.grads()
    p0, p2 = t.params[0][0], t.params[0][2]  # group 0 (first batch), group 1 (second)
    p2.grad = p0.detach().reshape(-1)[: p2.numel()].reshape(p2.shape)
    with pytest.raises(ValueError, match=r"params\[2\]\.grad shares memory with params\[0\]|"
                                         r"params\[0\] shares memory with params\[2\]\.grad"):
        t.opts[0].step()
    for a, b in zip(before, t.params[0]):
        assert torch.equal(a, b)
    assert fast_steps[0] == 4


def test_check_calls():
    a, b, c = np.zeros(4), np.ones(3), np.zeros(6)
    g = np.ones(4)
    ok = [([0], [("params[{}]", [a], True), ("params[{}].grad", [g], False)]),
          ([5], [("params[{}]", [b], True), ("params[{}].grad", [b.copy()], False),
                 ("state[{}]", None, True)])]
    _core.check_calls(ok)
    _core.check_calls([(None, [("params", [a, b], True), ("grads", [g, g[:3]], False)])])
    read_only = np.zeros(4)
    read_only.flags.writeable = False
    for calls, error, match in [
        ([([0], [("params[{}]", [a], True)]), ([7], [("params[{}]", [c[:4]], True),
                                                     ("params[{}].grad", [a], False)])],
         ValueError, r"params\[7\]\.grad shares memory with params\[0\]"),
        ([([0], [("params[{}]", [c[:4]], True)]), ([1], [("params[{}]", [c[2:5]], True)])],
         ValueError, r"params\[1\] shares memory with params\[0\]"),
        ([([0], [("params[{}]", [a], True), ("params[{}].grad", [np.ones(4, np.float32)],
                                             False)])],
         TypeError, r"params\[0\]\.grad: dtype float32 does not match params\[0\]"),
        ([([2], [("params[{}]", [a], True), ("params[{}].grad", [np.ones(5)], False)])],
         ValueError, r"params\[2\]\.grad: shape"),
        ([([3], [("params[{}]", [read_only], True)])], ValueError, r"params\[3\]: is read-only"),
        ([([3], [("params[{}]", [np.zeros(8)[::2]], True)])], ValueError,
         r"params\[3\]: must be contiguous in some order"),
        ([([3], [("params[{}]", [np.zeros(4, np.int64)], True)])], TypeError, r"params\[3\]"),
        ([([3], [("params[{}]", ["a"], True)])], TypeError, r"params\[3\]: expected a numpy"),
        ([([3, 4], [("params[{}]", [a], True)])], ValueError, "one number per array"),
        ([(None, [("params", [a], True), ("grads", [g, g], False)])], ValueError,
         r"grads: expected 1 array \("),
    ]:
        with pytest.raises(error, match=match):
            _core.check_calls(calls)
    assert not a.any() and not c.any()
