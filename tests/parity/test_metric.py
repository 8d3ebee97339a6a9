"""segfpn's mIoU/aAcc/mAcc against mmseg 1.2.2's ``IoUMetric``, and its Boundary IoU against the authors'
``mask_to_boundary``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from segfpn.metrics import BoundaryIoU, SegmentationMetrics
from tests.parity.conftest import import_reference

pytestmark = pytest.mark.parity


def shifted_relabelled(mask: np.ndarray, seed: int) -> np.ndarray:
    """A plausible wrong prediction: the annotation shifted by (7, -5) px, ignored pixels given a class,
    and one present class relabelled as another."""
    rng = np.random.default_rng(seed)
    pred = np.roll(mask, (7, -5), axis=(0, 1)).astype(np.int64)
    pred[pred == 255] = rng.integers(0, 150)
    classes = np.unique(mask[mask != 255])
    pred[pred == classes[len(classes) // 2]] = classes[0]
    return pred


def _mmseg_scores(pairs: list[tuple[np.ndarray, np.ndarray]], num_classes: int) -> dict[str, np.ndarray]:
    metrics = import_reference("mmseg.evaluation.metrics")
    metric = metrics.IoUMetric(ignore_index=255, iou_metrics=["mIoU"])
    metric.dataset_meta = {"classes": [str(c) for c in range(num_classes)]}
    samples = [
        {"pred_sem_seg": {"data": torch.as_tensor(p)[None]}, "gt_sem_seg": {"data": torch.as_tensor(g)[None]}}
        for p, g in pairs
    ]
    metric.process({}, samples)
    totals = [sum(r[i] for r in metric.results) for i in range(4)]
    # compute_metrics rounds to 2 decimals in percent: its unrounded core is total_area_to_metrics
    scores = metrics.IoUMetric.total_area_to_metrics(*totals, metrics=["mIoU"])
    return {**scores, "mIoU": np.nanmean(scores["IoU"]), "mAcc": np.nanmean(scores["Acc"])}


def _segfpn_scores(pairs: list[tuple[np.ndarray, np.ndarray]], num_classes: int) -> dict[str, torch.Tensor]:
    metric = SegmentationMetrics(num_classes)
    for pred, gt in pairs:
        metric.update(torch.as_tensor(pred, dtype=torch.long)[None], torch.as_tensor(gt, dtype=torch.long)[None])
    return metric.compute()


def _cases(real_pairs) -> dict[str, tuple[list[tuple[np.ndarray, np.ndarray]], int]]:
    rng = np.random.default_rng(0)
    masks = [m for _, m in real_pairs]
    gt_small = rng.integers(0, 4, (3, 40, 50))
    gt_small[:, :5] = 255
    only_predicted = [(np.where(g == 1, 3, g) % 255, np.where(g == 3, 1, g)) for g in gt_small]
    return {
        "real, perfect": ([(m.astype(np.int64) % 255, m) for m in masks], 150),
        "real, shifted and relabelled": ([(shifted_relabelled(m, k), m) for k, m in enumerate(masks)], 150),
        "real, one image all ignored": (
            [(shifted_relabelled(masks[0], 0), masks[0]), (rng.integers(0, 150, (30, 40)), np.full((30, 40), 255))],
            150,
        ),
        "random with ignore": ([(rng.integers(0, 6, g.shape), g) for g in gt_small], 6),
        "class only predicted": (only_predicted, 6),
        "class only in ground truth, never predicted": ([(np.where(g == 2, 0, g) % 255, g) for g in gt_small], 4),
        "absent classes (2 of 150 used)": ([(rng.integers(0, 2, (20, 20)), rng.integers(0, 2, (20, 20)))], 150),
        "everything wrong": ([((g + 1) % 4, g) for g in gt_small], 4),
        "single class ground truth": ([(rng.integers(0, 3, (16, 16)), np.full((16, 16), 2))], 3),
        "single pixel labelled": (
            [(np.zeros((8, 8), int), np.pad(np.full((1, 1), 1), ((0, 7), (0, 7)), constant_values=255))],
            2,
        ),
    }


def test_miou_aacc_macc_equal_mmseg_iou_metric(real_pairs) -> None:
    for name, (pairs, num_classes) in _cases(real_pairs).items():
        ref = _mmseg_scores(pairs, num_classes)
        ours = _segfpn_scores(pairs, num_classes)
        for key in ("aAcc", "mIoU", "mAcc"):
            assert float(ours[key]) == pytest.approx(float(ref[key]), abs=1e-6, nan_ok=True), (name, key)
        for key in ("IoU", "Acc"):
            np.testing.assert_allclose(ours[key].numpy(), ref[key], atol=1e-6, equal_nan=True, err_msg=name)


def authors_mask_to_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """Boundary-pixels definition of Boundary IoU's authors (bowenc0221/boundary-iou-api,
    ``boundary_iou/utils/boundary_utils.py::mask_to_boundary``). That package is not on PyPI (nor any
    package shipping the function), so it is restated here from its documented steps: d = round(ratio *
    image diagonal), at least 1; pad the binary mask with ONE ring of 0 (``cv2.copyMakeBorder``, so that a
    mask cut by the image border has a boundary there), erode d times with a 3x3 kernel (cv2's erosion
    treats outside the padded image as foreground), crop the ring off; boundary = mask - eroded."""
    h, w = mask.shape
    dilation = max(1, int(round(dilation_ratio * np.sqrt(h**2 + w**2))))
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=dilation)[1 : h + 1, 1 : w + 1]
    return mask - eroded


def authors_boundary_iou(pairs: list[tuple[np.ndarray, np.ndarray]], num_classes: int) -> tuple[float, np.ndarray]:
    """Dataset-level, per-class Boundary IoU (segfpn's accumulation) on the authors' boundaries; ignored
    ground-truth pixels left out. Returns the mean over classes with a non-empty union and per-class IoU."""
    inter, union = np.zeros(num_classes), np.zeros(num_classes)
    for pred, gt in pairs:
        valid = gt != 255
        for c in np.unique(np.concatenate([gt[valid], pred[valid]])):
            g = authors_mask_to_boundary((gt == c).astype(np.uint8)).astype(bool) & valid
            p = authors_mask_to_boundary((pred == c).astype(np.uint8)).astype(bool) & valid
            inter[c] += (g & p).sum()
            union[c] += (g | p).sum()
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    return float(np.nanmean(iou)), iou


def _segfpn_boundary(pairs: list[tuple[np.ndarray, np.ndarray]], num_classes: int) -> float:
    metric = BoundaryIoU(num_classes)
    for pred, gt in pairs:
        metric.update(torch.as_tensor(pred, dtype=torch.long)[None], torch.as_tensor(gt, dtype=torch.long)[None])
    return float(metric.compute())


def test_boundary_pixels_equal_the_authors_definition(real_pairs) -> None:
    from segfpn.metrics import _inner_boundary

    rng = np.random.default_rng(1)
    masks = [(m == c) for _, m in real_pairs for c in np.unique(m)[:6]]
    masks += [rng.random((37, 53)) < 0.7, np.ones((20, 30), bool), np.zeros((20, 30), bool)]
    for mask in masks:
        h, w = mask.shape
        width = max(1, int(round(0.02 * np.sqrt(h**2 + w**2))))
        ours = _inner_boundary(torch.as_tensor(mask)[None], width)[0].numpy()
        np.testing.assert_array_equal(ours, authors_mask_to_boundary(mask.astype(np.uint8)).astype(bool))


def test_boundary_iou_on_real_annotations(real_pairs) -> None:
    pairs = [(shifted_relabelled(m, k), m) for k, (_, m) in enumerate(real_pairs)]
    reference, _ = authors_boundary_iou(pairs, 150)
    assert _segfpn_boundary(pairs, 150) == pytest.approx(reference, abs=1e-9)
    unused = min(set(range(150)) - {int(c) for _, m in real_pairs for c in np.unique(m)})
    perfect = [(np.where(m == 255, unused, m), m) for _, m in real_pairs]  # ignored pixels: a class not in any
    assert _segfpn_boundary(perfect, 150) == pytest.approx(1.0)
