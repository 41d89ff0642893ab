"""The rule registry: one description per optimizer rule, declared next to its class.

Each rule module (the one holding the rule's NumPy class) makes one :class:`Rule` and
registers it; everything that used to list rules by hand iterates :func:`rules` instead:
the classes' checks and compiled-call arguments (:class:`optbowl._optimizer.Optimizer`),
``optbowl.functional``, the bowl simulator's method table, the CUDA backend, the messages
that name the rules of a layer, and the tests. The compiled side keeps only what compiled
code needs (the loops, their group structs, their operands) and lists it as ``_core.rules``.

An entry says:

* ``hyper``: the hyper-parameters in the order of the compiled call's group tuple (a pair
  such as ``betas`` gives two consecutive values there); each has a kind (real,
  integer or bool), a range with open or closed ends, a default and whether it reaches the
  group tuple at all (an ``lr`` that only starts per-element step sizes);
* ``state``: the per-parameter state arrays, in the order the compiled call takes them,
  and ``operands``: the names of those lists as arguments of the compiled and functional
  calls (``square_avgs`` for the ``square_avg`` arrays);
* ``scalar_state``: per-parameter scalars that the rule keeps besides its arrays (NAdam's
  ``mu_product``), each a 0-d array as torch keeps a 0-d tensor, with the value it starts
  at; the compiled call takes them as trailing fields of the group tuple (see
  :func:`scalar_runs`);
* whether the rule counts steps and whether it reads the loss;
* ``layers``: where the rule exists (``class``, ``functional``, ``bowl``, ``cuda``,
  ``torch``, ``bench``), and per layer what that layer needs (:class:`CudaCall`,
  :class:`BowlCall`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

import numpy as np

from . import _check

REAL, INT, BOOL = "real", "int", "bool"
#: Every layer a rule may claim.
LAYERS = ("class", "functional", "bowl", "cuda", "torch", "bench")


class _Required:
    def __repr__(self) -> str:
        return "required"


#: The default of a hyper-parameter without one (a required ``lr``).
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Hyper:
    """One hyper-parameter: its name, kind, range, default and place in the group tuple.

    ``low``/``high`` bound a real (or each value of a pair), ``low_open``/``high_open``
    make an end open; ``pair`` names the two values of a pair-valued hyper-parameter
    (``("beta1", "beta2")``), which the group tuple holds one after the other;
    ``in_group`` is False for one the compiled call does not take (it is checked and kept
    in the param group all the same)."""

    name: str
    kind: str = REAL
    default: Any = REQUIRED
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    pair: Tuple[str, ...] = ()
    in_group: bool = True
    #: a condition beyond the range, checked by the class's own check
    condition: str = ""

    def check(self, value: Any) -> Any:
        """The value checked and converted (float, int, bool or a pair of floats), or a
        TypeError/ValueError naming the hyper-parameter."""
        if self.kind == BOOL:
            return _check.boolean(self.name, value)
        if self.kind == INT:
            return _check.integer(self.name, value, low=_int_or_none(self.low),
                                  high=_int_or_none(self.high))
        if self.pair:
            return _check.pair_within(self.name, value, low=self.low, high=self.high,
                                      low_open=self.low_open, high_open=self.high_open)
        return _check.real(self.name, value, low=self.low, high=self.high,
                           low_open=self.low_open, high_open=self.high_open)

    @property
    def range(self) -> str:
        """The allowed values as the docs' tables write them: ``[0, 1)``, ``(0, inf)``,
        ``bool``, or ``real`` (any finite value); a ``condition`` where there is one."""
        if self.condition:
            return self.condition
        if self.kind == BOOL:
            return "bool"
        if self.low is None and self.high is None:
            return "integer" if self.kind == INT else "real"
        low = "-inf" if self.low is None else _number(self.low)
        high = "inf" if self.high is None else _number(self.high)
        left = "(" if self.low is None or self.low_open else "["
        right = ")" if self.high is None or self.high_open else "]"
        return f"{left}{low}, {high}{right}"


def betas(default: Tuple[float, float]) -> Hyper:
    """The ``betas`` pair of the rules with two exponential averages: each in [0, 1)
    (checked as :func:`optbowl._check.betas` checks it)."""
    return Hyper("betas", default=default, low=0.0, high=1.0, high_open=True,
                 pair=("beta1", "beta2"))


def _int_or_none(x: Optional[float]) -> Optional[int]:
    return None if x is None else int(x)


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and not math.isinf(x) else repr(x)


@dataclass(frozen=True)
class ScalarState:
    """One per-parameter scalar of a rule's state (NAdam's ``mu_product``, ASGD's ``eta``):
    its name and where it starts, a number or the name of a hyper-parameter whose value
    (rounded to the state's dtype) it starts at. The classes keep it as a 0-d float32
    array (float32 or float64 in ``optbowl.torch``, as torch keeps it); the compiled step
    reads it, and ``_core.scalar_state_after`` gives its value after a step."""

    name: str
    start: Any = 0.0

    def start_value(self, group: Dict[str, Any]) -> Any:
        """The value it starts at for a parameter of ``group``."""
        return group[self.start] if isinstance(self.start, str) else self.start


@dataclass(frozen=True)
class CudaCall:
    """How the CUDA backend calls a rule's kernel (``optbowl._cuda.<name>``).

    ``reads``: (index of an optional state list among the kernel's lists, a test of the
    groups' tuples that says whether some group reads it); lists no group reads go to the
    kernel as None. ``device_steps``: the kernel also takes torch's device step counters.
    ``dense_only``: sparse gradients are refused. ``lead``: the kernel's leading arguments
    from the host call's (a variant's index). ``tail``: the host call's arguments
    after ``group_sizes``, as (name, default)."""

    reads: Tuple[Tuple[int, Callable[[List[tuple]], bool]], ...] = ()
    device_steps: bool = False
    dense_only: bool = False
    lead: Optional[Callable[[tuple], tuple]] = None
    tail: Tuple[Tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class BowlCall:
    """How the bowl simulator (``bowl.run(name, ...)``) runs a rule: the hyper-parameters
    it takes (the group's, and ``ctor_only`` ones that are the constructor's) and whether
    it is named by the constructor's choice (the simulator's method is the class's
    ``variant``)."""

    takes: Tuple[str, ...]
    ctor_only: Tuple[str, ...] = ()
    by_variant: bool = False


@dataclass(frozen=True)
class BenchFamily:
    """One configuration of a rule that ``python -m optbowl bench`` times (a name of its
    registry, ``optbowl.bench.RULES``).

    ``hyper``: the class's arguments; ``cls``: the class (default: the rule's);
    ``float_states``: state arrays of the parameters' dtype a step reads and writes (the
    floor's); ``torch``: the torch.optim class timed beside it (with ``torch_hyper``,
    default ``hyper``; its fused path where ``torch_fused``); ``numpy``: ``(params) ->
    step(grads)`` in NumPy; ``optax``: ``(optax) -> transformation``; ``compact`` and
    ``extra_bytes``: int8 state in place of one float state; ``needs_loss``: its step takes
    the loss; ``low_precision``: also time it with ``state_bits`` 8 and 16 as
    ``<name>/8bit`` and ``<name>/bf16`` (the label's start), ``bnb``: bitsandbytes' 8-bit
    class timed beside the 8-bit one; ``default``: timed when no rule is named,
    ``quick``: timed by ``--quick``, ``quick_dtype``: a dtype ``--quick`` also times it in."""

    name: str
    description: str
    float_states: int
    hyper: Dict[str, Any] = field(default_factory=dict)
    cls: str = ""
    torch: Optional[str] = None
    torch_hyper: Optional[Dict[str, Any]] = None
    torch_fused: bool = False
    numpy: Optional[Callable[[Any], Callable[[Any], None]]] = None
    optax: Optional[Callable[[Any], Any]] = None
    compact: bool = False
    extra_bytes: int = 0
    needs_loss: bool = False
    low_precision: str = ""
    bnb: str = ""
    default: bool = False
    quick: bool = False
    quick_dtype: str = ""


@dataclass(frozen=True)
class DemoPhase:
    """One phase of ``python -m optbowl demo``: the rule run on the demo's bowl.

    ``label``: the row's name, formatted with the hyper-parameters (``"lr={lr:.3g}"``);
    ``hyper``: the class's arguments; ``cls``: the class (default: the rule's);
    ``theory``: a method of ``QuadraticBowl.optimal`` whose hyper-parameters the phase
    takes (the demo prints the theory's prediction beside the run); ``curvature_lr``:
    ``lr`` is 1 / the bowl's largest eigenvalue; ``numpy``: ``(params, hyper) ->
    step(grads)``, the NumPy competitor timed beside it (its final loss must agree);
    ``needs_loss``: its step takes the loss; ``bfloat16``: the phase runs on bfloat16
    parameters, after the others (where ml_dtypes is installed)."""

    label: str
    hyper: Dict[str, Any] = field(default_factory=dict)
    cls: str = ""
    theory: str = ""
    curvature_lr: bool = False
    numpy: Optional[Callable[[Any, Dict[str, Any]], Callable[[Any], None]]] = None
    needs_loss: bool = False
    bfloat16: bool = False


@dataclass(frozen=True)
class Rule:
    """One optimizer rule, as every layer needs it (see the module's docstring)."""

    name: str
    cls: str
    hyper: Tuple[Hyper, ...]
    state: Tuple[str, ...]
    operands: Tuple[str, ...]
    layers: FrozenSet[str]
    counts_steps: bool = False
    reads_loss: bool = False
    #: per-parameter scalar state, in the order of the compiled group tuple's trailing fields
    scalar_state: Tuple[ScalarState, ...] = ()
    #: the public classes of the rule (more than one where a class is a preset of another)
    classes: Tuple[str, ...] = ()
    #: how the complex-parameter message names it where torch steps complex parameters
    #: with it (a class name, or a class and its variant); empty: torch does not
    complex_as: Tuple[str, ...] = ()
    #: whether its step is a fixed linear map of the gradient (performance's methods)
    fixed_step: bool = False
    #: whether its class keeps 8- or 16-bit state on request (``state_bits``)
    low_precision: bool = False
    cuda: Optional[CudaCall] = None
    bowl: Optional[BowlCall] = None
    #: the host's compiled step (default ``_core.<name>``)
    call: Optional[Callable[..., Any]] = None
    #: the benchmark's configurations of the rule (``optbowl.bench``)
    bench: Tuple[BenchFamily, ...] = ()
    #: the phases of ``python -m optbowl demo``
    demo: Tuple[DemoPhase, ...] = ()
    #: the functional form, ``optbowl.functional.<name>`` (set by :func:`register`)
    functional: Optional[Callable[..., None]] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.layers) - set(LAYERS)
        if unknown:
            raise ValueError(f"layers: unknown layer(s) {sorted(unknown)}")
        if len(self.operands) != len(self.state):
            raise ValueError("operands: one name per state array expected")
        if self.scalar_state and not self.counts_steps:
            raise ValueError("scalar_state: a rule with scalar state counts steps (its next "
                             "values are computed from the step count)")
        if not self.classes:
            object.__setattr__(self, "classes", (self.cls,))

    # -- what the classes and functional derive from it
    @property
    def group(self) -> Tuple[str, ...]:
        """The names whose values make the group tuple, in its order (pairs count once)."""
        return tuple(h.name for h in self.hyper if h.in_group)

    @property
    def pairs(self) -> Tuple[str, ...]:
        return tuple(h.name for h in self.hyper if h.pair)

    @property
    def defaults(self) -> Dict[str, Any]:
        return {h.name: h.default for h in self.hyper}

    def hyper_named(self, name: str) -> Hyper:
        for h in self.hyper:
            if h.name == name:
                return h
        raise KeyError(name)

    def pick(self, arguments: Dict[str, Any]) -> Dict[str, Any]:
        """The hyper-parameters among a constructor's ``locals()``, in its signature's
        order (the order of ``defaults``, state_dicts and reprs)."""
        names = {h.name for h in self.hyper}
        return {k: v for k, v in arguments.items() if k in names}

    def check(self, group: Dict[str, Any]) -> None:
        """Check and convert every hyper-parameter of ``group`` in place, in the group
        tuple's order."""
        for h in self.hyper:
            group[h.name] = h.check(group[h.name])

    def group_args(self, group: Dict[str, Any]) -> tuple:
        """A checked group's tuple for the compiled call (pairs spread)."""
        out: List[Any] = []
        for name in self.group:
            value = group[name]
            if isinstance(value, tuple):
                out.extend(value)
            else:
                out.append(value)
        return tuple(out)

    @property
    def scalar_names(self) -> Tuple[str, ...]:
        """The names of the per-parameter scalar state, in the group tuple's order."""
        return tuple(s.name for s in self.scalar_state)

    @property
    def width(self) -> int:
        """How many state lists the compiled call takes."""
        return len(self.state)

    @property
    def host_call(self) -> Callable[..., Any]:
        """The compiled multi-tensor step over host (NumPy) arrays."""
        if self.call is not None:
            return self.call
        from . import _core

        return getattr(_core, self.name)


def scalar_runs(
    rule: Rule,
    group_args: List[tuple],
    group_sizes: List[int],
    scalars: List[Tuple[Any, ...]],
    steps: List[float],
) -> Tuple[List[tuple], List[int], Callable[[], None]]:
    """The compiled call's groups for a rule with scalar state, and what stores that state
    after the call.

    ``scalars[j]``: tensor ``j``'s scalar state, 0-d float32 or float64 arrays in the
    entry's order; ``steps[j]``: its step count t (this step included). Each group is split
    into runs of consecutive tensors whose values (and dtype) agree, normally one run per
    group; each run's tuple is the group's with the values and ``scalar_float64`` after it
    (the fields registry.hpp's entry lists). The returned function, called once the
    compiled step has run, writes each tensor's values after step t, as the compiled
    ``_core.scalar_state_after`` gives them, into its arrays; nothing is computed here."""
    from . import _core

    tuples: List[tuple] = []
    sizes: List[int] = []
    run_of: List[int] = []
    at = 0
    for args, size in zip(group_args, group_sizes):
        previous = None
        for arrays in scalars[at:at + size]:
            key = (tuple(map(float, arrays)), arrays[0].dtype == np.float64)
            if key != previous:
                tuples.append(args + key[0] + (key[1],))
                sizes.append(1)
                previous = key
            else:
                sizes[-1] += 1
            run_of.append(len(tuples) - 1)
        at += size

    def store() -> None:
        after: Dict[Tuple[int, float], tuple] = {}
        for arrays, run, t in zip(scalars, run_of, steps):
            values = after.get((run, t))
            if values is None:
                values = after[(run, t)] = _core.scalar_state_after(rule.name, tuples[run], t)
            for a, v in zip(arrays, values):
                a[()] = v

    return tuples, sizes, store


_RULES: Dict[str, Rule] = {}


def register(rule: Rule, functional: Optional[Callable[..., None]] = None) -> Rule:
    """Add ``rule`` (and its functional form, published as ``optbowl.functional.<name>``)."""
    if rule.name in _RULES:
        raise ValueError(f"rule {rule.name!r} is registered twice")
    if functional is not None:
        from . import functional as module

        functional.__module__ = module.__name__
        object.__setattr__(rule, "functional", functional)
        setattr(module, rule.name, functional)
        module.__all__ = sorted({*module.__all__, rule.name})
    _RULES[rule.name] = rule
    return rule


def rules(layer: Optional[str] = None) -> Tuple[Rule, ...]:
    """Every registered rule in registration order (the package's family order), or those
    that claim ``layer``."""
    if layer is not None and layer not in LAYERS:
        raise ValueError(f"layer: expected one of {', '.join(map(repr, LAYERS))}, got {layer!r}")
    return tuple(r for r in _RULES.values() if layer is None or layer in r.layers)


def rule(name: str) -> Rule:
    """The rule registered as ``name``."""
    return _RULES[name]


def names(layer: Optional[str] = None) -> Tuple[str, ...]:
    return tuple(r.name for r in rules(layer))


def classes(layer: Optional[str] = None) -> Tuple[str, ...]:
    """The public classes of the rules (of ``layer``), in registration order."""
    return tuple(c for r in rules(layer) for c in r.classes)


def prose(words: Tuple[str, ...]) -> str:
    """``"A, B and C"``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _kind_text(h: Hyper) -> str:
    if h.kind == BOOL:
        return "bool"
    kind = f"pair of {h.kind}s" if h.pair else h.kind
    if h.condition:
        return f"{kind}, {h.condition}"
    return kind if h.range in ("real", "integer") else f"{kind} in {h.range}"


def _default_text(h: Hyper) -> str:
    return "required" if h.default is REQUIRED else f"``{h.default!r}``"


def table_rst() -> List[str]:
    """The rules' hyper-parameter table in reStructuredText (the docs' ``optbowl-rules``
    directive renders it): per rule its classes, each hyper-parameter with its kind, range
    and default in the order of the compiled call's group tuple, its state, whether it
    counts steps or reads the loss, and the layers that have it."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 14 46 22 18",
        "",
        "   * - rule",
        "     - hyper-parameters (kind, range, default)",
        "     - state",
        "     - layers",
    ]
    for r in rules():
        hyper = "; ".join(f"``{h.name}`` ({_kind_text(h)}, {_default_text(h)})" for h in r.hyper)
        state = ", ".join(f"``{s}``" for s in r.state)
        if r.scalar_state:
            state += "; scalars " + ", ".join(f"``{s.name}``" for s in r.scalar_state)
        notes = [w for w, on in (("counts steps", r.counts_steps), ("reads the loss",
                                                                     r.reads_loss)) if on]
        lines += [
            f"   * - ``{r.name}``: {', '.join(f':class:`optbowl.{c}`' for c in r.classes)}",
            f"     - {hyper}",
            f"     - {state}{'; ' + ', '.join(notes) if notes else ''}",
            f"     - {', '.join(layer for layer in LAYERS if layer in r.layers)}",
        ]
    return lines
