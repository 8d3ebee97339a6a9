"""Each loss on inputs with a known answer; loss specs and their errors."""

from __future__ import annotations

import math

import pytest
import torch

from segfpn.training.losses import (
    CombinedLoss,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    LovaszSoftmaxLoss,
    OHEMCrossEntropyLoss,
    parse_loss_spec,
)


def _target() -> torch.Tensor:
    t = torch.tensor([[[0, 1], [2, 255]]])
    return t


def _logits_with_prob(p: float, target: torch.Tensor, classes: int = 3) -> torch.Tensor:
    """Logits whose softmax gives probability ``p`` to the target class and shares the rest equally."""
    q = (1 - p) / (classes - 1)
    probs = torch.full((target.shape[0], classes, *target.shape[1:]), q)
    probs.scatter_(1, target.clamp(max=classes - 1).unsqueeze(1), p)
    return probs.log()


def test_cross_entropy_uniform_logits_is_log_c_and_ignores_255() -> None:
    # mmseg's default normalisation: 3 labelled pixels of log(3) divided by all 4 pixels
    loss = CrossEntropyLoss()(torch.zeros(1, 3, 2, 2), _target())
    assert loss.item() == pytest.approx(3 / 4 * math.log(3))
    loss = CrossEntropyLoss(avg_non_ignore=True)(torch.zeros(1, 3, 2, 2), _target())
    assert loss.item() == pytest.approx(math.log(3))
    logits = _logits_with_prob(0.5, _target())
    weighted = CrossEntropyLoss(class_weight=[1.0, 1.0, 4.0], avg_non_ignore=True)(logits, _target())
    # weighted mean: (1 + 1 + 4) * -log(0.5) / (1 + 1 + 4)
    assert weighted.item() == pytest.approx(-math.log(0.5))
    # the ignored pixel counts with weight 1 in the denominator
    weighted = CrossEntropyLoss(class_weight=[1.0, 1.0, 4.0])(logits, _target())
    assert weighted.item() == pytest.approx(-6 * math.log(0.5) / 7)


def test_all_ignored_gives_zero_with_gradient() -> None:
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    for loss_fn in (CrossEntropyLoss(), OHEMCrossEntropyLoss(), FocalLoss(), LovaszSoftmaxLoss()):
        loss = loss_fn(logits, torch.full((1, 2, 2), 255))
        assert loss.item() == 0.0
        loss.backward()


def test_ohem_keeps_hard_pixels() -> None:
    target = torch.tensor([[[0, 0, 0, 0]]])
    probs = torch.tensor([0.9, 0.8, 0.5, 0.2])
    logits = torch.stack([probs.log(), (1 - probs).log()], 0).view(1, 2, 1, 4)
    # kept: p < max(0.7, 2nd-smallest p = 0.5); the sum is divided by all 4 pixels, as mmsegmentation
    loss = OHEMCrossEntropyLoss(thresh=0.7, min_kept=1)(logits, target)
    assert loss.item() == pytest.approx(-(math.log(0.5) + math.log(0.2)) / 4)
    # min_kept=4 raises the threshold to the largest probability (0.9): keeps p < 0.9, as mmsegmentation
    loss = OHEMCrossEntropyLoss(thresh=0.7, min_kept=4)(logits, target)
    assert loss.item() == pytest.approx(-(math.log(0.8) + math.log(0.5) + math.log(0.2)) / 4, rel=1e-5)
    # without a threshold: the min_kept pixels of largest CE
    loss = OHEMCrossEntropyLoss(thresh=None, min_kept=1, avg_non_ignore=True)(logits, target)
    assert loss.item() == pytest.approx(-math.log(0.2) / 4, rel=1e-5)


def test_dice_perfect_and_uniform() -> None:
    target = _target()
    perfect = _logits_with_prob(1 - 1e-6, target) * 1.0
    assert DiceLoss(smooth=0.0)(perfect, target).item() == pytest.approx(0.0, abs=1e-5)
    # uniform 1/3 on 3 labelled pixels, one per class: per class 2*(1/3) / (1 + 1) = 1/3
    assert DiceLoss(smooth=0.0)(torch.zeros(1, 3, 2, 2), target).item() == pytest.approx(2 / 3)


def test_focal_reduces_to_ce_and_matches_formula() -> None:
    target = _target()
    logits = _logits_with_prob(0.6, target)
    assert FocalLoss(gamma=0.0)(logits, target).item() == pytest.approx(-math.log(0.6), rel=1e-5)
    assert FocalLoss(gamma=2.0)(logits, target).item() == pytest.approx(-(0.4**2) * math.log(0.6), rel=1e-5)


def test_lovasz_softmax_known_values() -> None:
    target = torch.zeros(1, 3, 3, dtype=torch.long)
    logits = _logits_with_prob(0.7, target)
    assert LovaszSoftmaxLoss()(logits, target).item() == pytest.approx(0.3, rel=1e-5)
    perfect = _logits_with_prob(1 - 1e-7, _target())
    assert LovaszSoftmaxLoss()(perfect, _target()).item() == pytest.approx(0.0, abs=1e-5)
    # per image: 0.3 for the first image and 0 for the second (no labelled pixel), averaged
    pair = torch.cat([target, torch.full_like(target, 255)])
    assert LovaszSoftmaxLoss(per_image=True)(logits.repeat(2, 1, 1, 1), pair).item() == pytest.approx(0.15, rel=1e-5)


def test_combined_loss_and_specs() -> None:
    assert parse_loss_spec("ce+0.5*dice") == {"ce": 1.0, "dice": 0.5}
    assert parse_loss_spec({"focal": 2}) == {"focal": 2.0}
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    parts = CombinedLoss("ce+0.5*dice")(logits, target)
    expected = CrossEntropyLoss()(logits, target) + 0.5 * DiceLoss()(logits, target)
    assert parts["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"unknown loss \['hinge'\].*expected a combination of"):
        parse_loss_spec("ce+hinge")
    with pytest.raises(ValueError, match="non-negative"):
        parse_loss_spec({"ce": -1})


def test_low_resolution_logits_are_upsampled_to_the_target() -> None:
    loss = CrossEntropyLoss()(torch.zeros(1, 3, 2, 2), torch.zeros(1, 8, 8, dtype=torch.long))
    assert loss.item() == pytest.approx(math.log(3))


def test_module_passes_avg_non_ignore_to_ce_ohem_and_aux() -> None:
    from segfpn.training.module import SegmentationModule

    logits, target = torch.zeros(1, 3, 2, 2), _target()
    for avg_non_ignore, expected in ((False, 3 / 4 * math.log(3)), (True, math.log(3))):
        module = SegmentationModule(
            num_classes=3,
            backbone_name="pvt_v2_b0",
            fpn_channels=16,
            head_channels=16,
            loss="ce+ohem",
            ohem_thresh=None,
            ohem_min_kept=4,
            loss_avg_non_ignore=avg_non_ignore,
        )
        parts = module.criterion(logits, target)
        assert parts["ce"].item() == pytest.approx(expected)
        assert parts["ohem"].item() == pytest.approx(expected)
        assert module.aux_criterion(logits, target).item() == pytest.approx(expected)
