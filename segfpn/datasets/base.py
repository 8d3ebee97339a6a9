"""SegmentationDataset: image/annotation pairs of any layout, checked and mapped to train ids by a DatasetInfo.

A dataset file (``ade20k.py``, ...) owns its layout (how pairs are found) and its :class:`DatasetInfo`; this module
owns what every dataset does the same way: reading, checking, mapping labels, skipping corrupt samples.
"""

from __future__ import annotations

import logging
import multiprocessing
import random
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from segfpn.datasets.info import DatasetInfo
from segfpn.datasets.listing import list_files
from segfpn.datasets.transforms import val_transform
from segfpn.errors import ConfigError, DataError, UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
OnError = Literal["raise", "skip"]
T = TypeVar("T")


EXIF_ORIENTATION = 0x0112


def seed_transform(transform: Callable | None, seed: int) -> None:
    """Seed an albumentations pipeline, which keeps its own random state (neither torch's nor numpy's seed
    reaches it). One numpy and one Python generator shared by all its transforms: ``set_random_seed`` would give
    each transform its own generator with the same seed, and so the same draws (a flip decided by the same number
    as the scale ratio)."""
    if hasattr(transform, "set_random_state"):
        transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


def check_on_error(on_error: str) -> None:
    """A named error for an ``on_error`` other than ``raise`` / ``skip``."""
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


class CorruptSampleError(UserError, RuntimeError):
    """An image or annotation that cannot be used; the message names the file and the problem."""


