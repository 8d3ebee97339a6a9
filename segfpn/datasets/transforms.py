"""albumentations pipelines: the Semantic FPN training recipe (mmseg's) and the evaluation transform."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from segfpn.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from segfpn.errors import DataError


class RandomRescale(A.DualTransform):
    """mmsegmentation's ``RandomResize(scale, ratio_range, keep_ratio=True)``: draw r in ``ratio_range``,
    truncate the target to integers ``(int(r*scale[0]), int(r*scale[1]))`` as mmcv does, and rescale (keeping
    the aspect ratio, mmcv's ``rescale_size`` rounding) to the largest size fitting it as (long edge, short
    edge). Images use cv2 bilinear, masks nearest neighbour, as mmcv's ``imrescale``."""

    def __init__(
        self, scale: tuple[int, int] = (2048, 512), ratio_range: tuple[float, float] = (0.5, 2.0), p: float = 1.0
    ) -> None:
        super().__init__(p=p)
        self.scale = tuple(scale)
        self.ratio_range = tuple(ratio_range)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        ratio = self.py_random.uniform(*self.ratio_range)
        return {"size": fit_size(h, w, (int(self.scale[0] * ratio), int(self.scale[1] * ratio)))}

    def apply(self, img: np.ndarray, size: tuple[int, int] = (0, 0), **params: Any) -> np.ndarray:
        return cv2.resize(img, size[::-1], interpolation=cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, size: tuple[int, int] = (0, 0), **params: Any) -> np.ndarray:
        return cv2.resize(mask, size[::-1], interpolation=cv2.INTER_NEAREST)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale", "ratio_range")


