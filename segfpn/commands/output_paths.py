"""The rule for every file a command writes: never its own input, never an existing file unless asked."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from segfpn.errors import ConfigError


def check_output(path: Path, option: str, inputs: Iterable[Path] = (), overwrite: bool = False) -> Path:
    """``path`` if a command may write it: not one of ``inputs`` (even with ``overwrite``), not a folder, and not an
    existing file unless ``overwrite``. The error names ``option`` and the path."""
    for source in inputs:
        if path.resolve() == Path(source).resolve():
            raise ConfigError(f"{option} {str(path)!r} is the input file itself; writing it would destroy it")
    if path.is_dir():
        raise ConfigError(f"{option} {str(path)!r} is a folder; expected a file path")
    if path.exists() and not overwrite:
        raise ConfigError(f"{option} {str(path)!r} exists; pass --overwrite to replace it")
    return path
