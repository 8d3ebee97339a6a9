"""Semantic FPN head (Kirillov et al., 2019), as mmsegmentation's FPNHead."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from segfpn.errors import ConfigError

NormName = Literal["bn", "gn"]


def _norm(name: NormName, channels: int) -> nn.Module:
    if name == "bn":
        return nn.BatchNorm2d(channels)
    if name == "gn":
        return nn.GroupNorm(32 if channels % 32 == 0 else 1, channels)
    raise ConfigError(f"norm must be 'bn' or 'gn', got {name!r}")


class ConvNormReLU(nn.Sequential):
    """3x3 conv (no bias) -> norm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: NormName) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class LevelFusion(nn.Module):
    """Attention-weighted sum of levels: a 1x1 conv predicts one softmax weight map per level."""

    def __init__(self, channels: int, num_levels: int) -> None:
        super().__init__()
        self.score = nn.Conv2d(channels * num_levels, num_levels, 1)
        self.last_map: torch.Tensor | None = None

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        weights = torch.softmax(self.score(torch.cat(levels, 1)), dim=1)
        self.last_map = weights.detach()
        return sum(w.unsqueeze(1) * x for w, x in zip(weights.unbind(1), levels))


class SemanticFPNHead(nn.Module):
    """Per level: ``log2(stride/4)`` conv-norm-ReLU blocks (at least one), each followed by 2x bilinear
    upsampling while above stride 4; levels are fused at stride 4, then dropout and a 1x1 classifier.

    Args:
        fusion: ``"sum"`` (paper) or ``"attention"`` (learned per-pixel softmax weights over levels).
        aux_classifiers: add a 1x1 classifier on every FPN level for deep supervision.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        strides: Sequence[int] = (4, 8, 16, 32),
        channels: int = 128,
        norm: NormName = "bn",
        dropout: float = 0.1,
        fusion: Literal["sum", "attention"] = "sum",
        aux_classifiers: bool = False,
    ) -> None:
        super().__init__()
        if fusion not in ("sum", "attention"):
            raise ConfigError(f"fusion must be 'sum' or 'attention', got {fusion!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        base = min(strides)
        self.scale_heads = nn.ModuleList()
        for stride in strides:
            blocks = max(1, int(math.log2(stride / base)))
            layers: list[nn.Module] = []
            for k in range(blocks):
                layers.append(ConvNormReLU(in_channels if k == 0 else channels, channels, norm))
                if stride != base:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))
        self.fusion = LevelFusion(channels, len(strides)) if fusion == "attention" else None
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.aux = nn.ModuleList(nn.Conv2d(in_channels, num_classes, 1) for _ in strides) if aux_classifiers else None
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for cls in [self.classifier, *(self.aux or [])]:
            nn.init.normal_(cls.weight, std=0.01)
            nn.init.zeros_(cls.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        levels = []
        for head, feat in zip(self.scale_heads, features):
            out = head(feat)
            # a traced graph (export) resizes always: the trace-time sizes may match where others do not
            if out.shape[-2:] != size or torch.jit.is_tracing():
                out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)  # same size: identity
            levels.append(out)
        fused = self.fusion(levels) if self.fusion is not None else sum(levels[1:], levels[0])
        return self.classifier(self.dropout(fused))

    def forward_aux(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-level auxiliary logits at each level's own resolution (empty without aux classifiers)."""
        return [cls(f) for cls, f in zip(self.aux, features)] if self.aux is not None else []
