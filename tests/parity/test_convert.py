"""`segfpn convert` against mmsegmentation's own Semantic FPN: the reference model is built from mmseg's sem_fpn
R-50 ADE20K config (ResNetV1c-50 + FPN + FPNHead) or from mmseg's FPN/FPNHead on timm's pvt_v2_b0, with random
weights and randomised BatchNorm statistics; its state dict is saved in each published key layout (mmseg 1.x,
mmseg 0.x, PVTv2-Seg), converted, and the converted segfpn model's logits are compared on real ADE20K images."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from segfpn.cli import main as segfpn_main
from segfpn.datasets.ade20k_classes import ADE20K_CLASSES
from segfpn.errors import CheckpointError
from segfpn.models import SegmentationModel
from segfpn.models.from_mmseg import convert_state_dict, read_checkpoint
from segfpn.training.converted_checkpoint import save_converted
from segfpn.training.module import SegmentationModule
from tests.test_backbone_weights import _to_original_pvt_keys

pytestmark = pytest.mark.parity

SIZES = [(512, 512), (512, 683)]
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)


def _image(samples_root: Path, index: int, size: tuple[int, int]) -> torch.Tensor:
    """Real validation image ``index``, resized to ``size`` (H, W) and ImageNet-normalised, [1, 3, H, W]."""
    path = sorted((samples_root / "images" / "validation").glob("*.jpg"))[index]
    img = Image.open(path).convert("RGB").resize(size[::-1], Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].float()
    return (x - MEAN) / STD


def _randomise_norms(model: nn.Module, calibrate: types.FunctionType) -> None:
    """BatchNorm statistics measured on a real image, then perturbed, and perturbed affine parameters of every
    norm layer: the conversion must carry them all (running statistics included) to give the same logits."""
    g = torch.Generator().manual_seed(0)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        calibrate()
    model.eval()
    with torch.no_grad():
        for m in bns:
            m.running_mean += 0.1 * torch.randn(m.running_mean.shape, generator=g) * m.running_var.sqrt()
            m.running_var *= torch.empty(m.running_var.shape).uniform_(0.7, 1.4, generator=g)
        for m in model.modules():
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.mul_(torch.empty(m.weight.shape).uniform_(0.8, 1.2, generator=g))
                m.bias.add_(0.05 * torch.randn(m.bias.shape, generator=g))


def _compare(reference: torch.Tensor, converted: torch.Tensor) -> tuple[float, float]:
    assert reference.shape == converted.shape
    diff = (reference - converted).abs().max().item()
    agreement = (reference.argmax(1) == converted.argmax(1)).float().mean().item()
    return diff, agreement


def _unpadded_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mmseg's whole-image inference on segfpn's parts: the unpadded image, logits resized to its size."""
    logits = model.head(model.neck(model.backbone(x)))
    return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


# -- mmseg ResNetV1c-50 Semantic FPN ------------------------------------------------------------------


@pytest.fixture(scope="module")
def mmseg_r50(mmseg: types.ModuleType, samples_root: Path) -> tuple[nn.Module, str]:
    """mmseg's sem_fpn R-50 ADE20K model (its own config; SyncBN -> BN on one CPU process) and the config text."""
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    configs = Path(mmseg.__file__).parent / ".mim" / "configs"
    cfg = Config.fromfile(str(configs / "sem_fpn" / "fpn_r50_4xb4-160k_ade20k-512x512.py"))
    cfg.model.pretrained = None
    cfg.model.backbone.norm_cfg = cfg.model.decode_head.norm_cfg = {"type": "BN", "requires_grad": True}
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    x = _image(samples_root, 2, (256, 256))
    _randomise_norms(model, lambda: model.decode_head(model.extract_feat(x)))
    return model, cfg.pretty_text


