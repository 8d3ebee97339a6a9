"""Evaluation-time prediction: whole image, sliding window, multi-scale + flip (mmsegmentation's modes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from segfpn.datasets.transforms import fit_size
from segfpn.errors import ConfigError


@dataclass
class InferenceConfig:
    """How evaluation images are predicted.

    Args:
        mode: ``whole`` (one forward pass) or ``slide`` (``crop_size`` windows every ``stride`` pixels).
        test_scale: resize each image, keeping its ratio, to fit (long, short) edges before predicting;
            ``None`` predicts at the original size. Logits always return to the original size.
        scales: multipliers of the test scale for multi-scale testing (``[1.0]``: single scale).
        flip: also predict the horizontally flipped image and average.
    """

    mode: Literal["whole", "slide"] = "whole"
    test_scale: tuple[int, int] | None = (2048, 512)
    crop_size: tuple[int, int] = (512, 512)
    stride: tuple[int, int] = (341, 341)
    scales: Sequence[float] = field(default_factory=lambda: [1.0])
    flip: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("whole", "slide"):
            raise ConfigError(f"inference mode must be 'whole' or 'slide', got {self.mode!r}")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ConfigError(f"inference scales must be positive, got {list(self.scales)}")
        if any(s <= 0 for s in self.stride) or any(c <= 0 for c in self.crop_size):
            raise ConfigError(f"crop_size and stride must be positive, got {self.crop_size}, {self.stride}")


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)["p0"]


def slide_logits(
    model: nn.Module, x: torch.Tensor, crop: tuple[int, int], stride: tuple[int, int], num_classes: int
) -> torch.Tensor:
    """Average the logits of overlapping ``crop`` windows placed every ``stride`` pixels."""
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
            out[:, :, y1:y2, x1:x2] += _logits(model, x[:, :, y1:y2, x1:x2])
            count[:, :, y1:y2, x1:x2] += 1
    return out / count


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, config: InferenceConfig | None = None, num_classes: int | None = None
) -> torch.Tensor:
    """Logits ``[B, C, H, W]`` at the images' own size, following ``config``."""
    config = config or InferenceConfig()
    h, w = images.shape[-2:]
    base = fit_size(h, w, config.test_scale) if config.test_scale else (h, w)
    total = None
    for scale in config.scales:
        size = (max(int(base[0] * scale + 0.5), 1), max(int(base[1] * scale + 0.5), 1))
        x = images if size == (h, w) else F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        for flip in [False, True] if config.flip else [False]:
            xi = x.flip(-1) if flip else x
            if config.mode == "slide":
                logits = slide_logits(model, xi, config.crop_size, config.stride, num_classes or model.num_classes)
            else:
                logits = _logits(model, xi)
            logits = logits.flip(-1) if flip else logits
            if logits.shape[-2:] != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            total = logits if total is None else total + logits
    return total / (len(config.scales) * (2 if config.flip else 1))
