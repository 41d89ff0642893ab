"""Rprop in five variants, one fused multi-tensor pass per step."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import _check, _device, functional
from ._optimizer import Optimizer
from ._registry import BOOL, BenchFamily, BowlCall, CudaCall, DemoPhase, Hyper, Rule, register

VARIANTS = ("irprop-", "rprop-", "rprop+", "irprop+", "backtrack")


# The vectorised NumPy competitor the demo and the benchmarks time beside the compiled step:
# what a user would write without optbowl (whole-array expressions, one temporary per
# operation). The optimizers never call it; tests check that it agrees with the kernels.
def numpy_rprop_step(p, g, prev, step, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0)):
    """torch.optim.Rprop's update (irprop-) in NumPy, in place."""
    t = p.dtype.type
    eta_minus, eta_plus = (np.asarray(e, dtype=p.dtype) for e in etas)
    s = np.sign(g * prev)
    factor = np.where(s > 0, eta_plus, np.where(s < 0, eta_minus, t(1)))
    step *= factor
    np.clip(step, t(step_sizes[0]), t(step_sizes[1]), out=step)
    g = np.where(s < 0, t(0), g)
    p -= np.sign(g) * step
    prev[...] = g


def _numpy_steps(params: Any, hyper: Optional[Dict[str, Any]] = None) -> Any:
    """The vectorised NumPy irprop- the benchmark and the demo time beside the compiled
    step (``hyper``: its ``lr``, default 1e-2)."""
    lr = (hyper or {}).get("lr", 1e-2)
    states = [(np.zeros_like(p), np.full_like(p, lr)) for p in params]

    def step(grads: Any) -> None:
        for p, g, (prev, size) in zip(params, grads, states):
            numpy_rprop_step(p, g, prev, size)

    return step

#: The registry entry of Rprop (optbowl._registry). The group tuple holds the etas, the
#: step-size bounds and maximize; lr is only the first step size (state).
RULE = Rule(
    name="rprop",
    cls="Rprop",
    hyper=(
        Hyper("lr", default=1e-2, low=0.0, in_group=False),
        Hyper("etas", default=(0.5, 1.2), low=0.0, low_open=True, pair=("eta_minus", "eta_plus"),
              condition="0 < eta_minus < 1 < eta_plus < inf"),
        Hyper("step_sizes", default=(1e-6, 50.0), low=0.0, low_open=True,
              pair=("step_min", "step_max"), condition="0 < step_min <= step_max < inf"),
        Hyper("maximize", BOOL, False),
    ),
    state=("prev", "step_size", "update"),
    operands=("prevs", "step_sizes", "updates"),
    layers=frozenset({"class", "functional", "bowl", "cuda", "torch", "bench"}),
    reads_loss=True,
    complex_as=("Rprop's 'irprop-'",),
    cuda=CudaCall(lead=lambda lead: (VARIANTS.index(lead[0]),), tail=(("loss_increased", True),)),
    bowl=BowlCall(("lr", "etas", "step_sizes", "variant"), ctor_only=("variant",),
                  by_variant=True),
    bench=(
        BenchFamily("irprop-", "Rprop irprop- (torch.optim.Rprop)", 2,
                    {"lr": 1e-2, "variant": "irprop-"}, torch="Rprop", torch_hyper={"lr": 1e-2},
                    numpy=_numpy_steps, optax=lambda optax: optax.rprop(1e-2), default=True,
                    quick=True),
        BenchFamily("irprop-/compact", "Rprop irprop-, compact_state=True (int8 signs)", 2,
                    {"lr": 1e-2, "variant": "irprop-", "compact_state": True}, compact=True,
                    extra_bytes=2, default=True),
        BenchFamily("rprop-", "Rprop rprop-", 2, {"lr": 1e-2, "variant": "rprop-"}),
        BenchFamily("rprop+", "Rprop rprop+ (Riedmiller & Braun)", 3,
                    {"lr": 1e-2, "variant": "rprop+"}),
        BenchFamily("irprop+", "Rprop irprop+ (Igel & Huesken)", 3,
                    {"lr": 1e-2, "variant": "irprop+"}, needs_loss=True),
        BenchFamily("backtrack", "Rprop backtrack", 2, {"lr": 1e-2, "variant": "backtrack"}),
    ),
    demo=tuple(DemoPhase(f"Rprop {v}", {"lr": 0.1, "variant": v},
                         numpy=_numpy_steps if v == "irprop-" else None,
                         needs_loss=v == "irprop+") for v in VARIANTS),
)


