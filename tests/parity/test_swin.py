"""``mmseg_swin_tiny_patch4_window7_224`` against mmseg 1.2.2's own ``SwinTransformer`` (Swin-T as mmseg's
Swin configs build it), loaded from an mmseg-layout checkpoint through ``pretrained_path``: the four output levels at
224x224, 512x512, 512x683 and 375x500 (where stage maps are not whole windows), and the logits of an mmseg Semantic
FPN on it converted by ``segfpn convert``, under the ``mmseg`` protocol. timm's own Swin (shift, then pad; no output
norms) is shown to differ at those sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from segfpn.models.backbone import TimmBackbone
from tests.parity.conftest import import_reference

pytestmark = pytest.mark.parity
SIZES = [(224, 224), (512, 512), (512, 683), (375, 500)]
TOLERANCE = 1e-5  # relative: max |ours - mmseg| / max |mmseg| per level


@pytest.fixture(scope="module")
def mmseg_swin() -> torch.nn.Module:
    """mmseg's Swin-T (the settings of its ``swin`` configs, drop path off), with every LayerNorm and relative
    position table randomised so that the output norms and the attention biases matter."""
    backbones = import_reference("mmseg.models.backbones")
    torch.manual_seed(0)
    model = backbones.SwinTransformer(
        embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7, drop_path_rate=0.0
    )
    model.eval()  # its train() returns None
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(param))
            elif "relative_position_bias_table" in name:
                param.normal_(0, 0.5)
    return model


@pytest.fixture(scope="module")
def mmseg_checkpoint(mmseg_swin: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference's weights as an mmseg segmentor checkpoint holds them (``backbone.`` keys)."""
    path = tmp_path_factory.mktemp("swin") / "upernet_swin_tiny.pth"
    state = {f"backbone.{k}": v for k, v in mmseg_swin.state_dict().items()}
    torch.save({"meta": {"mmseg_version": "1.2.2"}, "state_dict": state}, path)
    return path


def _corner_pad(x: torch.Tensor, divisor: int = 4) -> torch.Tensor:
    """mmseg's ``PatchEmbed(padding="corner")``: zeros at the bottom and right up to whole patches."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % divisor, 0, -h % divisor))


def _relative_diffs(ours: list[torch.Tensor], reference: list[torch.Tensor]) -> list[float]:
    assert [f.shape for f in ours] == [f.shape for f in reference]
    return [float((a - b).abs().max() / b.abs().max()) for a, b in zip(ours, reference)]


def test_every_reference_tensor_is_loaded(mmseg_swin: torch.nn.Module, mmseg_checkpoint: Path) -> None:
    backbone = TimmBackbone("mmseg_swin_tiny_patch4_window7_224", pretrained_path=str(mmseg_checkpoint))
    result = backbone.load_checkpoint(mmseg_checkpoint)
    assert result.missing_keys == [] and result.unexpected_keys == []
    parameters = [p for _, p in backbone.named_parameters()]
    assert len(parameters) == len(list(mmseg_swin.parameters()))
    assert sum(p.numel() for p in parameters) == sum(p.numel() for p in mmseg_swin.parameters())


@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_features_equal_mmseg_swin_at_every_size(
    mmseg_swin: torch.nn.Module, mmseg_checkpoint: Path, size: tuple[int, int]
) -> None:
    torch.manual_seed(1)
    x = torch.randn(1, 3, *size)
    ours = TimmBackbone("mmseg_swin_tiny_patch4_window7_224", pretrained_path=str(mmseg_checkpoint)).eval()
    with torch.no_grad():
        reference = mmseg_swin(x)
        found = ours(_corner_pad(x))
    diffs = _relative_diffs(found, reference)
    print(f"mmseg_swin_tiny vs mmseg SwinTransformer at {size[0]}x{size[1]}: " + " / ".join(f"{d:.1e}" for d in diffs))
    assert max(diffs) <= TOLERANCE, diffs
    if size != (224, 224):  # timm's own computation: stage maps that are not whole windows differ
        timm_swin = TimmBackbone("swin_tiny_patch4_window7_224", img_size=512).eval()
        timm_swin.body.model.load_state_dict(
            {k: v for k, v in ours.body.model.state_dict().items() if not k.startswith("out_norms")}, strict=False
        )
        with torch.no_grad():
            plain = [
                norm(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
                for norm, f in zip(ours.body.model.out_norms, timm_swin(_corner_pad(x)))
            ]
        before = _relative_diffs(plain, reference)
        print(
            f"timm swin_tiny (+ the same output norms) at {size[0]}x{size[1]}: "
            + " / ".join(f"{d:.1e}" for d in before)
        )
        assert max(before) > 1e-3


def test_a_converted_mmseg_swin_semantic_fpn_gives_mmsegs_logits(mmseg_swin: torch.nn.Module, tmp_path: Path) -> None:
    """mmseg's Swin-T under mmseg's FPN + FPNHead, saved as an mmseg 1.x segmentor checkpoint, through
    ``segfpn convert``'s reader and converter: a 512x683 image without padding to 32 (mmseg's whole inference)
    gives mmseg's logits. segfpn's FPN and head are mmseg's (tests/parity/test_decoder.py)."""
    from segfpn.models.from_mmseg import convert_state_dict, read_checkpoint
    from segfpn.training.converted_checkpoint import save_converted
    from segfpn.training.module import SegmentationModule
    from tests.parity.test_decoder import _mmseg_decoder

    torch.manual_seed(2)
    neck, head = _mmseg_decoder([96, 192, 384, 768])
    neck.eval(), head.eval()
    state = {f"backbone.{k}": v for k, v in mmseg_swin.state_dict().items()}
    state.update({f"neck.{k}": v for k, v in neck.state_dict().items()})
    state.update({f"decode_head.{k}": v for k, v in head.state_dict().items()})
    source = tmp_path / "fpn_swin_tiny.pth"
    torch.save({"meta": {"mmengine_version": "0.10.7"}, "state_dict": state, "message_hub": {}}, source)
    conversion = convert_state_dict(*read_checkpoint(source))
    assert conversion.model_args["backbone_name"] == "mmseg_swin_tiny_patch4_window7_224"
    assert conversion.unfilled == [] and conversion.unmapped == {}
    ckpt, _ = save_converted(conversion, tmp_path / "fpn_swin_tiny.ckpt", source)
    model = SegmentationModule.load_from_checkpoint(ckpt, map_location="cpu").eval().model
    x = torch.randn(1, 3, 512, 683)
    with torch.no_grad():
        reference = head.predict(neck(mmseg_swin(x)), [{"img_shape": (512, 683)}], {})
        ours = model(x, pad=False)["p0"]
    assert ours.shape == reference.shape == (1, 150, 512, 683)
    diff = float((ours - reference).abs().max() / reference.abs().max())
    agreement = float((ours.argmax(1) == reference.argmax(1)).float().mean())
    print(f"Semantic FPN mmseg_swin_tiny vs mmseg at 512x683: relative logit diff {diff:.1e}, argmax {agreement:.6f}")
    assert diff <= TOLERANCE, diff
    assert agreement > 0.9999  # random weights: near-tied classes may flip within float noise
