"""W&B sweep configs: the agent's own command building reaches every init argument, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

from segfpn.cli import normalize_sweep_args
from tests.test_cli import only_run

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))


def agent_command(sweep: dict, params: dict) -> list[str]:
    """The command list a W&B agent runs for ``params`` (wandb_agent.Agent._command_run's substitution)."""
    sweep_vars = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    sweep_vars.update(interpreter=[sys.executable], program=[sweep["program"]], env=["/usr/bin/env"])
    command: list[str] = []
    for chunk in create_sweep_command(list(sweep["command"])):
        chunk = str(chunk)
        command += sweep_vars.get(chunk[2:-1], []) if chunk.startswith("${") and chunk.endswith("}") else [chunk]
    return command


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_configs_are_well_formed(path: Path) -> None:
    sweep = yaml.safe_load(path.read_text())
    assert sweep["metric"] == {"name": "val/mIoU", "goal": "maximize"}
    assert "${args}" in sweep["command"] and (REPO / sweep["command"][sweep["command"].index("--config") + 1]).is_file()
    assert all(name.split(".")[0] in ("model", "data", "trainer") for name in sweep["parameters"])


def test_none_becomes_null() -> None:
    assert normalize_sweep_args(["--model.attention=None", "--model.loss=ce", "--x=Nonesuch"]) == [
        "--model.attention=null",
        "--model.loss=ce",
        "--x=Nonesuch",
    ]


@pytest.mark.slow
def test_agent_command_reaches_the_model(tmp_path: Path, synthetic_root: Path) -> None:
    sweep = yaml.safe_load((REPO / "configs" / "sweeps" / "fpn_ablation.yaml").read_text())
    params = {
        "model.lateral_connections": False,
        "model.upsample_mode": "bilinear",
        "model.fpn_channels": 64,
        "model.attention": None,
        "model.lr": 0.0003,
        "data.scale": [128, 64],
        "trainer.fast_dev_run": False,
    }
    command = agent_command(sweep, params)
    assert "--model.attention=None" in command and "--data.scale=[128, 64]" in command
    overrides = [
        "--model.pretrained=false",
        f"--data.data_root={synthetic_root}",
        "--data.batch_size=4",
        "--data.num_workers=0",
        "--data.crop_size=64",
        "--trainer.max_steps=2",
        "--trainer.val_check_interval=2",
        "--trainer.limit_val_batches=1",
        "--model.inference.test_scale=null",
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
        # under DDP every rank parses the same arguments; only rank 0 opens a W&B run
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(command + overrides, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(tmp_path)  # one run folder for both DDP ranks
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["lateral_connections"] is False
    assert saved["model"]["upsample_mode"] == "bilinear"
    assert saved["model"]["fpn_channels"] == 64 and saved["model"]["attention"] is None
    assert saved["model"]["lr"] == 0.0003 and saved["data"]["scale"] == [128, 64]
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
