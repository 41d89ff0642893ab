"""pytest-benchmark suite: every rule against its floor, NumPy and torch, per workload.

Run from the repository root (plain ``pytest`` collects only tests/):

    pip install -e ".[bench,torch]"
    pytest bench/ --benchmark-group-by=group --benchmark-columns=median,iqr,ops
    pytest bench/ -k "resnet18 and float32 and irprop-"      # one group

One group per (workload, dtype, rule); in it optbowl's step, the streaming floor kernel
over the same bytes, the vectorised NumPy step and torch's single-tensor / foreach /
fused paths (skipped, with the reason, where torch or the path does not exist).
The workloads and rules are those of ``python -m optbowl bench`` (optbowl.bench).
"""

import pytest

from optbowl import _workloads
from optbowl.bench import RULES, TORCH_PATHS, build_case

WORKLOADS = {
    "flat-1M": _workloads.flat(1 << 20),
    "flat-16M": _workloads.flat(1 << 24),
    "flat-64M": _workloads.flat(1 << 26),
    "resnet18": _workloads.resnet18(),
}
COMPETITORS = ["optbowl", "floor", "numpy", *TORCH_PATHS]

_cache = {}


def _case(workload, dtype, rule):
    key = (workload, dtype, rule)
    if key not in _cache:
        _cache.clear()  # one case alive at a time: 64M float64 arrays are large
        _cache[key] = build_case(RULES[rule], WORKLOADS[workload], dtype)
    return _cache[key]


@pytest.mark.parametrize("competitor", COMPETITORS)
@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_step(benchmark, workload, dtype, rule, competitor):
    if competitor.startswith("torch"):
        pytest.importorskip("torch")
    case = _case(workload, dtype, rule)
    if competitor in case.skipped:
        pytest.skip(case.skipped[competitor])
    step = case.steps[competitor]
    r = RULES[rule]
    benchmark.group = f"{workload} {dtype} {rule}"
    benchmark.extra_info.update(
        numel=case.numel,
        bytes_per_element=(r.floor_bytes(case.dtype.itemsize) if competitor == "floor"
                           else r.step_bytes(case.dtype.itemsize)),
    )
    step()  # allocate lazy state outside the timing
    benchmark(step)
