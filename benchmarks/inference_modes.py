"""Evaluation modes: whole image vs sliding window vs multi-scale + flip, images/s on an ADE20K-sized image."""

from __future__ import annotations

import torch

from benchmarks.common import interleaved
from segfpn.inference.protocols import InferenceConfig, predict_logits
from segfpn.models import SegmentationModel


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    h, w = (256, 341) if quick else (512, 683)
    torch.manual_seed(0)
    model = SegmentationModel(num_classes=150, backbone_name="pvt_v2_b0").to(device).eval()
    x = torch.randn(1, 3, h, w, device=device)
    stride = h * 2 // 3
    modes = {
        "whole": InferenceConfig(mode="whole", test_scale=None),
        f"slide (crop {h}, stride {stride})": InferenceConfig(
            mode="slide", test_scale=None, crop_size=(h, h), stride=(stride, stride)
        ),
        "multi-scale x3 + flip": InferenceConfig(mode="whole", test_scale=None, scales=[0.75, 1.0, 1.25], flip=True),
    }
    times = interleaved(
        {k: (lambda c=c: predict_logits(model, x, c)) for k, c in modes.items()},
        rounds=2 if quick else 3,
        device=device,
    )
    whole = times["whole"]
    return [{"mode": k, "images_per_s": 1 / v, "time_vs_whole": v / whole} for k, v in times.items()]
