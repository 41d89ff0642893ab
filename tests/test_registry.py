"""The rule registry: every registered rule is in every layer it claims, and what the layers
derive from an entry agrees with the entry (defaults, checks, group tuples, state)."""

import inspect

import numpy as np
import pytest

import optbowl
from optbowl import _check, _device, _registry, bench, bowl, functional
from optbowl._registry import BOOL, REQUIRED
from optimizer_table import ALL_ROWS

RULES = _registry.rules()


class _OnDevice:
    """An array that says it lives on CUDA device 0 (never read)."""

    __cuda_array_interface__ = {"shape": (3,), "typestr": "<f4", "data": (1 << 40, False),
                                "version": 3, "strides": None}
ids = [r.name for r in RULES]


def test_the_registry_holds_the_rules_of_the_package():
    assert len(RULES) >= 6
    assert len(set(ids)) == len(ids)
    for r in RULES:
        assert _registry.rule(r.name) is r
        assert set(r.layers) <= set(_registry.LAYERS)
        assert "class" in r.layers


@pytest.mark.parametrize("rule", RULES, ids=ids)
def test_class_layer(rule):
    """Each class of the rule is exported, carries the entry, and its signature's defaults
    are the entry's."""
    for name in rule.classes:
        assert name in optbowl.__all__
        cls = getattr(optbowl, name)
        assert cls.rule is rule
        assert cls._state_names == rule.state
        assert cls._takes_steps == rule.counts_steps
    params = inspect.signature(getattr(optbowl, rule.cls)).parameters
    for h in rule.hyper:
        default = params[h.name].default
        assert (default is inspect.Parameter.empty) == (h.default is REQUIRED), h.name
        if h.default is not REQUIRED:
            assert default == h.default, h.name


@pytest.mark.parametrize("rule", RULES, ids=ids)
def test_the_group_tuple_follows_the_entry(rule):
    """A checked default group gives a tuple of the entry's group order, pairs spread, and
    every hyper-parameter's check refuses a value of the wrong kind, naming it."""
    cls = getattr(optbowl, rule.cls)
    kwargs = {"lr": 0.1} if rule.hyper_named("lr").default is REQUIRED else {}
    opt = cls(np.zeros(3), **kwargs)
    group = opt.param_groups[0]
    args = opt._group_args(group)
    expected = []
    for name in rule.group:
        value = group[name]
        expected.extend(value if isinstance(value, tuple) else [value])
    assert args == tuple(expected)
    assert len(args) == sum(2 if h.pair else 1 for h in rule.hyper if h.in_group)
    for h in rule.hyper:
        bad = "x" if h.kind != BOOL else 1.0
        with pytest.raises(TypeError, match=h.name):
            cls(np.zeros(3), **{**kwargs, h.name: bad})


@pytest.mark.parametrize("rule", RULES, ids=ids)
def test_functional_layer(rule):
    fn = getattr(functional, rule.name, None)
    if "functional" not in rule.layers:
        assert fn is None
        return
    assert fn is rule.functional
    assert rule.name in functional.__all__
    assert fn.__module__ == "optbowl.functional"
    params = inspect.signature(fn).parameters
    for operand in rule.operands[:1]:
        assert operand in params
    for h in rule.hyper:
        if h.name in params and params[h.name].default is not inspect.Parameter.empty:
            assert params[h.name].default == h.default, h.name
    assert ("step" in params) == rule.counts_steps


def test_functional_lists_exactly_the_rules_that_claim_it():
    assert sorted(functional.__all__) == sorted(_registry.names("functional"))


@pytest.mark.parametrize("rule", RULES, ids=ids)
def test_bowl_layer(rule):
    b = optbowl.QuadraticBowl.from_eigenvalues([1.0, 4.0])
    if "bowl" not in rule.layers:
        assert rule.name not in bowl._RULES
        with pytest.raises(ValueError, match="method"):
            b.run(rule.name, [1.0, 1.0], 3)
        return
    assert rule.bowl is not None
    kwargs = {"lr": 0.1} if rule.hyper_named("lr").default is REQUIRED else {}
    traj = b.run(rule.name, [1.0, 1.0], 5, **kwargs)
    assert np.all(np.isfinite(traj.f))
    assert traj.f[-1] < traj.f[0]


