import subprocess
import sys

import pytest


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "optbowl", "bowl", *args], capture_output=True,
                          text=True, check=True).stdout


def rows(out):
    methods = ("gd", "momentum", "nesterov", "newton")
    return {line.split()[0]: line for line in out.splitlines()
            if line.split() and line.split()[0] in methods}


def test_bowl_cli_table():
    out = run_cli("--eigenvalues", "1", "100", "--method", "gd", "momentum")
    assert "κ=100" in out
    lines = rows(out)
    assert "0.980198" in lines["gd"] and "691" in lines["gd"]  # 99/101, ⌈log 1e-6 / log(99/101)⌉
    assert "0.818182" in lines["momentum"] and "0.669421" in lines["momentum"]  # 9/11, (9/11)²
    assert "monotone, oscillating" in lines["gd"]
    assert "nesterov" not in lines


def test_bowl_cli_given_hyper_parameters():
    out = run_cli("--eigenvalues", "2", "--method", "gd", "--lr", "0.75")
    row = rows(out)["gd"]
    assert "oscillating" in row and "0.500000" in row


def test_bowl_cli_plot(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bowl.png"
    out = run_cli("--eigenvalues", "1", "100", "--method", "momentum", "--rotate", "--plot",
                  str(path))
    assert "figure saved" in out
    assert path.read_bytes().startswith(b"\x89PNG")


def test_bowl_cli_momentum_with_lr_is_used():
    out = run_cli("--eigenvalues", "1", "100", "--method", "momentum", "--lr", "0.01",
                  "--momentum", "0.5")
    row = rows(out)["momentum"]
    assert row.split()[1:3] == ["0.01", "0.5"]


def test_bowl_cli_not_positive_definite_with_lr():
    out = run_cli("--eigenvalues", "-1", "2", "--method", "gd", "--lr", "0.5")
    row = rows(out)["gd"]
    assert "∞" in row and "divergent" in row
