"""Dataset-level segmentation metrics (mmsegmentation definitions) as torchmetrics.

mIoU accumulates a confusion matrix over the whole evaluation set, ignores the dataset's ignore index, and averages
IoU over the classes whose union is non-zero (absent from both prediction and ground truth: left out;
predicted but absent from ground truth: IoU 0). aAcc = correct / labelled pixels; mAcc = mean over
classes present in the ground truth of their recall.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import rank_zero_warn

from segfpn.constants import IGNORE_INDEX


def to_labels(logits_or_labels: torch.Tensor, size: torch.Size | None = None) -> torch.Tensor:
    """``[B, H, W]`` class ids from logits ``[B, C, H, W]`` (resized to ``size`` first) or from labels."""
    if logits_or_labels.dim() == 4:
        if size is not None and logits_or_labels.shape[-2:] != size:
            logits_or_labels = F.interpolate(logits_or_labels.float(), size=size, mode="bilinear", align_corners=False)
        # same first-maximum indices as argmax(1), and faster on NCHW logits of many classes on the CPU
        return logits_or_labels.max(1).indices
    if logits_or_labels.dim() == 3:
        return logits_or_labels.long()
    raise ValueError(f"expected logits [B, C, H, W] or labels [B, H, W], got shape {list(logits_or_labels.shape)}")


def confusion_matrix(
    preds: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """``[C, C]`` counts, rows = ground truth, columns = prediction; ignored pixels left out."""
    if preds.shape != target.shape:
        raise ValueError(f"prediction shape {list(preds.shape)} differs from target shape {list(target.shape)}")
    valid = target != ignore_index
    t, p = target[valid].long(), preds[valid].long()
    if t.numel() and (int(t.max()) >= num_classes or int(t.min()) < 0):
        raise ValueError(f"target holds label {int(t.max())}, outside 0..{num_classes - 1} and not {ignore_index}")
    return torch.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores_from_confusion(cm: torch.Tensor) -> dict[str, torch.Tensor]:
    """aAcc, mIoU, mAcc and per-class IoU/Acc (NaN where undefined) from a confusion matrix."""
    cm = cm.double()
    tp = cm.diag()
    gt = cm.sum(1)
    pred = cm.sum(0)
    union = gt + pred - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
    total = cm.sum()
    return {
        "aAcc": tp.sum() / total if total > 0 else torch.tensor(float("nan"), dtype=torch.float64),
        "mIoU": iou.nanmean(),
        "mAcc": acc.nanmean(),
        "IoU": iou,
        "Acc": acc,
    }


def per_class_rows(scores: Mapping[str, torch.Tensor], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per class of an evaluation's ``scores`` (``compute()``'s): ``id``, ``class``, ``IoU``, ``Acc``
    (``None`` where undefined: a class absent from ground truth and prediction) and ``gt_pixels``. Every per-class
    table (CSV, Markdown, TensorBoard, W&B, the error analysis) is written from these rows."""
    gt_pixels = scores["confmat"].sum(1).tolist() if "confmat" in scores else [None] * len(class_names)
    return [
        {"id": c, "class": name, "IoU": _number(scores["IoU"][c]), "Acc": _number(scores["Acc"][c]), "gt_pixels": gt}
        for c, (name, gt) in enumerate(zip(class_names, gt_pixels))
    ]


def _number(value: torch.Tensor) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


