"""ADE20K scene parsing (ADEChallengeData2016): its layout, classes and label mapping."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from segfpn.constants import IGNORE_INDEX
from segfpn.datasets.ade20k_classes import ADE20K_CLASSES, ADE20K_PALETTE
from segfpn.datasets.base import (
    CorruptSampleError,
    OnError,
    SegmentationDataset,
    check_on_error,
    load_annotation,
    load_image,
    match_pairs,
    require_folder,
)
from segfpn.datasets.info import DatasetInfo
from segfpn.errors import ConfigError

NUM_CLASSES = len(ADE20K_CLASSES)
SPLIT_ALIASES = {"train": "training", "training": "training", "val": "validation", "validation": "validation"}
LAYOUT = "ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_*.{jpg,png}"

# reduce_zero_label: stored 0 ("other") -> ignore, k -> k-1
ADE20K_INFO = DatasetInfo(
    name="ade20k",
    classes=ADE20K_CLASSES,
    palette=ADE20K_PALETTE,
    ignore_index=IGNORE_INDEX,
    label_map=(IGNORE_INDEX, *range(NUM_CLASSES), *[IGNORE_INDEX] * (255 - NUM_CLASSES)),
)

__all__ = ["ADE20KDataset", "ADE20K_INFO", "CorruptSampleError", "list_pairs", "load_annotation", "load_image"]


def resolve_split(split: str) -> str:
    """The official split folder name for ``split`` (accepts ``train``/``val`` aliases)."""
    if split not in SPLIT_ALIASES:
        raise ConfigError(f"split must be one of {sorted(SPLIT_ALIASES)}, got {split!r}")
    return SPLIT_ALIASES[split]


def list_pairs(
    root: Path, split: str, on_error: OnError = "raise", skipped: list[str] | None = None
) -> list[tuple[Path, Path]]:
    """(image, annotation) paths of a split, sorted (see :func:`segfpn.datasets.base.match_pairs`)."""
    split = resolve_split(split)
    require_folder(root, "ADE20K root", LAYOUT)
    img_dir, ann_dir = root / "images" / split, root / "annotations" / split
    for folder in (img_dir, ann_dir):
        require_folder(folder, None, LAYOUT)
    return match_pairs(
        img_dir, ann_dir, f"{str(root)!r} ({split})", on_error, skipped, image_suffixes=(".jpg", ".jpeg", ".png")
    )


def reduce_zero_label(ann: np.ndarray) -> np.ndarray:
    """ADE20K values to train ids (uint8): 0 -> 255 (ignore), k -> k-1."""
    return ADE20K_INFO.map_labels(ann)


class ADE20KDataset(SegmentationDataset):
    """ADE20K image/mask pairs in the official layout; train ids 0..149, 255 = ignore.

    Args:
        root_dir: the ``ADEChallengeData2016`` folder.
        split: ``training``/``validation`` (or ``train``/``val``).
        transform: albumentations pipeline (default: the validation transform).
        reduce_zero_label: map the stored values to train ids (0 -> ignore, k -> k-1), as mmseg's ADE20K.
        on_error: ``"raise"`` or ``"skip"`` a corrupt sample (see :class:`SegmentationDataset`).
    """

    info = ADE20K_INFO
    max_stored_value = NUM_CLASSES

    def __init__(
        self,
        root_dir: str | Path,
        split: str = "training",
        transform: Callable | None = None,
        reduce_zero_label: bool = True,
        on_error: OnError = "raise",
    ) -> None:
        check_on_error(on_error)
        root = Path(root_dir)
        split = resolve_split(split)
        self.skipped: list[str] = []  # messages of the samples this process skipped
        self.pairs = list_pairs(root, split, on_error, self.skipped)
        self.reduce_zero_label = reduce_zero_label
        if not reduce_zero_label:
            self.info = DatasetInfo("ade20k_raw", ("other", *ADE20K_CLASSES), ignore_index=IGNORE_INDEX)
        self._init_samples(root, split, transform, on_error)
