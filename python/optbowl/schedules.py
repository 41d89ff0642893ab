r"""Learning-rate schedules (seed 004, slides 98–99): each wraps an optimizer and rewrites
``opt.param_groups[i]["lr"]`` on every ``step()``.

With :math:`\eta_0` the learning rate of a group when the schedule was made and :math:`k`
the number of ``step()`` calls so far (``get_last_lr()`` is :math:`\eta_0` before the first):

===========================  =================================================
schedule                     :math:`\eta_k`
===========================  =================================================
:class:`InverseTimeDecay`    :math:`\eta_0/(k+1)` (the seed's "linear decay")
:class:`InverseSquareDecay`  :math:`\eta_0/(k+1)^2`
:class:`ExponentialDecay`    :math:`\eta_0\,e^{-\beta k}`
:class:`StepDecay`           :math:`\eta_0\,\gamma^{\lfloor k/\text{step\_size}\rfloor}`
:class:`ReduceLROnPlateau`   :math:`\eta \leftarrow \max(\text{factor}\cdot\eta,\ \text{min\_lr})`
                             when the metric stagnates (torch's rule)
===========================  =================================================

Every schedule works with every optimizer. For :class:`optbowl.Rprop`, ``lr`` is only the
*initial* step size: a new value reaches parameters that have no state yet (those that
never had a gradient), while elements already stepping keep adapting their own step sizes
between ``step_sizes``. A schedule there sets the starting step size of late-arriving
parameters; it does not shrink the steps of a running Rprop.

>>> import numpy as np, optbowl as ob
>>> opt = ob.SGD(np.zeros(3), lr=1.0)
>>> sched = ob.schedules.InverseTimeDecay(opt)
>>> sched.step(); sched.step()
>>> sched.get_last_lr()
[0.3333333333333333]
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, Callable, Dict, List, Union

from . import _check
from ._optimizer import Optimizer

__all__ = [
    "ExponentialDecay",
    "InverseSquareDecay",
    "InverseTimeDecay",
    "ReduceLROnPlateau",
    "StepDecay",
]


def _optimizer(opt: Any) -> Optimizer:
    if not isinstance(opt, Optimizer):
        raise TypeError(f"optimizer: expected an optbowl optimizer, got {type(opt).__name__}")
    return opt


class _Schedule:
    """Shared machinery: remembers the optimizer and its state, writes lrs, saves itself."""

    optimizer: Optimizer
    _last_lr: List[float]  # every group's lr as last set

    def _groups(self) -> List[Dict[str, Any]]:
        groups = self.optimizer.param_groups
        if len(groups) != len(self._last_lr):
            raise ValueError(
                f"optimizer: has {len(groups)} param groups, "
                f"the schedule was made for {len(self._last_lr)}"
            )
        return groups

    def get_last_lr(self) -> List[float]:
        """The learning rate of every group as last set (or found, before the first step)."""
        return list(self._last_lr)

    def state_dict(self) -> Dict[str, Any]:
        """Everything but the optimizer: plain Python scalars and lists."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore a state_dict() of a schedule of the same kind.

        Every entry is checked as the constructor checks its argument (a count is an
        integer in [0, 2**53], a learning rate a finite real >= 0, ...), and a refused
        state_dict changes nothing.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        mine = self.state_dict()
        if set(state_dict) != set(mine):
            raise ValueError(
                f"state_dict: expected keys {sorted(mine)}, got {sorted(map(str, state_dict))}"
            )
        rules = self._state_rules()
        new = {}
        for key, value in state_dict.items():
            where = f"state_dict[{key!r}]"
            if isinstance(mine[key], list):
                if not isinstance(value, list) or len(value) != len(mine[key]):
                    raise ValueError(f"{where}: expected a list of {len(mine[key])} values")
                new[key] = [rules[key](f"{where}[{i}]", v) for i, v in enumerate(value)]
            else:
                new[key] = rules[key](where, value)
        self.__dict__.update(new)

    def _state_rules(self) -> Dict[str, Callable[[str, Any], Any]]:
        """Each state_dict entry's check (for a list: each item's), returning the value."""
        return {"_last_lr": _lr, "last_step": _count}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._repr_args().items())
        return f"{type(self).__name__}({args}; lr={self._last_lr})"

    def _repr_args(self) -> Dict[str, Any]:
        return {}


