"""Evaluation-time prediction: whole image, sliding window, multi-scale + flip, under a named protocol.

A protocol says how a test image reaches the model, so that a segfpn number is comparable with the code behind a
published one:

- ``mmseg``: mmsegmentation's ``EncoderDecoder`` (1.x ``whole_inference``/``slide_inference``, 0.x alike): the
  resized image goes in unpadded (the backbone pads only what it needs, see ``SegmentationModel(pad=False)``).
- ``align_resize``: the PVT authors' test pipeline (whai362/PVT and PVTv2-Seg, ``AlignResize``): after the
  keep-ratio resize the image is stretched (resized, not padded) to the next multiple of ``size_divisor`` in each
  dimension; the logits are resized back to the annotation.
- ``pad``: pad to a multiple of 32 and crop the logits back (checkpoints trained before the reference protocols
  evaluate so). Matches no published code.

In every protocol the test-time resize works on the 8-bit pixels with cv2 as mmcv does (the normalised image is
mapped back to 0..255, resized, normalised again), the logits of each scale/flip are resized bilinearly to the
input (= annotation) size, and multi-scale/flip testing averages their softmax as mmseg's ``SegTTAModel`` (1.x)
and ``aug_test`` (0.x) do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segfpn.constants import IMAGENET_MEAN, IMAGENET_STD
from segfpn.datasets.transforms import Stats, align_size, eval_size, from_pixels, resize_image, to_pixels
from segfpn.errors import ConfigError

Protocol = Literal["mmseg", "align_resize", "pad"]
PROTOCOLS: tuple[str, ...] = ("mmseg", "align_resize", "pad")


@dataclass
class InferenceConfig:
    """How evaluation images are predicted.

    Args:
        protocol: ``mmseg``, ``align_resize`` or ``pad`` (see the module docstring).
        mode: ``whole`` (one forward pass) or ``slide`` (``crop_size`` windows every ``stride`` pixels).
        test_scale: resize each image, keeping its ratio, to fit (long, short) edges before predicting;
            ``None`` predicts at the original size. Logits always return to the original size.
        crop_size: ``slide`` mode: (height, width) of each window.
        stride: ``slide`` mode: (vertical, horizontal) step between windows.
        scales: ratios for multi-scale testing (``[1.0]``: single scale): of ``test_scale`` when it is set (mmseg
            0.x ``img_ratios``, the published multi-scale numbers), else of the image's own size (mmseg 1.x TTA).
        flip: also predict the horizontally flipped image; with several predictions their softmax is averaged
            and the result is its log (argmax and cross-entropy stay meaningful).
        size_divisor: the multiple ``align_resize`` stretches to.
    """

    protocol: Protocol = "mmseg"
    mode: Literal["whole", "slide"] = "whole"
    test_scale: tuple[int, int] | None = (2048, 512)
    crop_size: tuple[int, int] = (512, 512)
    stride: tuple[int, int] = (341, 341)
    scales: Sequence[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    size_divisor: int = 32

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"inference protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.mode not in ("whole", "slide"):
            raise ConfigError(f"inference mode must be 'whole' or 'slide', got {self.mode!r}")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ConfigError(f"inference scales must be positive, got {list(self.scales)}")
        if any(s <= 0 for s in self.stride) or any(c <= 0 for c in self.crop_size):
            raise ConfigError(f"crop_size and stride must be positive, got {self.crop_size}, {self.stride}")
        if self.size_divisor < 1:
            raise ConfigError(f"inference size_divisor must be positive, got {self.size_divisor}")
        if self.test_scale is not None and (len(self.test_scale) != 2 or min(self.test_scale) < 1):
            raise ConfigError(
                f"model.inference.test_scale must be (long side, short side) in pixels, both positive, or null; "
                f"got {list(self.test_scale)}"
            )


def inference_config(values: InferenceConfig | dict | None) -> InferenceConfig:
    """An :class:`InferenceConfig` from a checkpoint's ``inference`` hyper-parameter (a dict, or absent)."""
    if values is None:
        return InferenceConfig()
    if isinstance(values, InferenceConfig):
        return values
    fields = {k: tuple(v) if isinstance(v, list) and k != "scales" else v for k, v in values.items()}
    return InferenceConfig(**fields)


