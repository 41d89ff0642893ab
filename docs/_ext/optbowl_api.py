"""The ``optbowl-api`` directive: the API reference, generated from the package itself.

It documents every name in ``optbowl.__all__`` (classes with their members, functions,
submodules such as ``optbowl.schedules``), then every other public submodule of the
installed package that has public names of its own. Command-line subcommand modules (the
ones with ``add_parser``) are described on the getting-started page instead. A submodule
that cannot be imported here (an optional dependency or accelerator missing) is listed
with the reason rather than failing the build.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types
from typing import List, Tuple

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles


def _public_names(module: types.ModuleType) -> List[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, obj in vars(module).items()
            if not n.startswith("_")
            and getattr(obj, "__module__", None) == module.__name__
            and (inspect.isclass(obj) or inspect.isfunction(obj))
        ]
    return list(names)


def _entry(qualname: str, obj: object) -> List[str]:
    package = qualname.split(".", 1)[0]
    if inspect.ismodule(obj):
        return [f".. automodule:: {obj.__name__}", "   :members:", ""]
    if inspect.isclass(obj):
        lines = [f".. autoclass:: {qualname}", "   :members:"]
        # Members inherited from the package's own bases (the Optimizer's step,
        # state_dict, ...), not those of builtins such as tuple.
        # Members of a foreign base (torch.optim.Optimizer) are that library's to document.
        if any(getattr(base, "__module__", "").startswith(package + ".")
               for base in obj.__mro__[1:]):
            foreign = [base.__name__ for base in obj.__mro__[1:]
                       if not getattr(base, "__module__", "").startswith(package + ".")
                       and base is not object]
            lines.append("   :inherited-members:" + (" " + ", ".join(foreign) if foreign else ""))
        return lines + [""]
    if callable(obj):
        return [f".. autofunction:: {qualname}", ""]
    return [f".. autodata:: {qualname}", "   :annotation:", ""]


def api_rst(package: str = "optbowl") -> Tuple[List[str], List[str]]:
    """rST lines for the whole public API, and the submodules that could not be imported."""
    pkg = importlib.import_module(package)
    top = [n for n in pkg.__all__ if not n.startswith("__")]
    lines = [
        "Top-level names",
        "---------------",
        "",
        f"Everything in ``{package}.__all__``, in that order.",
        "",
    ]
    exported = set()
    for name in top:
        obj = getattr(pkg, name)
        exported.add(id(obj))
        lines += _entry(f"{package}.{name}", obj)

    missing = []
    extra: List[str] = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in top:
            continue
        modname = f"{package}.{info.name}"
        try:
            module = importlib.import_module(modname)
        except Exception as exc:  # optional dependency or device not present
            missing.append(f"``{modname}``: not importable in this environment "
                           f"({type(exc).__name__}: {exc})")
            continue
        if hasattr(module, "add_parser"):
            continue
        names = [n for n in _public_names(module) if id(getattr(module, n, None)) not in exported]
        if not names:
            continue
        extra += [
            f".. automodule:: {modname}",
            "   :no-members:",
            "",
        ]
        for n in names:
            extra += ["   " + line if line else ""
                      for line in _entry(f"{modname}.{n}", getattr(module, n))]
    if extra:
        lines += ["Submodules", "----------", ""] + extra
    if missing:
        lines += ["Not importable here", "-------------------", ""]
        lines += [f"* {m}" for m in missing] + [""]
    return lines, missing


class OptbowlApi(SphinxDirective):
    has_content = False
    optional_arguments = 1  # the package (default: optbowl)

    def run(self) -> List[nodes.Node]:
        lines, _ = api_rst(self.arguments[0] if self.arguments else "optbowl")
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="<optbowl-api>"), container)
        return container.children


class OptbowlRules(SphinxDirective):
    """``.. optbowl-rules::``: the table of every registered rule's hyper-parameters, state
    and layers, generated from the registry entries (``optbowl._registry.table_rst``)."""

    has_content = False

    def run(self) -> List[nodes.Node]:
        from optbowl import _registry

        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(
            self.state, StringList(_registry.table_rst(), source="<optbowl-rules>"), container
        )
        return container.children


def setup(app):
    app.add_directive("optbowl-api", OptbowlApi)
    app.add_directive("optbowl-rules", OptbowlRules)
    return {"parallel_read_safe": True, "version": "1"}
