#!/usr/bin/env bash
# CI stage: the documentation. A fresh venv with the package and the docs extra; the
# Sphinx site builds with warnings as errors, and every example runs: the pages'
# examples under Sphinx's doctest builder, and the examples in the docstrings of every
# module of the installed package under pytest --doctest-modules (with the module's
# globals, as a reader of that docstring would run them).
# Usage: bash .ci/docs.sh [WHEEL]   (a built wheel to install instead of the source tree)
# shellcheck source=.ci/common.sh
. "$(dirname "$0")/common.sh"

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

stage "sphinx doctest: the pages' examples"
python -m sphinx -W --keep-going -q -b doctest -d "$work/doctrees" "$root/docs" "$work/doctest"
summary="$(sed -n '/^Doctest summary/,$p' "$work/doctest/output.txt")"
echo "$summary"
ran="$(echo "$summary" | awk '$2 == "tests" || $2 == "test" {print $1; exit}')"
if [ -z "$ran" ] || [ "$ran" -eq 0 ]; then
  echo "the pages ran no doctest: failing the run" >&2
  exit 1
fi

stage "pytest --doctest-modules: the docstrings of the installed package"
cd "$work"
run_pytest -q -p no:cacheprovider -W error --doctest-modules --doctest-ignore-import-errors \
  --pyargs optbowl

echo "== docs stage passed in $((SECONDS - start)) s"
