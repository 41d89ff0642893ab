import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

# An editable install that rebuilds on import prints its build log; the tests that read a
# command's output (python -m optbowl ...) want the command's own output only.
os.environ.setdefault("SKBUILD_EDITABLE_VERBOSE", "0")

# Hypothesis profiles: "dev" (default) is small and quick; "ci" (selected when the CI
# environment variable is set, or with HYPOTHESIS_PROFILE=ci) runs >= 10^4 examples in
# all, derandomized (the same examples on every run) and without writing an example
# database.
settings.register_profile("dev", max_examples=20, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci",
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI") else "dev"))


def pytest_addoption(parser):
    parser.addoption(
        "--one-in", type=int, default=1, metavar="N",
        help="run the first test of each module and every N-th after it (a representative "
             "part of the suite, for a build the whole suite already ran against)")


def pytest_collection_modifyitems(config, items):
    n = config.getoption("--one-in")
    if n < 1:
        raise pytest.UsageError(f"--one-in: expected a positive number, got {n}")
    if n == 1:
        return
    kept, dropped, seen = [], [], {}
    for item in items:
        module = item.nodeid.split("::")[0]
        index = seen.get(module, 0)
        seen[module] = index + 1
        (kept if index % n == 0 else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_configure(config):
    # hypothesis reports a failing example through libcst where it is installed, which
    # imports a deprecated mypy_extensions name: not this project's warning to fail on
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
    )


#: The torch release the bit-for-bit parity claims were verified against (the test extra's pin).
PARITY_TORCH = "2.13.0"
# The skip reasons of pytest.importorskip("torch") and importorskip("optbowl.torch").
_TORCH_SKIP = ("could not import 'torch", "could not import 'optbowl.torch")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def torch_skips(reports):
    """{reason: count} of the skipped reports whose reason is that torch could not be imported."""
    found = {}
    for report in reports:
        reason = _skip_reason(report)
        if any(key in reason for key in _TORCH_SKIP):
            reason = reason.removeprefix("Skipped: ")
            found[reason] = found.get(reason, 0) + 1
    return found


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say loudly when the torch parity tests did not run, and against which torch they did."""
    skipped = torch_skips(terminalreporter.stats.get("skipped", []))
    if skipped:
        count = sum(skipped.values())
        terminalreporter.section("TORCH PARITY NOT TESTED", sep="!", red=True, bold=True)
        terminalreporter.write_line(
            f"{count} torch parity test(s) or module(s) skipped because torch could not be "
            f"imported:", red=True, bold=True)
        for reason, n in sorted(skipped.items()):
            terminalreporter.write_line(f"  {n:4d} x {reason}", red=True)
        terminalreporter.write_line(
            "The bit-for-bit parity with torch.optim is untested in this run. "
            f'pip install ".[test]" installs torch {PARITY_TORCH}, the release it is verified '
            "against.", red=True, bold=True)
        return
    torch = sys.modules.get("torch")
    version = getattr(torch, "__version__", None)
    if version is not None and version.split("+")[0] != PARITY_TORCH:
        terminalreporter.section("torch parity", sep="-", yellow=True)
        terminalreporter.write_line(
            f"the parity tests ran against torch {version}; the bit-for-bit claims are verified "
            f"against torch {PARITY_TORCH}", yellow=True)


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)


@pytest.fixture
def restore_isa():
    """Puts back the loops' instruction set after the test."""
    from optbowl import _core

    before = _core.cpu_isa()
    yield
    _core.set_cpu_isa(before)


@pytest.fixture(params=["baseline", "avx2", "avx512"])
def each_isa(request, restore_isa):
    """The test once per instruction set, the loops set to it; those this CPU lacks skip."""
    from optbowl import _core

    try:
        _core.set_cpu_isa(request.param)
    except ValueError as e:
        pytest.skip(str(e))
    return request.param


@pytest.fixture
def ieee_sqrt(monkeypatch):
    """torch's Tensor.sqrt and sqrt_ for float32/float64, correctly rounded (NumPy's).

    torch's CPU sqrt of float32/float64 tensors is MKL's where torch is built with it, not
    correctly rounded (within an ulp); with this fixture the rules that take a square root
    (Adadelta, NAdam, RAdam) are compared with torch's single-tensor path bit for bit."""
    torch = pytest.importorskip("torch")
    sqrt, sqrt_ = torch.Tensor.sqrt, torch.Tensor.sqrt_

    def rounded_sqrt(self):
        if self.dtype in (torch.float32, torch.float64):
            return torch.from_numpy(np.sqrt(self.detach().numpy()))
        return sqrt(self)

    def rounded_sqrt_(self):
        if self.dtype in (torch.float32, torch.float64):
            return self.copy_(rounded_sqrt(self))
        return sqrt_(self)

    monkeypatch.setattr(torch.Tensor, "sqrt", rounded_sqrt)
    monkeypatch.setattr(torch.Tensor, "sqrt_", rounded_sqrt_)
