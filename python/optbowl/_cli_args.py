"""argparse ``type=`` checkers shared by the commands of ``python -m optbowl``.

Each returns a converter that raises ``argparse.ArgumentTypeError``, so an invalid value ends
the command with argparse's one-line error naming the option, and exit status 2.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Optional


def integer(low: int, high: Optional[int] = None) -> Callable[[str], int]:
    """An integer in [low, high] (``1_000`` and ``1,000`` read as 1000)."""

    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", "").replace(",", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def number(low: float = -math.inf, high: float = math.inf, *,
           low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """A finite float in the interval given (open at an end where asked)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        below = value <= low if low_open else value < low
        above = value >= high if high_open else value > high
        if not math.isfinite(value) or below or above:
            where = ""
            if math.isfinite(low) or math.isfinite(high):
                where = (f" in {'(' if low_open else '['}{low:g}, {high:g}"
                         f"{')' if high_open else ']'}")
            raise argparse.ArgumentTypeError(f"must be a finite number{where}, got {text!r}")
        return value

    return parse