def _logits(model: nn.Module, x: torch.Tensor, pad: bool) -> torch.Tensor:
    return model(x, pad=pad)["p0"]


def slide_logits(
    model: nn.Module,
    x: torch.Tensor,
    crop: tuple[int, int],
    stride: tuple[int, int],
    num_classes: int,
    pad: bool = False,
) -> torch.Tensor:
    """Average the logits of overlapping ``crop`` windows placed every ``stride`` pixels (the last row/column of
    windows ends at the image border; windows larger than the image are cut to it), as mmseg's slide inference."""
    b, _, h, w = x.shape
    ch, cw = crop
    sh, sw = stride
    rows = max(h - ch + sh - 1, 0) // sh + 1
    cols = max(w - cw + sw - 1, 0) // sw + 1
    out = x.new_zeros(b, num_classes, h, w)
    count = x.new_zeros(1, 1, h, w)
    for r in range(rows):
        for c in range(cols):
            y1, x1 = min(r * sh, max(h - ch, 0)), min(c * sw, max(w - cw, 0))
            y2, x2 = min(y1 + ch, h), min(x1 + cw, w)
            out[:, :, y1:y2, x1:x2] += _logits(model, x[:, :, y1:y2, x1:x2], pad)
            count[:, :, y1:y2, x1:x2] += 1
    return out / count


def eval_input(
    images: torch.Tensor,
    config: InferenceConfig,
    ratio: float = 1.0,
    mean: Stats = IMAGENET_MEAN,
    std: Stats = IMAGENET_STD,
) -> torch.Tensor:
    """What the model sees of ``images`` (normalised, ``[B, 3, H, W]`` at the annotation size) at scale ``ratio``:
    resized on the 8-bit pixels to :func:`~segfpn.datasets.transforms.eval_size` (then, for ``align_resize``,
    stretched to multiples of ``size_divisor``: a second 8-bit resize, as the PVT code chains two mmcv calls).
    ``mean``/``std``: the normalisation the images went through (the dataset's)."""
    h, w = images.shape[-2:]
    sizes = [eval_size(h, w, config.test_scale, ratio)]
    if config.protocol == "align_resize":
        sizes.append(align_size(*sizes[0], config.size_divisor))
    if all(size == (h, w) for size in sizes):
        return images
    resized = []
    for img in to_pixels(images, mean, std):
        for size in sizes:
            img = resize_image(img, size)
        resized.append(img)
    return from_pixels(np.stack(resized), images, mean, std)


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    config: InferenceConfig | None = None,
    num_classes: int | None = None,
    mean: Stats = IMAGENET_MEAN,
    std: Stats = IMAGENET_STD,
) -> torch.Tensor:
    """Logits ``[B, C, H, W]`` at the images' own size, following ``config`` (log of the averaged softmax when
    several scales or flips are combined). ``model(x, pad=...)`` must return ``{"p0": logits at x's size}``.
    ``mean``/``std`` (0..255 scale) are the normalisation ``images`` went through: the dataset's."""
    config = config or InferenceConfig()
    h, w = images.shape[-2:]
    pad = config.protocol == "pad"
    total, count = None, 0
    for ratio in config.scales:
        x = eval_input(images, config, ratio, mean, std)
        for flip in [False, True] if config.flip else [False]:
            xi = x.flip(-1) if flip else x
            if config.mode == "slide":
                classes = num_classes or model.num_classes
                logits = slide_logits(model, xi, config.crop_size, config.stride, classes, pad)
            else:
                logits = _logits(model, xi, pad)
            logits = logits.flip(-1) if flip else logits
            if logits.shape[-2:] != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            if len(config.scales) == 1 and not config.flip:
                return logits
            probs = logits.float().softmax(1)
            total = probs if total is None else total + probs
            count += 1
    return (total / count).log()
