"""segfpn export: ONNX (onnxruntime) and TorchScript files give Segmenter's logits on real images of odd sizes, for
the three published backbones and mmseg's R-50, under the mmseg and pad protocols; the command writes, describes and
checks its file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from segfpn.commands.export import main as export_main
from segfpn.datasets.base import load_image
from segfpn.datasets.info import DatasetInfo
from segfpn.datasets.transforms import resize_image
from segfpn.errors import CheckpointError, ConfigError
from segfpn.inference.export import (
    compare_logits,
    export_network,
    load_exported,
    prepare_input,
    read_metadata,
    to_image_size,
)
from segfpn.inference.predictor import Segmenter, TrainedNetwork
from segfpn.inference.protocols import InferenceConfig
from segfpn.models.segmentation_model import SegmentationModel

pytest.importorskip("onnxruntime")

# the published configs' model options (configs/*_fpn_ade20k.yaml) that change the network, and mmseg's R-50's
# backbone (what `segfpn convert` gives); pretrained=False
CONFIGS = {
    "convnext_tiny": {"img_size": 512},
    "pvt_v2_b0": {"img_size": 512, "drop_path_rate": 0.1},
    "mmseg_swin_tiny_patch4_window7_224": {"img_size": 512},
    "resnet50c": {},
}
SIZES = [(375, 500), (333, 517), (512, 683), (97, 131)]  # odd sizes: no multiple of 4 or 32
TOLERANCE = 1e-3


def real_images(samples_root: Path) -> list[np.ndarray]:
    """The real samples resized to :data:`SIZES` (the first sample is 512x683 already)."""
    pixels = [load_image(p) for p in sorted((samples_root / "images" / "validation").glob("*.jpg"))]
    return [resize_image(pixels[i % len(pixels)], size) for i, size in enumerate(SIZES)]


@pytest.mark.parametrize("protocol", ["mmseg", "pad"])
@pytest.mark.parametrize("backbone", list(CONFIGS))
def test_exported_models_give_segmenters_logits_at_odd_sizes(
    backbone: str, protocol: str, samples_root: Path, tmp_path: Path
) -> None:
    """Exported vs ``Segmenter`` (what ``segfpn predict`` computes) on real images of odd sizes: the graph pads
    (Swin to its patch size under ``mmseg``, to 32 under ``pad``) and crops or resizes inside itself."""
    torch.manual_seed(0)
    model = SegmentationModel(num_classes=150, backbone_name=backbone, pretrained=False, **CONFIGS[backbone])
    network = TrainedNetwork(model, channels_last=True).eval()  # the configs train channels_last
    info = DatasetInfo.generic(150)
    config = InferenceConfig(protocol=protocol, test_scale=(683, 512) if protocol == "mmseg" else None)
    segmenter = Segmenter(network, config, info)
    runs = {
        fmt: load_exported(export_network(network, tmp_path / f"m.{fmt}", fmt, info, inference=config), fmt)
        for fmt in ("onnx", "torchscript")
    }
    images = real_images(samples_root) if protocol == "mmseg" else real_images(samples_root)[-1:]
    for pixels in images:
        expected = segmenter.logits(pixels)[None].numpy()
        x, h, w = prepare_input(pixels, info, config)
        for fmt, run in runs.items():
            found = to_image_size(run(x.numpy()), h, w)
            parity = compare_logits(expected, found)
            assert parity.max_abs_diff < TOLERANCE, (fmt, pixels.shape, parity)
            # random weights give near-equal logits: a pixel whose top two classes are closer than the float
            # noise may flip; every other pixel must agree
            assert parity.untied_disagreements == 0 and parity.argmax_agreement > 0.9999, (fmt, pixels.shape, parity)


def test_an_exported_file_refuses_a_batch_it_cannot_take(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SegmentationModel(num_classes=3, backbone_name="pvt_v2_b0", fpn_channels=16, head_channels=16)
    path = export_network(TrainedNetwork(model).eval(), tmp_path / "m.onnx", "onnx", DatasetInfo.generic(3))
    run = load_exported(path, "onnx")
    for bad, found in [
        (np.zeros((1, 4, 64, 64), np.float32), r"got float32 \[1, 4, 64, 64\]"),
        (np.zeros((64, 64, 3), np.uint8), r"got uint8 \[64, 64, 3\]"),
        (np.zeros((1, 3, 64, 64), np.float64), r"got float64"),
    ]:
        with pytest.raises(ConfigError, match=rf"takes a normalised float32 batch \[B, 3, H, W\] .*{found}"):
            run(bad)


def _save_checkpoint(path: Path, info: DatasetInfo) -> SegmentationModel:
    """A checkpoint as segfpn fit writes it (hyper-parameters + ``model.*`` weights) for a tiny network."""
    torch.manual_seed(0)
    args = {"num_classes": info.num_classes, "backbone_name": "pvt_v2_b0", "fpn_channels": 16, "head_channels": 16}
    model = SegmentationModel(**args).eval()
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"hyper_parameters": {**args, "dataset_info": info.as_dict()}, "state_dict": state}, path)
    return model


def test_export_command_writes_a_checked_file_with_its_description(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = DatasetInfo("toy", ("sky", "road", "car"), mean=(100.0, 110.0, 120.0), std=(50.0, 55.0, 60.0))
    ckpt = tmp_path / "toy.ckpt"
    model = _save_checkpoint(ckpt, info)
    export_main(["--ckpt_path", str(ckpt), "--format", "onnx", "--labels"])
    out = capsys.readouterr().out
    written = tmp_path / "toy-labels.onnx"
    assert f"wrote {written} (" in out and "MB, onnx)" in out and "labels differing 0" in out
    meta = read_metadata(written, "onnx")
    assert DatasetInfo.from_dict(meta["dataset_info"]) == info and meta["size_divisor"] == 32
    x = torch.randn(3, 3, 160, 64)
    with torch.no_grad():
        expected = model(x, pad=False)["p0"].argmax(1).numpy()
    np.testing.assert_array_equal(load_exported(written, "onnx")(x.numpy()), expected)

    export_main(["--ckpt_path", str(ckpt), "--format", "torchscript", "--output", str(tmp_path / "ts" / "m.pt")])
    assert "max abs logit difference" in capsys.readouterr().out
    assert read_metadata(tmp_path / "ts" / "m.pt", "torchscript")["dataset_info"]["classes"] == list(info.classes)


def test_export_command_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        export_main(["--ckpt_path", str(tmp_path / "none.ckpt"), "--format", "onnx"])
    with pytest.raises(SystemExit):  # argparse: invalid choice
        export_main(["--ckpt_path", str(tmp_path / "none.ckpt"), "--format", "tflite"])


def test_export_never_replaces_its_checkpoint_nor_an_existing_file_unasked(tmp_path: Path) -> None:
    info = DatasetInfo("toy", ("sky", "road", "car"))
    ckpt = tmp_path / "m.pt"  # a checkpoint named as TorchScript's default output would be
    _save_checkpoint(ckpt, info)
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    with pytest.raises(ConfigError, match=r"--output '.*m\.pt' is the input file itself"):
        export_main(["--ckpt_path", str(ckpt), "--format", "torchscript"])
    with pytest.raises(ConfigError, match="is the input file itself"):
        export_main(["--ckpt_path", str(ckpt), "--format", "onnx", "--output", str(ckpt), "--overwrite"])
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == digest
    existing = tmp_path / "m.onnx"
    existing.write_text("an earlier export")
    with pytest.raises(ConfigError, match=r"'.*m\.onnx' exists; pass --overwrite"):
        export_main(["--ckpt_path", str(ckpt), "--format", "onnx", "--no_check"])
    assert existing.read_text() == "an earlier export"
    export_main(["--ckpt_path", str(ckpt), "--format", "onnx", "--no_check", "--overwrite"])
    assert read_metadata(existing, "onnx")["dataset_info"]["classes"] == list(info.classes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.pt"]  # no temp file left beside them


def _limited_file_size(limit: int) -> None:
    """In the child: files may grow to ``limit`` bytes; a write beyond fails with EFBIG (as on a full disk)."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_an_export_that_cannot_be_written_is_one_line_and_leaves_the_old_file(tmp_path: Path, fmt: str) -> None:
    import os
    import subprocess
    import sys

    ckpt = tmp_path / "m.ckpt"
    _save_checkpoint(ckpt, DatasetInfo("toy", ("sky", "road", "car")))
    output = tmp_path / "out" / "m.bin"
    output.parent.mkdir()
    output.write_text("an earlier export")
    command = [sys.executable, "-m", "segfpn", "export", "--ckpt_path", str(ckpt), "--format", fmt]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [*command, "--output", str(output), "--overwrite", "--no_check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: _limited_file_size(ckpt.stat().st_size // 4),  # the export is about as big
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"segfpn: error: '{output}': File too large (EFBIG)" in result.stderr
    assert output.read_text() == "an earlier export" and sorted(output.parent.iterdir()) == [output]
    result = subprocess.run(
        [*command, "--output", "/proc/no-such-folder/m.bin"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "segfpn: error: '/proc/no-such-folder': No such file or directory (ENOENT)" in result.stderr
