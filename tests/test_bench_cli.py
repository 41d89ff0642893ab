"""``python -m optbowl bench``: runs, prints the table, writes the JSON record."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from optbowl import _workloads
from optbowl.bench import RULES, Timing, build_case, paired_ratio, parse_size


def test_resnet18_shapes_are_written_out():
    shapes = _workloads.resnet18()
    assert len(shapes) == 62
    assert sum(math.prod(s) for s in shapes) == _workloads.RESNET18_NUMEL == 11_689_512


def test_parse_size():
    assert parse_size("1K") == 1024
    assert parse_size("16m") == 16 << 20
    assert parse_size("1000") == 1000


def test_every_rule_case_builds_and_steps():
    for rule in RULES.values():
        case = build_case(rule, [(5, 3), (7,)], "float32", with_torch=False)
        assert {"optbowl", "floor"} <= set(case.steps)
        for step in case.steps.values():
            step()
        assert rule.step_bytes(4) <= rule.floor_bytes(4)


def test_bench_command_small(tmp_path):
    out_json = tmp_path / "bench.json"
    out = subprocess.run(
        [sys.executable, "-m", "optbowl", "bench", "--workload", "flat", "--sizes", "1K", "3000",
         "--rules", "all", "--dtype", "float32", "float64", "--repeats", "2", "--min-time", "0.001",
         "--no-torch", "--json", str(out_json)],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "ISA" in out and "thread" in out
    cases = 2 * 2 * len(RULES)
    assert "x floor" in out and f"[{cases}/{cases}]" in out
    record = json.loads(out_json.read_text())
    assert record["machine"]["isa"] in ("baseline", "avx2", "avx512")
    assert len(record["results"]) == cases
    for r in record["results"]:
        assert r["x_floor"] > 0 and r["ms_per_step"] > 0
        ours, floor = (r["timings"][k]["samples_s"] for k in ("optbowl", "floor"))
        assert len(ours) == len(floor) == 2
        assert r["x_floor"] == pytest.approx(np.median(np.divide(ours, floor)), rel=1e-12)


def test_paired_ratio_cancels_a_slow_phase():
    # Round 2 ran in a slow phase for both (4 and 4). The quotient of the medians, 4 / 2,
    # sets a slow sample against a fast one; the paired quotients are 1, 1 and 2.
    ours, floor = Timing([1.0, 4.0, 4.0]), Timing([1.0, 4.0, 2.0])
    assert ours.median / floor.median == 2.0
    assert paired_ratio(ours, floor) == 1.0
    assert paired_ratio(floor, ours) == 1.0
    with pytest.raises(ValueError, match="pair"):
        paired_ratio(ours, Timing([1.0]))


def test_bench_rejects_unknown_rule():
    res = subprocess.run([sys.executable, "-m", "optbowl", "bench", "--rules", "sgd9"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "sgd9" in res.stderr
