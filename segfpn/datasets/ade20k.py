"""ADE20K scene parsing (ADEChallengeData2016) as a torch Dataset."""

from __future__ import annotations

import logging
import multiprocessing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from segfpn.datasets.ade20k_classes import ADE20K_CLASSES, ADE20K_PALETTE
from segfpn.datasets.listing import list_files
from segfpn.errors import ConfigError, DataError, UserError

log = logging.getLogger(__name__)

IGNORE_INDEX = 255
NUM_CLASSES = 150
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
SPLIT_ALIASES = {"train": "training", "training": "training", "val": "validation", "validation": "validation"}
LAYOUT = "ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_*.{jpg,png}"


class CorruptSampleError(UserError, RuntimeError):
    """An image or annotation that cannot be used; the message names the file and the problem."""


def resolve_split(split: str) -> str:
    """The official split folder name for ``split`` (accepts ``train``/``val`` aliases)."""
    if split not in SPLIT_ALIASES:
        raise ConfigError(f"split must be one of {sorted(SPLIT_ALIASES)}, got {split!r}")
    return SPLIT_ALIASES[split]


def list_pairs(
    root: Path, split: str, on_error: Literal["raise", "skip"] = "raise", skipped: list[str] | None = None
) -> list[tuple[Path, Path]]:
    """(image, annotation) paths of a split, sorted; pairs are matched by their path relative to
    ``images/<split>`` and ``annotations/<split>`` without extension, subfolders included (as mmseg).

    Raises naming the folder, the unpaired files or the duplicated names. Dangling or looping symlinks and
    empty files raise, or with ``on_error="skip"`` are left out and their messages appended to ``skipped``.
    """
    split = resolve_split(split)
    if not root.exists():
        raise DataError(f"ADE20K root {str(root)!r} does not exist; expected the layout {LAYOUT}")
    if not root.is_dir():
        raise DataError(f"ADE20K root {str(root)!r} is not a folder (found a file); expected the layout {LAYOUT}")
    img_dir, ann_dir = root / "images" / split, root / "annotations" / split
    for folder in (img_dir, ann_dir):
        if not folder.is_dir():
            raise DataError(f"missing folder {str(folder)!r}; expected the layout {LAYOUT}")
    images, annotations = list_files(img_dir, (".jpg", ".jpeg", ".png")), list_files(ann_dir, (".png",))
    problems = {**annotations.broken, **images.broken}
    for key, path in sorted({**annotations.files, **images.files}.items()):
        if path.stat().st_size == 0:
            problems.setdefault(key, f"empty file {str(path)!r}")
    if problems and on_error == "raise":
        messages = sorted(problems.values())
        raise CorruptSampleError(
            f"{len(messages)} unusable files in {str(root)!r} ({split}): {'; '.join(messages[:3])}"
        )
    if skipped is not None:
        skipped.extend(problems[k] for k in sorted(problems))
    for key in problems:  # skip the whole pair
        images.files.pop(key, None)
        annotations.files.pop(key, None)
    if not images.files:
        raise DataError(f"no images (*.jpg, *.png) in {str(img_dir)!r}")
    without_ann = sorted(set(images.files) - set(annotations.files))
    without_img = sorted(set(annotations.files) - set(images.files))
    if without_ann or without_img:
        raise DataError(
            f"unpaired files in {str(root)!r} ({split}): {len(without_ann)} images without annotation "
            f"{without_ann[:5]}, {len(without_img)} annotations without image {without_img[:5]}"
        )
    return [(images.files[k], annotations.files[k]) for k in sorted(images.files)]


