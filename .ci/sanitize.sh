#!/usr/bin/env bash
# CI stage: build optbowl with AddressSanitizer + UndefinedBehaviorSanitizer in a fresh
# venv (no torch) and run the tests that do not need torch, every module's first test and
# every second after it (--one-in 2, tests/conftest.py: the main stage ran them all). Any report fails the stage:
# UBSan is built non-recoverable, ASan aborts on its first error, and the log is
# searched for reports as a second line of defence.
set -euo pipefail
cd "$(dirname "$0")/.."
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
SANITIZE="${OPTBOWL_SANITIZE:-address,undefined}"
CXX="${CXX:-g++}"
# The sanitizers instrument the CPU core; the CUDA module (built and tested in the main
# stage) would only lengthen this build. Test files that exercise no compiled code of the
# core (the performance-estimation SDPs, SciPy's paths, eigen-spectra, the CUDA stub
# build and the GPU script) run in the main stage only.
export OPTBOWL_CUDA="${OPTBOWL_SANITIZE_CUDA:-OFF}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"

echo "== build optbowl with -fsanitize=$SANITIZE"
# RelWithDebInfo and no LTO: readable reports (pybind11 strips and LTO-links Release builds).
pip install -q ".[test]" -Ccmake.define.OPTBOWL_SANITIZE="$SANITIZE" \
  -Ccmake.build-type=RelWithDebInfo -Ccmake.define.CMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF \
  -Cbuild-dir="$work/build"
# The test extra brings torch for the parity tests; this stage runs the tests without it.
pip uninstall -q -y torch

libasan="$("$CXX" -print-file-name=libasan.so)"
libubsan="$("$CXX" -print-file-name=libubsan.so)"
if [ ! -e "$libasan" ]; then
  echo "libasan.so not found next to $CXX" >&2
  exit 1
fi

echo "== tests under ASan+UBSan (torch is not installed: its parity tests skip)"
# Python itself leaks by design at exit: leak detection is off.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
log="$work/pytest.log"
# The memory test measures resident memory, which ASan's quarantine of freed blocks
# inflates by design: it runs in the normal stage only.
set +e
LD_PRELOAD="$libasan $libubsan" HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-dev}" \
  python -m pytest -p no:cacheprovider -q -x --one-in 2 tests --ignore=tests/test_memory.py \
    --ignore=tests/test_worst_case.py --ignore=tests/test_spectra.py \
    --ignore=tests/test_second_order_paths.py --ignore=tests/test_cuda_stub_bindings.py \
    --ignore=tests/test_cuda_gpu_script.py 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
reports=$(grep -cE "ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer" "$log" || true)
echo "== sanitizer reports: $reports"
if [ "$rc" -ne 0 ] || [ "$reports" -ne 0 ]; then
  exit 1
fi
