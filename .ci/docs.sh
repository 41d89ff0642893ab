#!/usr/bin/env bash
# CI stage: the documentation. A fresh venv with the package and the docs extra; the
# Sphinx site builds with warnings as errors (the gallery runs every script of examples/
# in its quick setting), and every example runs: the pages' examples under Sphinx's
# doctest builder, and the examples in the docstrings of every module of the installed
# package under pytest --doctest-modules (with the module's globals, as a reader of that
# docstring would run them). Then the built site is checked (.ci/docs_site_check.py): no
# page loads anything from the network, and in headless Chromium, with no network at all,
# every page's math is typeset (no raw TeX such as \frac left in its text) and nothing
# scrolls or spills sideways; screenshots of the theory page and the front page are
# taken (PNG files in the stage's work folder, copied to $OPTBOWL_DOCS_OUT if set, with
# the built site).
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

stage "no built page loads anything from the network"
python "$root/.ci/docs_site_check.py" scan "$work/html"

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

stage "the site in headless Chromium, offline: math typeset, nothing sideways; screenshots"
chromium_bin="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$chromium_bin" ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "Chromium is needed (Debian: apt-get install chromium) and cannot be installed here" >&2
    exit 1
  fi
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
  chromium_bin="$(command -v chromium)"
fi
python "$root/.ci/docs_site_check.py" render "$work/html" "$work/screenshots" \
  --chromium "$chromium_bin"
if [ -n "${OPTBOWL_DOCS_OUT:-}" ]; then
  mkdir -p "$OPTBOWL_DOCS_OUT"
  cp -r "$work/screenshots" "$work/html" "$OPTBOWL_DOCS_OUT/"
  echo "the screenshots and the built site are in $OPTBOWL_DOCS_OUT"
fi

echo "== docs stage passed in $((SECONDS - start)) s"