def _mmseg_checkpoint(state: dict, config_text: str, version: str) -> dict:
    """The checkpoint dict mmseg writes: 1.x through mmengine's Runner, 0.x through mmcv's save_checkpoint."""
    if version == "1.x":
        meta = {
            "dataset_meta": {"classes": ADE20K_CLASSES, "palette": [[0, 0, 0]] * 150},
            "mmengine_version": "0.10.7",
            "cfg": config_text,
            "iter": 160000,
        }
        return {"meta": meta, "state_dict": state, "message_hub": {}, "optimizer": {}, "param_schedulers": []}
    meta = {"mmseg_version": "0.5.0+b2724da", "config": config_text, "CLASSES": ADE20K_CLASSES, "iter": 160000}
    return {"meta": meta, "state_dict": state, "optimizer": {}}


@pytest.fixture(scope="module")
def converted_r50(
    mmseg_r50: tuple[nn.Module, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[SegmentationModule, Path]]:
    """The reference saved in both mmseg layouts, converted and written as segfpn checkpoints, loaded back."""
    model, config_text = mmseg_r50
    out = {}
    for version in ("1.x", "0.x"):
        folder = tmp_path_factory.mktemp(f"mmseg{version}")
        torch.save(_mmseg_checkpoint(model.state_dict(), config_text, version), folder / "fpn_r50.pth")
        state, meta, layout = read_checkpoint(folder / "fpn_r50.pth")
        assert layout == f"mmseg-{version}"
        conversion = convert_state_dict(state, meta, layout)
        assert conversion.unmapped == {} and conversion.unfilled == []
        assert conversion.classes == list(ADE20K_CLASSES)
        ckpt, _ = save_converted(conversion, folder / "fpn_r50.ckpt", folder / "fpn_r50.pth")
        out[version] = SegmentationModule.load_from_checkpoint(ckpt, map_location="cpu").eval(), ckpt
    return out


def test_resnet_v1c_maps_onto_timm_resnet50c(converted_r50: dict[str, tuple[SegmentationModule, Path]]) -> None:
    module, _ = converted_r50["1.x"]
    hp = module.hparams
    assert (hp.backbone_name, hp.num_classes, hp.fpn_channels, hp.head_channels, hp.norm) == (
        "resnet50c",
        150,
        256,
        128,
        "bn",
    )
    assert module.model.backbone.strides == [4, 8, 16, 32]
    assert module.model.backbone.channels == [256, 512, 1024, 2048]
    other = converted_r50["0.x"][0].state_dict()
    assert all(torch.equal(v, other[k]) for k, v in module.state_dict().items())


@pytest.fixture(scope="module")
def r50_reference_logits(
    mmseg_r50: tuple[nn.Module, str], samples_root: Path
) -> dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]]:
    """Per size: a real image and mmseg's whole-image logits for it (``EncoderDecoder.encode_decode``)."""
    model, _ = mmseg_r50
    out = {}
    for index, size in enumerate(SIZES):
        x = _image(samples_root, index, size)
        with torch.no_grad():
            out[size] = x, model.encode_decode(x, [{"img_shape": size}])
    return out


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("version", ["1.x", "0.x"])
def test_converted_r50_logits_equal_mmseg(
    r50_reference_logits: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]],
    converted_r50: dict[str, tuple[SegmentationModule, Path]],
    version: str,
    size: tuple[int, int],
) -> None:
    module, _ = converted_r50[version]
    x, reference = r50_reference_logits[size]
    with torch.no_grad():
        converted = _unpadded_logits(module.model, x)
    diff, agreement = _compare(reference, converted)
    line = f"\nmmseg {version} R-50 {size[0]}x{size[1]}: unpadded max|diff| {diff:.2e} argmax agreement {agreement:.6f}"
    if version == "1.x" and size[1] % 32:  # segfpn's pad-to-32-and-crop for the record (a no-op on multiples of 32)
        with torch.no_grad():
            pad_diff, pad_agreement = _compare(reference, module.model(x)["p0"])
        line += f"; pad-and-crop max|diff| {pad_diff:.2e} agreement {pad_agreement:.6f}"
    print(line + f" (max|logit| {reference.abs().max():.1f})")
    assert diff <= 1e-5 * max(1.0, reference.abs().max().item())
    assert agreement > 0.9999


