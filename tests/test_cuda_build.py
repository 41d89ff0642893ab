"""The optional CUDA build: what was built here, what the runtime says, the CMake switch.

These run without a GPU. The configure tests run CMake on the project (no compiling) and
check what OPTBOWL_CUDA=AUTO/ON/OFF decide, with and without a CUDA compiler on PATH.
"""

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import optbowl as ob

ROOT = Path(__file__).resolve().parent.parent
NVCC = os.environ.get("CUDACXX") or shutil.which("nvcc")
GPU_NODE = any(Path("/dev").glob("nvidia[0-9]*"))


def _cuda_requested_off():
    return os.environ.get("OPTBOWL_CUDA", "AUTO").upper() in ("OFF", "0", "FALSE", "NO")


@pytest.mark.skipif(
    NVCC is None, reason="no CUDA compiler (nvcc) here: the default build skips _cuda"
)
@pytest.mark.skipif(_cuda_requested_off(), reason="built with OPTBOWL_CUDA=OFF")
def test_default_build_has_the_cuda_module_when_nvcc_is_present():
    assert ob.cuda.is_built(), ob.cuda.unavailable_reason()
    from optbowl import _cuda

    assert _cuda.architectures.split() == ["80-real", "90-real", "90-virtual"] or os.environ.get(
        "CMAKE_CUDA_ARCHITECTURES"
    )
    assert _cuda.runtime_version() >= 12000


def test_import_and_availability_tell_the_truth():
    count = ob.cuda.device_count()
    assert isinstance(count, int) and count >= 0
    assert ob.cuda.is_available() == (count > 0)
    if not GPU_NODE:
        # No device node: no driver can offer a device, so the runtime must say 0 and why.
        assert count == 0
        assert not ob.cuda.is_available()
        reason = ob.cuda.unavailable_reason()
        assert reason and ("CUDA" in reason or "cuda" in reason)
    if ob.cuda.is_available():
        assert ob.cuda.unavailable_reason() is None
    if not ob.cuda.is_built():
        assert count == 0 and "without its CUDA module" in ob.cuda.unavailable_reason()


def test_cuda_is_exported():
    assert "cuda" in ob.__all__
    assert ob.cuda.is_available is not None


