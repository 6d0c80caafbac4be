"""argparse value types the subcommands share: a bad flag value fails at the command line, named
by its flag, instead of deep inside (a ZeroDivisionError for `sample --n 0`) or silently."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1 (counts: samples, directions, steps)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