def test_convert_reports_unmapped_keys_and_fills(mmseg_r50: tuple[nn.Module, str]) -> None:
    """An auxiliary head and an unknown neck tensor are reported; a missing head tensor is reported as unfilled."""
    model, _ = mmseg_r50
    state = dict(model.state_dict())
    state["auxiliary_head.conv_seg.weight"] = torch.zeros(150, 256, 1, 1)
    state["neck.extra_convs.0.conv.weight"] = torch.zeros(256, 256, 3, 3)
    del state["decode_head.scale_heads.3.2.bn.running_mean"]
    conversion = convert_state_dict(state)
    assert set(conversion.unmapped) == {"auxiliary_head.conv_seg.weight", "neck.extra_convs.0.conv.weight"}
    assert conversion.unfilled == ["head.scale_heads.3.2.1.running_mean"]
    report = conversion.report()
    assert "auxiliary_head.conv_seg.weight" in report and "head.scale_heads.3.2.1.running_mean" in report


@pytest.mark.parametrize(
    "mmseg_class, depth, timm_name",
    [("ResNetV1c", 101, "resnet101c"), ("ResNetV1d", 50, "resnet50d"), ("ResNet", 50, "resnet50")],
)
def test_other_mmseg_resnets_map_onto_their_timm_variant(
    mmseg_r50: tuple[nn.Module, str], mmseg_class: str, depth: int, timm_name: str
) -> None:
    """The variant comes from the key structure (V1d = V1c's shapes plus avg_down: a different network), and the
    converted backbone's features equal mmseg's (small input: the R-50 tests cover the full-size logits)."""
    from mmseg.models import backbones

    torch.manual_seed(0)
    reference = getattr(backbones, mmseg_class)(depth=depth)
    x = torch.randn(1, 3, 64, 96)
    _randomise_norms(reference, lambda: reference(x))
    state = {f"backbone.{k}": v for k, v in reference.state_dict().items()}
    state.update({k: v for k, v in mmseg_r50[0].state_dict().items() if not k.startswith("backbone.")})
    conversion = convert_state_dict(state)
    assert conversion.model_args["backbone_name"] == timm_name
    assert conversion.unmapped == {} and conversion.unfilled == []
    model = SegmentationModel(**conversion.model_args).eval()
    model.load_state_dict(conversion.state_dict)
    with torch.no_grad():
        for ours, theirs in zip(model.backbone(x), reference(x)):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5 * max(1.0, theirs.abs().max().item()))


def test_real_cli_validates_a_converted_checkpoint(
    mmseg_r50: tuple[nn.Module, str], synthetic_root: Path, tmp_path: Path
) -> None:
    """`segfpn convert` then `segfpn validate --ckpt_path` (the real CLI, in a subprocess) loads and scores it."""
    model, config_text = mmseg_r50
    torch.save(_mmseg_checkpoint(model.state_dict(), config_text, "1.x"), tmp_path / "fpn_r50.pth")
    segfpn_main(["convert", str(tmp_path / "fpn_r50.pth"), "--out", str(tmp_path / "out" / "fpn_r50.ckpt")])
    ckpt, config = tmp_path / "out" / "fpn_r50.ckpt", tmp_path / "out" / "fpn_r50.yaml"
    assert "segfpn validate --config" in config.read_text()
    command = [sys.executable, "-m", "segfpn", "validate", "--config", str(config), "--ckpt_path", str(ckpt)]
    command += [f"--data.data_root={synthetic_root}", "--data.num_workers=0", "--trainer.logger=false"]
    command += [f"--trainer.default_root_dir={tmp_path / 'run'}", "--model.inference.test_scale=[160, 128]"]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val/mIoU" in result.stdout + result.stderr


