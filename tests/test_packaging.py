"""Packaging: one version everywhere, the extension loads from the package, and the sdist
holds what a wheel build needs (the full sdist -> wheel round trip is .ci/wheel.sh)."""

import ast
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys
import tarfile

import pytest

import optbowl
from optbowl import _core

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Tools run without the sanitizer stage's preloaded runtimes (meant for optbowl's code).
TOOL_ENV = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
SOURCE_TREE = (ROOT / "pyproject.toml").is_file() and (ROOT / "python" / "optbowl").is_dir()
# scikit-build-core's regex provider reads this line (its default regex).
VERSION_LINE = re.compile(r"""(?im)^\s*__version__\s*=\s*['"](?P<value>[^'"]+)['"]""")


def _version_file_text() -> str:
    return (pathlib.Path(optbowl.__file__).parent / "_version.py").read_text(encoding="utf-8")


def _is_editable() -> bool:
    dist = importlib.metadata.distribution("optbowl")
    text = dist.read_text("direct_url.json")
    return bool(text) and json.loads(text).get("dir_info", {}).get("editable", False)


def test_version_is_single_sourced():
    match = VERSION_LINE.search(_version_file_text())
    assert match is not None, "_version.py has no __version__ line the build can read"
    assert optbowl.__version__ == match["value"]
    assert importlib.metadata.version("optbowl") == optbowl.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]|rc)?\d*", optbowl.__version__)


def test_wheel_metadata_agrees_with_pyproject():
    meta = importlib.metadata.metadata("optbowl")
    assert meta["Name"] == "optbowl"
    assert meta["Version"] == optbowl.__version__
    assert meta["Requires-Python"] == ">=3.9"
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"test", "plot", "bench", "torch", "docs"} <= extras


@pytest.mark.skipif(not SOURCE_TREE, reason="needs the source tree's pyproject.toml")
def test_pyproject_reads_the_version_from_version_py():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"], "the version must live in _version.py only"
    assert "version" in project["project"]["dynamic"]
    provider = project["tool"]["scikit-build"]["metadata"]["version"]
    assert provider["provider"] == "scikit_build_core.metadata.regex"
    assert provider["input"] == "python/optbowl/_version.py"


@pytest.mark.skipif(not SOURCE_TREE, reason="needs the source tree's CHANGELOG.md")
def test_changelog_has_the_current_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## \[?{re.escape(optbowl.__version__)}\]?", changelog, re.M)


def test_extension_module_lives_in_the_package():
    core = pathlib.Path(_core.__file__).resolve()
    assert core.parent.name == "optbowl"
    assert core.name.startswith("_core.")
    if not _is_editable():
        # An installed wheel: the extension sits beside the Python files it serves,
        # never in a source or build tree.
        assert core.parent == pathlib.Path(optbowl.__file__).resolve().parent
        assert "build" not in core.parent.parts[-3:]


def test_core_stub_names_every_function_of_the_module():
    # _core.pyi is written by hand (type checkers and editors read it, never the module):
    # every public name of the compiled module is in it, and nothing else.
    stub = pathlib.Path(optbowl.__file__).parent / "_core.pyi"
    tree = ast.parse(stub.read_text(encoding="utf-8"))
    stubbed = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    stubbed |= {node.target.id for node in tree.body
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    # The compiled rules' step functions are the stub's module __getattr__, named by _core.rules
    assert "__getattr__" in stubbed
    stubbed = (stubbed - {"__getattr__"}) | set(_core.rules)
    public = {name for name in dir(_core) if not name.startswith("_")}
    assert public - stubbed == set(), "compiled but missing from _core.pyi"
    assert stubbed - public == set(), "in _core.pyi but not compiled"


@pytest.mark.skipif(not SOURCE_TREE, reason="needs the source tree")
def test_sdist_holds_every_tracked_source_and_no_build_output(tmp_path):
    pytest.importorskip("scikit_build_core")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False, env=TOOL_ENV
    )
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    out = subprocess.run(
        [sys.executable, "-c",
         ("import sys; from scikit_build_core.build import build_sdist; "
          "print(build_sdist(sys.argv[1]))"),
         str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=True, env=TOOL_ENV,
    ).stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / out) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    needed = [
        f for f in tracked.stdout.splitlines()
        if f in ("CMakeLists.txt", "pyproject.toml", "README.md")
        or f.startswith(("cpp/", "python/", "tests/"))
    ]
    assert needed, "git ls-files listed no sources"
    missing = [f for f in needed if f not in names]
    assert not missing, f"the sdist lacks {missing}"
    outputs = [n for n in names if n.startswith(("build/", "dist/", "docs/_build/"))
               or n.endswith((".so", ".pyd", ".dylib", ".pyc"))]
    assert not outputs, f"the sdist holds build outputs {outputs}"


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", section, re.S)
    commands = [b.strip() for b in blocks if "pytest" in b]
    assert len(commands) == 1, f"expected one test command in 'Two commands', got {commands}"
    return commands[0]


