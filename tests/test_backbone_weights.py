"""Local backbone checkpoints (timm and original key names, .pth and .safetensors) and stage freezing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from segfpn.models import SegmentationModel


def _backbone_state(model: SegmentationModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.backbone.body.model.state_dict().items()}


def _assert_same_backbone(a: dict[str, torch.Tensor], model: SegmentationModel) -> None:
    b = model.backbone.body.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    return _backbone_state(SegmentationModel(num_classes=3, backbone_name="pvt_v2_b0"))


def test_pth_round_trip_with_timm_keys(tmp_path: Path, source: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "pvt.pth"
    torch.save({"state_dict": {**source, "head.weight": torch.zeros(1000, 256)}}, path)
    torch.manual_seed(0)
    model = SegmentationModel(num_classes=3, backbone_name="pvt_v2_b0", pretrained_path=str(path))
    _assert_same_backbone(source, model)


def test_safetensors_round_trip(tmp_path: Path, source: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "pvt.safetensors"
    save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    model = SegmentationModel(num_classes=3, backbone_name="pvt_v2_b0", pretrained_path=str(path))
    _assert_same_backbone(source, model)


def _to_original_pvt_keys(key: str) -> str:
    """timm's pvt_v2 names -> the original PVTv2 repository's names."""
    key = re.sub(r"^stages\.(\d+)\.downsample\.", lambda m: f"patch_embed{int(m.group(1)) + 1}.", key)
    key = key.replace("patch_embed.", "patch_embed1.") if key.startswith("patch_embed.") else key
    key = re.sub(r"^stages\.(\d+)\.blocks\.(\d+)", lambda m: f"block{int(m.group(1)) + 1}.{m.group(2)}", key)
    key = re.sub(r"^stages\.(\d+)\.norm", lambda m: f"norm{int(m.group(1)) + 1}", key)
    return key.replace("mlp.dwconv.", "mlp.dwconv.dwconv.")


def test_original_repository_key_names(tmp_path: Path, source: dict[str, torch.Tensor]) -> None:
    original = {_to_original_pvt_keys(k): v for k, v in source.items()}
    assert "block1.0.attn.q.weight" in original and "patch_embed2.proj.weight" in original
    path = tmp_path / "pvt_v2_b0_original.pth"
    torch.save(original, path)
    model = SegmentationModel(num_classes=3, backbone_name="pvt_v2_b0", pretrained_path=str(path))
    _assert_same_backbone(source, model)


def test_missing_and_unexpected_keys_are_reported(
    tmp_path: Path, source: dict[str, torch.Tensor], caplog: pytest.LogCaptureFixture
) -> None:
    partial = {k: v for k, v in source.items() if not k.startswith("stages.3")}
    partial["extra.weight"] = torch.zeros(3)
    path = tmp_path / "partial.pth"
    torch.save(partial, path)
    model = SegmentationModel(num_classes=3, backbone_name="pvt_v2_b0")
    result = model.backbone.load_checkpoint(path)
    assert result.missing_keys and all(k.startswith("stages.3") for k in result.missing_keys)
    assert result.unexpected_keys == ["extra.weight"]
    assert "missing" in caplog.text and "unexpected" in caplog.text


def test_checkpoint_of_another_backbone_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match="none of its 1 tensors fits backbone 'pvt_v2_b0'"):
        SegmentationModel(num_classes=3, backbone_name="pvt_v2_b0", pretrained_path=str(path))
    with pytest.raises(FileNotFoundError, match="no_such.pth"):
        SegmentationModel(num_classes=3, backbone_name="pvt_v2_b0", pretrained_path=str(tmp_path / "no_such.pth"))


@pytest.mark.parametrize("frozen_stages, trainable_from", [(-1, None), (0, 0), (2, 2), (4, 4)])
def test_frozen_stages(frozen_stages: int, trainable_from: int | None) -> None:
    model = SegmentationModel(num_classes=3, backbone_name="convnext_tiny", frozen_stages=frozen_stages).train()
    params = dict(model.backbone.body.model.named_parameters())
    assert params["stem.0.weight"].requires_grad == (frozen_stages < 0)
    for stage in range(4):
        expected = trainable_from is None or stage >= trainable_from
        assert params[f"stages.{stage}.blocks.0.conv_dw.weight"].requires_grad == expected
    assert all(p.requires_grad for p in model.head.parameters())
    if frozen_stages >= 0:
        assert not model.backbone.body.model.stem.training
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(2, 3, 64, 64))["p0"].mean().backward()
    opt.step()
    after = model.backbone.state_dict()
    assert torch.equal(before["body.model.stem.0.weight"], after["body.model.stem.0.weight"]) == (frozen_stages >= 0)
