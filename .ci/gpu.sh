#!/usr/bin/env bash
# The GPU run, in one go (under 8 minutes on one GPU: each stage has a time limit, 480 s in
# all):
#  1. preflight: a GPU (nvidia-smi), nvcc >= 12.1 and a Python with numpy, pytest,
#     hypothesis, pybind11, cmake and a CUDA build of torch; otherwise it stops at once and
#     says what is missing (exit 3);
#  2. build optbowl with OPTBOWL_CUDA=ON for this GPU's architecture (build/gpu, kept for a
#     rerun) and stage the package with the fresh _core and _cuda modules;
#  3. tests/test_cuda_gpu.py, then optbowl.torch's CUDA tests (tests/test_cuda_torch.py,
#     tests/test_torch_adapter.py -k cuda) and the build checks (tests/test_cuda_build.py);
#  4. bench/bench_cuda.py: Rprop and AdaGrad over 1M, 16M, 100M float32 elements and
#     ResNet-18's shapes, float32 and bfloat16, beside the device's copy kernel and torch
#     CUDA's Rprop (foreach) and Adagrad in the same run.
# Everything it writes goes under one folder: $OUT if set, else the first argument, else
# ./gpu-run: env.txt, build.log, pytest-*.log and .xml, bench.log, cuda-<device>.json and
# summary.txt (each stage's exit status and seconds). Every stage runs even when an
# earlier test stage fails; the exit status is the first failure's.
#
#   bash .ci/gpu.sh [OUTDIR]
#
# Environment: PYTHON (default python3), CUDAARCHS (default: the GPU's own, e.g. 90-real),
# GPU_BUILD_DIR (default build/gpu), GPU_BUILD_JOBS (default: all cores).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 3
out="${OUT:-${1:-$root/gpu-run}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
python="${PYTHON:-python3}"
build="${GPU_BUILD_DIR:-$root/build/gpu}"
jobs="${GPU_BUILD_JOBS:-$(nproc 2>/dev/null || echo 4)}"
started=$SECONDS
status=0
summary="$out/summary.txt"
: >"$summary"

say() { echo "== [$((SECONDS - started)) s] $*" | tee -a "$summary"; }
stop() {
  echo "gpu.sh: cannot run: $*" | tee -a "$summary" >&2
  exit 3
}
# stage NAME LIMIT_S COMMAND...: run with a time limit (a command, or an exported function
# of this script), log its status and duration.
stage() {
  local name="$1" limit="$2" t0=$SECONDS rc=0
  shift 2
  timeout --kill-after=10 "$limit" bash -c '"$@"' stage "$@" || rc=$?
  say "$name: exit $rc in $((SECONDS - t0)) s"
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
  return "$rc"
}

# ---------------------------------------------------------------- 1. preflight
command -v nvidia-smi >/dev/null 2>&1 || stop "no nvidia-smi: no NVIDIA driver here"
gpu="$(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>/dev/null \
  | head -n 1)"
[ -n "$gpu" ] || stop "nvidia-smi lists no GPU"
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
command -v nvcc >/dev/null 2>&1 || stop "no nvcc on PATH (or in /usr/local/cuda/bin)"
nvcc_version="$(nvcc --version | sed -n 's/.*release \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p')"
case "$nvcc_version" in
  "" | [0-9].* | 1[01].* | 12.0) stop "nvcc ${nvcc_version:-?} is older than 12.1" ;;
esac
command -v "$python" >/dev/null 2>&1 || stop "no Python interpreter '$python' (set PYTHON)"
missing="$("$python" - <<'EOF'
import importlib.util
need = ["numpy", "pytest", "hypothesis", "pybind11", "torch"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
EOF
)"
[ -z "$missing" ] || stop "the Python '$python' lacks: $missing"
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
  || stop "torch has no usable CUDA device (a CPU build of torch, or no driver)"
cmake_bin="$("$python" -c "import cmake, os; print(os.path.join(cmake.CMAKE_BIN_DIR, 'cmake'))" \
  2>/dev/null || command -v cmake || true)"
[ -n "$cmake_bin" ] || stop "no cmake (pip install cmake, or put it on PATH)"
cc="$(echo "$gpu" | cut -d, -f2 | tr -d ' .')"
archs="${CUDAARCHS:-${cc}-real}"
{
  echo "gpu: $gpu"
  echo "nvcc: $nvcc_version"
  echo "architectures: $archs"
  "$python" -c "import sys, numpy, torch; print('python', sys.version.split()[0]); \
print('numpy', numpy.__version__); print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  "$cmake_bin" --version | head -n 1
} | tee "$out/env.txt"
say "preflight passed: $gpu"

# ---------------------------------------------------------------- 2. build and stage
export root out python build jobs cmake_bin archs
# shellcheck disable=SC2329  # run by stage, through bash -c
build_cuda() {
  "$cmake_bin" -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DOPTBOWL_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$archs" -DPython_EXECUTABLE="$(command -v "$python")" \
    -Dpybind11_DIR="$("$python" -m pybind11 --cmakedir)" \
    && "$cmake_bin" --build "$build" -j "$jobs" --target _core _cuda
}
export -f build_cuda
stage "build (OPTBOWL_CUDA=ON, $archs)" 180 build_cuda >"$out/build.log" 2>&1 || {
  tail -n 40 "$out/build.log" >&2
  stop "the build failed (build.log)"
}
site="$build/site"
rm -rf "$site" && mkdir -p "$site"
cp -r "$root/python/optbowl" "$site/"
rm -f "$site"/optbowl/_core*.so "$site"/optbowl/_cuda*.so
cp "$build"/_core*.so "$build"/_cuda*.so "$site/optbowl/"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
"$python" - <<'EOF' | tee -a "$out/env.txt" || stop "the staged optbowl cannot use the GPU"
import sys
import optbowl as ob
from optbowl import _cuda
print("optbowl", ob.__version__, "from", ob.__file__)
print("optbowl._cuda runtime", _cuda.runtime_version(), "driver", _cuda.driver_version(),
      "architectures", _cuda.architectures)
reason = ob.cuda.unavailable_reason()
print("unavailable_reason:", reason)
sys.exit(0 if reason is None else 1)
EOF

# ---------------------------------------------------------------- 3. tests
# shellcheck disable=SC2329  # run by stage, through bash -c
run_tests() {
  local name="$1"
  shift
  "$python" -m pytest -q -p no:cacheprovider -rs --junitxml="$out/pytest-$name.xml" "$@" \
    >"$out/pytest-$name.log" 2>&1
  local rc=$?
  tail -n 15 "$out/pytest-$name.log"
  return "$rc"
}
export -f run_tests
export CMAKE_CUDA_ARCHITECTURES="$archs"  # what the build checks expect of this build
stage "tests/test_cuda_gpu.py" 120 run_tests gpu tests/test_cuda_gpu.py
stage "optbowl.torch's CUDA tests" 40 run_tests torch tests/test_cuda_torch.py \
  tests/test_torch_adapter.py -k "cuda"
stage "the build checks" 20 run_tests build tests/test_cuda_build.py -m "not slow"

# ---------------------------------------------------------------- 4. benchmark
stage "bench/bench_cuda.py" 110 "$python" bench/bench_cuda.py --out-dir "$out" \
  2>&1 | tee "$out/bench.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || [ "$status" -ne 0 ] || status=1

say "done: exit $status, $((SECONDS - started)) s in all; results in $out"
exit "$status"
