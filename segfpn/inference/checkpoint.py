"""Reading checkpoint files with an error that names the file and what is wrong with it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from segfpn.errors import CheckpointError

ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes zip archives (since torch 1.6)
STATE_PREFIX = "model."  # SegmentationModule keeps the network as ``self.model``
CONVERT_HINT = "an mmsegmentation, PVT or timm checkpoint? `segfpn convert FILE` turns it into a segfpn one"


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


def load_checkpoint(path: str | Path, option: str = "checkpoint", mmap: bool = False) -> dict[str, Any]:
    """The dict stored in a Lightning/torch checkpoint (tensors on the CPU, ``weights_only=True``; with ``mmap``
    the tensors stay in the file until used)."""
    path = check_checkpoint_file(path, option)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
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


def load_segfpn_checkpoint(
    path: str | Path, option: str = "checkpoint", mmap: bool = False, lightning: bool = False
) -> dict[str, Any]:
    """:func:`load_checkpoint`, refusing a checkpoint segfpn did not write (hyper-parameters with a
    ``backbone_name`` and ``model.*`` weights), with a hint to convert a foreign one. ``lightning``: also the
    keys Lightning needs to restore a module from it."""
    ckpt = load_checkpoint(path, option, mmap)
    hparams, state = ckpt.get("hyper_parameters"), ckpt.get("state_dict")
    if not isinstance(hparams, dict) or not isinstance(state, dict) or "backbone_name" not in hparams:
        raise CheckpointError(
            f"{option} {str(path)!r} is not a segfpn checkpoint: expected 'hyper_parameters' with a backbone_name "
            f"and a 'state_dict', found keys {sorted(ckpt)[:8]}",
            CONVERT_HINT,
        )
    if not any(key.startswith(STATE_PREFIX) for key in state):
        raise CheckpointError(
            f"{option} {str(path)!r} is not a segfpn checkpoint: no '{STATE_PREFIX}*' weights in its state_dict "
            f"(first keys: {list(state)[:3]})",
            CONVERT_HINT,
        )
    if lightning and "pytorch-lightning_version" not in ckpt:
        raise CheckpointError(
            f"{option} {str(path)!r} holds a segfpn network but is not a Lightning checkpoint (no "
            "'pytorch-lightning_version'); expected a file written by `segfpn fit` or `segfpn convert`",
            "its network can still be used with segfpn.inference.predictor.Segmenter or `segfpn export`",
        )
    return ckpt
