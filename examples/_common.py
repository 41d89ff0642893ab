"""What every tutorial here shares: the command line and where its figures go.

Every example takes ``--out DIR_OR_FILE`` and ``--quick``. ``OPTBOWL_EXAMPLES_QUICK=1`` in
the environment makes the quick setting the default (the documentation's gallery runs the
examples so); ``--full`` asks for the full setting whatever the environment says.
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")  # the tutorials only write files; no display needed


def quick_by_default():
    """Whether ``OPTBOWL_EXAMPLES_QUICK`` asks for the quick setting (set, and not 0/no/off)."""
    value = os.environ.get("OPTBOWL_EXAMPLES_QUICK", "").strip().lower()
    return value not in ("", "0", "no", "off", "false")


def parse_args(argv, description):
    """``--out DIR_OR_FILE`` and ``--quick`` (the small setting CI runs) or ``--full``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=".",
                        help="a folder for the figures, or a .png file name to name them after")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", "--small", dest="quick", action="store_true",
                      default=quick_by_default(),
                      help="a small, fast setting (as CI runs it; the default when "
                           "OPTBOWL_EXAMPLES_QUICK=1)")
    size.add_argument("--full", dest="quick", action="store_false",
                      help="the full setting, whatever OPTBOWL_EXAMPLES_QUICK says")
    return parser.parse_args(argv)


def figure_path(out, name, only=False):
    """Where the figure ``name`` (e.g. "paths") goes.

    ``out`` a folder (created if needed): ``out/name.png``. ``out`` a file name: that file
    for an example's ``only`` figure, else ``stem-name.png`` beside it.
    """
    stem, ext = os.path.splitext(out)
    if not ext:
        os.makedirs(out, exist_ok=True)
        return os.path.join(out, f"{name}.png")
    folder = os.path.dirname(out)
    if folder:
        os.makedirs(folder, exist_ok=True)
    return out if only else f"{stem}-{name}{ext}"


def save(fig, out, name, only=False):
    path = figure_path(out, name, only)
    fig.savefig(path, dpi=120)
    print(f"figure written to {path}")
    return path
