"""The registry of optimizers that the reliability tests run over.

One ``Row`` per optimizer configuration: how to build it, good and bad
hyper-parameters, the NumPy reference step (for the property tests), the torch
equivalent (for the NaN/Inf policy), and how to draw random hyper-parameters.
Rows whose class optbowl does not (yet) export are left out by ``ROWS``, so a row
may describe an optimizer before it exists; adding an optimizer to every
reliability test (validation matrix, properties, checkpoints, threads, memory)
is adding its row here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from hypothesis import strategies as st

import optbowl
import reference as ref

INF, NAN = float("inf"), float("nan")


@dataclass(frozen=True)
class Row:
    name: str  # test id
    cls: str  # attribute of optbowl
    kwargs: Dict[str, Any]  # good hyper-parameters besides params
    # (overrides of kwargs, exception, name the message must contain)
    bad_hyper: Tuple[Tuple[Dict[str, Any], type, str], ...] = ()
    needs_loss: bool = False  # step(grads, loss=...) is required
    state_names: Tuple[str, ...] = ()  # per-parameter state arrays, as opt.state names them
    # NumPy reference: ref_init(p, kwargs) -> state; ref_step(p, g, state, kwargs, loss_increased)
    ref_init: Optional[Callable] = None
    ref_step: Optional[Callable] = None
    ref_exact: bool = True  # bit-identical to the reference (else: a few ulp per step)
    hyper: Optional[Callable[[], Any]] = None  # hypothesis strategy of kwargs
    torch_cls: Optional[str] = None  # torch.optim class with the same rule
    torch_kwargs: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None
    torch_state: Dict[str, str] = field(default_factory=dict)  # optbowl -> torch state name
    torch_exact: bool = True  # bit-identical to torch

    @property
    def available(self) -> bool:
        return hasattr(optbowl, self.cls)

    def make(self, params, **overrides):
        return getattr(optbowl, self.cls)(params, **{**self.kwargs, **overrides})

    def step(self, opt, grads, loss=1.0):
        """A good step; the loss is passed only where the optimizer takes one."""
        return opt.step(grads, loss=loss) if self.needs_loss else opt.step(grads)

    def __repr__(self) -> str:
        return self.name


# ----------------------------------------------------------------------------- Rprop
RPROP_VARIANTS = ("irprop-", "rprop-", "rprop+", "irprop+", "backtrack")

RPROP_BAD = (
    ({"lr": -1.0}, ValueError, "lr"),
    ({"lr": NAN}, ValueError, "lr"),
    ({"lr": INF}, ValueError, "lr"),
    ({"lr": "0.1"}, TypeError, "lr"),
    ({"etas": (1.5, 1.2)}, ValueError, "etas"),
    ({"etas": (0.5, NAN)}, ValueError, "etas"),
    ({"etas": (0.5, INF)}, ValueError, "etas"),
    ({"etas": (-0.5, 1.2)}, ValueError, "etas"),
    ({"step_sizes": (-1e-6, 1.0)}, ValueError, "step_sizes"),
    ({"step_sizes": (1e-6, INF)}, ValueError, "step_sizes"),
    ({"step_sizes": (NAN, 1.0)}, ValueError, "step_sizes"),
    ({"maximize": "yes"}, TypeError, "maximize"),
)


def _rprop_hyper():
    @st.composite
    def draw(d):
        step_min = d(st.sampled_from([1e-6, 1e-4, 1e-3, 0.05]))
        return {
            "lr": d(st.floats(1e-4, 1.0)),
            "etas": (d(st.floats(0.05, 0.95)), d(st.floats(1.05, 3.0))),
            "step_sizes": (step_min, d(st.sampled_from([step_min, 0.1, 1.0, 50.0]))),
            "maximize": d(st.booleans()),
        }

    return draw()


def _rprop_ref_step(variant):
    def step(p, g, state, kw, loss_increased):
        ref.rprop_step(p, g, state, variant=variant, etas=kw.get("etas", (0.5, 1.2)),
                       step_sizes=kw.get("step_sizes", (1e-6, 50.0)),
                       maximize=kw.get("maximize", False), loss_increased=loss_increased)

    return step


def _rprop_row(variant):
    names = {"rprop+": ("prev", "step_size", "update"), "irprop+": ("prev", "step_size", "update"),
             "backtrack": ("direction", "step_size")}.get(variant, ("prev", "step_size"))
    torch_like = variant == "irprop-"
    return Row(
        name=f"Rprop-{variant}",
        cls="Rprop",
        kwargs={"lr": 0.05, "etas": (0.4, 1.3), "step_sizes": (1e-4, 1.0), "variant": variant},
        bad_hyper=RPROP_BAD + (({"variant": "irprop"}, ValueError, "variant"),),
        needs_loss=variant == "irprop+",
        state_names=names,
        ref_init=lambda p, kw, v=variant: ref.rprop_init(p, kw["lr"], v),
        ref_step=_rprop_ref_step(variant),
        hyper=_rprop_hyper,
        torch_cls="Rprop" if torch_like else None,
        torch_kwargs=(lambda kw: {k: kw[k] for k in ("lr", "etas", "step_sizes", "maximize")
                                  if k in kw})
        if torch_like else None,
        torch_state={"prev": "prev", "step_size": "step_size"} if torch_like else {},
    )


# ----------------------------------------------------------------------------- AdaGrad
ADAGRAD_NAMES = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "maximize")


def _adagrad_hyper():
    @st.composite
    def draw(d):
        return {
            "lr": d(st.floats(1e-4, 1.0)),
            "lr_decay": d(st.sampled_from([0.0, 0.01, 0.5])),
            "weight_decay": d(st.sampled_from([0.0, 1e-3, 0.1])),
            "initial_accumulator_value": d(st.sampled_from([0.0, 0.1, 1.0])),
            "eps": d(st.sampled_from([1e-10, 1e-6, 1e-3])),
            "maximize": d(st.booleans()),
        }

    return draw()


def _adagrad_ref_step(p, g, state, kw, loss_increased):
    ref.adagrad_step(p, g, state, **{k: kw[k] for k in ADAGRAD_NAMES
                                     if k in kw and k != "initial_accumulator_value"})


ADAGRAD = Row(
    name="Adagrad",
    cls="Adagrad",
    kwargs={"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.01, "initial_accumulator_value": 0.1},
    bad_hyper=(
        ({"lr": -0.1}, ValueError, "lr"),
        ({"lr": NAN}, ValueError, "lr"),
        ({"lr": INF}, ValueError, "lr"),
        ({"lr_decay": -0.1}, ValueError, "lr_decay"),
        ({"lr_decay": NAN}, ValueError, "lr_decay"),
        ({"weight_decay": INF}, ValueError, "weight_decay"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"initial_accumulator_value": -1.0}, ValueError, "initial_accumulator_value"),
        ({"eps": -1e-10}, ValueError, "eps"),
        ({"eps": NAN}, ValueError, "eps"),
        ({"maximize": None}, TypeError, "maximize"),
    ),
    state_names=("sum",),
    ref_init=lambda p, kw: ref.adagrad_init(p, kw.get("initial_accumulator_value", 0.0)),
    ref_step=_adagrad_ref_step,
    ref_exact=False,
    hyper=_adagrad_hyper,
    torch_cls="Adagrad",
    torch_kwargs=lambda kw: {**{k: kw[k] for k in ADAGRAD_NAMES if k in kw}, "fused": True},
    torch_state={"sum": "sum"},
)


# ----------------------------------------------------------------------------- Lion
def _lion_hyper():
    @st.composite
    def draw(d):
        return {
            "lr": d(st.floats(1e-4, 0.5)),
            "betas": (d(st.sampled_from([0.0, 0.5, 0.9])), d(st.sampled_from([0.0, 0.9, 0.99]))),
            "weight_decay": d(st.sampled_from([0.0, 1e-2, 1.0])),
            "maximize": d(st.booleans()),
        }
    return draw()


def _lion_ref_step(p, g, state, kw, loss_increased):
    ref.lion_step(p, g, state, **{k: kw[k] for k in ("lr", "betas", "weight_decay", "maximize")
                                  if k in kw})


LION = Row(
    name="Lion",
    cls="Lion",
    kwargs={"lr": 0.01, "betas": (0.8, 0.95), "weight_decay": 0.1},
    bad_hyper=(
        ({"lr": -0.1}, ValueError, "lr"),
        ({"lr": NAN}, ValueError, "lr"),
        ({"lr": INF}, ValueError, "lr"),
        ({"betas": (1.0, 0.99)}, ValueError, "betas"),
        ({"betas": (0.9, NAN)}, ValueError, "betas"),
        ({"betas": (-0.1, 0.99)}, ValueError, "betas"),
        ({"betas": 0.9}, TypeError, "betas"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"weight_decay": INF}, ValueError, "weight_decay"),
        ({"maximize": "no"}, TypeError, "maximize"),
    ),
    state_names=("exp_avg",),
    ref_init=lambda p, kw: {"exp_avg": np.zeros_like(p)},
    ref_step=_lion_ref_step,
    hyper=_lion_hyper,
)


# ----------------------------------------------------------------------------- Adamax
def _adamax_hyper():
    @st.composite
    def draw(d):
        return {
            "lr": d(st.floats(1e-4, 0.5)),
            "betas": (d(st.sampled_from([0.0, 0.5, 0.9])), d(st.sampled_from([0.0, 0.9, 0.999]))),
            "eps": d(st.sampled_from([1e-8, 1e-3])),
            "weight_decay": d(st.sampled_from([0.0, 1e-2, 1.0])),
            "maximize": d(st.booleans()),
        }
    return draw()


def _adamax_ref_step(p, g, state, kw, loss_increased):
    ref.adamax_step(p, g, state, **{k: kw[k] for k in
                                    ("lr", "betas", "eps", "weight_decay", "maximize") if k in kw})


ADAMAX = Row(
    name="Adamax",
    cls="Adamax",
    kwargs={"lr": 0.01, "betas": (0.8, 0.95), "weight_decay": 0.1},
    bad_hyper=(
        ({"lr": -0.1}, ValueError, "lr"),
        ({"lr": NAN}, ValueError, "lr"),
        ({"lr": INF}, ValueError, "lr"),
        ({"betas": (1.0, 0.99)}, ValueError, "betas"),
        ({"betas": (0.9, NAN)}, ValueError, "betas"),
        ({"betas": 0.9}, TypeError, "betas"),
        ({"eps": -1e-8}, ValueError, "eps"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"weight_decay": INF}, ValueError, "weight_decay"),
        ({"maximize": "no"}, TypeError, "maximize"),
    ),
    state_names=("exp_avg", "exp_inf"),
    ref_init=lambda p, kw: {"step": 0, "exp_avg": np.zeros_like(p), "exp_inf": np.zeros_like(p)},
    ref_step=_adamax_ref_step,
    hyper=_adamax_hyper,
    torch_cls="Adamax",
    torch_kwargs=lambda kw: {**{k: kw[k] for k in ("lr", "betas", "eps", "weight_decay",
                                                   "maximize") if k in kw}, "foreach": False},
    torch_state={"exp_avg": "exp_avg", "exp_inf": "exp_inf"},
    torch_exact=True,
)


# ----------------------------------------------------------------------------- Adadelta
def _adadelta_hyper():
    @st.composite
    def draw(d):
        return {
            "lr": d(st.floats(1e-3, 2.0)),
            "rho": d(st.sampled_from([0.0, 0.5, 0.9, 1.0])),
            "eps": d(st.sampled_from([1e-6, 1e-3])),
            "weight_decay": d(st.sampled_from([0.0, 1e-2, 1.0])),
            "maximize": d(st.booleans()),
        }
    return draw()


def _adadelta_ref_step(p, g, state, kw, loss_increased):
    ref.adadelta_step(p, g, state, **{k: kw[k] for k in
                                      ("lr", "rho", "eps", "weight_decay", "maximize") if k in kw})


ADADELTA = Row(
    name="Adadelta",
    cls="Adadelta",
    kwargs={"lr": 0.5, "rho": 0.8, "weight_decay": 0.1},
    bad_hyper=(
        ({"lr": -0.1}, ValueError, "lr"),
        ({"lr": NAN}, ValueError, "lr"),
        ({"lr": INF}, ValueError, "lr"),
        ({"rho": 1.5}, ValueError, "rho"),
        ({"rho": -0.1}, ValueError, "rho"),
        ({"rho": NAN}, ValueError, "rho"),
        ({"eps": -1e-6}, ValueError, "eps"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"maximize": "no"}, TypeError, "maximize"),
    ),
    state_names=("square_avg", "acc_delta"),
    ref_init=lambda p, kw: {"square_avg": np.zeros_like(p), "acc_delta": np.zeros_like(p)},
    ref_step=_adadelta_ref_step,
    hyper=_adadelta_hyper,
    torch_cls="Adadelta",
    torch_kwargs=lambda kw: {**{k: kw[k] for k in ("lr", "rho", "eps", "weight_decay",
                                                   "maximize") if k in kw}, "foreach": False},
    torch_state={"square_avg": "square_avg", "acc_delta": "acc_delta"},
    # torch's CPU sqrt of float32/float64 tensors is MKL's, not correctly rounded: an ulp
    # per square root apart (tests/test_adadelta.py compares bit for bit given an IEEE sqrt)
    torch_exact=False,
)


# ----------------------------------------------------------------------------- RAdam
def _radam_hyper():
    @st.composite
    def draw(d):
        return {
            "lr": d(st.floats(1e-4, 0.5)),
            "betas": (d(st.sampled_from([0.0, 0.5, 0.9])), d(st.sampled_from([0.0, 0.8, 0.999]))),
            "eps": d(st.sampled_from([1e-8, 1e-3])),
            "weight_decay": d(st.sampled_from([0.0, 1e-2, 1.0])),
            "decoupled_weight_decay": d(st.booleans()),
            "maximize": d(st.booleans()),
        }
    return draw()


def _radam_ref_step(p, g, state, kw, loss_increased):
    ref.radam_step(p, g, state, **{k: kw[k] for k in ("lr", "betas", "eps", "weight_decay",
                                                      "decoupled_weight_decay", "maximize")
                                   if k in kw})


RADAM = Row(
    name="RAdam",
    cls="RAdam",
    # beta2 = 0.8: rho_t > 5 from step 7 on, so a dozen steps see both branches
    kwargs={"lr": 0.01, "betas": (0.8, 0.8), "weight_decay": 0.1},
    bad_hyper=(
        ({"lr": -0.1}, ValueError, "lr"),
        ({"lr": NAN}, ValueError, "lr"),
        ({"lr": INF}, ValueError, "lr"),
        ({"betas": (1.0, 0.99)}, ValueError, "betas"),
        ({"betas": (0.9, NAN)}, ValueError, "betas"),
        ({"betas": (0.9, -0.1)}, ValueError, "betas"),
        ({"betas": 0.9}, TypeError, "betas"),
        ({"eps": -1e-8}, ValueError, "eps"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"weight_decay": INF}, ValueError, "weight_decay"),
        ({"decoupled_weight_decay": 1}, TypeError, "decoupled_weight_decay"),
        ({"maximize": "no"}, TypeError, "maximize"),
    ),
    state_names=("exp_avg", "exp_avg_sq"),
    ref_init=lambda p, kw: {"step": 0, "exp_avg": np.zeros_like(p),
                            "exp_avg_sq": np.zeros_like(p)},
    ref_step=_radam_ref_step,
    hyper=_radam_hyper,
    torch_cls="RAdam",
    torch_kwargs=lambda kw: {**{k: kw[k] for k in ("lr", "betas", "eps", "weight_decay",
                                                   "decoupled_weight_decay", "maximize")
                                if k in kw}, "foreach": False},
    torch_state={"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"},
    # torch's CPU sqrt of float32/float64 tensors is MKL's, not correctly rounded: an ulp
    # per square root apart (tests/test_radam.py compares bit for bit given an IEEE sqrt)
    torch_exact=False,
)


# ----------------------------------------------------------------------------- NAdam
def _nadam_hyper():
    @st.composite
    def draw(d):
        return {
            "lr": d(st.floats(1e-4, 0.5)),
            "betas": (d(st.sampled_from([0.0, 0.5, 0.9])), d(st.sampled_from([0.0, 0.9, 0.999]))),
            "eps": d(st.sampled_from([1e-8, 1e-3])),
            "weight_decay": d(st.sampled_from([0.0, 1e-2, 1.0])),
            "momentum_decay": d(st.sampled_from([0.0, 4e-3, 0.5])),
            "decoupled_weight_decay": d(st.booleans()),
            "maximize": d(st.booleans()),
        }
    return draw()


NADAM_KEYS = ("lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay",
              "maximize")


def _nadam_ref_init(p, kw):
    state = ref.nadam_init(p)
    state["mu_product"] = np.asarray(state["mu_product"])  # a 0-d array, as the class keeps it
    return state


def _nadam_ref_step(p, g, state, kw, loss_increased):
    ref.nadam_step(p, g, state, **{k: kw[k] for k in NADAM_KEYS if k in kw})
    state["mu_product"] = np.asarray(state["mu_product"])


NADAM = Row(
    name="NAdam",
    cls="NAdam",
    kwargs={"lr": 0.01, "betas": (0.8, 0.95), "weight_decay": 0.1, "momentum_decay": 0.1},
    bad_hyper=(
        ({"lr": -0.1}, ValueError, "lr"),
        ({"lr": NAN}, ValueError, "lr"),
        ({"lr": INF}, ValueError, "lr"),
        ({"betas": (1.0, 0.99)}, ValueError, "betas"),
        ({"betas": (0.9, NAN)}, ValueError, "betas"),
        ({"betas": 0.9}, TypeError, "betas"),
        ({"eps": -1e-8}, ValueError, "eps"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"momentum_decay": -1.0}, ValueError, "momentum_decay"),
        ({"momentum_decay": NAN}, ValueError, "momentum_decay"),
        ({"decoupled_weight_decay": "yes"}, TypeError, "decoupled_weight_decay"),
        ({"maximize": "no"}, TypeError, "maximize"),
    ),
    state_names=("exp_avg", "exp_avg_sq", "mu_product"),
    ref_init=_nadam_ref_init,
    ref_step=_nadam_ref_step,
    hyper=_nadam_hyper,
    torch_cls="NAdam",
    torch_kwargs=lambda kw: {**{k: kw[k] for k in NADAM_KEYS if k in kw}, "foreach": False},
    torch_state={"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq", "mu_product": "mu_product"},
    # torch's CPU sqrt of float32/float64 tensors is MKL's, not correctly rounded: an ulp
    # per square root apart (tests/test_nadam.py compares bit for bit given an IEEE sqrt)
    torch_exact=False,
)


# ----------------------------------------------------------------------------- ASGD
def _asgd_hyper():
    @st.composite
    def draw(d):
        return {
            "lr": d(st.floats(1e-4, 0.5)),
            "lambd": d(st.sampled_from([0.0, 1e-4, 0.5])),
            "alpha": d(st.sampled_from([0.75, 0.5, 2.0])),
            "t0": d(st.sampled_from([0.0, 2.0, 1e6])),
            "weight_decay": d(st.sampled_from([0.0, 1e-2, 1.0])),
            "maximize": d(st.booleans()),
        }
    return draw()


ASGD_KEYS = ("lr", "lambd", "alpha", "t0", "weight_decay", "maximize")


def _asgd_ref_init(p, kw):
    state = ref.asgd_init(p, kw.get("lr", 1e-2))
    for name in ("eta", "mu"):  # 0-d arrays, as the class keeps them
        state[name] = np.asarray(state[name])
    return state


def _asgd_ref_step(p, g, state, kw, loss_increased):
    ref.asgd_step(p, g, state, **{k: kw[k] for k in ASGD_KEYS if k in kw})
    for name in ("eta", "mu"):
        state[name] = np.asarray(state[name])


ASGD = Row(
    name="ASGD",
    cls="ASGD",
    kwargs={"lr": 0.05, "lambd": 0.1, "t0": 2.0, "weight_decay": 0.1},
    bad_hyper=(
        ({"lr": -0.1}, ValueError, "lr"),
        ({"lr": NAN}, ValueError, "lr"),
        ({"lr": INF}, ValueError, "lr"),
        ({"lambd": NAN}, ValueError, "lambd"),
        ({"alpha": INF}, ValueError, "alpha"),
        ({"t0": NAN}, ValueError, "t0"),
        ({"t0": "1"}, TypeError, "t0"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"maximize": "no"}, TypeError, "maximize"),
    ),
    state_names=("ax", "eta", "mu"),
    ref_init=_asgd_ref_init,
    ref_step=_asgd_ref_step,
    hyper=_asgd_hyper,
    torch_cls="ASGD",
    torch_kwargs=lambda kw: {**{k: kw[k] for k in ASGD_KEYS if k in kw}, "foreach": False},
    torch_state={"ax": "ax", "eta": "eta", "mu": "mu"},
    torch_exact=True,
)


# ------------------------------------------------- the rest of the family (torch's semantics)
# Rows for optimizers that may not exist yet: ROWS keeps only those optbowl exports.
# Without a NumPy reference they are compared with torch (to a tolerance) where torch has them.
def _torch_same(*names, extra=None):
    return lambda kw: {**{k: kw[k] for k in names if k in kw}, **(extra or {})}


_NEG = lambda name, exc=ValueError: ({name: -1.0}, exc, name)  # noqa: E731
_NANH = lambda name: ({name: NAN}, ValueError, name)  # noqa: E731

FUTURE = [
    Row(name="SGD", cls="SGD", kwargs={"lr": 0.05},
        bad_hyper=(_NEG("lr"), _NANH("lr"), _NEG("momentum"), _NEG("weight_decay")),
        torch_cls="SGD", torch_kwargs=_torch_same("lr", "maximize"), torch_exact=False),
    Row(name="SGD-nesterov", cls="SGD",
        kwargs={"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
        bad_hyper=(_NEG("lr"), _NEG("momentum"), _NANH("weight_decay")),
        torch_cls="SGD", torch_kwargs=_torch_same("lr", "momentum", "nesterov", "weight_decay"),
        torch_exact=False),
    Row(name="QuickProp", cls="QuickProp", kwargs={"lr": 0.01, "max_growth": 1.75},
        bad_hyper=(_NEG("lr"), _NANH("lr"), _NEG("max_growth"), _NANH("max_growth"))),
    Row(name="RMSprop", cls="RMSprop", kwargs={"lr": 0.01, "momentum": 0.5, "centered": True},
        bad_hyper=(_NEG("lr"), _NEG("eps"), _NEG("alpha"), _NEG("momentum"), _NEG("weight_decay")),
        torch_cls="RMSprop", torch_kwargs=_torch_same("lr", "momentum", "centered"),
        torch_exact=False),
    Row(name="Adam", cls="Adam", kwargs={"lr": 0.01},
        bad_hyper=(_NEG("lr"), _NANH("lr"), _NEG("eps"), _NEG("weight_decay"),
                   ({"betas": (1.0, 0.999)}, ValueError, "betas")),
        torch_cls="Adam", torch_kwargs=_torch_same("lr", extra={"fused": True}), torch_exact=False),
    Row(name="Adam-amsgrad", cls="Adam", kwargs={"lr": 0.01, "amsgrad": True, "weight_decay": 0.01},
        bad_hyper=(_NEG("lr"), ({"betas": (0.9, NAN)}, ValueError, "betas")),
        torch_cls="Adam",
        torch_kwargs=_torch_same("lr", "amsgrad", "weight_decay", extra={"fused": True}),
        torch_exact=False),
    Row(name="AdamW", cls="AdamW", kwargs={"lr": 0.01, "weight_decay": 0.01},
        bad_hyper=(_NEG("lr"), _NEG("weight_decay")),
        torch_cls="AdamW", torch_kwargs=_torch_same("lr", "weight_decay", extra={"fused": True}),
        torch_exact=False),
]

ALL_ROWS: List[Row] = ([_rprop_row(v) for v in RPROP_VARIANTS] + [ADAGRAD, LION, ADAMAX, ADADELTA]
                       + [RADAM, NADAM, ASGD]
                       + FUTURE)
ROWS: List[Row] = [r for r in ALL_ROWS if r.available]
REFERENCE_ROWS: List[Row] = [r for r in ROWS if r.ref_step is not None]
TORCH_ROWS: List[Row] = [r for r in ROWS if r.torch_cls is not None]


def state_arrays(opt) -> Dict[int, Dict[str, Any]]:
    """A deep copy of opt.state (arrays copied) to compare against later."""
    return {i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
            for i, s in opt.state.items()}


def assert_same_bits(a, b, where="") -> None:
    """Bitwise equality (NaN payloads and signed zeros included) of nested state."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), f"{where}: arrays differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a)} vs {set(b)}"
        for k in a:
            assert_same_bits(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same_bits(x, y, f"{where}[{k}]")
    elif isinstance(a, float) and a != a:
        assert isinstance(b, float) and b != b, where
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def functional_call(rule, params, grads, **hyper):
    """One step of ``rule``'s functional form (a registry entry) over ``params`` with fresh
    state (every state list the function requires, each array filled with 0.1; the
    optional ones None; scalar state at its start), step 1 where it counts steps and lr=0.1
    where lr has no default; ``hyper`` overrides."""
    import inspect

    from optbowl._registry import REQUIRED

    signature = inspect.signature(rule.functional).parameters
    states = [[np.full_like(np.ma.getdata(p), 0.1) for p in params]
              if signature[name].default is inspect.Parameter.empty else None
              for name in rule.operands]
    required = {h.name: 0.1 for h in rule.hyper if h.default is REQUIRED}
    step = {"step": 1} if rule.counts_steps else {}
    # scalar state (NAdam's mu_products): 0-d float32 arrays at their start values
    group = {**rule.defaults, **required, **hyper}
    scalars = {f"{s.name}s": [_scalar_start(s.start_value(group), j) for j in range(len(params))]
               for s in rule.scalar_state}
    rule.functional(params, grads, *states, **{**required, **step, **scalars, **hyper})


def _scalar_start(value, j):
    """A scalar state's start for parameter ``j`` as a 0-d float32 array: a per-tensor
    hyper-parameter's own value, and 1 where the value is one the call will refuse."""
    if isinstance(value, (list, tuple, np.ndarray)):
        value = value[j] if len(value) > j else 1.0
    try:
        return np.array(float(value), np.float32)
    except (TypeError, ValueError):
        return np.array(1.0, np.float32)


def rule_of(cls_name):
    """The registry entry of the class ``cls_name``."""
    from optbowl import _registry

    return next(r for r in _registry.rules() if cls_name in r.classes)


def required_kwargs(cls_name):
    """The arguments without a default of the class ``cls_name`` (``lr=0.1``), per its
    registry entry."""
    from optbowl._registry import REQUIRED

    return {h.name: 0.1 for h in rule_of(cls_name).hyper if h.default is REQUIRED}


def random_problem(dtype, n=1037, seed=0, steps=12):
    """A parameter and ``steps`` gradients of ``n`` elements: gradients spread over six
    decades, with every 97th element exactly zero (a sign-based rule leaves it to decay)."""
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    grads = [(rng.standard_normal(n) * 10.0 ** rng.integers(-4, 3, n)).astype(dtype)
             for _ in range(steps)]
    for g in grads:
        g[::97] = 0.0
    return p, grads
