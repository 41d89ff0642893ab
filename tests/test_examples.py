"""The tutorials in examples/ run in their quick setting, write their figures and work.

Each example runs as a subprocess (as a user would run it); the test checks the PNGs and
the numbers the example prints: the MLP learns with every optimizer, d2l's end points
come out as d2l prints them, the bowl regimes come out as labelled, the momentum sweep
finds the theory's optimum, and the trained MLP sits at the bottom of its landscape.
"""

import math
import os
import re
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")

pytestmark = pytest.mark.skipif(
    not os.path.isdir(EXAMPLES), reason="examples/ is not beside tests/ (e.g. an installed wheel)"
)
EXTRA = "(extra 'examples')"

PNG = b"\x89PNG\r\n\x1a\n"
NUMBER = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|inf|nan)"


def run_example(name, out):
    """Run examples/<name> --quick --out <out>; returns its stdout."""
    pytest.importorskip("matplotlib", reason=f"the examples need matplotlib {EXTRA}")
    env = dict(os.environ, MPLBACKEND="Agg")
    run = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, name), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def assert_pngs(folder, names):
    written = sorted(p.name for p in folder.iterdir())
    assert written == sorted(f"{n}.png" for n in names)
    for n in names:
        data = (folder / f"{n}.png").read_bytes()
        assert data[:8] == PNG and len(data) > 10_000, n  # a real figure, not an empty canvas


def numbers(pattern, text):
    """Every match of ``pattern`` (NUMBER groups as floats, other groups as strings)."""
    out = []
    for m in re.finditer(pattern, text):
        out.append(tuple(float(g) if re.fullmatch(NUMBER, g) else g for g in m.groups()))
    return out


# ----------------------------------------------------------------------------- MLP on digits
OPTIMIZERS = {f"Rprop {v}" for v in ("irprop-", "rprop-", "rprop+", "irprop+", "backtrack")} | {
    "Adagrad", "SGD", "SGD momentum", "SGD Nesterov", "QuickProp", "RMSprop", "Adam", "AdamW"}


def test_mlp_digits_every_optimizer_learns(tmp_path):
    pytest.importorskip("sklearn", reason=f"the digits example needs scikit-learn {EXTRA}")
    out = tmp_path / "digits.png"
    stdout = run_example("mlp_digits.py", out)
    assert out.read_bytes()[:8] == PNG
    assert list(tmp_path.iterdir()) == [out]  # a file name: the one figure goes exactly there
    rows = {}
    for line in stdout.splitlines():
        parts = line.rsplit(None, 3)
        if len(parts) == 4 and parts[0] in OPTIMIZERS:
            rows[parts[0]] = [float(v) for v in parts[1:]]
    assert set(rows) == OPTIMIZERS
    for name, (loss, train_acc, test_acc) in rows.items():
        assert loss < 1.0 and train_acc > 0.8 and test_acc > 0.8, (name, loss, train_acc, test_acc)


# ----------------------------------------------------------------------------- d2l
# The end points d2l prints for its own NumPy loops (x₁, x₂ after 20 steps from (-5, -2)).
D2L_2D = {
    "gradient descent η=0.4": (-0.943467, -0.000073),
    "gradient descent η=0.6": (-0.387814, -1673.365109),
    "momentum η=0.6, β=0.5": (0.007188, 0.002553),
    "AdaGrad η=0.4": (-2.382563, -0.158591),
    "RMSProp η=0.4, γ=0.9": (-0.010599, 0.000000),
}
D2L_1D = {0.05: 3.486784, 0.2: 0.060466, 1.1: 61.917364}  # f = x², 10 steps from x = 10


def test_d2l_paths_match_d2l(tmp_path):
    stdout = run_example("d2l_paths.py", tmp_path)
    assert_pngs(tmp_path, ["d2l-paths", "d2l-steps"])
    ends = {label.strip(): (x1, x2) for label, x1, x2 in
            numbers(rf"(.+?)\s+step 20: x1\s+({NUMBER})\s+x2\s+({NUMBER})", stdout)}
    assert set(ends) == set(D2L_2D)
    for label, (x1, x2) in ends.items():
        ref = D2L_2D[label]
        # d2l's AdaGrad/RMSProp put ε inside the square root, torch's outside: the 6th digit
        assert x1 == pytest.approx(ref[0], rel=1e-5, abs=2e-6), label
        assert x2 == pytest.approx(ref[1], rel=1e-5, abs=2e-6), label
    one_d = numbers(rf"x\^2, lr ({NUMBER})\s+step 10: x\s+({NUMBER})\s+\((\S+)\)", stdout)
    steps = {lr: (x, regime) for lr, x, regime in one_d}
    assert {lr: x for lr, (x, _) in steps.items()} == pytest.approx(D2L_1D, rel=1e-6)
    assert [steps[lr][1] for lr in (0.05, 0.2, 1.1)] == ["monotone", "monotone", "divergent"]
    (x, curvature), = numbers(rf"x cos\(cx\), lr 2 step 10: x\s+({NUMBER})\s+f'' ({NUMBER})",
                              stdout)
    assert x == pytest.approx(-1.528166, abs=2e-6) and curvature > 0  # d2l's local minimum