@pytest.mark.parametrize("rule", RULES, ids=ids)
def test_cuda_layer(rule):
    """The CUDA backend has a step for exactly the rules that claim the layer; a class
    without one refuses device arrays, naming the CUDA rules."""
    if "cuda" in rule.layers:
        assert rule.cuda is not None
        assert callable(getattr(_device.CUDA_BACKEND, rule.name))
        return
    assert not hasattr(_device.CUDA_BACKEND, rule.name)
    array = _OnDevice()
    kwargs = {"lr": 0.1} if rule.hyper_named("lr").default is REQUIRED else {}
    with pytest.raises(TypeError, match="the CUDA rules are " +
                       _registry.prose(_registry.classes("cuda"))):
        getattr(optbowl, rule.cls)([array], **kwargs)


@pytest.mark.parametrize("rule", RULES, ids=ids)
def test_torch_layer(rule):
    pytest.importorskip("torch")
    import optbowl.torch as obt

    for name in rule.classes:
        assert hasattr(obt, name) == ("torch" in rule.layers), name
        if hasattr(obt, name):
            cls = getattr(obt, name)
            assert cls._rule is rule
            assert cls._hyper == rule.group


@pytest.mark.parametrize("rule", RULES, ids=ids)
def test_bench_layer(rule):
    """A rule that claims the bench has a benchmark family that builds one of its classes."""
    if "bench" not in rule.layers:
        return
    classes = tuple(getattr(optbowl, c) for c in rule.classes)
    built = []
    for entry in bench.RULES.values():
        opt = entry.make_optbowl([np.zeros(4, np.float32)])
        built.append(isinstance(opt, classes))
    assert any(built)


@pytest.mark.parametrize("rule", RULES, ids=ids)
def test_the_test_tables_have_a_row_for_each_class(rule):
    for name in rule.classes:
        assert any(row.cls == name for row in ALL_ROWS), name


def test_the_docs_table_has_every_rule_and_hyper_parameter():
    text = "\n".join(_registry.table_rst())
    for r in RULES:
        assert f"``{r.name}``" in text
        for h in r.hyper:
            assert f"``{h.name}``" in text
        for c in r.classes:
            assert f":class:`optbowl.{c}`" in text


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        _registry.register(RULES[0])


def test_ranges_read_as_the_checks_refuse():
    h = _registry.betas((0.9, 0.999))
    assert h.range == "[0, 1)"
    assert h.check((0.5, 0.0)) == (0.5, 0.0)
    with pytest.raises(ValueError, match=r"betas\[1\]: must be < 1.0"):
        h.check((0.5, 1.0))
    with pytest.raises(TypeError, match="betas: expected a pair"):
        h.check(0.5)
    assert _registry.Hyper("x", low=0.0, low_open=True).range == "(0, inf)"
    assert _registry.Hyper("x").range == "real"


def test_the_betas_entry_checks_as_the_shared_betas_check():
    h = _registry.betas((0.9, 0.999))
    for value in [(0.5, 0.25), (0.0, 0.999)]:
        assert h.check(value) == _check.betas("betas", value) == value
    for value, error in [((0.5, 1.0), ValueError), ((-0.1, 0.5), ValueError),
                         ((0.5,), TypeError), ((0.5, float("nan")), ValueError)]:
        with pytest.raises(error) as ours:
            h.check(value)
        with pytest.raises(error) as shared:
            _check.betas("betas", value)
        assert str(ours.value) == str(shared.value)


@pytest.mark.parametrize("rule", RULES, ids=ids)
def test_the_demo_runs_every_class_of_the_rule(rule):
    """``python -m optbowl demo`` runs every optimizer: each class of a rule has a phase."""
    assert {phase.cls or rule.cls for phase in rule.demo} == set(rule.classes)
    for phase in rule.demo:
        assert set(phase.hyper) <= {h.name for h in rule.hyper} | {"variant"}


def test_the_compiled_registry_agrees_with_the_entries():
    """The two halves of each rule's description (registry.hpp, exposed as _core.rules, and
    the Python entry) name the same group fields in the same order, the same operand lists,
    and the same CUDA kernel; neither half has a rule the other lacks."""
    from optbowl import _core

    assert set(_core.rules) == {r.name for r in RULES}
    for rule in RULES:
        compiled = _core.rules[rule.name]
        fields = []
        for name in rule.group:
            h = rule.hyper_named(name)
            fields.extend(h.pair if h.pair else [name])
        assert compiled["groups"] == tuple(fields), rule.name
        assert compiled["labels"][2:] == rule.operands, rule.name
        assert compiled["operands"][:2] == ("params", "grads"), rule.name
        assert len(compiled["operands"]) == len(compiled["labels"]), rule.name
        assert compiled["cuda"] == ("cuda" in rule.layers), rule.name
