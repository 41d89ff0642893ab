"""Vectorised NumPy versions of Rprop (irprop-), AdaGrad and heavy-ball SGD: the competitor,
for timing.

These are what a user would write without optbowl: whole-array NumPy expressions, one
temporary per operation. The demo and the benchmarks time them beside the compiled
kernels; optbowl's optimizers never call them, and the tests check that they agree
with the kernels.
"""

from __future__ import annotations

import numpy as np


def rprop_step(p, g, prev, step, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0)):
    """torch.optim.Rprop's update (irprop-) in NumPy, in place."""
    t = p.dtype.type
    s = np.sign(g * prev)
    factor = np.where(s > 0, t(etas[1]), np.where(s < 0, t(etas[0]), t(1)))
    step *= factor
    np.clip(step, t(step_sizes[0]), t(step_sizes[1]), out=step)
    g = np.where(factor == t(etas[0]), t(0), g)
    p -= np.sign(g) * step
    prev[...] = g


def adagrad_step(p, g, state_sum, clr, eps=1e-10):
    """AdaGrad's update in NumPy, in place (no weight decay)."""
    t = p.dtype.type
    state_sum += g * g
    p -= t(clr) * g / (np.sqrt(state_sum) + t(eps))


def momentum_step(p, g, buf, lr, momentum):
    """SGD with heavy-ball momentum (torch's v = βv + g; p −= ηv) in NumPy, in place; ``buf``
    starts at zero, so the first step sets it to g, as torch does."""
    t = p.dtype.type
    buf *= t(momentum)
    buf += g
    p -= t(lr) * buf
