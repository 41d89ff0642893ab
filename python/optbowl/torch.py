r"""Drop-in replacements for ``torch.optim`` optimizers, on optbowl's fused kernels.

Change one import and keep the rest of a training script::

    import optbowl.torch
    opt = optbowl.torch.Rprop(model.parameters(), lr=1e-2)   # was torch.optim.Rprop

The classes are subclasses of :class:`torch.optim.Optimizer` with torch's constructor
signatures and defaults, so ``param_groups``, ``zero_grad``, step hooks,
``add_param_group`` and learning-rate schedulers work as with torch. ``state_dict()`` is in
torch's own format (the same state keys and tensors), so a checkpoint written by
``torch.optim.Rprop`` loads into :class:`optbowl.torch.Rprop` and the other way round, and
training continues with bit-identical parameters.

Each ``step()`` makes one compiled call per device for all parameters that have a gradient:

- CPU tensors (float32/float64, contiguous, dense gradients) are handed to the C++ kernels
  of ``optbowl._core`` as NumPy views of their memory, without copies;
- CUDA tensors go to optbowl's CUDA module (``optbowl._cuda``), imported on first use; an
  installation without it refuses CUDA tensors with a RuntimeError;
- anything else (a sparse gradient, float16 on the CPU, a non-contiguous parameter, another
  device) raises a TypeError or ValueError naming the parameter, before anything is written.

There is never a silent fallback to torch's own implementation, and an option the kernels
cannot honour (``differentiable=True``, ``capturable=True``, Adagrad's non-fused rounding) is
refused with a ValueError rather than ignored.

``import optbowl`` does not import torch; only ``import optbowl.torch`` does (torch >= 2.5,
the extra ``optbowl[torch]``).
"""

from __future__ import annotations

import importlib
import math
import numbers
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.autograd.graph import increment_version

from . import _core

__all__ = ["Adagrad", "Rprop"]

#: Parameter dtypes the CPU kernels take.
CPU_DTYPES = (torch.float32, torch.float64)


def _scalar_dtype() -> torch.dtype:
    """dtype of a ``step`` counter, as torch.optim makes it (float64 only under that default)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _cuda_kernels() -> Any:
    """optbowl's CUDA module, imported on first use; a RuntimeError if it is not there."""
    try:
        return importlib.import_module("optbowl._cuda")
    except ImportError as exc:
        raise RuntimeError(
            "params: CUDA tensors need optbowl's CUDA module (optbowl._cuda), which this "
            "installation of optbowl was built without; rebuild optbowl with a CUDA compiler "
            "or keep the model on the CPU"
        ) from exc


def _real(name: str, value: Any, low: float = 0.0) -> float:
    """A hyper-parameter as a float (a one-element tensor is accepted, as torch does), >= low."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name}: a tensor {name} must have exactly one element")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    x = float(value)
    if math.isnan(x) or x < low:
        raise ValueError(f"{name}: must be >= {low}, got {x}")
    return x


def _pair(name: str, value: Any) -> Tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name}: expected a pair of real numbers, got {value!r}")
    return (_real(f"{name}[0]", value[0], -math.inf), _real(f"{name}[1]", value[1], -math.inf))


def _flag(name: str, value: Any, allowed: Sequence[Any], why: str) -> None:
    """Refuse an implementation option the kernels cannot honour, saying why."""
    if not any(value is a for a in allowed):
        raise ValueError(f"{name}={value!r} is not supported by optbowl.torch: {why}")


class _Batch:
    """The tensors of one device that take part in a step, in the kernel's layout."""

    def __init__(self, n_state: int) -> None:
        self.params: List[torch.Tensor] = []
        self.grads: List[torch.Tensor] = []
        self.states: List[List[torch.Tensor]] = [[] for _ in range(n_state)]
        self.steps: List[float] = []  # each tensor's step count after this step
        self.groups: List[Dict[str, Any]] = []
        self.group_sizes: List[int] = []

    def add(self, p, grad, state_tensors, step, group) -> None:
        self.params.append(p)
        self.grads.append(grad)
        for column, t in zip(self.states, state_tensors):
            column.append(t)
        self.steps.append(step)
        if self.groups and self.groups[-1] is group:
            self.group_sizes[-1] += 1
        else:
            self.groups.append(group)
            self.group_sizes.append(1)

    def as_numpy(self) -> "_Batch":
        """The same batch with every tensor replaced by a NumPy view of its memory."""
        out = _Batch(len(self.states))
        out.params = [t.detach().numpy() for t in self.params]
        out.grads = [t.detach().numpy() for t in self.grads]
        out.states = [[t.detach().numpy() for t in column] for column in self.states]
        out.steps, out.groups, out.group_sizes = self.steps, self.groups, self.group_sizes
        return out


