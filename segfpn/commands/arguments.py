"""Argument types the commands share: argparse then names the option and the bad value in one line."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1 (sizes, counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value
