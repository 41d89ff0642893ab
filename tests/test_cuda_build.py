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
def test_launch_plan_is_one_launch_for_resnet18():
    shapes = [tuple(s) for s in _resnet18_shapes()]
    sizes = [math.prod(s) for s in shapes]
    assert len(sizes) == 62 and sum(sizes) == 11_689_512
    launches, chunks = ob.cuda.launch_plan(sizes)
    assert launches == 1
    assert chunks == sum(-(-n // 65536) for n in sizes)


@pytest.mark.skipif(not ob.cuda.is_built(), reason="optbowl was built without its CUDA module")
@pytest.mark.parametrize(
    "sizes, launches, chunks",
    [
        ([], 0, 0),
        ([0, 0], 0, 0),
        ([1], 1, 1),
        ([65536], 1, 1),
        ([65537], 1, 2),
        ([100_000_000], 2, 1526),  # one tensor over two launches
        ([1] * 110, 1, 110),  # the tensor table is full
        ([1] * 111, 2, 111),
        ([65536 * 1024], 1, 1024),  # exactly the chunk table
        ([65536 * 1024 + 1, 5], 2, 1026),  # a tensor split across launches
        ([1] * 109 + [65536 * 1100], 2, 1209),
        ([1] * 109 + [65536 * 1100, 3], 2, 1210),
    ],
)
def test_launch_plan_bounds(sizes, launches, chunks):
    assert ob.cuda.launch_plan(sizes) == (launches, chunks)


def _resnet18_shapes():
    import json

    path = ROOT / "bench" / "resnet18_shapes.json"
    return json.loads(path.read_text())["shapes"]


# ----------------------------------------------------------------------------- CMake switch
def _cmake():
    try:
        import cmake

        return str(Path(cmake.CMAKE_BIN_DIR) / "cmake")
    except ImportError:
        return shutil.which("cmake")


def _configure(tmp_path, *defines, env=None, path=None):
    pybind11 = pytest.importorskip("pybind11")
    cmake = _cmake()
    if cmake is None:
        pytest.skip("cmake is not installed")
    e = dict(os.environ if env is None else env)
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
    shapes = _resnet18_shapes()
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
