"""Evaluation modes and gradient statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from segfpn.callbacks import gradient_stats
from segfpn.inference import InferenceConfig, predict_logits, slide_logits


class PixelModel(nn.Module):
    """A per-pixel linear classifier: translation-equivariant, so windows must agree with the whole image."""

    num_classes = 4

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"p0": self.conv(x)}


def test_slide_equals_whole_for_a_pixelwise_model() -> None:
    model, x = PixelModel(), torch.randn(1, 3, 50, 70)
    whole = predict_logits(model, x, InferenceConfig(test_scale=None))
    slide = predict_logits(
        model, x, InferenceConfig(mode="slide", test_scale=None, crop_size=(32, 32), stride=(20, 20))
    )
    torch.testing.assert_close(slide, whole)
    counts = slide_logits(lambda t: {"p0": torch.ones(1, 1, *t.shape[-2:])}, x, (32, 32), (20, 20), 1)
    torch.testing.assert_close(counts, torch.ones_like(counts))  # every pixel covered, averaged


def test_flip_and_scales_return_the_input_size() -> None:
    model, x = PixelModel(), torch.randn(2, 3, 40, 60)
    whole = predict_logits(model, x, InferenceConfig(test_scale=None))
    flipped = predict_logits(model, x, InferenceConfig(test_scale=None, flip=True))
    torch.testing.assert_close(flipped, whole)  # a pixelwise model is flip-equivariant
    multi = predict_logits(model, x, InferenceConfig(test_scale=(80, 40), scales=[0.5, 1.0, 1.5], flip=True))
    assert multi.shape == (2, 4, 40, 60)


def test_bad_inference_options() -> None:
    with pytest.raises(ValueError, match="mode"):
        InferenceConfig(mode="tiles")
    with pytest.raises(ValueError, match="scales"):
        InferenceConfig(scales=[0.0])


def test_gradient_stats_match_a_direct_computation() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model(torch.randn(5, 4)).pow(2).sum().backward()
    stats = gradient_stats(model, depth=0)
    assert set(stats) == {"0", "2"}
    grads = torch.cat([p.grad.flatten() for p in model[0].parameters()])
    assert stats["0"]["norm"] == pytest.approx(grads.norm().item(), rel=1e-5)
    assert stats["0"]["mean"] == pytest.approx(grads.mean().item(), rel=1e-5, abs=1e-7)
    assert stats["0"]["std"] == pytest.approx(grads.std(unbiased=False).item(), rel=1e-4)
