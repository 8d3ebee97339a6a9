"""Cost of the mIoU update per 512x512 image, against the forward pass of a validation step and against
torchmetrics' ``segmentation.MeanIoU``."""

from __future__ import annotations

import torch
from torchmetrics.segmentation import MeanIoU

from benchmarks.common import interleaved
from segfpn.metrics import SegmentationMetrics
from segfpn.models import SegmentationModel


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    size = 256 if quick else 512
    torch.manual_seed(0)
    model = SegmentationModel(num_classes=150, backbone_name="pvt_v2_b0").to(device).eval()
    x = torch.randn(1, 3, size, size, device=device)
    with torch.no_grad():
        logits = model(x)["p0"]
    target = torch.randint(0, 150, (1, size, size), device=device)
    target[:, :8] = 255
    labels = logits.argmax(1)
    ours, peer = SegmentationMetrics(150).to(device), MeanIoU(num_classes=150, input_format="index").to(device)
    clean_target = target.clamp(max=149)  # MeanIoU has no ignore index and rejects 255

    def forward() -> None:
        with torch.no_grad():
            model(x)

    times = interleaved(
        {
            "forward pass (pvt_v2_b0)": forward,
            "segfpn update from logits (argmax + confusion matrix)": lambda: ours.update(logits, target),
            "segfpn update from labels": lambda: ours.update(labels, target),
            "torchmetrics MeanIoU update from labels": lambda: peer.update(labels, clean_target),
        },
        rounds=7 if not quick else 5,
        device=device,
    )
    step = times["forward pass (pvt_v2_b0)"] + times["segfpn update from logits (argmax + confusion matrix)"]
    return [{"what": k, "ms": 1e3 * v, "share_of_validation_step_%": 100 * v / step} for k, v in times.items()]