@pytest.mark.skipif(not ob.cuda.is_built(), reason="optbowl was built without its CUDA module")
@pytest.mark.parametrize("sms", [108, 132])  # A100, H100
def test_launch_plan_is_one_launch_for_resnet18(sms):
    """The installed module's plan (tests/test_cuda_stub_bindings.py checks the rule)."""
    shapes = [tuple(s) for s in _resnet18_shapes()]
    sizes = [math.prod(s) for s in shapes]
    assert len(sizes) == 62 and sum(sizes) == 11_689_512
    plan = ob.cuda.launch_plan(sizes, sms=sms)
    assert plan.launches == 1 and plan.chunk_elems == 8192 and plan.blocks == 2 * sms
    assert plan.chunks == sum(-(-n // 8192) for n in sizes) == 1470


def _resnet18_shapes():
    from optbowl import _workloads

    return _workloads.resnet18()


# ----------------------------------------------------------------------------- CMake switch
def _tool_env(env):
    """``env`` without the sanitizer stage's preloaded runtimes (meant for optbowl's code,
    not for CMake and the compilers it runs)."""
    return {k: v for k, v in env.items() if k != "LD_PRELOAD"}


def _cmake():
    try:
        import cmake

        return str(Path(cmake.CMAKE_BIN_DIR) / "cmake")
    except ImportError:
        return shutil.which("cmake")


def _configure(tmp_path, *defines, env=None, path=None):
    if not (ROOT / "CMakeLists.txt").is_file():
        pytest.skip("needs the source tree (the tests run outside it)")
    pybind11 = pytest.importorskip("pybind11")
    cmake = _cmake()
    if cmake is None:
        pytest.skip("cmake is not installed")
    e = _tool_env(os.environ if env is None else env)
    if path is not None:
        e.pop("CUDACXX", None)
        e["PATH"] = path
    cmd = [
        cmake,
        "-S",
        str(ROOT),
        "-B",
        str(tmp_path / "build"),
        f"-DPython_EXECUTABLE={sys.executable}",
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
        *defines,
    ]
    return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=600)


def _targets(tmp_path):
    """The targets the configured build would make."""
    r = subprocess.run(
        [_cmake(), "--build", str(tmp_path / "build"), "--target", "help"],
        env=_tool_env(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return r.stdout


def _decision(result):
    for line in result.stdout.splitlines():
        if "building optbowl._cuda:" in line:
            return line.rsplit(":", 1)[1].strip()
    return None


NO_NVCC_PATH = "/usr/bin:/bin"


@pytest.mark.slow
def test_cmake_off_never_looks_for_cuda(tmp_path):
    r = _configure(tmp_path, "-DOPTBOWL_CUDA=OFF")
    assert r.returncode == 0, r.stderr
    assert _decision(r) == "OFF"
    assert "Looking for a CUDA compiler" not in r.stdout
    targets = _targets(tmp_path)
    assert "_core" in targets and "_cuda" not in targets


@pytest.mark.slow
def test_cmake_environment_variable_sets_the_mode(tmp_path):
    r = _configure(tmp_path, env={**os.environ, "OPTBOWL_CUDA": "off"})
    assert r.returncode == 0, r.stderr
    assert _decision(r) == "OFF"
    assert "OPTBOWL_CUDA=OFF" in r.stdout


@pytest.mark.slow
def test_cmake_define_beats_environment_variable(tmp_path):
    r = _configure(tmp_path, "-DOPTBOWL_CUDA=OFF", env={**os.environ, "OPTBOWL_CUDA": "ON"})
    assert r.returncode == 0, r.stderr
    assert _decision(r) == "OFF"


@pytest.mark.slow
def test_cmake_rejects_an_unknown_mode(tmp_path):
    r = _configure(tmp_path, "-DOPTBOWL_CUDA=maybe")
    assert r.returncode != 0
    assert "OPTBOWL_CUDA must be AUTO, ON or OFF" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ON", "AUTO"])
def test_cmake_without_a_compiler(tmp_path, mode):
    """ON fails with a message that says what to do; AUTO quietly builds no _cuda."""
    if shutil.which("nvcc", path=NO_NVCC_PATH):
        pytest.skip(f"nvcc is on {NO_NVCC_PATH}; cannot hide the CUDA compiler")
    r = _configure(tmp_path, f"-DOPTBOWL_CUDA={mode}", path=NO_NVCC_PATH)
    if mode == "ON":
        assert r.returncode != 0
        assert "OPTBOWL_CUDA=ON, but no CUDA compiler was found" in r.stderr
    else:
        assert r.returncode == 0, r.stderr
        assert _decision(r) == "OFF"


@pytest.mark.slow
@pytest.mark.skipif(NVCC is None, reason="no CUDA compiler (nvcc) here")
@pytest.mark.parametrize("mode", ["ON", "AUTO"])
def test_cmake_with_a_compiler_builds_cuda(tmp_path, mode):
    r = _configure(tmp_path, f"-DOPTBOWL_CUDA={mode}")
    assert r.returncode == 0, r.stderr
    assert _decision(r) == "ON"
    if not os.environ.get("CUDAARCHS"):
        assert "optbowl: CUDA architectures 80-real;90-real;90-virtual" in r.stdout
    assert "_cuda" in _targets(tmp_path)


def test_resnet18_shapes_file_is_the_benchmark_workload():
    import json

    path = ROOT / "bench" / "resnet18_shapes.json"
    if not path.exists():
        pytest.skip("bench/ is not here (tests run outside the source tree)")
    shapes = [tuple(s) for s in json.loads(path.read_text())["shapes"]]
    assert shapes == [tuple(s) for s in _resnet18_shapes()]
    assert sum(int(np.prod(s)) for s in shapes) == 11_689_512


def test_import_without_the_cuda_module():
    """An installation without _cuda (OPTBOWL_CUDA=OFF, no nvcc) imports and says why."""
    code = """
import sys
sys.modules["optbowl._cuda"] = None  # as if it had not been built
import numpy as np
import optbowl as ob
assert not ob.cuda.is_built() and ob.cuda.device_count() == 0 and not ob.cuda.is_available()
assert "without its CUDA module" in ob.cuda.unavailable_reason()
class Fake:
    __cuda_array_interface__ = {"shape": (3,), "typestr": "<f4", "data": (1 << 40, False),
                                "version": 3, "strides": None}
try:
    ob.Rprop([Fake()])
except RuntimeError as e:
    assert "params[0]: a CUDA device array, but optbowl was built without" in str(e), e
else:
    raise AssertionError("no error")
x = np.ones(3)
ob.Rprop(x, lr=0.5).step(np.ones(3))
assert (x == 0.5).all()
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok")


# ----------------------------------------------------------------------------- the entries
def _parameters(fn):
    """Parameter names of a pybind11 function, from its signature line."""
    import re

    line = fn.__doc__.splitlines()[0]
    inside = line[line.index("(") + 1 : line.rindex(")")]
    return re.findall(r"(?:^|, )(\w+):", inside)


_LISTS = {"sgd": 3, "rmsprop": 5, "adam": 5}


@pytest.mark.skipif(not ob.cuda.is_built(), reason="optbowl was built without its CUDA module")
@pytest.mark.parametrize("rule", sorted(_LISTS))
def test_cuda_entries_take_the_host_arguments(rule):
    """_cuda.<rule> is _core.<rule> over pointers: the array lists, then sizes and dtypes,
    then the host entry's other arguments, then device, stream, found_inf and grad_scale
    (default 0), and for Adam the device step counters."""
    import re

    from optbowl import _core, _cuda

    # fused_tails: the host's per-tensor scalar tails of torch's fused CPU kernels, which
    # torch's CUDA kernels (and so optbowl's) do not have
    host = [name for name in _parameters(getattr(_core, rule)) if name != "fused_tails"]
    k = _LISTS[rule]
    expected = host[:k] + ["sizes", "dtypes"] + host[k:] + ["device", "stream", "found_inf",
                                                              "grad_scale"]
    if rule == "adam":  # the rules that count steps can read device counters
        expected += ["step_ptrs", "step_dtypes"]
    assert _parameters(getattr(_cuda, rule)) == expected
    line = getattr(_cuda, rule).__doc__.splitlines()[0]
    assert re.search(r"found_inf: [\w. |]+ = 0, grad_scale: [\w. |]+ = 0", line), line
    assert line.endswith(") -> tuple")


def _call(rule, **changes):
    """A one-tensor call with pretend pointers, checked (and refused) before any launch."""
    from optbowl import _cuda

    group = {
        "sgd": (0.1, 0.9, 0.0, 0.0, False, False),
        "rmsprop": (0.01, 0.99, 1e-8, 0.0, 0.5, True, False),
        "adam": (1e-3, 0.9, 0.999, 1e-8, 0.0, True, False, False),
    }[rule]
    lists = {
        "sgd": ["params", "grads", "momentum_buffers"],
        "rmsprop": ["params", "grads", "square_avgs", "grad_avgs", "momentum_buffers"],
        "adam": ["params", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"],
    }[rule]
    kw = {name: [4096 * (k + 1)] for k, name in enumerate(lists)}
    kw.update(sizes=[4], dtypes=["float32"], groups=[group], group_sizes=[1], device=0, stream=0)
    if rule != "rmsprop":
        kw["steps"] = [1.0]
    kw.update(changes)
    return getattr(_cuda, rule)(**kw)


@pytest.mark.skipif(not ob.cuda.is_built(), reason="optbowl was built without its CUDA module")
@pytest.mark.parametrize(
    "rule, changes, error, message",
    [
        ("sgd", dict(momentum_buffers=None), ValueError, "momentum_buffers: momentum != 0 needs"),
        ("sgd", dict(grads=None), TypeError, "grads: expected a list of pointers, got None"),
        ("sgd", dict(steps=[1.0, 2.0]), ValueError, "steps: expected one step count per tensor"),
        ("sgd", dict(grads=[1, 2]), ValueError, "grads: expected 1 pointers, got 2"),
        ("rmsprop", dict(grad_avgs=None), ValueError, "grad_avgs: centered=True needs"),
        ("rmsprop", dict(momentum_buffers=None), ValueError, "momentum_buffers: momentum > 0"),
        ("rmsprop", dict(square_avgs=None), TypeError, "square_avgs: expected a list of pointers"),
        ("rmsprop", dict(group_sizes=[2]), ValueError, "group_sizes: they do not add up"),
        ("adam", dict(max_exp_avg_sqs=None), ValueError, "max_exp_avg_sqs: amsgrad=True needs"),
        ("adam", dict(exp_avgs=None), TypeError, "exp_avgs: expected a list of pointers"),
        ("adam", dict(dtypes=["int32"]), TypeError, "dtypes: expected float32, float64"),
        ("adam", dict(sizes=[-1]), ValueError, "sizes: entries must be >= 0"),
    ],
)
def test_cuda_entries_check_their_arguments_before_any_launch(rule, changes, error, message):
    with pytest.raises(error, match=message):
        _call(rule, **changes)


@pytest.mark.skipif(not ob.cuda.is_built(), reason="optbowl was built without its CUDA module")
@pytest.mark.skipif(ob.cuda.is_available(), reason="checks the runtime's error without a device")
@pytest.mark.parametrize("rule", sorted(_LISTS))
def test_cuda_entries_accept_unread_lists_as_none(rule):
    """Lists that no group reads may be None; the call then gets as far as the runtime."""
    unread = {
        "sgd": dict(momentum_buffers=None, groups=[(0.1, 0.0, 0.0, 0.0, False, False)]),
        "rmsprop": dict(
            grad_avgs=None,
            momentum_buffers=None,
            groups=[(0.01, 0.99, 1e-8, 0.0, 0.0, False, False)],
        ),
        "adam": dict(
            max_exp_avg_sqs=None, groups=[(1e-3, 0.9, 0.999, 1e-8, 0.0, False, False, True)]
        ),
    }[rule]
    with pytest.raises(RuntimeError, match="cuda"):
        _call(rule, **unread)
