import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

# Hypothesis profiles: "dev" (default) is small and quick; "ci" (selected when the CI
# environment variable is set, or with HYPOTHESIS_PROFILE=ci) runs >= 10^4 examples in
# all, derandomized (the same examples on every run) and without writing an example
# database.
settings.register_profile("dev", max_examples=20, deadline=None)
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


def pytest_configure(config):
    # hypothesis reports a failing example through libcst where it is installed, which
    # imports a deprecated mypy_extensions name: not this project's warning to fail on
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
    )


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
