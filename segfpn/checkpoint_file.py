"""Reading checkpoint files with an error that names the file and what is wrong with it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from segfpn.errors import CheckpointError

ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes zip archives (since torch 1.6)


def check_checkpoint_file(path: str | Path, option: str = "checkpoint") -> Path:
    """``path`` if it is a complete torch.save archive; else :class:`CheckpointError` saying why.

    Cheap: reads the zip directory, not the tensors. ``option`` names the argument in the message.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{option} {str(path)!r} does not exist; expected a .ckpt file written by segfpn fit")
    if not path.is_file():
        raise CheckpointError(f"{option} {str(path)!r} is not a file; expected a .ckpt file written by segfpn fit")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(len(ZIP_MAGIC))
    if head != ZIP_MAGIC:
        found = "an empty file" if size == 0 else f"a {size}-byte file starting with {head!r}"
        raise CheckpointError(
            f"{option} {str(path)!r} is not a checkpoint: expected a zip archive written by torch.save "
            f"(a .ckpt file), found {found}"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as err:
        raise CheckpointError(
            f"{option} {str(path)!r} is truncated or damaged: {size} bytes without a complete zip directory "
            f"(it was probably being written when its process was killed)",
            "use another checkpoint of the run (e.g. last.ckpt or a step*.ckpt)",
        ) from err
    if not any(name.endswith("/data.pkl") for name in names):
        raise CheckpointError(f"{option} {str(path)!r} is a zip archive but not a torch checkpoint (no data.pkl)")
    return path


def load_checkpoint(path: str | Path, option: str = "checkpoint") -> dict[str, Any]:
    """The dict stored in a Lightning/torch checkpoint (tensors on the CPU, ``weights_only=True``)."""
    path = check_checkpoint_file(path, option)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{option} {str(path)!r} holds objects that are not plain data, refused by torch.load(weights_only=True): "
            f"{' '.join(str(err).split())[:300]}"
        ) from err
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as err:
        raise CheckpointError(f"{option} {str(path)!r} cannot be read as a checkpoint: {err}") from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{option} {str(path)!r} holds a {type(obj).__name__}, expected a checkpoint dict")
    return obj
