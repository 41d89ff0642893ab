"""What every tutorial here shares: the command line and where its figures go."""

import argparse
import os

import matplotlib

matplotlib.use("Agg")  # the tutorials only write files; no display needed


def parse_args(argv, description):
    """``--out DIR_OR_FILE`` and ``--quick`` (the small setting CI runs)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=".",
                        help="a folder for the figures, or a .png file name to name them after")
    parser.add_argument("--quick", "--small", action="store_true",
                        help="a small, fast setting (as CI runs it)")
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
