"""Sphinx configuration for optbowl's documentation.

The API reference is generated from ``optbowl.__all__`` and the public submodules that
exist in the installed package (see ``_ext/optbowl_api.py``), so a name added to the
package appears here without editing the docs. The figures of the theory page are
computed at build time by optbowl itself (``_ext/bowl_figures.py``).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))

import optbowl  # noqa: E402  (the installed package is what the docs describe)

project = "optbowl"
author = "the optbowl developers"
copyright = "2026, the optbowl developers"
release = optbowl.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "matplotlib.sphinxext.plot_directive",
    "optbowl_api",
    "optbowl_bench",
]

exclude_patterns = ["_build"]
nitpicky = False

# numpy-style docstrings through napoleon
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"members": True, "show-inheritance": True}

# The pages' examples are ".. doctest::" blocks, run by "sphinx -b doctest"; the
# docstrings' examples run with their module's globals under pytest --doctest-modules.
doctest_test_doctest_blocks = ""
doctest_global_setup = "import numpy as np\nimport optbowl as ob\n"

plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]
plot_rcparams = {"figure.figsize": (7.0, 3.6), "figure.dpi": 110}


html_theme = "alabaster"
html_title = f"optbowl {release}"
html_static_path = []