@pytest.mark.skipif(not SOURCE_TREE, reason="needs the source tree's README.md and .ci/run")
def test_ci_runs_the_readme_test_command_and_it_installs_the_parity_torch():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    command = _readme_test_command()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install, _, run = command.partition(" && ")
    assert run == "pytest"
    # CI runs the same install, then pytest through run_pytest (which fails on exit 5).
    assert f"{install} && run_pytest" in ci
    assert "torch" not in ci.split("README test command", 1)[0].split("venv/bin/activate")[-1]
    extra = install.split('".[', 1)[1].split(']"', 1)[0]
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = deps["project"]["optional-dependencies"][extra]
    from conftest import PARITY_TORCH

    assert any(d.replace(" ", "").startswith(f"torch=={PARITY_TORCH};") for d in listed), listed
    # every requirement is valid PEP 508 (the build refuses the project otherwise) and the
    # pin applies on this platform's Linux/Windows/arm64 CPython >= 3.10
    requirements = pytest.importorskip("packaging.requirements")
    for extra_deps in deps["project"]["optional-dependencies"].values():
        for d in extra_deps:
            requirements.Requirement(d)
    pin = next(requirements.Requirement(d) for d in listed if d.startswith("torch"))
    for platform_, machine in (("linux", "x86_64"), ("linux", "aarch64"), ("win32", "AMD64"),
                               ("darwin", "arm64")):
        assert pin.marker.evaluate({"python_version": "3.11", "sys_platform": platform_,
                                    "platform_machine": machine})
    assert not pin.marker.evaluate({"python_version": "3.11", "sys_platform": "darwin",
                                    "platform_machine": "x86_64"})
    assert not pin.marker.evaluate({"python_version": "3.9", "sys_platform": "linux",
                                    "platform_machine": "x86_64"})


def test_summary_says_loudly_when_torch_parity_tests_skip(tmp_path):
    # A torch that cannot be imported: every importorskip("torch") skips.
    blocked = tmp_path / "torch"
    blocked.mkdir()
    (blocked / "__init__.py").write_text(
        "raise ModuleNotFoundError('torch blocked by the test', name='torch')\n")
    # The child imports optbowl: it keeps this process's environment (a sanitizer build's
    # LD_PRELOAD included), unlike the tools run with TOOL_ENV.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]))
    tests = pathlib.Path(__file__).resolve().parent
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(tests / "test_rmsprop.py"), str(tests / "test_torch_plan.py")],
        cwd=tests.parent, capture_output=True, text=True, env=env, check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "TORCH PARITY NOT TESTED" in out
    # test_rmsprop.py's parity cases skip one by one (importorskip inside the test),
    # test_torch_plan.py as a module: every skip of this run is counted.
    match = re.search(r"(\d+) torch parity test\(s\) or module\(s\) skipped", out)
    skipped = re.search(r"(\d+) skipped", out.splitlines()[-1])
    assert match and skipped and int(match[1]) == int(skipped[1]) > 1, out
    assert "torch blocked by the test" in out
    # and with torch importable (where it is) the section is absent
    if importlib.util.find_spec("torch") is not None:
        res = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             str(tests / "test_rmsprop.py")],
            cwd=tests.parent, capture_output=True, text=True, check=False,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert "TORCH PARITY NOT TESTED" not in res.stdout
