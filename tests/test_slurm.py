"""The Slurm job scripts for real: a single-node Slurm on localhost runs experiments/slurm/single_node.sbatch
with 2 tasks (DDP over gloo on the CPU), then a job pre-empted mid-run (SIGUSR1) is requeued and resumes
(segfpn.training.callbacks.preemption.GracefulStop:
the checkpoint is taken at a step boundary, not in the signal handler)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
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


ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")


def _state(env: dict[str, str], job: str, timeout: float = 120) -> str:
    """The job's state as squeue reports it ("" once it has left the queue). squeue fails now and then while
    slurmctld is busy (e.g. handling a requeue on a loaded machine) and prints nothing: that is not an answer,
    ask again."""
    deadline = time.time() + timeout
    while True:
        out = subprocess.run(["squeue", "-h", "-j", job, "--states=all", "-o", "%T"], env=env, capture_output=True)
        if out.returncode == 0:
            return out.stdout.decode().strip()
        if time.time() > deadline:
            raise TimeoutError(f"squeue -j {job} failed for {timeout} s: {out.stderr.decode().strip()}")
        time.sleep(1)


def _ended(state: str) -> bool:
    return state == "" or state in ENDED


def _wait(env: dict[str, str], job: str, timeout: float, until: Callable[[str], bool] = _ended) -> str:
    """Poll until ``until(state)`` holds and return that state; a requeued job is started at once."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = _state(env, job)
        if until(state):
            return state
        if state == "PENDING":  # a requeued job waits for BeginTime: start it now
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
    log_file = tmp_path / f"job-{job}.out"
    state = _wait(slurm, job, 300, until=lambda state: last.is_file() or _ended(state))
    assert state == "RUNNING", f"the job ended before it could be pre-empted ({state!r})"
    subprocess.run(["scancel", "--signal=USR1", job], env=slurm, check=True)

    def resumed_and_ended(state: str) -> bool:
        # The requeue takes the job through COMPLETING and PENDING back to RUNNING: done only when the second
        # start is logged and that run has ended too
        return _ended(state) and "restart 1" in log_file.read_text()

    try:
        _wait(slurm, job, 600, until=resumed_and_ended)
    except TimeoutError as err:
        pytest.fail(f"{err}; the requeued job did not run to its end. {log_file}:\n{log_file.read_text()[-3000:]}")
    log = log_file.read_text()
    hpc = sorted(run.glob("hpc_ckpt_*.ckpt"))
    assert hpc, log[-3000:]
    saved_at = torch.load(hpc[0], weights_only=True)["global_step"]
    assert 0 < saved_at < planned
    assert "Slurm pre-emption (SIGUSR1): saving" in log and "Requeued Slurm job" in log, log[-3000:]
    assert "restart 1" in log and "Restored all states from the checkpoint" in log, log[-3000:]
    final = torch.load(last, weights_only=True)
    assert final["global_step"] == planned, log[-3000:]
    # a twin job, never pre-empted, ends with the same weights: the requeued run is the uninterrupted one
    twin_dir = tmp_path / "twin"
    twin_dir.mkdir()
    twin = _submit(slurm, twin_dir, _config(twin_dir, synthetic_root, max_steps=planned))
    _wait(slurm, twin, 600)
    twin_last = twin_dir / "run" / f"slurm-{twin}" / "checkpoints" / "last.ckpt"
    expected = torch.load(twin_last, weights_only=True)
    assert expected["global_step"] == planned, (twin_dir / f"job-{twin}.out").read_text()[-3000:]
    for name, value in expected["state_dict"].items():
        assert torch.equal(final["state_dict"][name], value), name
