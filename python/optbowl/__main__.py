"""Command line: ``python -m optbowl <command>``.

Commands
--------
demo    minimise a 1-million-parameter ill-conditioned bowl with every optimizer, timed
        against plain NumPy in the same run, and the bowl theory's rates beside the measured.
bowl    rates, optimal hyper-parameters, iterations and regimes of gd, momentum, Nesterov
        and Newton on a quadratic bowl (``--eigenvalues 1 100 --method momentum``).
bench   time optimizer steps (ResNet-18 shapes or flat sizes) against the memory floor,
        NumPy and torch; a table, and JSON with --json.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optbowl", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    from . import _cli_bowl, bench, demo

    demo.add_parser(sub)
    _cli_bowl.add_parser(sub)
    bench.add_parser(sub)

    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