# ----------------------------------------------------------------------------- seed 004
def test_bowl_regimes_as_labelled(tmp_path):
    stdout = run_example("bowl_regimes.py", tmp_path)
    assert_pngs(tmp_path, ["regimes", "rprop"])
    rows = numbers(rf"eta = ({NUMBER}) eta_opt: regime (\S+)\s+predicted rate ({NUMBER}) "
                   rf"measured rate ({NUMBER}) run matches prediction: (\w+)", stdout)
    expected = {0.5: "monotone", 1.0: "one-step", 1.5: "oscillating", 2.0: "non-convergent",
                2.2: "divergent"}
    assert {factor: regime for factor, regime, *_ in rows} == expected
    for factor, _, predicted, measured, same in rows:
        assert predicted == pytest.approx(abs(1.0 - factor), abs=1e-9)  # |1 − ηλ|, λ = 1
        assert measured == pytest.approx(predicted, abs=1e-6) and same == "True", factor
    rprop = numbers(rf"Rprop (\S+)\s*: step size ({NUMBER}) grew to ({NUMBER}), "
                    rf"ends at ({NUMBER}); error ({NUMBER}) -> ({NUMBER}); "
                    r"same path as bowl.run: (\w+)", stdout)
    assert {r[0] for r in rprop} == {"backtrack", "rprop+", "irprop-"}
    for variant, start, peak, end, err0, err, same in rprop:
        # the step grew while the sign held and shrank after the overshoot
        assert peak > 5 * start and end < peak / 10, variant
        assert err < 1e-2 * err0 and same == "True", variant


# ----------------------------------------------------------------------------- Goh
def test_momentum_sweep_finds_the_optimum(tmp_path):
    out = tmp_path / "figs"  # a folder that does not exist yet
    stdout = run_example("momentum_sweep.py", out)
    assert_pngs(out, ["momentum_sweep"])
    where = rf"rate ({NUMBER}) at lr ({NUMBER}), momentum ({NUMBER})"
    (best, lr, beta), = numbers("best measured " + where, stdout)
    (opt, opt_lr, opt_beta), = numbers("predicted optimum " + where, stdout)
    assert opt == pytest.approx(9 / 11, abs=1e-4)  # (√κ − 1)/(√κ + 1), κ = 100
    assert opt_lr == pytest.approx((2 / 11) ** 2, rel=1e-3)
    assert opt_beta == pytest.approx((9 / 11) ** 2, abs=1e-3)
    assert abs(best - opt) < 0.03 * opt  # the grid's best is the theory's optimum, within a few %
    assert lr == pytest.approx(opt_lr, rel=0.1) and beta == pytest.approx(opt_beta, abs=0.05)
    optima = numbers(rf"(\w+)\s+at its optimum: measured rate ({NUMBER}), predicted ({NUMBER})",
                     stdout)
    runs = {method: (meas, pred) for method, meas, pred in optima}
    assert set(runs) == {"momentum", "gd"}
    assert runs["gd"][1] == pytest.approx(99 / 101, abs=1e-4)
    for meas, pred in runs.values():
        assert meas == pytest.approx(pred, rel=0.02)


# ----------------------------------------------------------------------------- seed 002
def test_mlp_landscape_has_the_trained_weights_at_the_bottom(tmp_path):
    pytest.importorskip("sklearn", reason=f"the landscape example needs scikit-learn {EXTRA}")
    out = tmp_path / "run.png"  # a file name: the one figure is written there
    stdout = run_example("mlp_landscape.py", out)
    assert out.read_bytes()[:8] == PNG
    (acc,), = numbers(rf"train accuracy ({NUMBER})", stdout)
    assert acc > 0.9
    (centre, lowest, alpha, beta, mean), = numbers(
        rf"centre loss ({NUMBER}), lowest on the grid ({NUMBER}) "
        rf"at alpha ({NUMBER}), beta ({NUMBER}); mean on the grid ({NUMBER})", stdout)
    assert math.isfinite(mean) and mean > 10 * centre  # a basin, not a plateau
    assert lowest == pytest.approx(centre, rel=1e-9) and abs(alpha) < 0.11 and abs(beta) < 0.11


