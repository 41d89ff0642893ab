# Shared by the CI stage scripts (sourced, not run): strict mode, the repository root,
# quiet pip, a temporary work directory removed on exit, timed stage banners, and pytest
# runs that fail when nothing was collected.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
start=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

stage() { echo "== [$((SECONDS - start)) s] $*"; }

# run_pytest ARGS...: pytest, where collecting no test at all is a failure.
run_pytest() {
  local rc=0
  python -m pytest "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing the run" >&2
    return 1
  fi
  return "$rc"
}
