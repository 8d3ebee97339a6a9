"""The cost of computing Swin as mmseg does (``mmseg_swin_*``: pad before the shift, the padded map's mask, output
norms) against timm's own Swin, side by side in one run: Semantic FPN forward (eval) and train step (forward,
backward, AdamW) at a window-aligned size and at ADE20K test sizes where the stage maps are not whole windows."""

from __future__ import annotations

import torch

from benchmarks.common import interleaved
from segfpn.models import SegmentationModel

BACKBONES = {"timm": "swin_tiny_patch4_window7_224", "reference": "mmseg_swin_tiny_patch4_window7_224"}


def _steps(backbone: str, size: tuple[int, int], batch: int, device: str):
    torch.manual_seed(0)
    model = SegmentationModel(num_classes=150, backbone_name=backbone, img_size=512).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, *size, device=device)
    target = torch.randint(0, 150, (batch, *size), device=device)

    def forward() -> None:
        model.eval()
        with torch.no_grad():
            model(x, pad=False)

    def train_step() -> None:
        model.train()
        loss = torch.nn.functional.cross_entropy(model(x)["p0"], target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return forward, train_step


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    sizes = [(224, 224), (512, 683)] if quick else [(224, 224), (512, 512), (512, 683)]
    rounds = 3 if quick else 5
    rows = []
    for size in sizes:
        fns = {}
        for label, backbone in BACKBONES.items():
            forward, train_step = _steps(backbone, size, 1 if size[0] > 224 else 2, device)
            fns[f"{label} forward"], fns[f"{label} train"] = forward, train_step
        times = interleaved(fns, rounds, device)
        for what in ("forward", "train"):
            timm_s, reference_s = times[f"timm {what}"], times[f"reference {what}"]
            rows.append(
                {
                    "size": f"{size[0]}x{size[1]}",
                    "what": what,
                    "timm swin (s)": round(timm_s, 4),
                    "mmseg_swin (s)": round(reference_s, 4),
                    "mmseg_swin / timm": round(reference_s / timm_s, 3),
                }
            )
    return rows
