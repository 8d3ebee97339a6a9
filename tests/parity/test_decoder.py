"""segfpn's FPN + SemanticFPNHead against mmseg 1.2.2's ``FPN`` + ``FPNHead`` built from its Semantic FPN
ADE20K config (``sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py``) with copied weights: the same parameters
one to one and the same logits on features of 512x512, 480x640, 512x683 and 375x500 images."""

from __future__ import annotations

import math

import pytest
import torch

from segfpn.models.fpn import FPN
from segfpn.models.head import SemanticFPNHead
from tests.parity.conftest import import_reference, mmseg_config

pytestmark = pytest.mark.parity
ADE20K_CONFIG = "sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py"
BACKBONE_CHANNELS = {
    "pvt_v2_b0": [32, 64, 160, 256],
    "convnext_tiny": [96, 192, 384, 768],
    "resnet50": [256, 512, 1024, 2048],
}


def _mmseg_decoder(in_channels: list[int]) -> tuple[torch.nn.Module, torch.nn.Module]:
    registry = import_reference("mmseg.registry")
    import_reference("mmseg.models")
    from mmengine.registry import init_default_scope

    init_default_scope("mmseg")
    model = mmseg_config(ADE20K_CONFIG).model
    # SyncBN needs a process group; in eval mode it computes what BN computes
    head_cfg = {**model.decode_head, "norm_cfg": {"type": "BN", "requires_grad": True}}
    neck = registry.MODELS.build({**model.neck, "in_channels": in_channels})
    head = registry.MODELS.build(head_cfg)
    return neck, head


def _segfpn_decoder(in_channels: list[int]) -> tuple[torch.nn.Module, torch.nn.Module]:
    model = mmseg_config(ADE20K_CONFIG).model
    neck = FPN(in_channels, model.neck.out_channels)
    head = SemanticFPNHead(
        model.decode_head.in_channels[0],
        model.decode_head.num_classes,
        strides=model.decode_head.feature_strides,
        channels=model.decode_head.channels,
        dropout=model.decode_head.dropout_ratio,
    )
    return neck, head


def _segfpn_name(name: str) -> str:
    """mmseg's decoder parameter names -> segfpn's."""
    parts = name.split(".")
    if parts[0] == "scale_heads":  # scale_heads.i.j.{conv,bn}.x -> scale_heads.i.j.{0,1}.x
        return ".".join([*parts[:3], {"conv": "0", "bn": "1"}[parts[3]], *parts[4:]])
    return name.replace(".conv.", ".").replace("fpn_convs", "output_convs").replace("conv_seg", "classifier")


def _copy(reference: torch.nn.Module, ours: torch.nn.Module) -> int:
    """Load mmseg's weights into segfpn's module; returns the number of state-dict entries."""
    mapped = {_segfpn_name(k): v for k, v in reference.state_dict().items()}
    assert set(mapped) == set(ours.state_dict()), set(mapped) ^ set(ours.state_dict())
    ours.load_state_dict(mapped)
    return len(mapped)


@pytest.mark.parametrize("backbone", sorted(BACKBONE_CHANNELS))
def test_same_parameters(backbone: str) -> None:
    (ref_neck, ref_head), (neck, head) = (
        _mmseg_decoder(BACKBONE_CHANNELS[backbone]),
        _segfpn_decoder(BACKBONE_CHANNELS[backbone]),
    )
    # 60 entries one to one: 39 parameters + the 7 BatchNorms' 3 buffers each
    assert _copy(ref_neck, neck) + _copy(ref_head, head) == 60
    assert sum(1 for m in (neck, head) for _ in m.parameters()) == 39
    for ref, ours in ((ref_neck, neck), (ref_head, head)):
        assert sum(p.numel() for p in ref.parameters()) == sum(p.numel() for p in ours.parameters())


@torch.no_grad()
@pytest.mark.parametrize("image_size", [(512, 512), (480, 640), (512, 683), (375, 500)])
def test_same_logits(image_size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    in_channels = BACKBONE_CHANNELS["pvt_v2_b0"]
    (ref_neck, ref_head), (neck, head) = _mmseg_decoder(in_channels), _segfpn_decoder(in_channels)
    for module in ref_head.modules():  # non-trivial BN statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_(1, 0.2)
            module.bias.data.normal_(0, 0.2)
    _copy(ref_neck, neck)
    _copy(ref_head, head)
    for m in (ref_neck, ref_head, neck, head):
        m.eval()
    h, w = image_size
    features = [torch.randn(1, c, math.ceil(h / s), math.ceil(w / s)) for c, s in zip(in_channels, (4, 8, 16, 32))]
    expected = ref_head(list(ref_neck(features)))
    got = head(neck(features))
    assert got.shape == expected.shape == (1, 150, math.ceil(h / 4), math.ceil(w / 4))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
