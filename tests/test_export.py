"""segfpn export: ONNX (onnxruntime) and TorchScript files give PyTorch's logits on the real samples, for the three
published backbones, at sizes other than the trace size; the command writes, describes and checks its file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from segfpn.commands.export import main as export_main
from segfpn.datasets.base import load_image
from segfpn.datasets.info import DatasetInfo
from segfpn.datasets.transforms import eval_size, resize_image
from segfpn.errors import CheckpointError, ConfigError
from segfpn.export import TRACE_SIZE, compare_logits, export_network, load_exported, prepare_input, read_metadata
from segfpn.models.segmentation_model import SegmentationModel
from segfpn.predictor import TrainedNetwork

pytest.importorskip("onnxruntime")

# the published configs' model options (configs/*_fpn_ade20k.yaml) that change the network; pretrained=False
CONFIGS = {
    "convnext_tiny": {"img_size": 512},
    "pvt_v2_b0": {"img_size": 512, "drop_path_rate": 0.1},
    "mmseg_swin_tiny_patch4_window7_224": {"img_size": 512},
}
TOLERANCE = 1e-3


def padded_inputs(samples_root: Path, ratio: float = 1.0) -> list[tuple[torch.Tensor, int, int]]:
    """The real images resized by ``ratio`` (keeping their aspect ratio), as :func:`prepare_input` gives them."""
    inputs = []
    for path in sorted((samples_root / "images" / "validation").glob("*.jpg")):
        pixels = load_image(path)
        pixels = resize_image(pixels, eval_size(*pixels.shape[:2], None, ratio))
        inputs.append(prepare_input(pixels, DatasetInfo.generic(150)))
    return inputs


@pytest.mark.parametrize("backbone", list(CONFIGS))
def test_exported_models_match_pytorch_on_the_real_samples(backbone: str, samples_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = SegmentationModel(num_classes=150, backbone_name=backbone, pretrained=False, **CONFIGS[backbone])
    network = TrainedNetwork(model, channels_last=True).eval()  # the configs train channels_last
    info = DatasetInfo.generic(150)
    runs = {
        fmt: load_exported(export_network(network, tmp_path / f"{backbone}.{fmt}", fmt, info), fmt)
        for fmt in ("onnx", "torchscript")
    }
    # half-size images keep the suite fast on 2 cores; benchmarks/export_parity.py measures the full sizes
    inputs = padded_inputs(samples_root, ratio=0.5)
    assert len({tuple(x.shape[-2:]) for x, _, _ in inputs} | {TRACE_SIZE}) == 4  # three new sizes
    for x, h, w in inputs:
        with torch.no_grad():
            expected = network(x[..., :h, :w], pad=True)["p0"].numpy()  # the pad protocol on the unpadded image
        for fmt, run in runs.items():
            found = run(x.numpy())
            assert found.shape == (1, 150, *x.shape[-2:]), fmt
            parity = compare_logits(expected, found[..., :h, :w])
            assert parity.max_abs_diff < TOLERANCE, (fmt, x.shape, parity)
            # random weights give near-equal logits: a pixel whose top two classes are closer than the float
            # noise may flip; every other pixel must agree
            assert parity.untied_disagreements == 0 and parity.argmax_agreement > 0.9999, (fmt, x.shape, parity)


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
        export_main(["--ckpt_path", str(ckpt), "--format", "onnx", "--no-check"])
    assert existing.read_text() == "an earlier export"
    export_main(["--ckpt_path", str(ckpt), "--format", "onnx", "--no-check", "--overwrite"])
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
        [*command, "--output", str(output), "--overwrite", "--no-check"],
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