def rgb8(img: Image.Image, path: Path | str) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` pixels of an opened image. 16-bit grayscale is scaled to 8 bits (PIL's ``convert``
    would clip it at 255: a white image); a float image or an integer one beyond 16 bits is refused, naming it."""
    if img.mode.startswith("I;16") or img.mode == "I":
        values = np.asarray(img).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise CorruptSampleError(
                f"image {str(path)!r}: 32-bit integer pixels in [{values.min()}, {values.max()}]; expected 8 or "
                "16 bits per channel"
            )
        gray = ((values * 255 + 32767) // 65535).astype(np.uint8)  # 0 -> 0, 65535 -> 255, rounded
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "F":
        raise CorruptSampleError(f"image {str(path)!r}: floating-point pixels (mode F); expected 8 or 16 bits")
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def load_image(path: Path) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` with the EXIF orientation applied (grayscale/RGBA/CMYK converted, 16-bit scaled)."""
    try:
        with Image.open(path) as img:
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            return rgb8(img, path)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise CorruptSampleError(f"cannot read image {str(path)!r}: {err}") from err


def exif_orientation(path: Path) -> int:
    """The EXIF orientation tag of an image file (1, upright as stored, when it has none)."""
    with Image.open(path) as img:
        return int(img.getexif().get(EXIF_ORIENTATION, 1))


def load_annotation(path: Path, max_value: int = 255) -> np.ndarray:
    """uint8 ``[H, W]`` stored annotation values of a single-channel PNG, checked to be ``<= max_value``."""
    try:
        with Image.open(path) as ann:
            ann.load()
            if ann.mode not in ("L", "P", "I", "I;16", "1"):
                raise CorruptSampleError(
                    f"annotation {str(path)!r} must be single-channel (mode L or P), found mode {ann.mode} "
                    f"with {len(ann.getbands())} channels"
                )
            values = np.asarray(ann)  # mode 1 (bilevel): ids 0 and 1
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise CorruptSampleError(f"cannot read annotation {str(path)!r}: {err}") from err
    if values.size and int(values.max()) > max_value:
        raise CorruptSampleError(f"annotation {str(path)!r} holds value {int(values.max())}; expected 0..{max_value}")
    return values.astype(np.uint8)


def match_pairs(
    image_dir: Path,
    annotation_dir: Path,
    description: str,
    on_error: OnError = "raise",
    skipped: list[str] | None = None,
    image_suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
    annotation_suffixes: tuple[str, ...] = (".png",),
    image_key: Callable[[str], str | None] = str,
    annotation_key: Callable[[str], str | None] = str,
) -> list[tuple[Path, Path]]:
    """(image, annotation) paths, sorted, matched by their path relative to each folder without extension
    (subfolders included, as mmseg), after ``image_key``/``annotation_key`` (e.g. strip ``_leftImg8bit``; a key
    function returning ``None`` leaves the file out, e.g. Cityscapes' ``*_color.png`` beside its annotations).

    Raises naming the folder, the unpaired files or the duplicated names (``description`` names the dataset and
    split in messages). Dangling or looping symlinks and empty files raise, or with ``on_error="skip"`` are left
    out and their messages appended to ``skipped``.
    """
    images = list_files(image_dir, image_suffixes)
    annotations = list_files(annotation_dir, annotation_suffixes)
    image_files = _keyed(images.files, image_key)
    annotation_files = _keyed(annotations.files, annotation_key)
    problems = _keyed(annotations.broken, annotation_key)
    problems.update(_keyed(images.broken, image_key))
    for key, path in sorted({**annotation_files, **image_files}.items()):
        if path.stat().st_size == 0:
            problems.setdefault(key, f"empty file {str(path)!r}")
    if problems and on_error == "raise":
        messages = sorted(problems.values())
        raise CorruptSampleError(f"{len(messages)} unusable files in {description}: {'; '.join(messages[:3])}")
    if skipped is not None:
        skipped.extend(problems[k] for k in sorted(problems))
    for key in problems:  # skip the whole pair
        image_files.pop(key, None)
        annotation_files.pop(key, None)
    if not image_files:
        raise DataError(f"no images ({', '.join('*' + s for s in image_suffixes)}) in {str(image_dir)!r}")
    without_ann = sorted(set(image_files) - set(annotation_files))
    without_img = sorted(set(annotation_files) - set(image_files))
    if without_ann or without_img:
        raise DataError(
            f"unpaired files in {description}: {len(without_ann)} images without annotation "
            f"{without_ann[:5]}, {len(without_img)} annotations without image {without_img[:5]}"
        )
    return [(image_files[k], annotation_files[k]) for k in sorted(image_files)]


def _keyed(entries: dict[str, T], key: Callable[[str], str | None]) -> dict[str, T]:
    return {k: v for k, v in ((key(name), value) for name, value in entries.items()) if k is not None}


def require_folder(path: Path, what: str | None, layout: str) -> None:
    """A named error when ``path`` is missing or is a file; ``what`` names a root folder (``None``: a subfolder),
    ``layout`` says what is expected."""
    if not path.exists():
        if what is None:
            raise DataError(f"missing folder {str(path)!r}; expected the layout {layout}")
        raise DataError(f"{what} {str(path)!r} does not exist; expected the layout {layout}")
    if not path.is_dir():
        raise DataError(
            f"{what or 'folder'} {str(path)!r} is not a folder (found a file); expected the layout {layout}"
        )


class SegmentationDataset(Dataset):
    """Image/annotation pairs mapped to train ids by :attr:`info`.

    Returns ``(image, mask)``: float32 ``[3, H, W]`` normalised RGB and int64 ``[H, W]`` train ids
    (``info.ignore_index`` = ignore). ``transform`` is an albumentations pipeline called as
    ``transform(image=..., mask=...)``; ``None`` gives the validation transform (normalise only).
    ``on_error="raise"`` stops at a corrupt sample; ``"skip"`` replaces it by the next good one, counts it, and
    warns (see :meth:`report_skipped`). Subclasses set ``info`` and ``pairs``, then call ``_init_samples``.
    """

    info: DatasetInfo
    pairs: list[tuple[Path, Path]]
    max_stored_value: int = 255  # the largest value an annotation file may hold

    def _init_samples(self, root: Path, split: str, transform: Callable | None, on_error: OnError) -> None:
        check_on_error(on_error)
        self.root, self.split, self.on_error = root, split, on_error
        self.skipped: list[str] = getattr(self, "skipped", [])
        self.transform = transform if transform is not None else val_transform(self.info.mean, self.info.std)
        # shared with forked DataLoader workers, so the main process can report their skips too
        self._skip_count = multiprocessing.Value("i", len(self.skipped))

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return self.info.palette

    def __len__(self) -> int:
        return len(self.pairs)

    def read_annotation(self, path: Path) -> np.ndarray:
        """The stored annotation values of ``path`` (uint8), checked; override for colour-coded masks."""
        ann = load_annotation(path, self.max_stored_value)
        if self.info.label_map is None:
            bad = (ann >= self.info.num_classes) & (ann != self.info.ignore_index)
            if bad.any():
                raise CorruptSampleError(
                    f"annotation {str(path)!r} holds value {int(ann[bad].max())}; expected train ids "
                    f"0..{self.info.num_classes - 1} or {self.info.ignore_index} (ignore)"
                )
        return ann

    def load_labels(self, index: int) -> np.ndarray:
        """Train ids (uint8 ``[H, W]``) of sample ``index``'s annotation alone (no image read): class statistics."""
        return self.info.map_labels(self.read_annotation(self.pairs[index][1]))

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw RGB uint8 image and train-id mask of sample ``index``, checked for consistency."""
        img_path, ann_path = self.pairs[index]
        image, ann = load_image(img_path), self.read_annotation(ann_path)
        if image.shape[:2] != ann.shape:
            size = f"{image.shape[1]}x{image.shape[0]}"
            orientation = exif_orientation(img_path)
            if orientation in (5, 6, 7, 8) and image.shape[:2] == ann.shape[::-1]:
                raise CorruptSampleError(
                    f"image {str(img_path)!r} has EXIF orientation {orientation} (shown turned by 90 degrees): "
                    f"upright it is {size} (WxH), but its annotation {str(ann_path)!r} is {ann.shape[1]}x"
                    f"{ann.shape[0]}, the stored pixels' size. Annotations pair with the upright image (as in "
                    "mmseg): turn the annotation upright, or save the image without its orientation tag"
                )
            raise CorruptSampleError(
                f"image {str(img_path)!r} is {size} (WxH) but its annotation {str(ann_path)!r} is "
                f"{ann.shape[1]}x{ann.shape[0]}"
            )
        return image, self.info.map_labels(ann)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``index``; ``(index, seed)`` (what :class:`~segfpn.datasets.stream.TrainStream` yields) first
        seeds the augmentation with ``seed``."""
        if isinstance(index, tuple):
            index, seed = index
            seed_transform(self.transform, seed)
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
        # cast by numpy: torch's uint8 -> int64 cast is far slower on the CPU
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