class SegmentationMetrics(Metric):
    """Confusion-matrix metric: ``update(logits_or_labels, target)``; ``compute()`` -> aAcc, mIoU, mAcc,
    per-class IoU/Acc and the confusion matrix. Synchronised across processes by summing the matrix."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        labels = to_labels(preds, target.shape[-2:])
        self.confmat += confusion_matrix(labels, target, self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, torch.Tensor]:
        if int(self.confmat.sum()) == 0:
            rank_zero_warn(
                "no labelled pixel in the evaluation set (every target pixel is the ignore label "
                f"{self.ignore_index}, or no sample was evaluated): mIoU, aAcc and mAcc are NaN"
            )
        return {**scores_from_confusion(self.confmat), "confmat": self.confmat}


def write_scores(scores: dict[str, torch.Tensor], path: Path, hparams: Mapping[str, Any] | None = None) -> Path:
    """Save scores (aAcc, mIoU, mAcc, per-class IoU/Acc, confusion matrix) and the run's hparams (those JSON can
    hold, e.g. its ``dataset_info``: class names for reports) as JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            v = v.tolist()
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    record = {k: plain(v) for k, v in scores.items()}
    if hparams is not None:
        record["hparams"] = {k: v for k, v in dict(hparams).items() if _jsonable(v)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def _jsonable(value: Any) -> bool:
    if not isinstance(value, (int, float, str, bool, type(None), list, dict)):
        return False
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def calculate_metrics(
    logits_or_labels: torch.Tensor,
    masks: torch.Tensor,
    num_classes: int | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, float]:
    """Metrics of one batch, same definitions as the dataset-level ones: ``iou`` (mIoU), ``pixel_acc``
    (aAcc), ``mean_acc`` (mAcc). ``num_classes`` defaults to the logits' channel count (labels need it)."""
    if num_classes is None:
        if logits_or_labels.dim() != 4:
            raise ValueError("calculate_metrics: num_classes is required when given labels [B, H, W] (not logits)")
        num_classes = logits_or_labels.shape[1]
    labels = to_labels(logits_or_labels.detach(), masks.shape[-2:])
    scores = scores_from_confusion(confusion_matrix(labels, masks, num_classes, ignore_index))
    return {"iou": float(scores["mIoU"]), "pixel_acc": float(scores["aAcc"]), "mean_acc": float(scores["mAcc"])}


def _inner_boundary(masks: torch.Tensor, width: int) -> torch.Tensor:
    """Pixels of each binary mask ``[K, H, W]`` within ``width`` pixels of its contour, the image border
    counting as contour (outside the image is background, as boundary-iou-api's ``mask_to_boundary``)."""
    m = F.pad(masks.float().unsqueeze(1), (width,) * 4, value=0.0)
    # a square erosion is a row erosion then a column erosion: the same result, far fewer operations
    k = 2 * width + 1
    eroded = _erode(_erode(m, (1, k)), (k, 1))
    return masks & (eroded.squeeze(1) < 0.5)


def _erode(x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Minimum over a sliding ``kernel`` window (valid positions only)."""
    return -F.max_pool2d(-x, kernel, stride=1)


class BoundaryIoU(Metric):
    """Boundary IoU (Cheng et al., CVPR 2021), per class over the dataset: IoU of the ground-truth and
    predicted mask pixels lying within ``d = dilation_ratio * image diagonal`` of their own contours (the
    image border included, as the authors' ``mask_to_boundary``); ignored pixels are left out."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(
        self, num_classes: int, dilation_ratio: float = 0.02, ignore_index: int = IGNORE_INDEX, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.dilation_ratio = dilation_ratio
        self.ignore_index = ignore_index
        self.add_state("intersection", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("union", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        labels = to_labels(preds, target.shape[-2:])
        for pred, gt in zip(labels, target):
            h, w = gt.shape
            width = max(1, round(self.dilation_ratio * (h**2 + w**2) ** 0.5))
            valid = gt != self.ignore_index
            classes = torch.unique(torch.cat([gt[valid], pred[valid]]))
            gt_b = _inner_boundary(gt.unsqueeze(0) == classes.view(-1, 1, 1), width) & valid
            pred_b = _inner_boundary(pred.unsqueeze(0) == classes.view(-1, 1, 1), width) & valid
            self.intersection[classes] += (gt_b & pred_b).sum((1, 2)).double()
            self.union[classes] += (gt_b | pred_b).sum((1, 2)).double()

    def compute(self) -> torch.Tensor:
        present = self.union > 0
        return (
            (self.intersection[present] / self.union[present]).mean() if present.any() else torch.tensor(float("nan"))
        )
