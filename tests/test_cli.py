import subprocess
import sys

import numpy as np

from optbowl import _numpy_baseline, Adagrad, Rprop


def test_demo_runs_small():
    out = subprocess.run(
        [sys.executable, "-m", "optbowl", "demo", "--size", "20000", "--steps", "30"],
        capture_output=True, text=True, check=True,
    ).stdout
    for name in ("irprop-", "rprop-", "rprop+", "irprop+", "backtrack", "AdaGrad", "speed-up"):
        assert name in out


def test_numpy_baselines_agree_with_kernels(rng):
    x = rng.standard_normal(1000).astype(np.float32)
    y = x.copy()
    opt = Rprop(x, lr=0.1)
    prev, step = np.zeros_like(y), np.full_like(y, 0.1)
    for _ in range(20):
        g = (x * 3 + rng.standard_normal(1000)).astype(np.float32)
        opt.step(g)
        _numpy_baseline.rprop_step(y, g, prev, step)
    np.testing.assert_array_equal(x, y)
    x = rng.standard_normal(1000)
    y = x.copy()
    opt = Adagrad(x, lr=0.1)
    s = np.zeros_like(y)
    for _ in range(20):
        g = rng.standard_normal(1000)
        opt.step(g)
        _numpy_baseline.adagrad_step(y, g, s, 0.1)
    np.testing.assert_allclose(x, y, rtol=1e-13)
