"""Swin as the segmentation references compute it: ``mmseg_<timm swin name>`` backbones.

mmseg's ``SwinTransformer`` and the Swin authors' segmentation code pad each block's map to whole windows *before*
the cyclic shift, build the shift mask for the padded map, and put a LayerNorm on each of the four outputs. timm's
Swin shifts first and pads after, and returns the stage outputs unnormalised; the two agree only where every stage's
map is a multiple of the window. Every published Swin segmentation number comes from the reference's network.

Built from timm's model, modules and weights: the blocks' window attention is replaced by the pad-then-shift one
(:class:`PadThenShiftBlock`), and the model gets the output norms (:class:`ReferenceSwin`).
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock, window_partition, window_reverse
from torch import nn

PREFIX = "mmseg_"  # mmseg_swin_tiny_patch4_window7_224 = timm's swin_tiny_patch4_window7_224, computed as mmseg's


def is_reference_swin(name: str) -> bool:
    """Whether ``name`` asks for the reference computation of a timm Swin (``mmseg_swin_*``)."""
    return name.startswith(PREFIX + "swin_")


class PadThenShiftBlock(SwinTransformerBlock):
    """timm's Swin block with the reference's window attention: pad to whole windows, then shift, with the shift
    mask of the padded map (mmseg's ``ShiftWindowMSA``); the padded positions take part as zeros, as there."""

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, c = x.shape
        wh, ww = self.window_size
        x = F.pad(x, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))
        _, hp, wp, _ = x.shape
        shifted = any(self.shift_size)
        if shifted:
            x = torch.roll(x, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2))
        windows = window_partition(x, self.window_size).view(-1, self.window_area, c)
        windows = self.attn(windows, mask=self._shift_mask(x) if shifted else None)
        x = window_reverse(windows.view(-1, wh, ww, c), self.window_size, hp, wp)
        if shifted:
            x = torch.roll(x, shifts=self.shift_size, dims=(1, 2))
        return x[:, :h, :w, :].contiguous()

    def _shift_mask(self, padded: torch.Tensor) -> torch.Tensor:
        """timm's shift mask for the padded map's size, kept for the last size seen (one per image size); built
        afresh while traced, so that an exported graph computes it from the input's size."""
        if torch.jit.is_tracing():
            return self.get_attn_mask(padded)
        key = (padded.shape[1], padded.shape[2], padded.device, padded.dtype)
        cached = self.__dict__.get("_mask_cache")
        if cached is None or cached[0] != key:
            cached = (key, self.get_attn_mask(padded))
            self.__dict__["_mask_cache"] = cached
        return cached[1]


class ReferenceSwin(SwinTransformer):
    """timm's SwinTransformer with a LayerNorm on each stage output (mmseg's ``norm0..3``)."""

    out_norms: nn.ModuleList

    def forward_intermediates(  # type: ignore[override]
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> Any:
        n = len(self.layers)
        take = range(n) if indices is None else range(n - indices, n) if isinstance(indices, int) else indices
        take = [i % n for i in take]
        out = super().forward_intermediates(x, indices, False, stop_early, output_fmt, intermediates_only)
        final, features = (None, out) if intermediates_only else out
        normed = [self.out_norms[i](f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) for i, f in zip(take, features)]
        return normed if intermediates_only else (final, normed)

    def stage_of(self, name: str) -> int | None:
        """The stage (1 = the first) that mmseg's ``_freeze_stages`` freezes parameter ``name`` with, where it
        differs from timm's layer order: output norm k with stage k + 1, and stage k's patch merging (timm's
        ``layers.k.downsample``, at the start of the next layer) with stage k. ``None`` for the others."""
        norm = re.match(r"out_norms\.(\d+)\.", name)
        if norm:
            return int(norm.group(1)) + 1
        merging = re.match(r"layers\.(\d+)\.downsample\.", name)
        return int(merging.group(1)) if merging else None


def to_reference(model: SwinTransformer) -> ReferenceSwin:
    """Turn a timm SwinTransformer (built with ``always_partition=True``, so every block keeps its window and shift
    at any map size, as the reference's do) into the reference network, in place; its weights are kept and the
    output norms start as LayerNorm's defaults (the reference initialises them so too)."""
    if type(model) is not SwinTransformer:
        raise TypeError(f"expected timm's SwinTransformer, got {type(model).__name__}")
    for module in model.modules():
        if type(module) is SwinTransformerBlock:
            module.__class__ = PadThenShiftBlock
    model.__class__ = ReferenceSwin
    norm = type(model.layers[0].blocks[0].norm1)
    model.out_norms = nn.ModuleList(norm(int(info["num_chs"])) for info in model.feature_info)
    return model  # type: ignore[return-value]


def is_mmseg_layout(state: dict[str, torch.Tensor]) -> bool:
    """Whether a backbone state dict has mmseg/mmpretrain's Swin key names (``stages.i.blocks.j.attn.w_msa.*``)."""
    return any(re.match(r"stages\.\d+\.blocks\.\d+\.attn\.w_msa\.", key) for key in state)


def _unfold_to_timm(weight: torch.Tensor) -> torch.Tensor:
    """A PatchMerging tensor over its 4C inputs from mmseg's order (``nn.Unfold``: c * 4 + dh * 2 + dw) to
    timm's (the original Swin's x0..x3 concatenation: (dw * 2 + dh) * C + c)."""
    c4 = weight.shape[-1]
    by_input = weight.reshape(*weight.shape[:-1], c4 // 4, 2, 2)  # [..., c, dh, dw]
    return by_input.permute(*range(weight.dim() - 1), -1, -2, -3).reshape(weight.shape)  # [..., dw, dh, c]


_RENAMES = (
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.", r"layers.\1.blocks.\2.attn."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.0\.0\.", r"layers.\1.blocks.\2.mlp.fc1."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.1\.", r"layers.\1.blocks.\2.mlp.fc2."),
    (r"^stages\.(\d+)\.blocks\.", r"layers.\1.blocks."),
    (r"^norm(\d+)\.", r"out_norms.\1."),
)


def mmseg_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmseg/mmpretrain Swin backbone keys (``backbone.`` already removed) -> :class:`ReferenceSwin`'s. mmseg
    puts stage i's PatchMerging at the end of stage i, timm at the start of stage i + 1."""
    out = {}
    for key, value in state.items():
        merging = re.match(r"^stages\.(\d+)\.downsample\.(norm|reduction)\.(weight|bias)$", key)
        if merging:
            stage, part, kind = merging.groups()
            out[f"layers.{int(stage) + 1}.downsample.{part}.{kind}"] = _unfold_to_timm(value)
            continue
        for pattern, replacement in _RENAMES:
            key = re.sub(pattern, replacement, key)
        if not key.endswith("relative_position_index"):  # a buffer timm computes itself
            out[key] = value
    return out
