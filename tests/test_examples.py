"""The tutorials in examples/ run in a small setting, write their figures and learn."""

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def test_mlp_digits_small(tmp_path):
    pytest.importorskip("sklearn", reason="the digits example needs scikit-learn (extra 'examples')")
    pytest.importorskip("matplotlib", reason="the digits example needs matplotlib (extra 'examples')")
    out = tmp_path / "digits.png"
    run = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, "mlp_digits.py"), "--small", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {}
    for line in run.stdout.splitlines():
        parts = line.rsplit(None, 3)
        if len(parts) == 4 and parts[0].startswith(("Rprop", "Adagrad", "SGD", "RMSprop", "Adam", "QuickProp")):
            rows[parts[0]] = [float(v) for v in parts[1:]]
    expected = {f"Rprop {v}" for v in ("irprop-", "rprop-", "rprop+", "irprop+", "backtrack")} | {"Adagrad"}
    assert expected <= set(rows)
    for name, (loss, train_acc, test_acc) in rows.items():
        assert train_acc > 0.8 and test_acc > 0.8, (name, train_acc, test_acc)
