"""Per-level attention blocks that the FPN can apply to each of its outputs."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from segfpn.errors import ConfigError

AttentionName = Literal["se", "cbam"]
# what SegmentationModel(attention=...) accepts besides None
AttentionOption = Literal["se", "cbam", "none"]


class SqueezeExcitation(nn.Module):
    """Channel attention of Hu et al. (2018): global pool -> bottleneck MLP -> sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.fc = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )
        self.last_map: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc(x))
        self.last_map = gate.detach()
        return x * gate


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., 2018): channel then spatial attention."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        self.last_map: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True)))
        x = x * channel
        spatial = torch.sigmoid(self.spatial(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))
        self.last_map = spatial.detach()
        return x * spatial


_BLOCKS: dict[str, type[nn.Module]] = {"se": SqueezeExcitation, "cbam": CBAM}


def build_attention(name: str | None, channels: int) -> nn.Module:
    """The attention block called ``name`` for ``channels`` channels (``None``: identity)."""
    if name is None or name == "none":
        return nn.Identity()
    if name not in _BLOCKS:
        raise ConfigError(f"attention={name!r} is not known; expected one of {sorted(_BLOCKS)} or None")
    return _BLOCKS[name](channels)