def load_image(path: Path) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` with the EXIF orientation applied (grayscale/RGBA/CMYK converted)."""
    try:
        with Image.open(path) as img:
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise CorruptSampleError(f"cannot read image {str(path)!r}: {err}") from err


def load_raw_image(path: Path) -> np.ndarray:
    """RGB uint8 pixels as stored (EXIF orientation ignored)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def load_annotation(path: Path, max_value: int = NUM_CLASSES) -> np.ndarray:
    """uint8 ``[H, W]`` ADE20K annotation values (0 = other, 1..150 = classes); checked."""
    try:
        with Image.open(path) as ann:
            ann.load()
            if ann.mode not in ("L", "P", "I", "I;16"):
                raise CorruptSampleError(
                    f"annotation {str(path)!r} must be single-channel (mode L or P), found mode {ann.mode} "
                    f"with {len(ann.getbands())} channels"
                )
            values = np.asarray(ann)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise CorruptSampleError(f"cannot read annotation {str(path)!r}: {err}") from err
    if values.size and int(values.max()) > max_value:
        raise CorruptSampleError(f"annotation {str(path)!r} holds value {int(values.max())}; expected 0..{max_value}")
    return values.astype(np.uint8)


def reduce_zero_label(ann: np.ndarray) -> np.ndarray:
    """ADE20K values to train ids (uint8): 0 -> 255 (ignore), k -> k-1."""
    return (ann.astype(np.int16) - 1).astype(np.uint8)  # 0 - 1 wraps to 255


class ADE20KDataset(Dataset):
    """ADE20K image/mask pairs in the official layout.

    Returns ``(image, mask)``: float32 ``[3, H, W]`` normalised RGB and int64 ``[H, W]`` train ids
    (0..149, 255 = ignore). ``transform`` is an albumentations pipeline called as
    ``transform(image=..., mask=...)``; ``None`` gives the validation transform (normalise only).

    Args:
        root_dir: the ``ADEChallengeData2016`` folder.
        split: ``training``/``validation`` (or ``train``/``val``).
        on_error: ``"raise"`` stops at a corrupt sample; ``"skip"`` replaces it by the next good one,
            counts it, and warns (see :meth:`report_skipped`).
    """

    classes = ADE20K_CLASSES
    palette = ADE20K_PALETTE

    def __init__(
        self,
        root_dir: str | Path,
        split: str = "training",
        transform: Callable | None = None,
        reduce_zero_label: bool = True,
        on_error: Literal["raise", "skip"] = "raise",
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.root = Path(root_dir)
        self.split = resolve_split(split)
        self.skipped: list[str] = []  # messages of the samples this process skipped
        self.pairs = list_pairs(self.root, self.split, on_error, self.skipped)
        self.reduce_zero_label = reduce_zero_label
        self.on_error = on_error
        if transform is None:
            from segfpn.datasets.transforms import val_transform

            transform = val_transform()
        self.transform = transform
        # shared with forked DataLoader workers, so the main process can report their skips too
        self._skip_count = multiprocessing.Value("i", len(self.skipped))

    def __len__(self) -> int:
        return len(self.pairs)

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw RGB uint8 image and train-id mask of sample ``index``, checked for consistency."""
        img_path, ann_path = self.pairs[index]
        image, ann = load_image(img_path), load_annotation(ann_path)
        if image.shape[:2] != ann.shape:
            raw = load_raw_image(img_path)
            if raw.shape[:2] != ann.shape:
                raise CorruptSampleError(
                    f"image {str(img_path)!r} is {image.shape[1]}x{image.shape[0]} (WxH) but its annotation "
                    f"{str(ann_path)!r} is {ann.shape[1]}x{ann.shape[0]}"
                )
            image = raw  # annotated on the stored pixels: ignore the EXIF orientation
        mask = reduce_zero_label(ann) if self.reduce_zero_label else ann
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            try:
                image, mask = self.load_pair(i)
                break
            except CorruptSampleError as err:
                if self.on_error == "raise":
                    raise
                self.skipped.append(str(err))
                if self._skip_count is not None:
                    with self._skip_count.get_lock():
                        self._skip_count.value += 1
                log.warning("skipping sample %d: %s", i, err)
        else:
            raise CorruptSampleError(f"every sample of {str(self.root)!r} ({self.split}) is unusable")
        out = self.transform(image=image, mask=mask)
        # numpy's uint8 -> int64 cast is ~100x faster than torch's on the CPU (8 ms for an ADE20K mask)
        return out["image"], torch.from_numpy(np.asarray(out["mask"]).astype(np.int64))

    @property
    def skipped_count(self) -> int:
        """Samples skipped so far by this process and its DataLoader workers."""
        return self._skip_count.value if self._skip_count is not None else len(self.skipped)

    def report_skipped(self) -> int:
        """Warn with the number of samples skipped so far (0: silent) and return it."""
        count = self.skipped_count
        if count:
            example = f", e.g. {self.skipped[0]}" if self.skipped else " (see the worker warnings)"
            warnings.warn(f"{count} corrupt samples skipped in {self.root} ({self.split}){example}", stacklevel=2)
        return count

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_skip_count"] = None  # a spawned worker cannot share it: it counts in its own `skipped`
        return state