def example_names():
    return sorted(n for n in os.listdir(EXAMPLES) if n.endswith(".py") and not n.startswith("_"))


def test_examples_say_what_they_reproduce():
    names = example_names()
    assert {"bowl_regimes.py", "d2l_paths.py", "matrix_powers.py", "mlp_digits.py",
            "mlp_landscape.py", "momentum_sweep.py", "rprop_invariance.py", "saddles.py",
            "second_order_paths.py", "worst_case.py"} <= set(names)
    for name in names:
        with open(os.path.join(EXAMPLES, name), encoding="utf-8") as fh:
            text = fh.read()
        assert text.startswith('"""') and "def main(argv=None)" in text and "--quick" in text, name


def test_examples_are_sphinx_gallery_tutorials():
    """What the documentation's gallery needs of each example: a docstring whose first line
    is a title underlined with "=", prose, then "# %%" cells, ending in the script's guard."""
    for name in example_names():
        with open(os.path.join(EXAMPLES, name), encoding="utf-8") as fh:
            text = fh.read()
        docstring = text[3:text.index('"""', 3)].strip("\n").splitlines()
        assert len(docstring) > 3, name
        title, underline = docstring[0], docstring[1]
        assert title.strip() and set(underline) == {"="} and len(underline) >= len(title), name
        assert any(line.strip() for line in docstring[2:]), name  # prose follows the title
        assert text.count("\n# %%\n") >= 2, name
        assert text.rstrip().endswith("main(sys.argv[1:])"), name


def test_quick_setting_from_the_environment(monkeypatch):
    """OPTBOWL_EXAMPLES_QUICK=1 makes --quick the default (the gallery's setting); --full
    overrides it; unset or 0, the full setting is the default."""
    pytest.importorskip("matplotlib", reason=f"the examples need matplotlib {EXTRA}")
    monkeypatch.syspath_prepend(EXAMPLES)
    import _common

    monkeypatch.delenv("OPTBOWL_EXAMPLES_QUICK", raising=False)
    assert _common.parse_args([], "x").quick is False
    assert _common.parse_args(["--quick"], "x").quick is True
    for value in ("0", "off", ""):
        monkeypatch.setenv("OPTBOWL_EXAMPLES_QUICK", value)
        assert _common.parse_args([], "x").quick is False, value
    monkeypatch.setenv("OPTBOWL_EXAMPLES_QUICK", "1")
    assert _common.parse_args([], "x").quick is True
    assert _common.parse_args(["--full"], "x").quick is False
    assert _common.parse_args(["--out", "figs"], "x").out == "figs"
# ----------------------------------------------------------------------------- worst cases
def test_worst_case_table_and_quadratics_understate(tmp_path):
    pytest.importorskip("PEPit", reason=f"the worst-case example needs PEPit {EXTRA}")
    stdout = run_example("worst_case.py", tmp_path)
    assert_pngs(tmp_path, ["worst_case"])
    rows = [r for line in stdout.splitlines() for r in numbers(
        rf"^\s*({NUMBER})\s+({NUMBER})\s+({NUMBER})\s+(\d+)\s+({NUMBER})\s+({NUMBER})\s+"
        rf"({NUMBER})\s+({NUMBER})$", line)]
    assert len(rows) >= 10
    for L, mu, lr, N, worst, pep, closed, rel in rows:
        assert worst == pytest.approx(closed, rel=1e-8) and pep == pytest.approx(closed, rel=1e-5)
    sides = {int(n): (w, p, q, h, ratio) for n, w, p, q, h, ratio in numbers(
        rf"gd N = (\d+): worst case ({NUMBER}), PEPit ({NUMBER}), worst quadratic ({NUMBER}), "
        rf"huber run ({NUMBER}), worst/quadratic ({NUMBER})", stdout)}
    assert sides[4][0] == pytest.approx(1 / 18, rel=1e-8) and sides[4][4] == pytest.approx(2.566,
                                                                                         abs=1e-3)
    for worst, pep, quad, huber_run, ratio in sides.values():
        assert huber_run == pytest.approx(worst, rel=1e-8) and quad < worst
    mom = numbers(rf"(momentum|nesterov) lr .* worst case ({NUMBER}), worst quadratic "
                  rf"({NUMBER}), ratio ({NUMBER})", stdout)
    assert {m for m, *_ in mom} == {"momentum", "nesterov"}
    assert all(ratio > 1 for *_, ratio in mom)