def _lr(name: str, value: Any) -> float:
    return _check.real(name, value, low=0.0)


def _count(name: str, value: Any) -> int:
    return _check.count(name, value)


def _rule(check: Callable[..., Any], **limits: Any) -> Callable[[str, Any], Any]:
    return lambda name, value: check(name, value, **limits)


class _ClosedForm(_Schedule):
    """A schedule :math:`\\eta_k = \\eta_0 \\cdot \\text{decay}(k)`."""

    def __init__(self, optimizer: Any) -> None:
        self.optimizer = _optimizer(optimizer)
        self.base_lrs: List[float] = [float(g["lr"]) for g in self.optimizer.param_groups]
        self.last_step = 0
        self._last_lr = list(self.base_lrs)

    def _factor(self, k: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _state_rules(self) -> Dict[str, Callable[[str, Any], Any]]:
        return {**super()._state_rules(), "base_lrs": _lr}

    def step(self) -> None:
        """Advance k by one and write :math:`\\eta_k` into every param group."""
        groups = self._groups()
        k = self.last_step + 1
        factor = self._factor(k)
        lrs = [base * factor for base in self.base_lrs]
        for group, lr in zip(groups, lrs):
            group["lr"] = lr
        self.last_step = k
        self._last_lr = lrs


class InverseTimeDecay(_ClosedForm):
    r""":math:`\eta_k = \eta_0/(k+1)`: the harmonic ("linear") decay of seed 004.

    :math:`\sum_k \eta_k = \infty` and :math:`\sum_k \eta_k^2 < \infty`, the classic
    condition for stochastic gradient descent to converge.
    """

    def _factor(self, k: int) -> float:
        return 1.0 / (k + 1)


class InverseSquareDecay(_ClosedForm):
    r""":math:`\eta_k = \eta_0/(k+1)^2` (seed 004's "quadratic decay")."""

    def _factor(self, k: int) -> float:
        return 1.0 / (k + 1) ** 2


class ExponentialDecay(_ClosedForm):
    r""":math:`\eta_k = \eta_0\,e^{-\beta k}`.

    Parameters
    ----------
    optimizer : Optimizer
    beta : float
        Decay rate :math:`\beta \ge 0` per step.
    """

    def __init__(self, optimizer: Any, beta: float) -> None:
        self.beta = _check.real("beta", beta, low=0.0)
        super().__init__(optimizer)

    def _factor(self, k: int) -> float:
        return math.exp(-self.beta * k)

    def _state_rules(self) -> Dict[str, Callable[[str, Any], Any]]:
        return {**super()._state_rules(), "beta": _rule(_check.real, low=0.0)}

    def _repr_args(self) -> Dict[str, Any]:
        return {"beta": self.beta}


class StepDecay(_ClosedForm):
    r""":math:`\eta_k = \eta_0\,\gamma^{\lfloor k/\text{step\_size}\rfloor}`, as torch's StepLR.

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        Steps between two decays, >= 1.
    gamma : float
        Factor per decay, >= 0.
    """

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _check.integer("step_size", step_size, low=1)
        self.gamma = _check.real("gamma", gamma, low=0.0)
        super().__init__(optimizer)

    def _factor(self, k: int) -> float:
        return self.gamma ** (k // self.step_size)

    def _state_rules(self) -> Dict[str, Callable[[str, Any], Any]]:
        return {
            **super()._state_rules(),
            "step_size": _rule(_check.integer, low=1),
            "gamma": _rule(_check.real, low=0.0),
        }

    def _repr_args(self) -> Dict[str, Any]:
        return {"step_size": self.step_size, "gamma": self.gamma}


class ReduceLROnPlateau(_Schedule):
    r"""Multiply the learning rate by ``factor`` when a metric stops improving.

    The seed's "train until the loss stagnates, then :math:`\eta \leftarrow \beta\eta`",
    with every argument meaning exactly what it means in
    ``torch.optim.lr_scheduler.ReduceLROnPlateau``. On each ``step(metric)``:

    1. ``metric`` is *better* than the best so far if (``mode="min"``) it is below
       ``best * (1 - threshold)`` (``threshold_mode="rel"``) or ``best - threshold``
       (``"abs"``); for ``mode="max"`` above ``best * (1 + threshold)`` or
       ``best + threshold``. A better metric becomes the best and resets the count of bad
       steps; otherwise the count grows by one.
    2. During a cooldown (``cooldown`` steps after a reduction) the count stays 0.
    3. When the count exceeds ``patience``: every group's ``lr`` becomes
       ``max(lr * factor, min_lr)`` (unchanged if that changes it by ``eps`` or less), the
       cooldown starts and the count resets.

    Parameters
    ----------
    optimizer : Optimizer
    mode : {"min", "max"}
        Whether the metric should go down or up.
    factor : float
        Factor of a reduction, in [0, 1).
    patience : int
        Bad steps tolerated before a reduction, >= 0.
    threshold : float
        The least improvement that counts, >= 0.
    threshold_mode : {"rel", "abs"}
        Whether ``threshold`` is relative to the best metric or absolute.
    cooldown : int
        Steps after a reduction during which bad steps are not counted, >= 0.
    min_lr : float or list of float
        Lower bound of the learning rate (one per param group, or one for all), >= 0.
    eps : float
        Reductions smaller than this are skipped, >= 0.
    """

    def __init__(
        self,
        optimizer: Any,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: Union[float, Sequence[float]] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        self.optimizer = _optimizer(optimizer)
        n = len(self.optimizer.param_groups)
        self.mode = _check.choice("mode", mode, ("min", "max"))
        self.factor = _check.real("factor", factor, low=0.0, high=1.0, high_open=True)
        self.patience = _check.integer("patience", patience, low=0)
        self.threshold = _check.real("threshold", threshold, low=0.0)
        self.threshold_mode = _check.choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = _check.integer("cooldown", cooldown, low=0)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise ValueError(
                    f"min_lr: expected {n} values (one per param group), got {len(min_lr)}"
                )
            self.min_lrs = [_check.real(f"min_lr[{i}]", v, low=0.0) for i, v in enumerate(min_lr)]
        else:
            self.min_lrs = [_check.real("min_lr", min_lr, low=0.0)] * n
        self.eps = _check.real("eps", eps, low=0.0)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_steps = 0
        self.cooldown_counter = 0
        self.last_step = 0
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def is_better(self, metric: float, best: float) -> bool:
        """Whether ``metric`` improves on ``best`` by more than the threshold."""
        if self.mode == "min":
            bound = (
                best * (1.0 - self.threshold)
                if self.threshold_mode == "rel"
                else best - self.threshold
            )
            return metric < bound
        bound = (
            best * (self.threshold + 1.0) if self.threshold_mode == "rel" else best + self.threshold
        )
        return metric > bound

    def _state_rules(self) -> Dict[str, Callable[[str, Any], Any]]:
        return {
            **super()._state_rules(),
            "mode": _rule(_check.choice, options=("min", "max")),
            "factor": _rule(_check.real, low=0.0, high=1.0, high_open=True),
            "patience": _rule(_check.integer, low=0),
            "threshold": _rule(_check.real, low=0.0),
            "threshold_mode": _rule(_check.choice, options=("rel", "abs")),
            "cooldown": _rule(_check.integer, low=0),
            "min_lrs": _lr,
            "eps": _rule(_check.real, low=0.0),
            "best": _rule(_check.real, finite=False),  # ±inf before the first metric
            "num_bad_steps": _count,
            "cooldown_counter": _rule(_check.integer, low=0),
        }

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def step(self, metric: float) -> None:
        """Record one value of the metric (e.g. the validation loss) and reduce lr if it
        stagnates."""
        if isinstance(metric, (str, bytes, bool)):
            raise TypeError(f"metric: expected a real number, got {type(metric).__name__}")
        try:
            current = float(metric)  # NaN counts as a bad step, as in torch
        except OverflowError:  # an int beyond float64, e.g. 10**400
            raise ValueError("metric: an integer beyond float64's range") from None
        except (TypeError, ValueError):
            raise TypeError(
                f"metric: expected a real number, got {type(metric).__name__}"
            ) from None
        groups = self._groups()
        self.last_step += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_steps = 0
        else:
            self.num_bad_steps += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_steps = 0
        if self.num_bad_steps > self.patience:
            for group, min_lr in zip(groups, self.min_lrs):
                old = float(group["lr"])
                new = max(old * self.factor, min_lr)
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_steps = 0
        self._last_lr = [float(g["lr"]) for g in groups]

    def _repr_args(self) -> Dict[str, Any]:
        return {"mode": self.mode, "factor": self.factor, "patience": self.patience}
