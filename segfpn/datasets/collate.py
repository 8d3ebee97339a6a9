"""Batching of images of different sizes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segfpn.constants import IGNORE_INDEX


def pad_to(x: torch.Tensor, h: int, w: int, value: float) -> torch.Tensor:
    """Pad the last two dims of ``x`` at the bottom/right to ``h, w``."""
    return F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]), value=value)


def pad_collate(
    batch: list[tuple[torch.Tensor, torch.Tensor]], ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (image, mask) pairs, padding images with 0 and masks with ``ignore_index`` to the largest size
    (a DataModule passes its dataset's: ``functools.partial(pad_collate, ignore_index=info.ignore_index)``)."""
    h = max(img.shape[-2] for img, _ in batch)
    w = max(img.shape[-1] for img, _ in batch)
    images = torch.stack([pad_to(img, h, w, 0.0) for img, _ in batch])
    masks = torch.stack([pad_to(mask, h, w, ignore_index) for _, mask in batch])
    return images, masks