class CatMaxRatioCrop(A.DualTransform):
    """mmsegmentation's ``RandomCrop(crop_size, cat_max_ratio)``: up to 10 tries for a crop in which no
    single class covers more than ``cat_max_ratio`` of the labelled pixels. Smaller images keep their size
    on that side (pad afterwards)."""

    def __init__(
        self,
        height: int,
        width: int,
        cat_max_ratio: float = 0.75,
        ignore_index: int = IGNORE_INDEX,
        max_tries: int = 10,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.height, self.width = height, width
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index
        self.max_tries = max_tries

    def _random_box(self, h: int, w: int) -> tuple[int, int, int, int]:
        y0 = self.py_random.randint(0, max(h - self.height, 0))
        x0 = self.py_random.randint(0, max(w - self.width, 0))
        return y0, min(y0 + self.height, h), x0, min(x0 + self.width, w)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        box = self._random_box(h, w)
        mask = data.get("mask")
        if mask is not None and self.cat_max_ratio < 1.0:
            for _ in range(self.max_tries):
                y0, y1, x0, x1 = box
                counts = np.bincount(mask[y0:y1, x0:x1].ravel(), minlength=256)
                counts = counts[np.arange(len(counts)) != self.ignore_index]
                counts = counts[counts > 0]
                if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                    break
                box = self._random_box(h, w)
        return {"box": box}

    def apply(self, img: np.ndarray, box: tuple[int, int, int, int] = (0, 0, 0, 0), **params: Any) -> np.ndarray:
        y0, y1, x0, x1 = box
        return np.ascontiguousarray(img[y0:y1, x0:x1])

    def apply_to_mask(
        self, mask: np.ndarray, box: tuple[int, int, int, int] = (0, 0, 0, 0), **params: Any
    ) -> np.ndarray:
        return self.apply(mask, box)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("height", "width", "cat_max_ratio", "ignore_index", "max_tries")


class PhotoMetricDistortion(A.ImageOnlyTransform):
    """mmsegmentation's ``PhotoMetricDistortion``, bit for bit given the same draws: each with probability 0.5,
    brightness + U(-32, 32), contrast x U(0.5, 1.5) (first or last, chosen with probability 0.5), saturation
    x U(0.5, 1.5) and hue + randint[-18, 17] (of 180), each of the last two in its own uint8 HSV round trip.
    Every step clips to 0..255 and truncates to uint8."""

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta

    def get_params(self) -> dict[str, Any]:
        r = self.py_random
        return {
            "brightness": r.uniform(-self.brightness_delta, self.brightness_delta) if r.random() < 0.5 else None,
            "contrast_first": r.random() < 0.5,
            "contrast": r.uniform(*self.contrast_range) if r.random() < 0.5 else None,
            "saturation": r.uniform(*self.saturation_range) if r.random() < 0.5 else None,
            # mmseg draws np.random.randint(-delta, delta): the upper bound is excluded
            "hue": r.randint(-self.hue_delta, self.hue_delta - 1) if r.random() < 0.5 else None,
        }

    def apply(
        self,
        img: np.ndarray,
        brightness: float | None = None,
        contrast_first: bool = True,
        contrast: float | None = None,
        saturation: float | None = None,
        hue: int | None = None,
        **params: Any,
    ) -> np.ndarray:
        # Each step maps uint8 values to uint8 values, so it runs as a 256-entry lookup table (cv2.LUT):
        # the same numbers as float arithmetic with clipping and truncation after every step, at a lookup's cost.
        before = _affine_lut(brightness, None)
        if contrast_first:
            before = _affine_lut(contrast, before, multiply=True)
        if before is not None:
            img = cv2.LUT(img, before)
        if saturation is not None:
            img = _hsv_channel_lut(img, 1, _affine_lut(saturation, None, multiply=True))
        if hue is not None:
            img = _hsv_channel_lut(img, 0, ((np.arange(256) + hue) % 180).astype(np.uint8))
        after = None if contrast_first else _affine_lut(contrast, None, multiply=True)
        return img if after is None else cv2.LUT(img, after)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness_delta", "contrast_range", "saturation_range", "hue_delta")


def _hsv_channel_lut(img: np.ndarray, channel: int, table: np.ndarray) -> np.ndarray:
    """RGB uint8 -> HSV, ``table`` applied to one HSV channel, -> RGB (one uint8 round trip, as mmseg)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    hsv[..., channel] = cv2.LUT(hsv[..., channel], table)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _affine_lut(value: float | None, table: np.ndarray | None, multiply: bool = False) -> np.ndarray | None:
    """``table`` (identity when None) followed by ``clip(x * value)`` or ``clip(x + value)``, truncated to uint8."""
    if value is None:
        return table
    x = (np.arange(256) if table is None else table).astype(np.float32)
    return np.clip(x * value if multiply else x + value, 0, 255).astype(np.uint8)


def fit_size(h: int, w: int, scale: tuple[float, float]) -> tuple[int, int]:
    """(h, w) rescaled, keeping the ratio, to fit ``scale`` = (long edge max, short edge max)."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    size = int(h * factor + 0.5), int(w * factor + 0.5)
    if min(size) < 1:
        raise DataError(
            f"an image of {w}x{h} (WxH) resized to fit {tuple(scale)} keeping its ratio would be {size[1]}x{size[0]}: "
            "too elongated for this scale; expected both sides to keep at least one pixel (crop it, or predict it "
            "at its own size with test_scale=null)"
        )
    return size


def eval_size(h: int, w: int, test_scale: tuple[int, int] | None, ratio: float = 1.0) -> tuple[int, int]:
    """The size an ``h x w`` image is resized to at test time, keeping its ratio, as mmcv rounds it.

    With ``test_scale`` (long, short): the image fits ``(int(long * ratio), int(short * ratio))``, mmseg's
    ``Resize(scale=test_scale, keep_ratio=True)`` at ratio 1 and its 0.x ``MultiScaleFlipAug(img_scale, img_ratios)``
    otherwise. Without: ``ratio`` times the image's own size, mmseg 1.x's TTA ``Resize(scale_factor=ratio,
    keep_ratio=True)``, whose size mmcv rounds twice (``_scale_size``, then ``rescale_size`` to fit it).
    """
    if test_scale is None:
        return fit_size(h, w, (int(w * ratio + 0.5), int(h * ratio + 0.5)))
    return fit_size(h, w, (int(test_scale[0] * ratio), int(test_scale[1] * ratio)))


def align_size(h: int, w: int, divisor: int = 32) -> tuple[int, int]:
    """(h, w) rounded up to multiples of ``divisor``: the PVT authors' ``AlignResize`` stretches the resized image
    to this size (``ceil(h / divisor) * divisor``)."""
    return -(-h // divisor) * divisor, -(-w // divisor) * divisor


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``img`` (HWC, uint8) resized to ``size`` = (h, w) with cv2's bilinear filter: mmcv's ``imresize``."""
    if img.shape[:2] == tuple(size):
        return img
    return cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def normalize(mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> A.Normalize:
    """Mean/std normalisation; ``mean``/``std`` on the 0..255 scale."""
    return A.Normalize(mean=[m / 255 for m in mean], std=[s / 255 for s in std], max_pixel_value=255.0)


def train_transform(
    crop_size: int | tuple[int, int] = 512,
    scale: tuple[int, int] = (2048, 512),
    ratio_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    photometric: bool = True,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    ignore_index: int = IGNORE_INDEX,
) -> A.Compose:
    """The Semantic FPN training pipeline (mmseg's); image padded with 0 and mask with ``ignore_index`` to
    ``crop_size``; ``mean``/``std`` on the 0..255 scale."""
    ch, cw = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
    steps: list[A.BasicTransform] = [
        RandomRescale(scale, ratio_range),
        CatMaxRatioCrop(ch, cw, cat_max_ratio, ignore_index),
        A.HorizontalFlip(p=0.5),
    ]
    if photometric:
        steps.append(PhotoMetricDistortion())
    steps += [
        normalize(mean, std),
        A.PadIfNeeded(ch, cw, position="top_left", border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore_index),
        ToTensorV2(),
    ]
    return A.Compose(steps)


class Standardize(A.ImageOnlyTransform):
    """``(img - mean) / std`` in float32, per channel on the 0..255 scale: the arithmetic of mmseg's
    ``SegDataPreProcessor``, to the bit (albumentations' ``Normalize`` multiplies by ``1/std``, up to 1e-6 apart)."""

    def __init__(
        self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD, p: float = 1.0
    ) -> None:
        super().__init__(p=p)
        self.mean, self.std = tuple(mean), tuple(std)
        values = np.arange(256, dtype=np.float32)[:, None]
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        # the same float32 numbers as the arithmetic on every pixel, looked up per channel (256 values, not H*W)
        self.table = ((values - mean) / std).reshape(256, 1, 3)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Standardize expects an RGB uint8 image [H, W, 3], got {img.dtype} {list(img.shape)}")
        return cv2.LUT(img, self.table)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("mean", "std")


def val_transform(mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> A.Compose:
    """Evaluation transform: the image at its own size, normalised. The inference step does the test-time resize
    (on the 8-bit pixels, :func:`eval_size` and :func:`resize_image`, as mmcv does), so masks stay at the
    annotation's resolution and multi-scale testing resizes the original image once per scale."""
    return A.Compose([Standardize(mean, std), ToTensorV2()])


Stats = Sequence[float]


def _stats(images: torch.Tensor, mean: Stats, std: Stats) -> tuple[torch.Tensor, torch.Tensor]:
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return mean_t, std_t


def to_pixels(images: torch.Tensor, mean: Stats = IMAGENET_MEAN, std: Stats = IMAGENET_STD) -> np.ndarray:
    """Normalised images ``[B, 3, H, W]`` back to 8-bit pixels ``[B, H, W, 3]`` (exact for images that came from
    8-bit files through the same ``mean``/``std``, 0..255 scale; padding and other values are rounded and
    clipped)."""
    mean, std = _stats(images, mean, std)
    pixels = (images.float() * std + mean).round_().clamp_(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def from_pixels(
    pixels: np.ndarray, like: torch.Tensor, mean: Stats = IMAGENET_MEAN, std: Stats = IMAGENET_STD
) -> torch.Tensor:
    """8-bit pixels ``[B, H, W, 3]`` to normalised images on ``like``'s device, ``(x - mean) / std`` as mmseg's
    ``SegDataPreProcessor``."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).to(like.device).permute(0, 3, 1, 2).float()
    mean, std = _stats(x, mean, std)
    return ((x - mean) / std).to(like.dtype)
