"""The Slurm job scripts for real: a single-node Slurm on localhost runs experiments/slurm/single_node.sbatch
with 2 tasks (DDP over gloo on the CPU), then a job pre-empted mid-run (SIGUSR1) is requeued and resumes
(segfpn.preemption.SlurmRequeue: the checkpoint is taken at a step boundary, not in the signal handler)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if os.environ.get("SEGFPN_SKIP_SLURM") == "1":
        pytest.skip("SEGFPN_SKIP_SLURM=1")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("the local Slurm needs root and apt-get (Debian)")
    state = tmp_path_factory.mktemp("slurm")
    script = REPO / "tests" / "slurm" / "local_slurm.sh"
    subprocess.run(["bash", str(script), "start", str(state)], check=True, timeout=600)
    env = {
        **os.environ,
        "SLURM_CONF": str(state / "slurm.conf"),
        "WANDB_MODE": "offline",
        "PATH": f"{Path(os.sys.executable).parent}:{os.environ['PATH']}",
    }
    yield env
    subprocess.run(["bash", str(script), "stop", str(state)], check=False, timeout=60)


def _config(tmp: Path, data: Path, max_steps: int) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "max_steps": max_steps,
            "default_root_dir": str(tmp / "run"),
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(tmp / "run")},
            },
        },
        "model": {
            "backbone_name": "pvt_v2_b0",
            "fpn_channels": 32,
            "head_channels": 32,
            "lr": 0.001,
            "inference": {"test_scale": None},
        },
        "data": {"data_root": str(data), "batch_size": 4, "num_workers": 0, "crop_size": 64, "scale": [128, 64]},
    }
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _submit(env: dict[str, str], tmp: Path, config: Path) -> str:
    out = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--ntasks-per-node=2",
            "--cpus-per-task=1",
            f"--output={tmp}/job-%j.out",
            str(REPO / "experiments" / "slurm" / "single_node.sbatch"),
            str(config),
        ],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().split(";")[0]


def _state(env: dict[str, str], job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True)
    return out.stdout.strip()


def _wait(env: dict[str, str], job: str, timeout: float, until=lambda: False) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if until() or _state(env, job) in ("", "COMPLETED", "FAILED", "CANCELLED"):
            return
        if _state(env, job) == "PENDING":  # a requeued job waits for BeginTime: start it now
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, capture_output=True)
        time.sleep(1)
    raise TimeoutError(f"job {job} still {_state(env, job)!r} after {timeout} s")


def test_single_node_job_runs_ddp_to_the_end(slurm: dict[str, str], tmp_path: Path, synthetic_root: Path) -> None:
    job = _submit(slurm, tmp_path, _config(tmp_path, synthetic_root, max_steps=4))
    _wait(slurm, job, 300)
    log = (tmp_path / f"job-{job}.out").read_text()
    assert "2 task(s)" in log, log[-2000:]
    ckpt = torch.load(tmp_path / "run" / f"slurm-{job}" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4, log[-3000:]
    assert "GLOBAL_RANK: 1" in log or "Initializing distributed: GLOBAL_RANK: 0, MEMBER: 1/2" in log, log[-3000:]


def test_preempted_job_is_requeued_and_resumes(slurm: dict[str, str], tmp_path: Path, synthetic_root: Path) -> None:
    planned = 40
    job = _submit(slurm, tmp_path, _config(tmp_path, synthetic_root, max_steps=planned))
    run = tmp_path / "run" / f"slurm-{job}"  # the job id names the run folder: the requeued job finds it
    last = run / "checkpoints" / "last.ckpt"
    _wait(slurm, job, 300, until=last.is_file)
    assert _state(slurm, job) == "RUNNING", "the job ended before it could be pre-empted"
    subprocess.run(["scancel", "--signal=USR1", job], env=slurm, check=True)
    _wait(slurm, job, 600)
    log = (tmp_path / f"job-{job}.out").read_text()
    hpc = sorted(run.glob("hpc_ckpt_*.ckpt"))
    assert hpc, log[-3000:]
    saved_at = torch.load(hpc[0], weights_only=True)["global_step"]
    assert 0 < saved_at < planned
    assert "Slurm pre-emption (SIGUSR1): saving" in log and "Requeued Slurm job" in log, log[-3000:]
    assert "restart 1" in log and "Restored all states from the checkpoint" in log, log[-3000:]
    final = torch.load(last, weights_only=True)
    assert final["global_step"] == planned, log[-3000:]
