"""Argument types the commands share: argparse then names the option and the bad value in one line."""

from __future__ import annotations

import argparse


def _int_from(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (sizes, counts)."""
    return _int_from(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (worker processes: 0 loads in the main process)."""
    return _int_from(text, 0, "an integer >= 0")


def add_input_size(parser: argparse.ArgumentParser, *names: str, what: str = "input") -> None:
    """An ``H W`` option (default 512 512, each a positive integer) under ``names``."""
    parser.add_argument(
        *names,
        type=positive_int,
        nargs=2,
        default=[512, 512],
        metavar=("H", "W"),
        help=f"{what} height and width (default: 512 512)",
    )
