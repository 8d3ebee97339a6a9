"""Cityscapes (gtFine): its layout, the 19 evaluated classes and the labelIds -> trainIds mapping."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from segfpn.constants import IGNORE_INDEX
from segfpn.datasets.base import OnError, SegmentationDataset, check_on_error, match_pairs, require_folder
from segfpn.datasets.info import DatasetInfo
from segfpn.errors import ConfigError

SPLITS = ("train", "val", "test")
LAYOUT = "cityscapes/{leftImg8bit,gtFine}/{train,val,test}/<city>/<name>_{leftImg8bit,gtFine_labelIds}.png"
IMAGE_SUFFIX, ANNOTATION_SUFFIX = "_leftImg8bit", "_gtFine_labelIds"

# mmseg's CityscapesDataset names and colours, in train-id order
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
    (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip
# labelId -> trainId of the evaluated classes (cityscapesScripts' helpers/labels.py); every other id is ignored
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
             27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip

CITYSCAPES_INFO = DatasetInfo(
    name="cityscapes",
    classes=CITYSCAPES_CLASSES,
    palette=CITYSCAPES_PALETTE,
    ignore_index=IGNORE_INDEX,
    label_map=tuple(TRAIN_IDS.get(v, IGNORE_INDEX) for v in range(256)),
)


def list_pairs(
    root: Path, split: str, on_error: OnError = "raise", skipped: list[str] | None = None
) -> list[tuple[Path, Path]]:
    """(image, labelIds annotation) paths of a split, sorted, matched by city and frame name."""
    if split not in SPLITS:
        raise ConfigError(f"Cityscapes split must be one of {list(SPLITS)}, got {split!r}")
    require_folder(root, "Cityscapes root", LAYOUT)
    img_dir, ann_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    for folder in (img_dir, ann_dir):
        require_folder(folder, None, LAYOUT)
    return match_pairs(
        img_dir,
        ann_dir,
        f"{str(root)!r} ({split})",
        on_error,
        skipped,
        image_suffixes=(".png",),
        annotation_suffixes=(".png",),
        image_key=lambda k: k.removesuffix(IMAGE_SUFFIX),
        # gtFine also holds *_color.png, *_instanceIds.png, *_labelTrainIds.png: only labelIds are annotations
        annotation_key=lambda k: k.removesuffix(ANNOTATION_SUFFIX) if k.endswith(ANNOTATION_SUFFIX) else None,
    )


class CityscapesDataset(SegmentationDataset):
    """Cityscapes fine annotations: ``*_gtFine_labelIds.png`` mapped to the 19 train ids, 255 = ignore.

    Args:
        root_dir: the folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val`` or ``test``.
        transform: albumentations pipeline (default: the validation transform).
        on_error: ``"raise"`` or ``"skip"`` a corrupt sample (see :class:`SegmentationDataset`).
    """

    info = CITYSCAPES_INFO

    def __init__(
        self,
        root_dir: str | Path,
        split: str = "train",
        transform: Callable | None = None,
        on_error: OnError = "raise",
    ) -> None:
        check_on_error(on_error)
        root = Path(root_dir)
        self.skipped: list[str] = []
        self.pairs = list_pairs(root, split, on_error, self.skipped)
        self._init_samples(root, split, transform, on_error)
