"""DDP on two CPU processes (gloo): evaluation equals the single-process numbers; training runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segfpn.cli import run_cli
from tests.test_cli import only_run, tiny_args

pytestmark = pytest.mark.slow


def _segfpn(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-m", "segfpn", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _scores(root: Path) -> dict:
    files = sorted((root / "results").glob("validate_val_step*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_ddp_validation_equals_single_process(tmp_path: Path, synthetic_root: Path) -> None:
    assert len(list((synthetic_root / "images" / "validation").iterdir())) % 2 == 1  # odd: DDP would pad
    train_root = tmp_path / "train"
    run_cli(["fit", *tiny_args(train_root, synthetic_root, max_steps=4)])
    ckpt = only_run(train_root) / "checkpoints" / "last.ckpt"
    common = [
        a
        for a in tiny_args(tmp_path, synthetic_root)
        if "default_root_dir" not in a and "limit_val" not in a and "save_dir" not in a
    ]
    single, double = tmp_path / "single", tmp_path / "ddp"
    _segfpn(
        "validate",
        *common,
        f"--trainer.default_root_dir={single}",
        f"--trainer.logger.init_args.save_dir={single}",
        f"--ckpt_path={ckpt}",
        cwd=tmp_path,
    )
    _segfpn(
        "validate",
        *common,
        f"--trainer.default_root_dir={double}",
        f"--trainer.logger.init_args.save_dir={double}",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        f"--ckpt_path={ckpt}",
        cwd=tmp_path,
    )
    a, b = _scores(only_run(single)), _scores(only_run(double))  # the DDP ranks shared one run folder
    print(
        f"\n1 process: mIoU {a['mIoU']:.6f} aAcc {a['aAcc']:.6f} mAcc {a['mAcc']:.6f}; "
        f"2 processes: mIoU {b['mIoU']:.6f} aAcc {b['aAcc']:.6f} mAcc {b['mAcc']:.6f}"
    )
    assert a["confmat"] == b["confmat"], "every pixel must be counted exactly once under DDP"
    for key in ("mIoU", "aAcc", "mAcc"):
        assert a[key] == pytest.approx(b[key], abs=1e-9), key
    assert a["IoU"] == b["IoU"]


def test_ddp_training_on_two_processes(tmp_path: Path, synthetic_root: Path) -> None:
    args = tiny_args(tmp_path, synthetic_root, max_steps=4)  # 2 steps per epoch and rank
    # SyncBatchNorm (on in configs/trainer/ddp.yaml) needs GPUs; on CPU the plain BN path runs
    _segfpn("fit", *args, "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp", cwd=tmp_path)
    import torch

    ckpt = torch.load(only_run(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["epoch"] == 1
    assert any("running_mean" in k for k in ckpt["state_dict"])


def test_torchrun_recipe_on_two_cpu_processes(tmp_path: Path, synthetic_root: Path) -> None:
    """experiments/slurm/torchrun.sh starts 2 ranks; Lightning reads torchrun's environment."""
    import yaml

    config = tmp_path / "job.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "trainer": {
                    "accelerator": "cpu",
                    "max_steps": 2,
                    "default_root_dir": str(tmp_path),
                    "enable_progress_bar": False,
                    "logger": False,
                }
            }
        )
    )
    args = [
        a for a in tiny_args(tmp_path, synthetic_root, max_steps=2) if "logger" not in a and "default_root" not in a
    ]
    script = Path(__file__).resolve().parents[1] / "experiments" / "slurm" / "torchrun.sh"
    env = {
        **os.environ,
        "GPUS": "2",
        "MASTER_PORT": "29533",
        "WANDB_MODE": "offline",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["bash", str(script), str(config), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr + result.stdout
    import torch

    run = tmp_path / "torchrun-job"  # torchrun.sh names the run after the config (RUN_NAME overrides)
    assert only_run(tmp_path) == run
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
