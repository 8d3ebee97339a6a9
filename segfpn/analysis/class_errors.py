"""Error analysis of a trained checkpoint: confusions, per-class IoU, small vs large objects, boundaries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from segfpn.constants import IGNORE_INDEX
from segfpn.metrics import BoundaryIoU, SegmentationMetrics, per_class_rows, to_labels

SIZE_BINS = {"small (<1%)": (0.0, 0.01), "medium (1-10%)": (0.01, 0.10), "large (>10%)": (0.10, 1.01)}


@dataclass
class SizeBins:
    """Pixel recall of ground-truth segments (one class in one image) binned by their share of the image."""

    correct: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIZE_BINS, 0))
    total: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIZE_BINS, 0))
    segments: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIZE_BINS, 0))
    ignore_index: int = IGNORE_INDEX

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        for p, t in zip(pred, target):
            valid = t != self.ignore_index
            labelled = int(valid.sum())
            if not labelled:
                continue
            classes, counts = torch.unique(t[valid], return_counts=True)
            hits = torch.bincount(t[valid & (p == t)], minlength=int(classes.max()) + 1)
            for c, n in zip(classes.tolist(), counts.tolist()):
                share = n / labelled
                name = next(k for k, (lo, hi) in SIZE_BINS.items() if lo <= share < hi)
                self.correct[name] += int(hits[c])
                self.total[name] += n
                self.segments[name] += 1

    def recall(self) -> dict[str, float | None]:
        return {k: (self.correct[k] / self.total[k] if self.total[k] else None) for k in SIZE_BINS}


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    num_classes: int,
    predict,
    device: str = "cpu",
    ignore_index: int = IGNORE_INDEX,
) -> dict:
    """Run ``predict(model, images) -> logits`` over ``loader``; confusion matrix, Boundary IoU, size bins
    (pixels labelled ``ignore_index``, the dataset's, left out)."""
    metrics = SegmentationMetrics(num_classes, ignore_index)
    boundary = BoundaryIoU(num_classes, ignore_index=ignore_index)
    sizes = SizeBins(ignore_index=ignore_index)
    for images, masks in tqdm(loader, desc="error analysis"):
        logits = predict(model, images.to(device)).cpu()
        labels = to_labels(logits)
        metrics.update(labels, masks)
        boundary.update(labels, masks)
        sizes.update(labels, masks)
    scores = metrics.compute()
    return {
        "scores": scores,
        "boundary_iou": float(boundary.compute()),
        "size_recall": sizes.recall(),
        "size_segments": sizes.segments,
    }


def worst_classes(iou: torch.Tensor, class_names: list[str], k: int = 10) -> list[tuple[str, float]]:
    """The ``k`` evaluated classes with the lowest IoU."""
    values = iou.numpy()
    order = [i for i in np.argsort(values) if not np.isnan(values[i])][:k]
    return [(class_names[i], float(values[i])) for i in order]


def write_error_analysis(
    result: dict, out: Path, class_names: list[str], top_k: int = 10, dataset_name: str = ""
) -> dict[str, Path]:
    """Figures (confusion matrix, per-class IoU), ``error_analysis.json`` and ``error_analysis.md`` in ``out``,
    naming the dataset's classes (``class_names``) and, when given, the dataset."""
    from segfpn.utils.visualize import plot_confusion_matrix, top_confusions

    out.mkdir(parents=True, exist_ok=True)
    scores = result["scores"]
    confmat = scores["confmat"].numpy()
    files = {
        "confusion_matrix": out / "confusion_matrix.png",
        "per_class_iou": out / "per_class_iou.png",
        "json": out / "error_analysis.json",
        "markdown": out / "error_analysis.md",
    }
    import matplotlib.pyplot as plt

    plt.close(plot_confusion_matrix(confmat, class_names, top_k=30, save_path=files["confusion_matrix"]))
    from segfpn.analysis.report import per_class_figure

    scored = int(scores["IoU"].isfinite().sum())
    title = f"Per-class IoU{f' on {dataset_name}' if dataset_name else ''} ({scored} classes scored)"
    figure = per_class_figure(scores["IoU"].numpy(), tuple(class_names), title)
    figure.savefig(files["per_class_iou"], dpi=110, bbox_inches="tight")
    plt.close(figure)
    confusions = top_confusions(confmat, class_names, top_k)
    worst = worst_classes(scores["IoU"], class_names, top_k)
    per_class = per_class_rows(scores, class_names)
    summary = {
        "dataset": dataset_name or None,
        "mIoU": float(scores["mIoU"]),
        "aAcc": float(scores["aAcc"]),
        "mAcc": float(scores["mAcc"]),
        "boundary_iou": result["boundary_iou"],
        "size_recall": result["size_recall"],
        "size_segments": result["size_segments"],
        "top_confusions": confusions,
        "worst_classes": worst,
        "per_class": per_class,
    }
    files["json"].write_text(json.dumps(summary, indent=2))
    lines = [
        f"# Error analysis{f' on {dataset_name}' if dataset_name else ''}",
        "",
        f"mIoU {summary['mIoU']:.4f} · aAcc {summary['aAcc']:.4f} · mAcc {summary['mAcc']:.4f} · "
        f"Boundary IoU {summary['boundary_iou']:.4f}",
        "",
        "## Small vs large objects (pixel recall of ground-truth segments by share of the image)",
        "",
        "| size | segments | recall |",
        "|---|---|---|",
        *[
            f"| {k} | {summary['size_segments'][k]} | {'-' if v is None else f'{v:.4f}'} |"
            for k, v in summary["size_recall"].items()
        ],
        "",
        "## Most confused pairs (fraction of the ground-truth class)",
        "",
        "| ground truth | predicted as | fraction |",
        "|---|---|---|",
        *[f"| {g} | {p} | {r:.3f} |" for g, p, r in confusions],
        "",
        "## Worst classes",
        "",
        "| class | IoU |",
        "|---|---|",
        *[f"| {c} | {v:.4f} |" for c, v in worst],
        "",
        "## Per-class IoU and accuracy",
        "",
        "| id | class | IoU | Acc |",
        "|---|---|---|---|",
        *[f"| {r['id']} | {r['class']} | {_cell(r['IoU'])} | {_cell(r['Acc'])} |" for r in per_class],
        "",
        f"![confusion matrix]({files['confusion_matrix'].name})",
        "",
        f"![per-class IoU]({files['per_class_iou'].name})",
    ]
    files["markdown"].write_text("\n".join(lines) + "\n")
    return files


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
