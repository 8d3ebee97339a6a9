"""Parameter counts, FLOPs, latency and backbone feature statistics of a SegmentationModel."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from segfpn.models import SegmentationModel


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_flops(model: nn.Module, input_size: tuple[int, int], batch_size: int = 1) -> int:
    """FLOPs of one forward pass (a multiply-add counts as 2), measured with torch's FlopCounterMode."""
    device = next(model.parameters()).device
    x = torch.randn(batch_size, 3, *input_size, device=device)
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops()


@torch.no_grad()
def measure_latency(model: nn.Module, input_size: tuple[int, int], repeats: int = 3, warmup: int = 1) -> float:
    """Median seconds of one eval forward pass of a 1x3xHxW input on the model's device."""
    device = next(model.parameters()).device
    x = torch.randn(1, 3, *input_size, device=device)
    model.eval()
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


@dataclass
class ModelSummary:
    """Size and cost of one model at one input size."""

    name: str
    input_size: tuple[int, int]
    params_backbone: int
    params_neck: int
    params_head: int
    params_total: int
    gflops: float  # 2 FLOPs per multiply-add
    gmacs: float  # multiply-adds, the unit most segmentation papers call "GFLOPs"
    latency_s: float | None = None

    def as_row(self) -> dict:
        row = asdict(self)
        row["input_size"] = "x".join(map(str, self.input_size))
        return row


def summarize(
    model: SegmentationModel, input_size: tuple[int, int] = (512, 512), name: str = "", latency: bool = False
) -> ModelSummary:
    """Parameters per part (backbone/neck/head), GFLOPs and optionally latency at ``input_size``."""
    flops = count_flops(model, input_size)
    return ModelSummary(
        name=name or model.backbone.name,
        input_size=tuple(input_size),
        params_backbone=count_parameters(model.backbone),
        params_neck=count_parameters(model.neck),
        params_head=count_parameters(model.head),
        params_total=count_parameters(model),
        gflops=flops / 1e9,
        gmacs=flops / 2e9,
        latency_s=measure_latency(model, input_size) if latency else None,
    )


@torch.no_grad()
def backbone_feature_stats(model: SegmentationModel, x: torch.Tensor) -> list[dict]:
    """Per backbone stage: shape, stride, mean and std of the features for input ``x``."""
    model.eval()
    feats = model.extract_backbone_features(x)
    return [
        {"stage": i + 1, "shape": tuple(f.shape), "stride": s, "mean": f.mean().item(), "std": f.std().item()}
        for i, (f, s) in enumerate(zip(feats, model.backbone.strides))
    ]
