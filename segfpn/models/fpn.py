"""Feature Pyramid Network neck (Lin et al., 2017) as used by Semantic FPN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from segfpn.errors import ConfigError
from segfpn.models.attention import build_attention

UpsampleMode = Literal["nearest", "bilinear", "transposed"]


class FPN(nn.Module):
    """1x1 lateral convs, a top-down pathway, 3x3 output convs; returns one map per level, finest first.

    Ablation switches:
        lateral_connections: when False, only the coarsest level enters through its lateral conv and
            each finer level is the upsampled coarser one (no skip from the backbone).
        top_down: when False, each level is its own lateral (no information from coarser levels).
        upsample_mode: ``nearest`` (paper), ``bilinear``, or ``transposed`` (a learned 2x
            transposed conv per level).
        attention: per-level block applied to each output (``None``, ``"se"``, ``"cbam"``).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int = 256,
        lateral_connections: bool = True,
        top_down: bool = True,
        upsample_mode: UpsampleMode = "nearest",
        attention: str | None = None,
    ) -> None:
        super().__init__()
        if upsample_mode not in ("nearest", "bilinear", "transposed"):
            raise ConfigError(f"upsample_mode must be 'nearest', 'bilinear' or 'transposed', got {upsample_mode!r}")
        if not lateral_connections and not top_down:
            raise ConfigError("lateral_connections=False needs top_down=True: finer levels would have no input")
        if out_channels < 1:
            raise ConfigError(f"out_channels must be positive, got {out_channels}")
        self.lateral_connections = lateral_connections
        self.top_down = top_down
        self.upsample_mode = upsample_mode
        n = len(in_channels)
        self.lateral_convs = nn.ModuleList(
            nn.Conv2d(c, out_channels, 1) if (lateral_connections or i == n - 1) else nn.Identity()
            for i, c in enumerate(in_channels)
        )
        self.upsamplers = (
            nn.ModuleList(nn.ConvTranspose2d(out_channels, out_channels, 2, stride=2) for _ in range(n - 1))
            if upsample_mode == "transposed"
            else None
        )
        self.output_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.attention = nn.ModuleList(build_attention(attention, out_channels) for _ in in_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m not in set(self.attention.modules()):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def _upsample(self, x: torch.Tensor, level: int, size: torch.Size) -> torch.Tensor:
        if self.upsamplers is not None:
            x = self.upsamplers[level](x)
            same = x.shape[-2:] == size and not torch.jit.is_tracing()  # traced: resize always (see the head)
            return x if same else F.interpolate(x, size=size, mode="nearest")
        if self.upsample_mode == "bilinear":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return F.interpolate(x, size=size, mode="nearest")

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        n = len(self.lateral_convs)
        if len(features) != n:
            raise ConfigError(f"FPN expects {n} feature maps, got {len(features)}")
        top = self.lateral_convs[-1](features[-1])
        merged = [top]
        for i in range(n - 2, -1, -1):
            if not self.top_down:
                merged.insert(0, self.lateral_convs[i](features[i]))
                continue
            up = self._upsample(merged[0], i, features[i].shape[-2:])
            merged.insert(0, up + self.lateral_convs[i](features[i]) if self.lateral_connections else up)
        return [att(conv(m)) for att, conv, m in zip(self.attention, self.output_convs, merged)]
