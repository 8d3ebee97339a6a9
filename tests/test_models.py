"""SegmentationModel: shapes for the three backbones, gradients, FPN ablation switches, input errors."""

from __future__ import annotations

import math

import pytest
import torch

from segfpn.models import FPN, TESTED_BACKBONES, SegmentationModel, list_backbones
from segfpn.models.backbone import TimmBackbone


@pytest.fixture(scope="module", params=TESTED_BACKBONES)
def model(request: pytest.FixtureRequest) -> SegmentationModel:
    torch.manual_seed(0)
    return SegmentationModel(num_classes=150, backbone_name=request.param).eval()


@pytest.mark.parametrize("hw", [(512, 512), (375, 500), (512, 683)], ids=["512x512", "500x375", "683x512"])
def test_output_and_feature_shapes(model: SegmentationModel, hw: tuple[int, int]) -> None:
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        out = model(x)
        feats = model.extract_backbone_features(x)
        pyramid = model.extract_fpn_features(x)
    assert out["p0"].shape == (1, 150, *hw)
    assert set(out) == {"p0"}
    assert len(feats) == 4 and len(pyramid) == 4
    for feat, level, stride, channels in zip(feats, pyramid, (4, 8, 16, 32), model.backbone.channels):
        expected = (math.ceil(hw[0] / 32) * 32 // stride, math.ceil(hw[1] / 32) * 32 // stride)
        assert feat.shape == (1, channels, *expected)
        assert level.shape == (1, 256, *expected)
        assert feat.is_contiguous() or feat.is_contiguous(memory_format=torch.channels_last)
    assert torch.isfinite(out["p0"]).all()


def test_odd_sizes_are_padded_then_cropped(model: SegmentationModel) -> None:
    """A 100x75 input gives the top-left crop of the logits of the same image padded to 128x96 by hand."""
    x = torch.randn(1, 3, 75, 100)
    with torch.no_grad():
        direct = model(x)["p0"]
        padded = model(torch.nn.functional.pad(x, (0, 28, 0, 21)))["p0"]
    assert direct.shape[-2:] == (75, 100)
    torch.testing.assert_close(direct, padded[..., :75, :100])


def test_logits_are_nchw_for_a_channels_last_model() -> None:
    """Cross-entropy on channels-last logits is 2-3x slower on the CPU: p0 must come out NCHW whatever the
    model's memory format, with the same values."""
    torch.manual_seed(0)
    model = SegmentationModel(num_classes=5, backbone_name="pvt_v2_b0").eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        reference = model(x)["p0"]
        model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))["p0"]
    assert out.is_contiguous() and not out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backbone", TESTED_BACKBONES)
