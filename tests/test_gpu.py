"""The device checks of benchmarks/gpu_check.sh: what the CPU suite cannot see on CUDA (mixed precision with
BatchNorm, channels_last on cuDNN, torch.compile, SyncBN, pinned memory, the predictor and export on the device).

They run only when SEGFPN_CHECK_DEVICE names the device (``cuda`` on a GPU machine; ``cpu`` in the script's dry run,
tests/test_gpu_check.py); the plain suite skips them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from segfpn.training.cli import run_cli
from tests.test_cli import only_run, tiny_args

DEVICE = os.environ.get("SEGFPN_CHECK_DEVICE")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE is None, reason="device checks: run by benchmarks/gpu_check.sh (SEGFPN_CHECK_DEVICE)"),
]


def device_args(tmp_path: Path, data: Path, steps: int = 3) -> list[str]:
    accelerator = "gpu" if DEVICE == "cuda" else "cpu"
    return [
        *tiny_args(tmp_path, data, max_steps=steps),
        f"--trainer.accelerator={accelerator}",
        "--trainer.devices=1",
        "--data.pin_memory=true",
        "--model.channels_last=true",
        "--model.norm=bn",
    ]


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed", "32-true"])
def test_a_fit_in_each_precision_with_channels_last_and_batchnorm(
    tmp_path: Path, synthetic_root: Path, precision: str
) -> None:
    cli = run_cli(["fit", *device_args(tmp_path, synthetic_root), f"--trainer.precision={precision}"])
    expected = (
        "bf16-mixed" if precision == "16-mixed" and DEVICE == "cpu" else precision
    )  # Lightning: no fp16 AMP on CPU
    assert cli.trainer.global_step == 3 and cli.trainer.precision == expected
    assert cli.trainer.strategy.root_device.type == DEVICE  # (Lightning moves the module back to the CPU at the end)
    assert torch.isfinite(torch.as_tensor(cli.trainer.callback_metrics["train/loss"]))
    assert cli.model.model.head.classifier.weight.is_contiguous(memory_format=torch.channels_last)
    bn = next(m for m in cli.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.num_batches_tracked.item() > 0 and torch.isfinite(bn.running_var).all()


@pytest.mark.skipif(DEVICE != "cuda", reason="torch.compile is checked on CUDA (inductor's CPU build takes minutes)")
def test_a_compiled_fit(tmp_path: Path, synthetic_root: Path) -> None:
    cli = run_cli(
        ["fit", *device_args(tmp_path, synthetic_root), "--model.compile=true", "--trainer.precision=bf16-mixed"]
    )
    assert cli.trainer.global_step == 3 and torch.isfinite(torch.as_tensor(cli.trainer.callback_metrics["train/loss"]))


@pytest.mark.skipif(DEVICE != "cuda", reason="torch's SyncBatchNorm works with GPU modules only")
def test_syncbn_on_one_device(tmp_path: Path, synthetic_root: Path) -> None:
    cli = run_cli(
        ["fit", *device_args(tmp_path, synthetic_root), "--trainer.strategy=ddp", "--trainer.sync_batchnorm=true"]
    )
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in cli.model.modules())
    assert cli.trainer.global_step == 3


def test_predictor_and_export_on_the_device_match_the_cpu(tmp_path: Path, synthetic_root: Path) -> None:
    from segfpn.inference.export import export_network, load_exported, prepare_input, to_image_size
    from segfpn.inference.predictor import Segmenter, load_trained_network

    run_cli(["fit", *device_args(tmp_path, synthetic_root, steps=2), "--trainer.precision=32-true"])
    checkpoint = only_run(tmp_path) / "checkpoints" / "last.ckpt"
    image = np.random.default_rng(0).integers(0, 256, (97, 131, 3), dtype=np.uint8)
    on_cpu = Segmenter.from_checkpoint(checkpoint).logits(image)
    on_device = Segmenter.from_checkpoint(checkpoint, device=DEVICE).logits(image).cpu()
    # TF32 convolutions on Ampere+ round to ~1e-3 relative
    torch.testing.assert_close(on_device, on_cpu, atol=5e-3, rtol=5e-3)
    assert (on_device.argmax(0) == on_cpu.argmax(0)).float().mean() > 0.999
    # the export is traced on the CPU (export_network); its ONNX graph must give the device's logits
    loaded = load_trained_network(checkpoint)
    path = export_network(loaded.network, tmp_path / "m.onnx", "onnx", loaded.dataset_info, inference=loaded.inference)
    x, h, w = prepare_input(image, loaded.dataset_info, loaded.inference)
    exported = torch.from_numpy(to_image_size(load_exported(path, "onnx")(x.numpy()), h, w))[0]
    torch.testing.assert_close(exported, on_device, atol=5e-3, rtol=5e-3)
