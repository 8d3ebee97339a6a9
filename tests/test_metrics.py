"""mIoU / aAcc / mAcc against a confusion matrix computed by hand, Boundary IoU, calculate_metrics."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from segfpn.metrics import BoundaryIoU, SegmentationMetrics, calculate_metrics, to_labels

# 5 classes. Class 3 is absent from both prediction and ground truth (left out); class 4 is predicted
# but absent from the ground truth (IoU 0, counted). 255 pixels are ignored whatever is predicted.
TARGET = torch.tensor([[0, 0, 1, 1, 255], [0, 2, 2, 1, 255]])
PRED = torch.tensor([[0, 1, 1, 1, 3], [0, 2, 4, 4, 0]])


def _by_hand() -> dict[str, float]:
    # confusion (gt row, pred col) over the 8 labelled pixels:
    # gt0: pred0 x2, pred1 x1 ; gt1: pred1 x2, pred4 x1 ; gt2: pred2 x1, pred4 x1
    iou = {0: 2 / (3 + 2 - 2), 1: 2 / (3 + 3 - 2), 2: 1 / (2 + 1 - 1), 4: 0 / (0 + 2 - 0)}
    acc = {0: 2 / 3, 1: 2 / 3, 2: 1 / 2}
    return {"mIoU": sum(iou.values()) / 4, "aAcc": 5 / 8, "mAcc": sum(acc.values()) / 3}


def test_dataset_level_metric_matches_hand_computation() -> None:
    metric = SegmentationMetrics(num_classes=5)
    metric.update(PRED[None, :1], TARGET[None, :1])  # two updates: one row each
    metric.update(PRED[None, 1:], TARGET[None, 1:])
    scores = metric.compute()
    expected = _by_hand()
    for key, value in expected.items():
        assert scores[key].item() == pytest.approx(value), key
    assert math.isnan(scores["IoU"][3]) and scores["IoU"][4] == 0
    assert scores["confmat"].sum() == 8 and scores["confmat"][0, 1] == 1


def test_matches_torchmetrics_jaccard_with_ignore_index() -> None:
    torch.manual_seed(0)
    ours = SegmentationMetrics(num_classes=6)
    peer = MulticlassJaccardIndex(num_classes=6, ignore_index=255, average="macro")
    for _ in range(4):
        target = torch.randint(0, 5, (2, 16, 16))  # class 5 never in the ground truth
        target[:, :3] = 255
        logits = torch.randn(2, 6, 16, 16)
        ours.update(logits, target)
        peer.update(logits.argmax(1), target)
    assert ours.compute()["mIoU"].item() == pytest.approx(peer.compute().item(), abs=1e-6)


def test_accumulates_over_the_dataset_not_per_image() -> None:
    metric = SegmentationMetrics(num_classes=2)
    big_t, big_p = torch.zeros(1, 10, 10, dtype=torch.long), torch.zeros(1, 10, 10, dtype=torch.long)
    small_t, small_p = torch.ones(1, 1, 2, dtype=torch.long), torch.tensor([[[1, 0]]])
    metric.update(big_p, big_t)
    metric.update(small_p, small_t)
    # class 0: I=100, U=101; class 1: I=1, U=2 -> (100/101 + 1/2) / 2, not the mean of per-image scores
    assert metric.compute()["mIoU"].item() == pytest.approx((100 / 101 + 0.5) / 2)


def test_logits_are_resized_to_the_mask() -> None:
    metric = SegmentationMetrics(num_classes=3)
    logits = torch.zeros(1, 3, 4, 4)
    logits[:, 2] = 1.0
    metric.update(logits, torch.full((1, 8, 8), 2))
    assert metric.compute()["mIoU"].item() == 1.0


def test_labels_are_the_first_maximum_like_argmax() -> None:
    torch.manual_seed(0)
    tied = torch.randint(0, 3, (2, 150, 20, 30)).float()  # many equal maxima per pixel
    tied[0, 7, :4] = float("nan")
    assert torch.equal(to_labels(tied), tied.argmax(1))
    assert torch.equal(to_labels(tied.contiguous(memory_format=torch.channels_last)), tied.argmax(1))
    with pytest.raises(ValueError, match="expected logits"):
        to_labels(torch.zeros(5))


def test_out_of_range_target_is_an_error() -> None:
    with pytest.raises(ValueError, match="outside 0..2"):
        SegmentationMetrics(num_classes=3).update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))


def test_calculate_metrics_for_one_batch() -> None:
    result = calculate_metrics(PRED.unsqueeze(0), TARGET.unsqueeze(0), num_classes=5)
    expected = _by_hand()
    assert result["iou"] == pytest.approx(expected["mIoU"])
    assert result["pixel_acc"] == pytest.approx(expected["aAcc"])
    logits = torch.nn.functional.one_hot(PRED, 5).permute(2, 0, 1).unsqueeze(0).float()
    assert calculate_metrics(logits, TARGET.unsqueeze(0))["iou"] == pytest.approx(expected["mIoU"])


def test_boundary_iou() -> None:
    target = torch.zeros(1, 64, 64, dtype=torch.long)
    target[:, 16:48, 16:48] = 1
    perfect = BoundaryIoU(num_classes=2)
    perfect.update(target, target)
    assert perfect.compute().item() == pytest.approx(1.0)
    shifted = BoundaryIoU(num_classes=2)
    shifted.update(torch.roll(target, 4, dims=2), target)
    region = SegmentationMetrics(num_classes=2)
    region.update(torch.roll(target, 4, dims=2), target)
    b, r = shifted.compute().item(), region.compute()["mIoU"].item()
    assert 0 < b < r < 1  # boundary IoU punishes the misplaced edge harder than region IoU


def test_all_ignored_evaluation_set_warns_with_the_cause() -> None:
    metric = SegmentationMetrics(num_classes=4)
    metric.update(torch.randn(2, 4, 8, 8), torch.full((2, 8, 8), 255))
    with pytest.warns(UserWarning, match="no labelled pixel in the evaluation set"):
        scores = metric.compute()
    assert math.isnan(float(scores["mIoU"])) and math.isnan(float(scores["aAcc"]))


def test_nan_score_never_selects_the_best_checkpoint(tmp_path, synthetic_root) -> None:
    """A real fit whose validation set has no labelled pixel: warned, no best.ckpt, last.ckpt written."""
    import shutil

    import numpy as np
    from PIL import Image

    from segfpn.training.cli import run_cli
    from tests.test_cli import only_run, tiny_args

    data = tmp_path / "ADEChallengeData2016"
    shutil.copytree(synthetic_root, data)
    for ann in (data / "annotations" / "validation").iterdir():
        Image.fromarray(np.zeros_like(np.asarray(Image.open(ann)))).save(ann)  # 0 = "other": ignored
    with pytest.warns(UserWarning) as caught:
        cli = run_cli(["fit", *tiny_args(tmp_path / "run", data, max_steps=4)])
    messages = [str(w.message) for w in caught]
    assert any("no labelled pixel in the evaluation set" in m for m in messages)
    assert any("val/mIoU is NaN" in m and "not considered for best.ckpt" in m for m in messages)
    assert math.isnan(float(cli.trainer.callback_metrics["val/mIoU"]))
    checkpoints = only_run(tmp_path / "run") / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file()
    assert not (checkpoints / "best.ckpt").exists() and not list(checkpoints.glob("step*.ckpt"))
    assert cli.trainer.checkpoint_callback.best_model_path == ""


def test_wandb_ground_truth_keeps_ignored_pixels_apart_from_class_0() -> None:
    import numpy as np

    from segfpn.training.callbacks import overlay_masks

    gt = np.array([[0, 255], [3, 255]], dtype=np.uint8)
    masks = overlay_masks(np.zeros((2, 2), np.int64), gt, ["wall", "b", "c", "d"])
    truth = masks["ground_truth"]
    assert truth["class_labels"][255] == "ignored" and truth["class_labels"][0] == "wall"
    np.testing.assert_array_equal(truth["mask_data"], gt)  # 255 not painted as class 0
    assert 255 not in masks["prediction"]["class_labels"]
