"""Sphinx configuration for optbowl's documentation.

The API reference is generated from ``optbowl.__all__`` and the public submodules that
exist in the installed package (see ``_ext/optbowl_api.py``), so a name added to the
package appears here without editing the docs. The figures of the theory page are
computed at build time by optbowl itself (``_ext/bowl_figures.py``), and the gallery runs
every script of ``examples/`` through sphinx-gallery, in the scripts' quick setting.

Nothing a built page loads comes from the network: MathJax is the copy that the
``sphinx-mathjax-offline`` package ships (copied into ``_static/mathjax``), and the theme
(pydata-sphinx-theme) bundles its own fonts and scripts.
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
    "sphinx-mathjax-offline",  # MathJax 3 served from _static/mathjax, not from a CDN
    "sphinx.ext.doctest",
    "sphinx_gallery.gen_gallery",
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


# --- the gallery: examples/*.py (all but the helpers named _*.py) -----------------------
# Each script runs once per build with ``--out`` a scratch folder (its own PNG files are
# not used: sphinx-gallery takes the figures from matplotlib) and in its quick setting,
# which the scripts take from OPTBOWL_EXAMPLES_QUICK (set here unless the caller set it:
# OPTBOWL_EXAMPLES_QUICK=0 builds the gallery at the scripts' full size).
os.environ.setdefault("OPTBOWL_EXAMPLES_QUICK", "1")
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/[^_/][^/]*\.py$",  # run every example, not only plot_*.py
    "ignore_pattern": r"^_",  # matched to the file name: _common.py is a helper
    "reset_argv": "optbowl_gallery.reset_argv",
    "within_subsection_order": "FileNameSortKey",
    "image_scrapers": ("matplotlib",),
    "abort_on_example_error": True,
    "download_all_examples": False,
    "show_memory": False,
    "show_signature": False,
    "min_reported_time": 1,
    "matplotlib_animations": False,
    # no sg_execution_times pages: their tables load DataTables and jQuery from CDNs
    "write_computation_times": False,
}


html_theme = "pydata_sphinx_theme"
html_title = f"optbowl {release}"
html_static_path = ["_static"]
html_css_files = ["optbowl.css"]
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "header_links_before_dropdown": 8,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# No left sidebar: the navigation bar holds every page (the gallery lists its own), and
# the column stays wide enough for 100-character lines of code.
html_sidebars = {"**": []}