class Rprop(Optimizer):
    r"""Resilient backpropagation: a per-element step size that follows the gradient's sign.

    Every variant adapts the step size of each element from the sign of
    :math:`s = g_t\,g_{t-1}` (rounded to the array's dtype):

    .. math::

        f = \begin{cases} \eta_+ & s > 0 \\ \eta_- & s < 0 \\
        1 & \text{otherwise (also NaN)}\end{cases}
        \qquad
        \Delta_t = \operatorname{clamp}(\Delta_{t-1} f,\ \Delta_{\min},\ \Delta_{\max})

    with :math:`\Delta_0 = \text{lr}`, and moves
    :math:`p \leftarrow p - \operatorname{sign}(g)\,\Delta_t`.
    They differ on a sign change (:math:`s < 0`):

    =============  ===============================================================
    variant        on a sign change
    =============  ===============================================================
    ``irprop-``    the gradient counts as 0: no move, and ``prev = 0``. This is
                   torch.optim.Rprop's algorithm, bit for bit (the default).
    ``rprop-``     nothing special: move by ``sign(g)`` and ``prev = g``.
    ``rprop+``     undo the previous move (Riedmiller & Braun, 1993), ``prev = 0``.
    ``irprop+``    undo the previous move only if the loss went up (Igel &
                   Hüsken, 2000); needs ``step(grads, loss=...)``.
    ``backtrack``  seed 004's slides 108–112: step back to the previous point,
                   shrink the step, take the smaller step forward in the old
                   direction; the direction is kept, a zero gradient leaves the
                   element untouched, the first step moves by ``lr``.
    =============  ===============================================================

    Parameters
    ----------
    params : ndarray, sequence of ndarray, or list of dict
        The arrays to optimise in place (float32, float64, float16 or
        ``ml_dtypes.bfloat16``, or complex64/complex128 stepped as their real view; dense in
        memory in any axis order; writeable; 16-bit arrays keep their state in their dtype
        and are computed in float32, as torch's single-tensor Rprop),
        or torch-style param groups with per-group ``lr``, ``etas``, ``step_sizes``,
        ``maximize``.
    lr : float
        Initial step size :math:`\Delta_0` (torch's name). Changing ``lr`` in
        ``param_groups`` later affects only parameters without state yet.
    etas : (float, float)
        :math:`(\eta_-, \eta_+)` with :math:`0 < \eta_- < 1 < \eta_+`.
    step_sizes : (float, float)
        :math:`(\Delta_{\min}, \Delta_{\max})` with :math:`0 < \Delta_{\min} \le \Delta_{\max}`.
    variant : str
        One of ``"irprop-"``, ``"rprop-"``, ``"rprop+"``, ``"irprop+"``, ``"backtrack"``.
    maximize : bool
        Follow the gradient uphill (use :math:`-g`).
    compact_state : bool
        Keep only the sign of the previous gradient, as an ``int8`` code (-1, 0, +1, or 2
        for NaN) in ``state["prev_sign"]`` (``state["direction"]`` for ``backtrack``),
        instead of a ``prev`` array of the parameters' dtype: 22 instead of 28 bytes of
        memory traffic per float32 element and step, so a faster step and a quarter less
        state. The factor :math:`f` depends only on the sign class of
        :math:`s = g_t\,g_{t-1}`, which the code keeps exactly, except where the rounded
        product **underflows to zero**: two non-zero gradients whose product is below half
        the smallest subnormal (e.g. :math:`10^{-23}\cdot 10^{-23}` in float32). There
        torch (and ``compact_state=False``) computes :math:`s = 0` and takes
        :math:`f = 1`, while the compact state sees the true sign and takes
        :math:`\eta_\pm`. Otherwise (inf and NaN included) every variant gives
        bit-identical parameters, step sizes and updates either way; ``backtrack``'s
        direction is always -1, 0 or +1, so for it the two are always identical.

    Examples
    --------
    >>> import numpy as np, optbowl as ob
    >>> x = np.array([3.0, -2.0])
    >>> opt = ob.Rprop(x, lr=0.5)
    >>> for _ in range(60):
    ...     opt.step(2 * x)               # gradient of |x|^2
    >>> bool(np.all(np.abs(x) < 1e-3))
    True
    """

    rule = RULE
    _global_defaults = {"prev_loss": None}
    _stored_hyper = ("lr", "step_sizes")  # the first step size and its bounds are state

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        etas: tuple = (0.5, 1.2),
        step_sizes: tuple = (1e-6, 50.0),
        variant: str = "irprop-",
        maximize: bool = False,
        compact_state: bool = False,
        *,
        state_dtype: Any = None,
    ) -> None:
        self.variant = _check.choice("variant", variant, VARIANTS)
        self.compact_state = _check.boolean("compact_state", compact_state)
        prev = "prev_sign" if self.compact_state else "prev"
        if self.variant in ("rprop+", "irprop+"):
            self._state_names = (prev, "step_size", "update")
        elif self.variant == "backtrack":
            self._state_names = ("direction", "step_size")
        else:
            self._state_names = (prev, "step_size")
        super().__init__(params, RULE.pick(locals()), state_dtype=state_dtype)
        if self.compact_state and self._placement is not None:
            raise ValueError(
                "compact_state: the int8 sign state is for NumPy arrays; CUDA arrays keep prev"
            )

    def _check_group(self, group: Dict[str, Any]) -> None:
        group["lr"] = _check.real("lr", group["lr"], low=0.0)
        eta_minus, eta_plus = _check.pair("etas", group["etas"])
        if not (0.0 < eta_minus < 1.0 < eta_plus) or math.isinf(eta_plus):
            raise ValueError(
                f"etas: expected 0 < eta_minus < 1 < eta_plus < inf, got ({eta_minus}, {eta_plus})"
            )
        group["etas"] = (eta_minus, eta_plus)
        step_min, step_max = _check.pair("step_sizes", group["step_sizes"])
        if not (0.0 < step_min <= step_max) or math.isinf(step_max):
            raise ValueError(
                f"step_sizes: expected 0 < step_min <= step_max < inf, got ({step_min}, {step_max})"
            )
        group["step_sizes"] = (step_min, step_max)
        group["maximize"] = _check.boolean("maximize", group["maximize"])

    def _complex_refusal(self) -> Optional[str]:
        if self.variant != "irprop-":
            return f"variant {self.variant!r} is not torch's"
        if self.compact_state:
            return "compact_state=True keeps int8 signs of real elements"
        return None

    def _new_state(self, p: np.ndarray, group: Dict[str, Any]) -> Dict[str, Any]:
        state: Dict[str, Any] = {"step": 0}
        for k, name in enumerate(self._state_names):
            if k == 0 and self.compact_state:
                state[name] = _device.host_full_like(p, 0, np.int8)
            else:
                state[name] = self._state_like(p, group["lr"] if name == "step_size" else 0.0)
        return state

    def _step_extras(self, loss: Optional[float]) -> Dict[str, Any]:
        if self.variant != "irprop+":
            return {}
        if loss is None:
            raise ValueError("loss: variant 'irprop+' needs the loss: call step(grads, loss=...)")
        loss = _check.real("loss", loss, finite=False)
        prev = self._global["prev_loss"]
        return {"loss_increased": prev is not None and loss > prev}

    def _after_step(self, loss: Optional[float]) -> None:
        if self.variant == "irprop+":
            self._global["prev_loss"] = float(loss)  # type: ignore[arg-type]

    def _call_layout(self) -> Tuple[str, tuple, int, Dict[str, Any]]:
        # irprop+'s loss_increased comes from _step_extras; the int8 state is the host's,
        # named only when on (a keyword costs pybind11 0.5 µs a call)
        return (self.rule.name, (self.variant,), self.rule.width,
                {"compact_state": True} if self.compact_state else {})

    def _short_call(self) -> Optional[tuple]:
        # irprop+ compares the loss with the last one: its steps go through Python
        return None if self.variant == "irprop+" else super()._short_call()

    def _state_dict_extras(self) -> Dict[str, Any]:
        extras: Dict[str, Any] = {"variant": self.variant}
        if self.compact_state:  # a compact state loads only into a compact optimizer
            extras["compact_state"] = True
        return extras

    def _hyper_repr(self, group: Dict[str, Any]) -> str:
        extra = ", compact_state=True" if self.compact_state else ""
        return super()._hyper_repr(group) + f", variant={self.variant!r}{extra}"


