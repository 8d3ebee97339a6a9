"""segfpn's CE, OHEM and Lovasz against mmseg 1.2.2's ``CrossEntropyLoss``, ``OHEMPixelSampler`` and
``LovaszLoss``: values and gradients, on random logits over label maps cropped from the real samples
(with their ignored pixels and 255-padding, as a training batch has them)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from segfpn.training.losses import CrossEntropyLoss, LovaszSoftmaxLoss, OHEMCrossEntropyLoss
from tests.parity.conftest import import_reference

pytestmark = pytest.mark.parity
NUM_CLASSES = 150


def _batches(real_pairs) -> list[torch.Tensor]:
    """Label batches [2, 64, 80] from the real annotations: a crop of each, one padded with 255 at the
    bottom/right as mmseg's data preprocessor pads a crop smaller than the crop size."""
    out = []
    for k, (_, mask) in enumerate(real_pairs):
        a = torch.from_numpy(mask[100:164, 200:280].astype(np.int64))
        b = torch.full((64, 80), 255, dtype=torch.long)
        b[:40, :56] = torch.from_numpy(mask[200 + k : 240 + k, 50:106].astype(np.int64))
        out.append(torch.stack([a, b]))
    return out


def _logits(target: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(target.shape[0], NUM_CLASSES, *target.shape[1:], generator=g)).requires_grad_()


def _value_and_grad(fn, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits.grad = None
    loss = fn(logits)
    loss.backward()
    return loss.detach(), logits.grad.clone()


def _assert_same(ours, reference, logits: torch.Tensor) -> None:
    value, grad = _value_and_grad(ours, logits)
    ref_value, ref_grad = _value_and_grad(reference, logits)
    torch.testing.assert_close(value, ref_value.reshape(value.shape), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("avg_non_ignore", [False, True])
def test_cross_entropy_normalisation(real_pairs, avg_non_ignore: bool) -> None:
    losses = import_reference("mmseg.models.losses")
    reference = losses.CrossEntropyLoss(avg_non_ignore=avg_non_ignore)
    ours = CrossEntropyLoss(avg_non_ignore=avg_non_ignore)
    for k, target in enumerate(_batches(real_pairs)):
        assert (target == 255).any() and (target != 255).any()
        _assert_same(lambda x: ours(x, target), lambda x: reference(x, target, ignore_index=255), _logits(target, k))


@pytest.mark.parametrize("avg_non_ignore", [False, True])
def test_cross_entropy_class_weights(real_pairs, avg_non_ignore: bool) -> None:
    """mmseg 1.2.2 indexes the class weights with every label, 255 included, and fails on ignored
    pixels: the weighted case is compared on fully labelled crops."""
    losses = import_reference("mmseg.models.losses")
    weights = (torch.arange(NUM_CLASSES) % 7 + 1).float() / 4
    reference = losses.CrossEntropyLoss(class_weight=weights.tolist(), avg_non_ignore=avg_non_ignore)
    ours = CrossEntropyLoss(class_weight=weights, avg_non_ignore=avg_non_ignore)
    for k, target in enumerate(_batches(real_pairs)):
        target = target.masked_fill(target == 255, k)
        _assert_same(lambda x: ours(x, target), lambda x: reference(x, target, ignore_index=255), _logits(target, k))
    with pytest.raises((IndexError, RuntimeError)):
        reference(_logits(target, 0), target.masked_fill(target == k, 255), ignore_index=255)


@pytest.mark.parametrize(("thresh", "min_kept"), [(0.7, 2), (0.7, 1500), (0.05, 100), (None, 700), (0.7, 100_000)])
def test_ohem(real_pairs, thresh: float | None, min_kept: int) -> None:
    """OHEMPixelSampler's pixel weights fed to mmseg's CE, against segfpn's OHEM loss; min_kept per image
    times the batch size, the kept sum divided by all N*H*W pixels."""
    sampler_module = import_reference("mmseg.structures.sampler.ohem_pixel_sampler")
    losses = import_reference("mmseg.models.losses")
    ce = losses.CrossEntropyLoss()
    context = SimpleNamespace(ignore_index=255, loss_decode=ce)
    sampler = sampler_module.OHEMPixelSampler(context, thresh=thresh, min_kept=min_kept)
    ours = OHEMCrossEntropyLoss(thresh=thresh, min_kept=min_kept)
    kept_fractions = []
    for k, target in enumerate(_batches(real_pairs)):
        logits = _logits(target, 10 + k)

        def reference(x: torch.Tensor, target: torch.Tensor = target) -> torch.Tensor:
            weight = sampler.sample(x, target.unsqueeze(1))
            return ce(x, target, weight=weight, ignore_index=255)

        with torch.no_grad():
            pixel_loss = torch.nn.functional.cross_entropy(logits, target, ignore_index=255, reduction="none")
            kept = ours.kept_pixels(logits, target, pixel_loss)
            torch.testing.assert_close(kept, sampler.sample(logits, target.unsqueeze(1)), rtol=0, atol=0)
        kept_fractions.append(float(kept.sum() / (target != 255).sum()))
        _assert_same(lambda x, target=target: ours(x, target), reference, logits)
    assert max(kept_fractions) > 0  # the case keeps pixels at all


@pytest.mark.parametrize("per_image", [False, True])
def test_lovasz(real_pairs, per_image: bool) -> None:
    losses = import_reference("mmseg.models.losses")
    reference = losses.LovaszLoss(per_image=per_image, reduction="mean" if per_image else "none")
    ours = LovaszSoftmaxLoss(per_image=per_image)
    for k, target in enumerate(_batches(real_pairs)):
        _assert_same(lambda x: ours(x, target), lambda x: reference(x, target, ignore_index=255), _logits(target, k))
