"""Checkpoint files that are complete or absent (Lightning's CheckpointIO through :mod:`segfpn.atomic_files`), and
finding the newest readable one of a run."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from segfpn.atomic_files import atomic_link, replace_atomically

__all__ = ["AtomicCheckpointIO", "atomic_link", "atomic_save", "checkpoint_step", "newest_good_checkpoint"]


def atomic_save(checkpoint: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, rename: ``path`` is the old or the new file."""

    def save(temp: Path) -> None:
        with open(temp, "wb") as f:
            torch.save(checkpoint, f)

    replace_atomically(Path(path), save)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, writing through :func:`atomic_save` (a kill never leaves half a file)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}")
        atomic_save(checkpoint, path)


def checkpoint_step(path: str | Path) -> int:
    """The ``global_step`` stored in a Lightning checkpoint (tensors memory-mapped, not read). Raises on a
    truncated or corrupt file."""
    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    return int(state["global_step"])


def newest_good_checkpoint(paths: Iterable[Path]) -> Path | None:
    """The checkpoint with the highest global step (then the newest) among ``paths`` that can be read; each
    unreadable one is named in a warning and skipped. ``None`` when none is readable."""
    good: list[tuple[int, float, Path]] = []
    for path in paths:
        try:
            good.append((checkpoint_step(path), path.stat().st_mtime, path))
        except Exception as error:  # noqa: BLE001 - any failure to read means: not a usable checkpoint
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            warnings.warn(f"skipping unreadable checkpoint {str(path)!r}: {first_line}", stacklevel=2)
    return max(good)[2] if good else None
