"""Memory: 10^4 steps of every optimizer leave the process's resident memory where it
was (no leaked state, temporaries or tables), checked after a warm-up."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

from optimizer_table import ROWS

STEPS = 10_000
MIB = 1 << 20


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc/self/statm (Linux)")
@pytest.mark.parametrize("row", ROWS, ids=str)
def test_ten_thousand_steps_do_not_grow_memory(row):
    # many small tensors: a leaked table or temporary per step or per tensor would show
    shapes = [(257,), (16, 9), (), (0,)] * 5
    params = [np.ones(s, np.float32 if k % 2 else np.float64) for k, s in enumerate(shapes)]
    grads = [[np.full(s, v, p.dtype) for s, p in zip(shapes, params)] for v in (0.5, -0.25, 1.0)]
    opt = row.make(params)
    for k in range(1000):  # warm-up: state made, allocator pools settled
        row.step(opt, grads[k % 3], loss=float(k % 5))
    gc.collect()
    before = _rss_bytes()
    for k in range(STEPS):
        row.step(opt, grads[k % 3], loss=float(k % 5))
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < MIB, f"{STEPS} steps grew the resident memory by {grown / MIB:.2f} MiB"
    assert all(opt.state[i]["step"] == STEPS + 1000 for i in range(len(params)))