def test_gradients_reach_every_trainable_parameter(backbone: str) -> None:
    torch.manual_seed(0)
    model = SegmentationModel(num_classes=5, backbone_name=backbone, aux_classifiers=True, dropout=0.0).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert set(out) == {"p0", "p1", "p2", "p3", "p4"}
    sum(o.logsumexp(1).mean() + o[:, 0].mean() for o in out.values()).backward()
    missing = [
        n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert not missing, f"parameters without gradient: {missing[:10]}"


def _fpn_inputs() -> list[torch.Tensor]:
    torch.manual_seed(0)
    return [torch.randn(1, c, 64 // s, 64 // s) for c, s in zip((8, 16, 32, 64), (1, 2, 4, 8))]


def _perturbed(feats: list[torch.Tensor], level: int) -> list[torch.Tensor]:
    return [f + 1.0 if i == level else f for i, f in enumerate(feats)]


def test_fpn_lateral_connections_switch() -> None:
    feats = _fpn_inputs()
    with_lateral, without = FPN([8, 16, 32, 64], 16), FPN([8, 16, 32, 64], 16, lateral_connections=False)
    # without laterals the finest level only sees the coarsest input: perturbing level 0 changes nothing
    torch.testing.assert_close(without(feats)[0], without(_perturbed(feats, 0))[0])
    assert not torch.allclose(with_lateral(feats)[0], with_lateral(_perturbed(feats, 0))[0])
    assert not torch.allclose(without(feats)[0], without(_perturbed(feats, 3))[0])
    assert sum(isinstance(m, torch.nn.Conv2d) for m in without.lateral_convs) == 1


def test_fpn_top_down_switch() -> None:
    feats = _fpn_inputs()
    fpn = FPN([8, 16, 32, 64], 16, top_down=False)
    torch.testing.assert_close(fpn(feats)[0], fpn(_perturbed(feats, 3))[0])
    assert not torch.allclose(FPN([8, 16, 32, 64], 16)(feats)[0], FPN([8, 16, 32, 64], 16)(_perturbed(feats, 3))[0])


def test_fpn_upsample_modes_and_channels() -> None:
    feats = _fpn_inputs()
    torch.manual_seed(1)
    nearest = FPN([8, 16, 32, 64], 16, upsample_mode="nearest")
    bilinear = FPN([8, 16, 32, 64], 16, upsample_mode="bilinear")
    bilinear.load_state_dict(nearest.state_dict())
    assert not torch.allclose(nearest(feats)[0], bilinear(feats)[0])
    torch.testing.assert_close(nearest(feats)[3], bilinear(feats)[3])  # the top level is not upsampled
    learned = FPN([8, 16, 32, 64], 16, upsample_mode="transposed")
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in learned.modules()) == 3
    assert [o.shape[1] for o in FPN([8, 16, 32, 64], 48)(feats)] == [48] * 4
    with pytest.raises(ValueError, match="upsample_mode"):
        FPN([8, 16, 32, 64], 16, upsample_mode="cubic")


@pytest.mark.parametrize("attention", ["se", "cbam"])
def test_fpn_attention_hook(attention: str) -> None:
    feats = _fpn_inputs()
    plain, attended = FPN([8, 16, 32, 64], 16), FPN([8, 16, 32, 64], 16, attention=attention)
    assert sum(p.numel() for p in attended.parameters()) > sum(p.numel() for p in plain.parameters())
    outs = attended(feats)
    assert all(att.last_map is not None for att in attended.attention)
    assert [o.shape for o in outs] == [o.shape for o in plain(feats)]
    with pytest.raises(ValueError, match="attention="):
        FPN([8, 16, 32, 64], 16, attention="transformer")


def test_head_fusion_and_norm_options() -> None:
    x = torch.randn(2, 3, 64, 64)
    gn = SegmentationModel(num_classes=4, backbone_name="pvt_v2_b0", norm="gn", fusion="attention").eval()
    assert any(isinstance(m, torch.nn.GroupNorm) for m in gn.head.modules())
    assert gn(x)["p0"].shape == (2, 4, 64, 64)
    assert gn.head.fusion.last_map.shape == (2, 4, 16, 16)
    with pytest.raises(ValueError, match="norm"):
        SegmentationModel(num_classes=4, backbone_name="pvt_v2_b0", norm="ln")


def test_classifier_initialisation() -> None:
    torch.manual_seed(0)
    model = SegmentationModel(num_classes=150, backbone_name="pvt_v2_b0")
    w = model.head.classifier.weight
    assert abs(w.std().item() - 0.01) < 0.002 and model.head.classifier.bias.abs().sum() == 0


def test_unknown_backbone_lists_valid_names() -> None:
    with pytest.raises(ValueError) as err:
        SegmentationModel(num_classes=3, backbone_name="convnext_tinyy")
    message = str(err.value)
    assert "convnext_tinyy" in message and "pvt_v2_b0" in message and "convnext_tiny" in message
    assert "swin_tiny_patch4_window7_224" in list_backbones("swin_tiny*")
    assert list_backbones("mmseg_swin_tiny*") == ["mmseg_swin_tiny_patch4_window7_224"]
    with pytest.raises(ValueError, match="'mmseg_swin_tinyy' is not a timm model"):
        SegmentationModel(num_classes=3, backbone_name="mmseg_swin_tinyy")


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.randn(3, 64, 64), r"\[B, 3, H, W\].*unsqueeze"),
        (torch.randn(1, 4, 64, 64), r"\[1, 4, 64, 64\]"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "floating-point"),
    ],
)
def test_bad_input_tensor_errors(bad: torch.Tensor, match: str) -> None:
    model = SegmentationModel(num_classes=3, backbone_name="pvt_v2_b0")
    with pytest.raises((ValueError, TypeError), match=match):
        model(bad)


def test_pretrained_without_network_names_the_alternative() -> None:
    with pytest.raises(RuntimeError, match="pretrained_path"):
        SegmentationModel(num_classes=3, backbone_name="pvt_v2_b0", pretrained=True)