# ----------------------------------------------------------------------------- seed 003
def test_matrix_powers_vanish_and_explode(tmp_path):
    stdout = run_example("matrix_powers.py", tmp_path)
    assert_pngs(tmp_path, ["matrix_powers"])
    comps = numbers(rf"eigenvalue ({NUMBER}): component after (\d+) steps ({NUMBER}), "
                    rf"lambda\^n ({NUMBER})", stdout)
    assert [lam for lam, *_ in comps] == [0.9, 1.0, 1.1]
    for lam, n, comp, power in comps:
        # W = V diag(λ) V⁻¹ is rounded: errors are relative to the largest component, 1.1ⁿ
        assert comp == pytest.approx(lam ** n, rel=1e-9, abs=1e-14 * 1.1 ** n)
        assert power == pytest.approx(lam ** n, rel=1e-11)
    (diff,), = numbers(rf"max relative difference ({NUMBER})", stdout)
    assert diff < 1e-10
    gains = {s: (g, pred) for s, _, g, pred, _ in numbers(
        rf"init scale ({NUMBER}): gain after (\d+) layers ({NUMBER}), predicted ({NUMBER}), "
        rf"s\^n ({NUMBER})", stdout)}
    assert set(gains) == {0.5, 0.9, 1.0, 1.1, 1.5}
    assert gains[0.5][0] < 1e-12 and gains[1.5][0] > 1e6 and 0.05 < gains[1.0][0] < 5
    for g, pred in gains.values():
        assert 0.1 < g / pred < 10  # within the sampling spread of 50 layers


def test_saddles_newton_and_goe(tmp_path):
    stdout = run_example("saddles.py", tmp_path)
    assert_pngs(tmp_path, ["saddles"])
    ends = numbers(rf"start \(.*?\): Newton ends at \(({NUMBER}), ({NUMBER})\) (\w+); "
                   rf"gradient descent at \(({NUMBER}), ({NUMBER})\) (\w+)", stdout)
    assert len(ends) == 4
    for nx, ny, nkind, gx, gy, gkind in ends:
        assert (nkind, gkind) == ("saddle", "minimum")
        assert abs(nx) < 1e-9 and abs(ny) < 1e-9 and abs(abs(gy) - 1) < 1e-2
    goe = numbers(rf"d = (\d+): all positive ({NUMBER}) ± ({NUMBER}), saddle ({NUMBER})", stdout)
    assert [d for d, *_ in goe] == [1.0, 2.0, 3.0, 4.0, 5.0]
    p = [frac for _, frac, *_ in goe]
    assert abs(p[0] - 0.5) < 4 * goe[0][2] and abs(p[1] - 0.1464) < 4 * goe[1][2]
    assert all(a > b for a, b in zip(p, p[1:])) and goe[-1][3] > 0.999


# ----------------------------------------------------------------------------- seed 004
def test_second_order_paths_reach_the_minimum(tmp_path):
    pytest.importorskip("scipy", reason=f"BFGS and Levenberg-Marquardt need SciPy {EXTRA}")
    stdout = run_example("second_order_paths.py", tmp_path)
    assert_pngs(tmp_path, ["second_order_paths"])
    rows = {label.strip(): (int(k), x, y, f) for label, k, x, y, f in numbers(
        rf"(.+?): +(\d+) iterations, ends at \(({NUMBER}), ({NUMBER})\), f ({NUMBER})", stdout)}
    assert set(rows) == {"gradient descent (η = 1e-3)", "Newton", "BFGS (SciPy)",
                         "Levenberg–Marquardt (SciPy)"}
    for label in ("Newton", "BFGS (SciPy)", "Levenberg–Marquardt (SciPy)"):
        k, x, y, f = rows[label]
        assert abs(x - 1) < 1e-6 and abs(y - 1) < 1e-6 and f < 1e-12 and k < 100, label
    assert rows["gradient descent (η = 1e-3)"][3] > 1e-4  # still in the valley


def test_rprop_invariance_is_bit_exact(tmp_path):
    stdout = run_example("rprop_invariance.py", tmp_path)
    assert_pngs(tmp_path, ["rprop_invariance"])
    rows = numbers(rf"Rprop (\S+)\s*: path on f and D·\(path on g\) bit-identical: (\w+); "
                   rf"final error ({NUMBER})", stdout)
    assert {v for v, *_ in rows} == {"irprop-", "rprop+", "backtrack"}
    assert all(same == "True" for _, same, _ in rows)
    assert min(err for *_, err in rows) < 1e-2
    (cond, gd_err), = numbers(rf"gradient descent on g \(kappa ({NUMBER})\): final error "
                              rf"({NUMBER})", stdout)
    assert cond > 1e6 and gd_err > 0.5
