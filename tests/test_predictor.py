"""Segmenter: a checkpoint trained 2 steps by ``segfpn fit`` predicts the real samples exactly as ``segfpn predict``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segfpn.errors import CheckpointError, ConfigError, DataError
from segfpn.inference.predictor import Segmenter
from segfpn.inference.protocols import InferenceConfig
from segfpn.training.cli import run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path) -> Path:
    """``last.ckpt`` of a 2-step run (channels_last, a test-time resize, so the whole eval path is exercised)."""
    root = tmp_path_factory.mktemp("run")
    run_cli(
        [
            "fit",
            "--seed_everything=0",
            "--model.backbone_name=pvt_v2_b0",
            "--model.fpn_channels=32",
            "--model.head_channels=32",
            "--model.channels_last=true",
            "--model.inference.test_scale=[256, 128]",
            f"--data.data_root={synthetic_root}",
            "--data.batch_size=2",
            "--data.num_workers=0",
            "--data.crop_size=64",
            "--data.scale=[128, 64]",
            f"--trainer.default_root_dir={root}",
            "--trainer.max_steps=2",
            "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false",
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.init_args.save_dir={root}",
        ]
    )
    (ckpt,) = root.glob("*/checkpoints/last.ckpt")
    return ckpt


def test_predictor_matches_segfpn_predict(trained: Path, samples_root: Path, tmp_path: Path) -> None:
    images = sorted((samples_root / "images" / "validation").glob("*.jpg"))
    out = tmp_path / "pred"
    run_cli(_predict_args(trained, samples_root, tmp_path, out))
    segmenter = Segmenter.from_checkpoint(trained)
    assert segmenter.inference.test_scale == (256, 128) and segmenter.network.channels_last
    assert len(segmenter.class_names) == segmenter.num_classes == 150 and segmenter.class_names[0] == "wall"
    by_path = segmenter.predict(images)  # a list: one label map per image
    for path, labels in zip(images, by_path):
        expected = np.asarray(Image.open(out / "labels" / f"{path.stem}.png")).astype(np.int64) - 1
        assert len(np.unique(expected)) > 1  # a map with structure, not one class everywhere
        pil = Image.open(path)
        assert labels.dtype == np.uint8 and labels.shape == (pil.height, pil.width)
        np.testing.assert_array_equal(labels, expected)
        np.testing.assert_array_equal(segmenter.predict(pil), expected)
        np.testing.assert_array_equal(segmenter.predict(np.asarray(pil.convert("RGB"))), expected)


def _predict_args(ckpt: Path, samples_root: Path, tmp_path: Path, out: Path) -> list[str]:
    # the checkpoint's architecture options are taken from it (cli.py); the small sizes must still be given
    return [
        "predict",
        "--model.backbone_name=pvt_v2_b0",
        "--model.fpn_channels=32",
        "--model.head_channels=32",
        "--model.channels_last=true",
        "--model.inference.test_scale=[256, 128]",
        f"--data.data_root={samples_root}",
        f"--data.predict_dir={samples_root / 'images' / 'validation'}",
        "--data.num_workers=0",
        f"--trainer.default_root_dir={tmp_path / 'runs'}",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        f"--ckpt_path={ckpt}",
        f"--predictions.output_dir={out}",
    ]


def test_probabilities_and_colours(trained: Path, samples_root: Path) -> None:
    segmenter = Segmenter.from_checkpoint(trained, inference=InferenceConfig(test_scale=(128, 64), flip=True))
    image = next((samples_root / "images" / "validation").glob("*.jpg"))
    labels, probs = segmenter.predict(image, return_probs=True)
    assert probs.shape == (150, *labels.shape) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-4)
    np.testing.assert_array_equal(probs.argmax(0), labels)
    colours = segmenter.colorize(labels)
    assert colours.shape == (*labels.shape, 3) and colours.dtype == np.uint8
    first = int(labels.flat[0])
    assert tuple(colours.reshape(-1, 3)[0]) == segmenter.palette[first]
    ignored = segmenter.colorize(np.full((2, 2), segmenter.dataset_info.ignore_index, np.uint8))
    assert not ignored.any()


def test_bad_checkpoints_and_inputs(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        Segmenter.from_checkpoint(tmp_path / "missing.ckpt")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(1)}}, foreign)
    with pytest.raises(CheckpointError, match="not a segfpn checkpoint"):
        Segmenter.from_checkpoint(foreign)
    segmenter = Segmenter.from_checkpoint(trained)
    with pytest.raises(TypeError, match="cannot predict a Tensor"):
        segmenter.predict(torch.zeros(3, 8, 8))
    with pytest.raises(ConfigError, match=r"RGB uint8 \[H, W, 3\], got float32"):
        segmenter.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(DataError, match=r"image '.*nope.jpg' does not exist"):
        segmenter.predict(tmp_path / "nope.jpg")
    with pytest.raises(DataError, match=r"does not exist \(a folder\)"):
        segmenter.predict(tmp_path)
    deep = Image.fromarray(np.linspace(0, 65535, 40 * 60).reshape(40, 60).astype(np.uint16))  # 16-bit grayscale
    deep.save(tmp_path / "deep.png")
    scaled = segmenter.to_array(deep)
    assert np.array_equal(scaled, segmenter.to_array(tmp_path / "deep.png")) and scaled.mean() < 140  # not clipped
    # test_scale (256, 128): the short side of 10000x10 would round to 0 pixels
    too_long = tmp_path / "strip.png"
    Image.fromarray(np.zeros((10, 10000, 3), np.uint8)).save(too_long)
    with pytest.raises(DataError, match=r"image '.*strip.png': an image of 10000x10 \(WxH\) .* would be 256x0"):
        segmenter.predict(too_long)
    with pytest.raises(DataError, match=r"an image of 10x10000 \(WxH\) .* would be 0x256: too elongated"):
        segmenter.predict(np.zeros((10000, 10, 3), np.uint8))