@pytest.mark.parametrize(
    "name, stem_stride",
    [
        ("resnet18", 2),
        ("resnet50c", 2),
        ("convnext_atto", 4),
        ("pvt_v2_b0", 4),
        ("swin_tiny_patch4_window7_224", 4),
        ("mmseg_swin_tiny_patch4_window7_224", 4),
        ("efficientnet_b0", 2),
        ("mobilenetv3_small_100", 2),
        ("regnetx_002", 2),
    ],
)
def test_backbone_levels_are_chosen_by_stride(name: str, stem_stride: int) -> None:
    """Whatever timm lists first (a ResNet's stride-2 stem), the FPN gets the levels of stride 4/8/16/32, with the
    channels timm reports for them, and the maps really have those strides."""
    torch.manual_seed(0)
    backbone = TimmBackbone(name, img_size=64)
    info = backbone.body.model.feature_info
    assert info[0]["reduction"] == stem_stride
    expected = {level["reduction"]: level["num_chs"] for level in info}
    assert backbone.strides == [4, 8, 16, 32]
    assert backbone.channels == [expected[s] for s in (4, 8, 16, 32)]
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 64, 96))
    expected_shapes = [(c, 64 // s, 96 // s) for c, s in zip(backbone.channels, (4, 8, 16, 32))]
    assert [tuple(f.shape[1:]) for f in feats] == expected_shapes


def test_resnet_segmentation_model_starts_at_layer1() -> None:
    model = SegmentationModel(num_classes=3, backbone_name="resnet18").eval()
    assert model.backbone.body.feature_info.module_name() == ["layer1", "layer2", "layer3", "layer4"]
    assert model(torch.randn(1, 3, 64, 64))["p0"].shape == (1, 3, 64, 64)


def test_single_scale_backbone_is_rejected_with_its_strides() -> None:
    with pytest.raises(ValueError, match=r"'vit_tiny_patch16_224' has no feature level of stride 4/8/32.*strides 16"):
        TimmBackbone("vit_tiny_patch16_224")


def test_frozen_stages_include_the_blocks_between_levels() -> None:
    """EfficientNet's blocks.3 runs between the stride-8 and the stride-16 level: it belongs to stage 3."""
    backbone = TimmBackbone("efficientnet_b0", frozen_stages=2)
    params = dict(backbone.body.named_parameters())
    trainable = {n.split(".")[2] for n, p in params.items() if p.requires_grad and n.startswith("model.blocks.")}
    assert trainable == {"3", "4", "5", "6"}
    assert not params["model.conv_stem.weight"].requires_grad
    assert not params["model.blocks.2.0.conv_pw.weight"].requires_grad


def test_feature_figures_name_levels_by_stride() -> None:
    import matplotlib.pyplot as plt

    from segfpn.utils.visualize import plot_attention_maps, plot_feature_maps

    model = SegmentationModel(num_classes=3, backbone_name="resnet18", attention="cbam", fpn_channels=16).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        pyramid = model.extract_fpn_features(x)
    strides = model.backbone.strides
    fig = plot_feature_maps(pyramid, title="FPN", strides=strides, image_size=(64, 96), input_size=(64, 96))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:4] == [f"stride {s}: channel 0 {(64 // s, 96 // s)}" for s in (4, 8, 16, 32)]
    assert fig._suptitle.get_text() == "FPN feature maps"
    plt.close(fig)
    fig = plot_attention_maps([a.last_map for a in model.neck.attention], strides=strides)
    assert [ax.get_title() for ax in fig.axes] == [f"stride {s}: spatial attention" for s in (4, 8, 16, 32)]
    plt.close(fig)
    with pytest.raises(ValueError, match="4 levels but 3 strides"):
        plot_feature_maps(pyramid, strides=strides[:3])


def test_a_reference_swin_freezes_as_mmseg_does() -> None:
    """mmseg's ``_freeze_stages`` with frozen_stages=2 freezes the patch embedding, ``stages[0..1]`` with their
    patch merging (timm: ``layers.1/2.downsample``) and ``norm0``/``norm1``."""
    backbone = TimmBackbone("mmseg_swin_tiny_patch4_window7_224", img_size=64, frozen_stages=2)
    frozen = {n.removeprefix("model.") for n, p in backbone.body.named_parameters() if not p.requires_grad}
    parts = {".".join(n.split(".")[:3]) if n.startswith("layers.") else ".".join(n.split(".")[:2]) for n in frozen}
    assert parts == {
        "patch_embed.proj", "patch_embed.norm", "layers.0.blocks", "layers.1.downsample", "layers.1.blocks",
        "layers.2.downsample", "out_norms.0", "out_norms.1",
    }  # fmt: skip
