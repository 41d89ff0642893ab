"""Command line: ``python -m optbowl <command>``.

Commands
--------
demo    minimise a 1-million-parameter ill-conditioned bowl with every optimizer, timed
        against plain NumPy in the same run, and the bowl theory's predicted contraction
        beside the measured one.
bowl    rates, optimal hyper-parameters, iterations and regimes of gd, momentum, Nesterov
        and Newton on a quadratic bowl (``--eigenvalues 1 100 --method momentum``).
bench   time optimizer steps (ResNet-18 shapes or flat sizes) against the memory floor,
        NumPy, torch (eager and ``torch.compile``) and optax; a table, and JSON with
        ``--json``; ``--quick`` for a representative subset.
info    the version, the instruction set chosen at run time, the threads, whether the CUDA
        module is here (and why not), and the torch version.

Invalid values end the command with a one-line error and exit status 2, as argparse does
for the options it checks itself.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
from typing import List, Optional

DESCRIPTION = "optbowl's command line: python -m optbowl <command> [options]."
EPILOG = "python -m optbowl <command> --help describes a command and its options."


def _distribution_version(name: str) -> Optional[str]:
    """The installed version of a distribution, without importing it (None if absent)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def info_lines() -> List[str]:
    """What ``python -m optbowl info`` prints, one line per item."""
    from . import __version__, _core, _device

    detected = _core.detected_isa()
    chosen = _core.cpu_isa()
    isa = f"{chosen} (chosen at run time; the CPU supports up to {detected})"
    env = os.environ.get("OMP_NUM_THREADS")
    threads = (f"{_core.get_num_threads()} (OMP_NUM_THREADS={env}; "
               if env else f"{_core.get_num_threads()} (") + f"{os.cpu_count()} logical CPUs)"
    if _device._cuda is None:
        if _device.CUDA_IMPORT_ERROR is not None:
            cuda = f"built but failed to load: {_device.unavailable_reason()}"
        else:
            cuda = ("not built (this installation was built without nvcc or with "
                    "OPTBOWL_CUDA=OFF; see the README's install notes)")
    else:
        reason = _device.unavailable_reason()
        count = int(_device._cuda.status()[0])
        cuda = (f"built, {count} device(s) usable" if reason is None
                else f"built, not usable: {reason}")
    torch = _distribution_version("torch")
    return [
        f"optbowl {__version__}",
        f"python {platform.python_version()} ({platform.platform()}), "
        f"numpy {_distribution_version('numpy')}",
        f"instruction set: {isa}",
        f"threads: {threads}; OpenMP {'yes' if _core.has_openmp() else 'no'}",
        f"CUDA module optbowl._cuda: {cuda}",
        f"torch: {torch if torch is not None else 'not installed'}"
        + ("" if torch is None else "; optbowl.torch and the parity tests can use it"),
    ]


def _info(args: argparse.Namespace) -> int:
    print("\n".join(info_lines()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m optbowl", description=DESCRIPTION,
                                     epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    from . import _cli_bowl, bench, demo

    demo.add_parser(sub)
    _cli_bowl.add_parser(sub)
    bench.add_parser(sub)
    p = sub.add_parser("info", help="version, instruction set, threads, CUDA module, torch",
                       description="What this installation of optbowl is and can use: the "
                                   "version, the instruction set the loops chose at run time, "
                                   "the threads, whether the CUDA module optbowl._cuda is here "
                                   "(and why not) and the torch version.")
    p.set_defaults(run=_info)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (TypeError, ValueError, OverflowError) as error:
        # Values argparse could not check alone (a bowl that is not positive definite, a
        # thread count beyond the cap, ...): one line naming the argument, exit status 2.
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
