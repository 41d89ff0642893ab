"""Vectorised NumPy versions of Rprop (irprop-), AdaGrad and heavy-ball SGD: the competitor,
for timing.

These are what a user would write without optbowl: whole-array NumPy expressions, one
temporary per operation. Hyper-parameters may be scalars or arrays that broadcast against
the parameter (one row of hyper-parameters per row of a stacked parameter, as the bowl
sweep benchmark uses them). The demo and the benchmarks time them beside the compiled
kernels; optbowl's optimizers never call them, and the tests check that they agree
with the kernels.
"""

from __future__ import annotations

import numpy as np


def rprop_step(p, g, prev, step, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0)):
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


def adagrad_step(p, g, state_sum, clr, eps=1e-10):
    """AdaGrad's update in NumPy, in place (no weight decay)."""
    state_sum += g * g
    p -= np.asarray(clr, dtype=p.dtype) * g / (np.sqrt(state_sum) + np.asarray(eps, dtype=p.dtype))


def momentum_step(p, g, buf, lr, momentum):
    """SGD with heavy-ball momentum (torch's v = βv + g; p −= ηv) in NumPy, in place; ``buf``
    starts at zero, so the first step sets it to g, as torch does."""
    buf *= np.asarray(momentum, dtype=p.dtype)
    buf += g
    p -= np.asarray(lr, dtype=p.dtype) * buf
