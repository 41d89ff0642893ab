#!/usr/bin/env bash
# CI stage: the documentation. A fresh venv with the package and the docs extra; the
# Sphinx site builds with warnings as errors, and every example runs: the doctest blocks
# of the pages and of the docstrings autodoc pulls in (Sphinx's doctest builder), and
# every docstring of every module of the installed package (pytest --doctest-modules).
# Usage: bash .ci/docs.sh [WHEEL]   (a built wheel to install instead of the source tree)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
start=$SECONDS
stage() { echo "== [$((SECONDS - start)) s] $*"; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"

stage "install optbowl with the docs extra"
if [ $# -ge 1 ]; then
  pip install -q "$1[docs,test]"
else
  pip install -q "$root[docs,test]"
fi

stage "sphinx html (warnings are errors)"
python -m sphinx -W --keep-going -q -b html -d "$work/doctrees" "$root/docs" "$work/html"

stage "sphinx doctest: the pages and the API docstrings"
python -m sphinx -W --keep-going -q -b doctest -d "$work/doctrees" "$root/docs" "$work/doctest"
cat "$work/doctest/output.txt"

stage "pytest --doctest-modules over the installed package"
cd "$work"
set +e
python -m pytest -q -p no:cacheprovider -W error --doctest-modules --doctest-ignore-import-errors \
  --pyargs optbowl
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest found no doctest in the installed package: failing the run" >&2
  exit 1
fi
[ "$rc" -eq 0 ] || exit "$rc"

echo "== docs stage passed in $((SECONDS - start)) s"
