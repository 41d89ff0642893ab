import subprocess
import sys

import numpy as np
import pytest

from optbowl import Adagrad, Rprop
from optbowl.adagrad import numpy_adagrad_step
from optbowl.rprop import numpy_rprop_step


def cli(*args, check=False):
    return subprocess.run([sys.executable, "-m", "optbowl", *args], capture_output=True,
                          text=True, check=check)


def theory_rows(out):
    """{method: (predicted, measured, |diff|, ρ)} from the demo's theory table."""
    found = {}
    for line in out.splitlines():
        words = line.split()
        if words and words[0] in ("gd", "momentum", "nesterov"):
            found[words[0]] = tuple(float(w) for w in words[3:7])
    return found


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_demo_runs_small_and_its_prediction_agrees_with_its_run(dtype):
    out = cli("demo", "--size", "20000", "--steps", "30", "--dtype", dtype, check=True).stdout
    for name in ("irprop-", "rprop-", "rprop+", "irprop+", "backtrack", "AdaGrad", "speed-up",
                 "RMSprop", "Adam ", "AdamW", "QuickProp", "SGD momentum", "SGD Nesterov"):
        assert name in out, name
    assert "over steps 15→30" in out
    assert "worst-case asymptotic rate" in out
    rows = theory_rows(out)
    assert set(rows) == {"gd", "momentum", "nesterov"}
    for method, (predicted, measured, diff, rho) in rows.items():
        # the same quantity, predicted and measured: they agree to 1e-6
        assert abs(predicted - measured) <= 1e-6, (method, predicted, measured)
        assert diff <= 1e-6
        assert 0 < rho < 1
    # gd's contraction over a short window is not its asymptotic rate yet (κ = 1e4): the
    # two are printed apart, as different quantities
    assert rows["gd"][0] < rows["gd"][3] - 1e-4


def test_demo_bowl_levels_weight_the_prediction():
    from optbowl.demo import _bowl

    lam, x0, levels, counts = _bowl(2503, 1e4, np.float32)
    assert lam.size == x0.size == counts.sum() == 2503 and levels.size == 1000
    assert counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(np.unique(lam).astype(np.float64), levels)
    # the theory's start error weights each level by its share: the same norm as x0
    assert np.isclose(np.linalg.norm(np.sqrt(counts)), np.linalg.norm(x0.astype(np.float64)))


@pytest.mark.parametrize("args, message", [
    (["demo", "--size", "0"], "argument --size: must be >= 2"),
    (["demo", "--steps", "ten"], "argument --steps: expected an integer"),
    (["demo", "--steps", "10001"], "argument --steps: must be in [2, 10000]"),
    (["demo", "--condition", "inf"], "argument --condition: must be a finite number"),
    (["demo", "--condition", "0.5"], "argument --condition"),
    (["demo", "--dtype", "int8"], "argument --dtype"),
    (["bowl", "--lr", "-1"], "argument --lr: must be a finite number in (0, inf]"),
    (["bowl", "--lr", "nan"], "argument --lr"),
    (["bowl", "--eps", "2"], "argument --eps"),
    (["bowl", "--eigenvalues", "1", "nan"], "argument --eigenvalues: must be a finite number"),
    (["bowl", "--eigenvalues", "-1", "4"], "A: optimal step sizes need a positive semi-definite"),
    (["bowl", "--momentum", "0.5"], "--momentum: needs --lr"),
    (["bowl", "--lr", "0.1", "--momentum", "0.5", "--method", "gd"],
     "--momentum: applies to the methods momentum and nesterov only"),
    (["bowl", "--momentum", "1.5", "--lr", "0.1"], "argument --momentum"),
    (["bowl", "--seed", "-2"], "argument --seed: must be >= 0"),
    (["bench", "--repeats", "0"], "argument --repeats: must be >= 1"),
    (["bench", "--min-time", "-1"], "argument --min-time"),
    (["bench", "--threads", "-3"], "argument --threads: must be >= 0"),
    (["bench", "--sizes", "12Q"], "argument --sizes"),
    (["bench", "--rules", "sgd9"], "sgd9"),
    (["nope"], "invalid choice"),
])
def test_invalid_values_end_with_one_line_and_status_2(args, message):
    res = cli(*args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert res.stdout == ""
    assert message in res.stderr.strip().splitlines()[-1], res.stderr
    assert "error:" in res.stderr.strip().splitlines()[-1]


def test_help_is_plain_text_and_every_command_has_a_description():
    top = cli("--help", check=True).stdout
    assert "``" not in top and "python -m optbowl <command>" in top
    for command in ("demo", "bowl", "bench", "info"):
        assert command in top
        out = cli(command, "--help", check=True).stdout
        assert "``" not in out, command
        description = out.split("\n\n", 2)[1]
        assert not description.lstrip().startswith(("options:", "optional arguments:")), command
        assert len(description.split()) >= 8, (command, description)


def test_info():
    import optbowl
    from optbowl import _core, cuda

    out = cli("info", check=True).stdout
    assert f"optbowl {optbowl.__version__}" in out
    assert f"instruction set: {_core.cpu_isa()}" in out
    assert f"threads: {_core.get_num_threads()}" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("CUDA module optbowl._cuda:"))
    if cuda.is_built():
        assert "built" in line and (cuda.is_available() or cuda.unavailable_reason() in line)
    else:
        assert "not built" in line and "OPTBOWL_CUDA=OFF" in line
    torch_line = next(ln for ln in out.splitlines() if ln.startswith("torch:"))
    try:
        import importlib.metadata

        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        assert "not installed" in torch_line
    else:
        assert version in torch_line


def test_numpy_baselines_agree_with_kernels(rng):
    x = rng.standard_normal(1000).astype(np.float32)
    y = x.copy()
    opt = Rprop(x, lr=0.1)
    prev, step = np.zeros_like(y), np.full_like(y, 0.1)
    for _ in range(20):
        g = (x * 3 + rng.standard_normal(1000)).astype(np.float32)
        opt.step(g)
        numpy_rprop_step(y, g, prev, step)
    np.testing.assert_array_equal(x, y)
    x = rng.standard_normal(1000)
    y = x.copy()
    opt = Adagrad(x, lr=0.1)
    s = np.zeros_like(y)
    for _ in range(20):
        g = rng.standard_normal(1000)
        opt.step(g)
        numpy_adagrad_step(y, g, s, 0.1)
    np.testing.assert_allclose(x, y, rtol=1e-13)
