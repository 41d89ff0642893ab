"""``python -m optbowl bench``: runs, prints the table, writes the JSON record."""

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from optbowl import _workloads
from optbowl.bench import (RULES, Timing, build_case, describe_load, paired_ratio, paired_spread,
                           parse_size, table, within_noise)


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


def test_every_torch_peer_builds_and_steps_on_each_of_its_paths():
    # a family's torch_hyper may name its path (foreach=False: the single-tensor one); the
    # paths' own foreach/fused settings take its place
    pytest.importorskip("torch")
    for rule in RULES.values():
        if rule.make_torch is None:
            continue
        case = build_case(rule, [(5, 3), (7,)], "float32", with_torch=True)
        assert {"torch-single", "torch-foreach"} <= set(case.steps), rule.name
        for step in case.steps.values():
            step()


def test_bench_command_small(tmp_path):
    out_json = tmp_path / "bench.json"
    out = subprocess.run(
        [sys.executable, "-m", "optbowl", "bench", "--workload", "flat", "--sizes", "1K", "3000",
         "--rules", "all", "--dtype", "float32", "float64", "--repeats", "2", "--min-time", "0.001",
         "--no-torch", "--no-optax", "--json", str(out_json)],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "ISA" in out and "thread" in out
    assert re.search(r"before: load average [\d.]+ / [\d.]+ / [\d.]+ \(1 / 5 / 15 min\)", out)
    assert "after: load average" in out
    # the low-precision state rules (state_bits=8|16) take float32 parameters only
    cases = 2 * sum(1 if rule.state_bits != 32 else 2 for rule in RULES.values())
    assert "x floor" in out and f"[{cases}/{cases}]" in out
    record = json.loads(out_json.read_text())
    assert record["machine"]["isa"] in ("baseline", "avx2", "avx512")
    assert len(record["results"]) == cases
    for r in record["results"]:
        assert r["x_floor"] > 0 and r["ms_per_step"] > 0
        ours, floor = (r["timings"][k]["samples_s"] for k in ("optbowl", "floor"))
        assert len(ours) == len(floor) == 2
        assert r["x_floor"] == pytest.approx(np.median(np.divide(ours, floor)), rel=1e-12)
        # every column has its spread: the floor's and each peer's
        assert r["x_floor_spread"] >= 0
        assert set(r["speedup_spread"]) == set(r["speedup"])
        rule = RULES[r["rule"]]
        if rule.make_torch is not None:
            assert r["skipped"]["torch-compile"] == "torch not timed (--no-torch)"
        if rule.make_optax is not None:
            assert r["skipped"]["optax"] == "not asked for (--no-optax)"
        for t in r["timings"].values():
            assert t["noise"] >= 0


def test_paired_spread_and_the_flag():
    ours = Timing([1.0, 1.0, 1.0, 1.0])
    steady = Timing([2.0, 2.0, 2.0, 2.0])
    assert paired_spread(steady, ours) == 0.0
    assert not within_noise(paired_ratio(steady, ours), 0.0)
    # quotients 0.8, 1.0, 1.2, 1.4: median 1.1, IQR 0.95..1.25, half of it over the median
    wobbly = Timing([0.8, 1.0, 1.2, 1.4])
    assert paired_spread(wobbly, ours) == pytest.approx(0.15 / 1.1)
    assert within_noise(paired_ratio(wobbly, ours), paired_spread(wobbly, ours))
    assert not within_noise(1.5, 0.1) and within_noise(1.05, 0.1) and within_noise(0.95, 0.1)


def _record(speedup, spread):
    return {"workload": "flat 1K", "dtype": "float32", "rule": "adagrad", "ms_per_step": 1.0,
            "gb_per_s": 1.0, "x_floor": 1.01, "x_floor_spread": 0.001,
            "timings": {"optbowl": {"noise": 0.01}}, "speedup": speedup,
            "speedup_spread": spread, "compile_s": {"torch-compile": 12.5}}


def test_table_shows_every_spread_and_flags_what_the_noise_hides():
    text = table([_record({"numpy": 3.0, "torch-single": 1.05, "torch-compile": 423.0},
                          {"numpy": 0.02, "torch-single": 0.10, "torch-compile": 0.9})])
    row = next(line for line in text.splitlines() if line.startswith("flat 1K"))
    assert "3.00x±  2% " in row                 # clear
    assert "1.05x± 10%?" in row                 # spread reaches the margin
    assert "423x± 90%!" in row                  # noisy
    assert "1.01x±  0% " in row                 # x floor, with its spread
    assert "vs compile" in text and "torch-compile 12.5 s" in text
    assert "? (1 ratio(s))" in text and "! (1 ratio(s))" in text


def test_describe_load():
    assert describe_load([0.1, 0.2, 0.3], 2).endswith(": quiet")
    assert "busy" in describe_load([1.2, 0.2, 0.3], 2)
    assert "BUSY" in describe_load([14.7, 14.9, 10.2], 2)
    assert "0.10 / 0.20 / 0.30 (1 / 5 / 15 min) on 2 logical CPUs" in describe_load(
        [0.1, 0.2, 0.3], 2)
    assert "unknown" in describe_load(None, 2)


# torch.compile's own machinery touches deprecated torch APIs
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compiled_peers_are_timed_with_their_compile_time_apart():
    pytest.importorskip("torch")
    case = build_case(RULES["sgd"], [(33,), (4, 5)], "float32", with_compile=True,
                      with_optax=False)
    assert "torch-compile" in case.steps, case.skipped
    assert case.compile_s["torch-compile"] > 0
    case.steps["torch-compile"]()
    assert case.skipped.get("torch-compile") is None


def test_optax_peer():
    pytest.importorskip("jax")
    pytest.importorskip("optax")
    case = build_case(RULES["adagrad"], [(33,), (4, 5)], "float64", with_torch=False,
                      with_optax=True)
    assert "optax" in case.steps and case.compile_s["optax"] > 0
    case.steps["optax"]()
    case = build_case(RULES["irprop-/compact"], [(3,)], "float32", with_torch=False,
                      with_optax=True)
    assert case.skipped["optax"] == "no optax counterpart timed for this rule"


def test_quick_options_fill_only_what_is_not_given():
    from optbowl.__main__ import build_parser
    from optbowl.bench import QUICK, _resolve

    args = build_parser().parse_args(["bench", "--quick", "--rules", "sgd"])
    _resolve(args)
    assert args.rules == ["sgd"] and args.workload == QUICK["workload"]
    assert args.repeats == QUICK["repeats"] and args.dtype == QUICK["dtype"]
    args = build_parser().parse_args(["bench"])
    _resolve(args)
    assert args.repeats == 7 and args.rules == ["irprop-", "irprop-/compact", "adagrad"]


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
    assert res.returncode == 2 and "--rules: unknown sgd9" in res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
