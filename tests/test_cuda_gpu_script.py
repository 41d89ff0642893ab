"""The GPU run's script (.ci/gpu.sh) on a machine without a GPU: it stops at once, saying
what is missing, and writes its summary under $OUT; and it is shellcheck-clean."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "gpu.sh"

pytestmark = pytest.mark.skipif(
    not SCRIPT.is_file() or shutil.which("bash") is None or shutil.which("timeout") is None,
    reason="needs the source tree, bash and coreutils",
)


def _tool(folder, name, text):
    path = folder / name
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run(tmp_path, fake_bin=None, python=None):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONPATH")}
    env["PATH"] = (f"{fake_bin}:" if fake_bin else "") + "/usr/bin:/bin"
    env["OUT"] = str(out)
    env["PYTHON"] = python or sys.executable
    r = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    return r, out


def _fakes(tmp_path, nvcc_release):
    fake = tmp_path / "bin"
    fake.mkdir()
    _tool(fake, "nvidia-smi", 'echo "NVIDIA H100 80GB HBM3, 9.0, 580.65.06"\n')
    release = f"release {nvcc_release}, V{nvcc_release}.1"
    _tool(fake, "nvcc", f'echo "Cuda compilation tools, {release}"\n')
    return fake


def test_without_a_driver_it_stops_and_says_so(tmp_path):
    if shutil.which("nvidia-smi", path="/usr/bin:/bin"):
        pytest.skip("nvidia-smi is installed here")
    r, out = _run(tmp_path)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "gpu.sh: cannot run: no nvidia-smi: no NVIDIA driver here" in r.stderr
    assert "no nvidia-smi" in (out / "summary.txt").read_text()


def test_an_old_nvcc_is_refused(tmp_path):
    r, _ = _run(tmp_path, _fakes(tmp_path, "12.0"))
    assert r.returncode == 3 and "nvcc 12.0 is older than 12.1" in r.stderr, r.stderr


def test_a_python_without_cuda_torch_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("torch has CUDA here")
    r, out = _run(tmp_path, _fakes(tmp_path, "13.0"))
    assert r.returncode == 3, r.stdout + r.stderr
    assert ("torch has no usable CUDA device" in r.stderr
            or "the Python" in r.stderr and "lacks" in r.stderr), r.stderr
    assert not (out / "build.log").exists()  # nothing was built


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed")
    r = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout
