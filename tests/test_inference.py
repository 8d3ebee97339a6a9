"""Evaluation modes and gradient statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segfpn.datasets import ADE20KDataset
from segfpn.datasets.ade20k import load_image
from segfpn.datasets.transforms import align_size, eval_size, resize_image
from segfpn.inference.protocols import InferenceConfig, eval_input, from_pixels, predict_logits, slide_logits, to_pixels
from segfpn.models import SegmentationModel
from segfpn.training.callbacks import gradient_stats


class PixelModel(nn.Module):
    """A per-pixel linear classifier: translation-equivariant, so windows must agree with the whole image."""

    num_classes = 4

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor, pad: bool = True) -> dict[str, torch.Tensor]:
        return {"p0": self.conv(x)}


def test_slide_equals_whole_for_a_pixelwise_model() -> None:
    model, x = PixelModel(), torch.randn(1, 3, 50, 70)
    whole = predict_logits(model, x, InferenceConfig(test_scale=None))
    slide = predict_logits(
        model, x, InferenceConfig(mode="slide", test_scale=None, crop_size=(32, 32), stride=(20, 20))
    )
    torch.testing.assert_close(slide, whole)
    counts = slide_logits(lambda t, pad: {"p0": torch.ones(1, 1, *t.shape[-2:])}, x, (32, 32), (20, 20), 1)
    torch.testing.assert_close(counts, torch.ones_like(counts))  # every pixel covered, averaged


def test_flip_and_scales_return_the_input_size() -> None:
    model, x = PixelModel(), torch.randn(2, 3, 40, 60)
    whole = predict_logits(model, x, InferenceConfig(test_scale=None))
    flipped = predict_logits(model, x, InferenceConfig(test_scale=None, flip=True))
    # a pixelwise model is flip-equivariant; several predictions are merged as the log of their mean softmax
    torch.testing.assert_close(flipped, whole.log_softmax(1))
    multi = predict_logits(model, x, InferenceConfig(test_scale=(80, 40), scales=[0.5, 1.0, 1.5], flip=True))
    assert multi.shape == (2, 4, 40, 60)


def test_bad_inference_options() -> None:
    with pytest.raises(ValueError, match="mode"):
        InferenceConfig(mode="tiles")
    with pytest.raises(ValueError, match="scales"):
        InferenceConfig(scales=[0.0])
    with pytest.raises(ValueError, match="protocol"):
        InferenceConfig(protocol="crop")


def test_pixels_survive_the_normalisation_round_trip(samples_root: Path) -> None:
    """The test-time resize works on the 8-bit pixels: the normalised sample maps back to the file's exact pixels,
    and normalising them again gives the dataset's tensor to the bit (both are mmseg's ``(x - mean) / std``)."""
    dataset = ADE20KDataset(samples_root, "validation")
    for i in range(len(dataset)):
        image, _ = dataset[i]
        pixels = to_pixels(image[None])
        np.testing.assert_array_equal(pixels[0], load_image(dataset.pairs[i][0]))
        assert torch.equal(from_pixels(pixels, image), image[None])


def test_test_sizes_round_like_mmcv() -> None:
    assert eval_size(300, 400, (2048, 512)) == (512, 683)  # int(400 * 512 / 300 + 0.5)
    assert eval_size(512, 683, (2048, 512), 0.75) == (384, 512)  # fits (1536, 384)
    assert eval_size(364, 500, None, 0.5) == (182, 250)
    assert eval_size(375, 500, None, 1.0) == (375, 500)
    assert align_size(512, 683) == (512, 704) and align_size(384, 512) == (384, 512)
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert resize_image(img, (2, 3)) is img
    assert resize_image(img, (4, 6)).shape == (4, 6, 3)


@pytest.mark.parametrize(
    "backbone", ["pvt_v2_b0", "swin_tiny_patch4_window7_224", "mmseg_swin_tiny_patch4_window7_224"]
)
def test_protocols_pad_only_where_they_say(backbone: str) -> None:
    """``pad``: the logits of the image zero-padded to /32, cropped. ``mmseg``: the image as it is (Swin: zero-padded
    to its patch size 4 only), logits resized to the input. ``align_resize``: the image stretched to /32 first."""
    torch.manual_seed(0)
    model = SegmentationModel(num_classes=5, backbone_name=backbone, img_size=64).eval()
    x = from_pixels(np.random.default_rng(0).integers(0, 256, (1, 50, 67, 3), dtype=np.uint8), torch.zeros(1))
    no_resize = {"test_scale": None}
    with torch.no_grad():
        padded = predict_logits(model, x, InferenceConfig(protocol="pad", **no_resize))
        torch.testing.assert_close(padded, model(F.pad(x, (0, 29, 0, 14)))["p0"][..., :50, :67])
        mmseg = predict_logits(model, x, InferenceConfig(protocol="mmseg", **no_resize))
        divisor = 4 if "swin" in backbone else 1
        assert model.patch_divisor == divisor
        feats = model.head(model.neck(model.backbone(F.pad(x, (0, -67 % divisor, 0, -50 % divisor)))))
        torch.testing.assert_close(mmseg, F.interpolate(feats, size=(50, 67), mode="bilinear", align_corners=False))
        assert (mmseg.argmax(1) != padded.argmax(1)).any()  # the two protocols are not the same prediction
        aligned = predict_logits(model, x, InferenceConfig(protocol="align_resize", **no_resize))
        stretched = from_pixels(resize_image(to_pixels(x)[0], (64, 96))[None], x)
        expected = F.interpolate(model(stretched, pad=False)["p0"], size=(50, 67), mode="bilinear")
        torch.testing.assert_close(aligned, expected)


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


def test_test_time_resize_uses_the_datasets_normalisation(samples_root: Path) -> None:
    """A dataset with its own mean/std: the test-time resize maps its images back to the file's pixels with those
    statistics (ImageNet's would shift every pixel), resizes them and normalises them again the same way."""
    from segfpn.datasets.transforms import val_transform

    mean, std = (90.0, 100.0, 110.0), (30.0, 40.0, 50.0)
    pixels = load_image(ADE20KDataset(samples_root, "validation").pairs[0][0])
    image = val_transform(mean, std)(image=pixels)["image"][None]
    np.testing.assert_array_equal(to_pixels(image, mean, std)[0], pixels)
    assert not np.array_equal(to_pixels(image)[0], pixels)  # the ImageNet statistics do not invert it
    config = InferenceConfig(test_scale=(128, 96))
    size = eval_size(*pixels.shape[:2], config.test_scale)
    resized = eval_input(image, config, 1.0, mean, std)
    np.testing.assert_array_equal(to_pixels(resized, mean, std)[0], resize_image(pixels, size))
    assert torch.equal(resized, val_transform(mean, std)(image=resize_image(pixels, size))["image"][None])
