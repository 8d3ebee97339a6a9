"""SegmentationModel: timm backbone -> FPN neck -> Semantic FPN head."""

from __future__ import annotations

import inspect
from typing import Any, Literal

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from torch import nn

from segfpn.errors import ConfigError
from segfpn.models.attention import AttentionOption
from segfpn.models.backbone import TimmBackbone
from segfpn.models.fpn import FPN, UpsampleMode
from segfpn.models.head import NormName, SemanticFPNHead


class SegmentationModel(nn.Module):
    """Semantic FPN on a timm backbone.

    ``model(x)`` returns a dict:
        ``"p0"``: main logits ``[B, num_classes, H, W]`` at the input's own ``H, W``;
        ``"p1"``..``"p4"`` (only with ``aux_classifiers=True``): auxiliary logits of FPN level 1..4
        (strides 4, 8, 16, 32), upsampled to ``H, W`` as well.
    Inputs of any size work. ``pad=True`` (default) pads them at the bottom/right to a multiple of the
    backbone's stride (32) and crops the logits back; ``pad=False`` feeds the image as it is, as
    mmsegmentation's whole inference does, padding only what the backbone needs (a non-overlapping patch
    embedding pads to its patch size, like mmseg's ``PatchEmbed(padding="corner")``), and resizes the logits
    straight to the input size.

    These are the model's architecture options, defined here only: ``SegmentationModule`` passes its extra
    keyword arguments on to this class, and the CLI shows them as flat ``--model.<name>`` options with the help
    lines below.

    Args:
        num_classes: number of output classes (the CLI takes it from the data).
        backbone_name: timm model name of the backbone, e.g. ``convnext_tiny``, ``pvt_v2_b0``,
            ``swin_tiny_patch4_window7_224``, ``resnet18`` (any timm model with 4 feature levels).
        pretrained: load timm's pretrained backbone weights (downloads them unless cached).
        pretrained_path: a local backbone checkpoint (.pth/.safetensors) to load instead of timm's weights.
        img_size: input size the backbone is built for (Swin-style models only; other sizes still work).
        frozen_stages: -1 trains everything; 0 freezes the stem; k freezes the stem and stages 1..k.
        drop_path_rate: stochastic depth rate of the backbone.
        fpn_channels: channels of every FPN level.
        lateral_connections: 1x1 lateral convolutions from the backbone (False: the FPN sees only the top level).
        top_down: add the upsampled coarser level to each finer one (False: levels stay independent).
        upsample_mode: how the top-down path upsamples: ``nearest``, ``bilinear`` or ``transposed`` (learned).
        attention: attention block after each FPN level: ``se`` (squeeze-excitation), ``cbam`` or null/``none``.
        head_channels: channels of the Semantic FPN head's per-level branches.
        norm: normalisation in the head: ``bn`` (BatchNorm) or ``gn`` (GroupNorm).
        dropout: dropout before the classifier.
        fusion: how the head merges its levels: ``sum`` (Semantic FPN) or ``attention`` (learned per-pixel
            weights).
        aux_classifiers: add a classifier on each FPN level (outputs ``p1``..``p4``, trained with
            ``aux_loss_weight``).
    """

    channels_last = False  # a class default: whole models pickled before use_channels_last load too

    def __init__(
        self,
        num_classes: int,
        backbone_name: str = "convnext_tiny",
        pretrained: bool = False,
        pretrained_path: str | None = None,
        img_size: int = 512,
        frozen_stages: int = -1,
        drop_path_rate: float = 0.0,
        fpn_channels: int = 256,
        lateral_connections: bool = True,
        top_down: bool = True,
        upsample_mode: UpsampleMode = "nearest",
        attention: AttentionOption | None = None,
        head_channels: int = 128,
        norm: NormName = "bn",
        dropout: float = 0.1,
        fusion: Literal["sum", "attention"] = "sum",
        aux_classifiers: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.backbone = TimmBackbone(
            backbone_name,
            pretrained=pretrained,
            pretrained_path=pretrained_path,
            img_size=img_size,
            frozen_stages=frozen_stages,
            drop_path_rate=drop_path_rate,
        )
        self.neck = FPN(
            self.backbone.channels,
            fpn_channels,
            lateral_connections=lateral_connections,
            top_down=top_down,
            upsample_mode=upsample_mode,
            attention=attention,
        )
        self.head = SemanticFPNHead(
            fpn_channels,
            num_classes,
            strides=self.backbone.strides,
            channels=head_channels,
            norm=norm,
            dropout=dropout,
            fusion=fusion,
            aux_classifiers=aux_classifiers,
        )

    @property
    def size_divisor(self) -> int:
        return self.backbone.size_divisor

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"SegmentationModel expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ConfigError(
                f"SegmentationModel expects RGB images shaped [B, 3, H, W]; got {list(x.shape)}"
                + (" (add a batch dimension with x.unsqueeze(0))" if x.dim() == 3 else "")
            )
        if not x.is_floating_point():
            raise TypeError(f"SegmentationModel expects a floating-point image tensor, got {x.dtype}")

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """The size an ``h x w`` input is padded to (bottom/right) before the backbone: multiples of its stride."""
        d = self.size_divisor
        return h + _padding(h, d), w + _padding(w, d)

    @property
    def patch_divisor(self) -> int:
        """What an unpadded input is padded to: the patch size of a non-overlapping timm ``PatchEmbed``
        (Swin), which would otherwise drop the last rows/columns; 1 for backbones that take any size."""
        embed = getattr(getattr(self.backbone.body, "model", None), "patch_embed", None)
        if isinstance(embed, PatchEmbed) and not embed.dynamic_img_pad:
            return max(embed.patch_size)
        return 1

    def _pad(self, x: torch.Tensor, pad: bool = True) -> torch.Tensor:
        h, w = x.shape[-2:]
        d = self.size_divisor if pad else self.patch_divisor
        pad_h, pad_w = _padding(h, d), _padding(w, d)
        # a traced graph (export) pads always: a zero pad at the trace size is a real pad at others
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w or torch.jit.is_tracing() else x

    def use_channels_last(self, enabled: bool = True) -> SegmentationModel:
        """Keep the weights, and take every input, in the channels-last memory format (cuDNN's fast layout)."""
        self.channels_last = enabled
        return self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)

    def extract_backbone_features(self, x: torch.Tensor, pad: bool = True) -> list[torch.Tensor]:
        """The backbone's four NCHW maps (strides 4/8/16/32 of the input, padded to a multiple of 32 with
        ``pad=True``)."""
        self._check_input(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(self._pad(x, pad))

    def extract_fpn_features(self, x: torch.Tensor, pad: bool = True) -> list[torch.Tensor]:
        """The FPN outputs, finest first, NCHW."""
        return self.neck(self.extract_backbone_features(x, pad))

    def forward(self, x: torch.Tensor, pad: bool = True) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        pyramid = self.extract_fpn_features(x, pad)
        out = {"p0": self._to_input_size(self.head(pyramid), h, w, pad)}
        for level, logits in enumerate(self.head.forward_aux(pyramid), start=1):
            out[f"p{level}"] = self._to_input_size(logits, h, w, pad)
        return out

    def _to_input_size(self, logits: torch.Tensor, h: int, w: int, pad: bool) -> torch.Tensor:
        # padded: upsample to the padded size and crop (pixels keep their stride-32 grid); unpadded: resize
        # straight to the input size, as mmseg's decode head and postprocess_result do
        ph, pw = self.padded_size(h, w) if pad else (h, w)
        # NCHW full-resolution logits, also for a channels_last model: cross-entropy and the metric read channels-last
        # logits slowly on the CPU, and the copy here is of the 4x smaller logits (figures: benchmarks/results/
        # code_comment_figures.md)
        logits = logits.contiguous()
        logits = F.interpolate(logits, size=(ph, pw), mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


# SegmentationModel's arguments, read once: those that load weights, and those that define the network (the rest:
# a checkpoint's architecture wins over a command's, a cost table compares them)
_SIGNATURE = inspect.signature(SegmentationModel)
WEIGHT_OPTIONS = ("pretrained", "pretrained_path")
ARCHITECTURE_OPTIONS = tuple(name for name in _SIGNATURE.parameters if name not in WEIGHT_OPTIONS)


def model_arguments(values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` (hyper-parameters, a config's model section) that are SegmentationModel's."""
    return {k: v for k, v in values.items() if k in _SIGNATURE.parameters}


def architecture_options(num_classes: int, options: dict[str, Any]) -> dict[str, Any]:
    """Every argument of ``SegmentationModel(num_classes, **options)`` with the defaults filled in."""
    bound = _SIGNATURE.bind(num_classes, **options)
    bound.apply_defaults()
    return dict(bound.arguments)


def _padding(size: int, divisor: int) -> int:
    """What pads ``size`` up to a multiple of ``divisor``; written so that an ONNX trace keeps it a function of the
    size (``-(-size // divisor) * divisor`` became a constant there)."""
    return (divisor - size % divisor) % divisor