def test_strict_refuses_a_partial_conversion(
    mmseg_r50: tuple[nn.Module, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = {k: v for k, v in mmseg_r50[0].state_dict().items() if not k.startswith("decode_head.scale_heads.3.")}
    torch.save({"state_dict": state, "meta": {}}, tmp_path / "partial.pth")
    with pytest.raises(SystemExit) as stop:
        segfpn_main(["convert", str(tmp_path / "partial.pth"), "--out", str(tmp_path / "p.ckpt"), "--strict"])
    assert stop.value.code == 2 and "model keys not filled" in capsys.readouterr().err
    assert not (tmp_path / "p.ckpt").exists()


@pytest.mark.parametrize(
    "state, message",
    [
        ({"decode_head.conv_seg.weight": torch.zeros(3, 8, 1, 1)}, "no 'backbone.\\*' keys"),
        ({"backbone.stages.0.weight": torch.zeros(3)}, "unknown backbone layout.*stages.0.weight"),
    ],
)
def test_unknown_layouts_are_named(state: dict[str, torch.Tensor], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        convert_state_dict(state)


def test_checkpoint_pickling_classes_that_are_not_installed_still_reads(tmp_path: Path) -> None:
    """mmengine pickles its message hub's HistoryBuffer objects into 1.x checkpoints: the weights must still read."""
    module = types.ModuleType("segfpn_test_absent_module")
    history = type("HistoryBuffer", (), {"__module__": module.__name__})
    module.HistoryBuffer = history
    sys.modules[module.__name__] = module
    try:
        meta = {"mmengine_version": "0.10.7"}
        checkpoint = {"meta": meta, "state_dict": {"w": torch.ones(2)}, "message_hub": {"log": history()}}
        torch.save(checkpoint, tmp_path / "c")
    finally:
        del sys.modules[module.__name__]
    with pytest.raises(ModuleNotFoundError):
        torch.load(tmp_path / "c", weights_only=False)
    state, meta, layout = read_checkpoint(tmp_path / "c")
    assert layout == "mmseg-1.x" and torch.equal(state["w"], torch.ones(2))


# -- PVTv2-Seg (the PVT authors' code): original PVTv2 key names + mmseg 0.x neck/head --------------------


@pytest.fixture(scope="module")
def pvt_reference(mmseg: types.ModuleType, samples_root: Path) -> tuple[nn.Module, nn.Module, nn.Module]:
    """timm pvt_v2_b0 (features_only) + mmseg's FPN + FPNHead with the PVTv2-Seg b0 config's settings."""
    from mmseg.models.decode_heads import FPNHead
    from mmseg.models.necks import FPN as MMSegFPN

    torch.manual_seed(0)
    backbone = timm.create_model("pvt_v2_b0", features_only=True, feature_cls="getter")
    neck = MMSegFPN(in_channels=[32, 64, 160, 256], out_channels=256, num_outs=4)
    head = FPNHead(
        in_channels=[256] * 4,
        in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32],
        channels=128,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg={"type": "BN", "requires_grad": True},
        align_corners=False,
    )
    everything = nn.ModuleDict({"backbone": backbone, "neck": neck, "decode_head": head})
    x = _image(samples_root, 2, (256, 256))
    _randomise_norms(everything, lambda: head(neck(backbone(x))))
    return backbone, neck, head


def test_pvtv2_seg_layout_converts_through_timm_filter(
    pvt_reference: tuple[nn.Module, nn.Module, nn.Module], samples_root: Path, tmp_path: Path
) -> None:
    backbone, neck, head = pvt_reference
    original = {_to_original_pvt_keys(k.removeprefix("model.")): v for k, v in backbone.state_dict().items()}
    assert {"patch_embed1.proj.weight", "block1.0.attn.q.weight", "block4.1.mlp.dwconv.dwconv.weight"} <= set(original)
    assert {"norm1.weight", "block1.0.attn.sr.weight", "block1.0.attn.kv.weight"} <= set(original)
    state = {f"backbone.{k}": v for k, v in original.items()}
    state.update({f"neck.{k}": v for k, v in neck.state_dict().items()})
    state.update({f"decode_head.{k}": v for k, v in head.state_dict().items()})
    meta = {"mmseg_version": "0.13.0", "CLASSES": ADE20K_CLASSES, "config": "backbone=dict(type='pvt_v2_b0')"}
    torch.save({"meta": meta, "state_dict": state}, tmp_path / "fpn_pvtv2_b0.pth")
    conversion = convert_state_dict(*read_checkpoint(tmp_path / "fpn_pvtv2_b0.pth"))
    assert conversion.layout == "pvtv2-seg" and conversion.model_args["backbone_name"] == "pvt_v2_b0"
    assert conversion.unmapped == {} and conversion.unfilled == []
    ckpt, _ = save_converted(conversion, tmp_path / "fpn_pvtv2_b0.ckpt")
    model = SegmentationModule.load_from_checkpoint(ckpt, map_location="cpu").eval().model
    for index, size in enumerate(SIZES):
        x = _image(samples_root, index, size)
        with torch.no_grad():
            logits = head(neck(backbone(x)))
            reference = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            converted = _unpadded_logits(model, x)
            padded = model(x)["p0"]
        diff, agreement = _compare(reference, converted)
        pad_diff, pad_agreement = _compare(reference, padded)
        print(
            f"\nPVTv2-Seg b0 {size[0]}x{size[1]}: unpadded max|diff| {diff:.2e} agreement {agreement:.6f}; "
            f"pad-and-crop max|diff| {pad_diff:.2e} agreement {pad_agreement:.6f}"
        )
        assert diff <= 1e-5 * max(1.0, reference.abs().max().item())
        assert agreement > 0.9999


def test_reading_a_checkpoint_runs_no_code_from_it(tmp_path: Path) -> None:
    """A pickled call to an installed function (here os.remove) becomes a placeholder, it is not called."""
    victim = tmp_path / "victim.txt"
    victim.write_text("still here")

    class Payload:
        def __reduce__(self) -> tuple:
            return os.remove, (str(victim),)

    torch.save({"meta": {"evil": Payload()}, "state_dict": {"w": torch.ones(2)}}, tmp_path / "evil.pth")
    state, _, _ = read_checkpoint(tmp_path / "evil.pth")
    assert victim.read_text() == "still here" and torch.equal(state["w"], torch.ones(2))


@pytest.mark.parametrize("file_format", ["plain pickle", "torch legacy", "torch zip"])
def test_no_file_format_runs_code_when_read(tmp_path: Path, file_format: str) -> None:
    """A pickled ``os.system`` call in each format a checkpoint can come in: refused or a placeholder, never run."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple:
            return os.system, (f"touch {marker}",)

    checkpoint, path = {"meta": {"evil": Payload()}, "state_dict": {"w": torch.ones(2)}}, tmp_path / "evil.pth"
    if file_format == "plain pickle":
        path.write_bytes(pickle.dumps(checkpoint))
    else:
        torch.save(checkpoint, path, _use_new_zipfile_serialization=file_format == "torch zip")
    try:
        state, _, _ = read_checkpoint(path)
        assert torch.equal(state["w"], torch.ones(2))
    except CheckpointError as error:
        assert str(path) in str(error)
    assert not marker.exists()


def test_a_torchscript_archive_is_refused_unloaded(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), path)
    with pytest.raises(CheckpointError, match="a TorchScript archive .* does not load TorchScript"):
        read_checkpoint(path)


def test_convert_never_overwrites_its_source_nor_existing_files_unasked(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = tmp_path / "model.pth"
    source.write_bytes(b"the source checkpoint")
    (tmp_path / "done.ckpt").write_bytes(b"an earlier conversion")
    cases = {
        "model.yaml": "name the checkpoint (.ckpt); its YAML config is written beside it",
        "model.pth": "is the input file itself",
        "done.ckpt": "exists; pass --overwrite",
    }
    for out, message in cases.items():
        with pytest.raises(SystemExit):
            segfpn_main(["convert", str(source), "--out", str(tmp_path / out)])
        assert message in capsys.readouterr().err, out
    assert source.read_bytes() == b"the source checkpoint"
    assert (tmp_path / "done.ckpt").read_bytes() == b"an earlier conversion"