class _FusedOptimizer(torch.optim.Optimizer):
    """A torch optimizer whose step is one fused optbowl kernel call per device.

    A subclass names its state tensors (``_state_names``, in the kernel's order), checks a
    param group (``_check_group``), makes a parameter's state in torch's format
    (``_init_state``) and calls its compiled entry (``_launch``); this class finds the
    parameters with gradients, checks every tensor, hands them over without copies and
    advances the ``step`` counters only after the kernel has run.
    """

    _state_names: Tuple[str, ...] = ()
    #: Whether the kernel takes each tensor's step count (reading it costs a sync on a GPU).
    _counts_steps = False

    def __init__(self, params: Any, defaults: Dict[str, Any]) -> None:
        self._check_group(defaults)
        super().__init__(params, defaults)

    # ---------------------------------------------------------------- per optimizer
    def _check_group(self, group: Dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _init_state(self, p: torch.Tensor, group: Dict[str, Any]) -> Dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def _launch(self, kernels: Any, batch: _Batch) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---------------------------------------------------------------- torch machinery
    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._check_group(self.param_groups[-1])

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            for p in group["params"]:
                p_state = self.state.get(p)
                if p_state and not torch.is_tensor(p_state.get("step")):
                    p_state["step"] = torch.tensor(float(p_state.get("step", 0)), dtype=_scalar_dtype())

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """Perform a single optimization step.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss (called with gradients enabled).

        Returns
        -------
        The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for k, group in enumerate(self.param_groups):
            try:
                self._check_group(group)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"param_groups[{k}]: {exc}") from None

        batches: Dict[torch.device, _Batch] = {}
        fresh: Dict[torch.Tensor, Dict[str, torch.Tensor]] = {}
        counters: List[torch.Tensor] = []
        index = -1
        for group in self.param_groups:
            for p in group["params"]:
                index += 1
                if p.grad is None:
                    continue
                self._check_tensors(f"params[{index}]", p, p.grad)
                state = self.state.get(p)
                if not state:
                    state = fresh[p] = self._init_state(p, group)
                tensors = [state[name] for name in self._state_names]
                for name, t in zip(self._state_names, tensors):
                    self._check_state(f"params[{index}]: state[{name!r}]", p, t)
                batch = batches.get(p.device)
                if batch is None:
                    batch = batches[p.device] = _Batch(len(tensors))
                count = float(state["step"]) + 1.0 if self._counts_steps else 0.0
                batch.add(p, p.grad, tensors, count, group)
                counters.append(state["step"])

        runs = []
        for device, batch in batches.items():
            if device.type == "cpu":
                runs.append((_core, batch.as_numpy()))
            else:
                runs.append((_cuda_kernels(), batch))
        for kernels, batch in runs:
            self._launch(kernels, batch)

        for p, state in fresh.items():
            self.state[p] = state
        if counters:
            torch._foreach_add_(counters, 1)
            increment_version([p for batch in batches.values() for p in batch.params])
        return loss

    @staticmethod
    def _check_tensors(name: str, p: torch.Tensor, grad: torch.Tensor) -> None:
        if grad.is_sparse or grad.layout != torch.strided:
            raise TypeError(f"{name}.grad: sparse gradients are not supported (layout {grad.layout})")
        if p.layout != torch.strided:
            raise TypeError(f"{name}: expected a dense tensor, got layout {p.layout}")
        if p.device.type == "cpu":
            if p.dtype not in CPU_DTYPES:
                raise TypeError(f"{name}: expected a float32 or float64 tensor on the CPU, got {p.dtype}")
        elif p.device.type != "cuda":
            raise TypeError(f"{name}: tensors on {p.device.type!r} are not supported (only cpu and cuda)")
        if grad.dtype != p.dtype:
            raise TypeError(f"{name}.grad: dtype {grad.dtype} does not match the parameter's {p.dtype}")
        if grad.device != p.device:
            raise ValueError(f"{name}.grad: on {grad.device}, the parameter is on {p.device}")
        if grad.shape != p.shape:
            raise ValueError(
                f"{name}.grad: shape {tuple(grad.shape)} does not match the parameter's {tuple(p.shape)}"
            )
        if not p.is_contiguous():
            raise ValueError(f"{name}: must be contiguous (the kernels update it in place, in order)")
        if not grad.is_contiguous():
            raise ValueError(f"{name}.grad: must be contiguous")

    @staticmethod
    def _check_state(name: str, p: torch.Tensor, t: Any) -> None:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
        if t.dtype != p.dtype or t.device != p.device or t.shape != p.shape:
            raise ValueError(
                f"{name}: {t.dtype} {tuple(t.shape)} on {t.device} does not match the parameter "
                f"({p.dtype} {tuple(p.shape)} on {p.device})"
            )
        if not t.is_contiguous():
            raise ValueError(f"{name}: must be contiguous")


class Rprop(_FusedOptimizer):
    r"""torch.optim.Rprop on optbowl's fused kernel, bit-identical to it.

    The resilient-backpropagation rule of torch (iRprop−): with :math:`s = g_t\,g_{t-1}`,

    .. math::

        \Delta_t = \operatorname{clamp}(\Delta_{t-1} f,\ \Gamma_{\min},\ \Gamma_{\max}),\quad
        f = \begin{cases} \eta_+ & s > 0 \\ \eta_- & s < 0 \ (\text{and } g_t \leftarrow 0) \\
        1 & \text{otherwise} \end{cases},\qquad
        \theta_t = \theta_{t-1} - \Delta_t \operatorname{sign}(g_t)

    with :math:`\Delta_0 = \text{lr}` and :math:`g_{t-1}` the previous (possibly zeroed)
    gradient. The state per parameter is torch's: ``step`` (a scalar tensor), ``prev`` and
    ``step_size``.

    Parameters
    ----------
    params : iterable of tensors or of dicts
        Parameters, or param groups with their own ``lr``, ``etas``, ``step_sizes``,
        ``maximize``.
    lr : float or one-element tensor
        Initial step size :math:`\Delta_0` (default 1e-2).
    etas : (float, float)
        :math:`(\eta_-, \eta_+)`, with :math:`0 < \eta_- < 1 < \eta_+` (default (0.5, 1.2)).
    step_sizes : (float, float)
        :math:`(\Gamma_{\min}, \Gamma_{\max})`, with :math:`0 \le \Gamma_{\min} \le \Gamma_{\max}`
        (default (1e-6, 50)).
    capturable : bool
        Only False: CUDA-graph capture is not supported.
    foreach : bool or None
        Accepted for compatibility; every value runs the same fused kernel, whose results
        equal torch's for every value.
    maximize : bool
        Follow the gradient uphill.
    differentiable : bool
        Only False: the kernels do not record the update for autograd.
    """

    _state_names = ("prev", "step_size")

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        etas: Tuple[float, float] = (0.5, 1.2),
        step_sizes: Tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: Optional[bool] = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "etas": etas,
            "step_sizes": step_sizes,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "capturable": capturable,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: Dict[str, Any]) -> None:
        _real("lr", group["lr"])
        eta_minus, eta_plus = _pair("etas", group["etas"])
        if not 0.0 < eta_minus < 1.0 < eta_plus:
            raise ValueError(f"etas: expected 0 < eta_minus < 1 < eta_plus, got ({eta_minus}, {eta_plus})")
        step_min, step_max = _pair("step_sizes", group["step_sizes"])
        if not 0.0 <= step_min <= step_max:
            raise ValueError(f"step_sizes: expected 0 <= step_min <= step_max, got ({step_min}, {step_max})")
        if not isinstance(group["maximize"], bool):
            raise TypeError(f"maximize: expected a bool, got {type(group['maximize']).__name__}")
        _flag("foreach", group["foreach"], (None, True, False), "expected None, True or False")
        _flag("capturable", group["capturable"], (False,), "CUDA-graph capture is not supported")
        _flag("differentiable", group["differentiable"], (False,), "the fused update is not recorded by autograd")

    def _init_state(self, p: torch.Tensor, group: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        return {
            "step": torch.zeros((), dtype=_scalar_dtype()),
            "prev": torch.zeros_like(p, memory_format=torch.preserve_format),
            "step_size": torch.full_like(p, _real("lr", group["lr"])),
        }

    def _launch(self, kernels: Any, batch: _Batch) -> None:
        kernels.rprop(
            "irprop-",
            batch.params,
            batch.grads,
            batch.states[0],
            batch.states[1],
            None,
            [
                (*map(float, g["etas"]), *map(float, g["step_sizes"]), g["maximize"])
                for g in batch.groups
            ],
            batch.group_sizes,
        )


class Adagrad(_FusedOptimizer):
    r"""torch.optim.Adagrad on optbowl's fused kernel, bit-identical to ``fused=True``.

    At step :math:`t` (counting from 1):

    .. math::

        \eta_t = \frac{\text{lr}}{1 + (t-1)\,\text{lr\_decay}},\quad
        g \leftarrow g + \lambda\theta,\quad
        s \leftarrow s + g^2,\quad
        \theta \leftarrow \theta - \eta_t \frac{g}{\sqrt{s} + \epsilon}

    rounded as torch's fused CPU kernel rounds (``fma`` for the weight decay and the sum of
    squares), so the results equal ``torch.optim.Adagrad(fused=True)`` bit for bit. The state
    per parameter is torch's: ``step`` (a scalar tensor) and ``sum``, made for every parameter
    when the optimizer is built, as torch does. As in torch, the accumulator starts at the
    constructor's ``initial_accumulator_value`` whatever a param group says.

    Parameters
    ----------
    params : iterable of tensors or of dicts
        Parameters, or param groups with their own hyper-parameters.
    lr : float or one-element tensor
        Learning rate (default 1e-2).
    lr_decay, weight_decay, initial_accumulator_value : float
        As in torch (default 0), each >= 0.
    eps : float
        Added to the denominator (default 1e-10), >= 0.
    foreach : bool or None
        None or False: torch's ``foreach=True`` path rounds differently from the fused
        kernel, so True is refused.
    maximize : bool
        Follow the gradient uphill.
    differentiable : bool
        Only False.
    fused : bool or None
        None (default) or True: the update is always the fused one; False, which asks for
        torch's differently rounded single-tensor path, is refused.
    """

    _state_names = ("sum",)
    _counts_steps = True

    def __init__(
        self,
        params: Any,
        lr: Any = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: Optional[bool] = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: Optional[bool] = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": differentiable,
            "fused": fused,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = self._init_state(p, group)

    def _check_group(self, group: Dict[str, Any]) -> None:
        for name in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            _real(name, group[name])
        if not isinstance(group["maximize"], bool):
            raise TypeError(f"maximize: expected a bool, got {type(group['maximize']).__name__}")
        rounding = "the update is always the fused kernel's, which rounds as torch's fused=True"
        _flag("fused", group["fused"], (None, True), rounding)
        _flag("foreach", group["foreach"], (None, False), rounding)
        _flag("differentiable", group["differentiable"], (False,), "the fused update is not recorded by autograd")

    def _init_state(self, p: torch.Tensor, group: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        fused = group["fused"]
        return {
            "step": (
                torch.zeros((), dtype=torch.float32, device=p.device)
                if fused
                else torch.tensor(0.0, dtype=_scalar_dtype())
            ),
            "sum": torch.full_like(
                p, _real("initial_accumulator_value", self.defaults["initial_accumulator_value"]),
                memory_format=torch.preserve_format,
            ),
        }

    def _launch(self, kernels: Any, batch: _Batch) -> None:
        kernels.adagrad(
            batch.params,
            batch.grads,
            batch.states[0],
            batch.steps,
            [
                (_real("lr", g["lr"]), float(g["lr_decay"]), float(g["weight_decay"]), float(g["eps"]), g["maximize"])
                for g in batch.groups
            ],
            batch.group_sizes,
        )