def rprop(
    params,
    grads,
    prevs,
    step_sizes,
    updates=None,
    *,
    etas=(0.5, 1.2),
    step_size_bounds=(1e-6, 50.0),
    variant: str = "irprop-",
    maximize=False,
    loss_increased: bool = True,
) -> None:
    """One Rprop step (see :class:`optbowl.Rprop`). ``prevs``: previous gradients (the
    direction for ``"backtrack"``); ``step_sizes``: per-element step sizes; ``updates``: the
    last moves (``"rprop+"``/``"irprop+"`` only); ``step_size_bounds``: the class's
    ``step_sizes`` pair :math:`(\\Delta_{\\min}, \\Delta_{\\max})`; ``loss_increased``: whether
    iRprop+ reverts on a sign change.

    Examples
    --------
    >>> import numpy as np
    >>> from optbowl import functional as F
    >>> x, prev, size = np.array([1.0, -1.0]), np.zeros(2), np.full(2, 0.25)
    >>> F.rprop([x], [2 * x], [prev], [size])
    >>> x
    array([ 0.75, -0.75])
    """
    hyper = {"lr": 0.0, "etas": etas, "step_sizes": step_size_bounds, "maximize": maximize}
    why = None if variant == "irprop-" else f"variant {variant!r} is not torch's"
    functional.run(RULE, params, grads, (prevs, step_sizes, updates), hyper,
                   names={"step_sizes": "step_size_bounds"}, lead=(variant,),
                   tail=(bool(loss_increased),), complex_refusal=why)


register(RULE, rprop)
