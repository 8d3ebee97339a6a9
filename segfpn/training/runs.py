"""Run folders: one per training run below ``trainer.default_root_dir``, with an id file and a lock.

A run folder ``<root>/<run id>/`` holds ``run.json`` (id, creation time, W&B run id), ``run.lock`` while a
``fit`` uses it (pid and host of the holder), ``checkpoints/``, ``configs/``, ``results/``, ``wandb/`` and
``predictions/``. Run ids sort by time (``20261125-181503-a1b2c3``); a job launcher names the run instead
(``slurm-<job id>``, ``torchrun-<rendezvous id>``) so that a requeued or restarted job finds its own folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

from segfpn.atomic_files import process_alive
from segfpn.errors import ConfigError

RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
# Set by the process that chose the run folder, read by the DDP ranks it starts (they parse the same arguments).
RUN_DIR_ENV = "SEGFPN_RUN_DIR"
_held: set[Path] = set()  # run folders this process holds the lock of
_created: set[Path] = set()  # run folders this process created


class RunFolderError(ConfigError):
    """A run folder option that cannot be followed (e.g. a fresh ``fit`` into a folder that has checkpoints)."""


class RunFolderBusyError(RunFolderError):
    """Another live process holds the run folder."""


def new_run_id() -> str:
    """A sortable unique id: UTC time to the second plus 6 random hex digits."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def slurm_job_id() -> str:
    """The id of this Slurm job as ``scontrol requeue`` takes it (array jobs: ``<array id>_<task id>``)."""
    array_id = os.environ.get("SLURM_ARRAY_JOB_ID")
    return f"{array_id}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_id else os.environ["SLURM_JOB_ID"]


def launcher_run_name() -> str | None:
    """The run name a job launcher implies: ``slurm-<job id>`` (array jobs ``slurm-<array id>_<task>``) or
    ``torchrun-<TORCHELASTIC_RUN_ID>``; ``None`` otherwise. Every rank of the job computes the same name."""
    if SLURMEnvironment.detect():
        return f"slurm-{slurm_job_id()}"
    if TorchElasticEnvironment.detect():
        run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
        if run_id != "none":
            return f"torchrun-{run_id}"
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RunFolderError(
                "torchrun without a run id: the ranks cannot agree on a run folder; pass --run_name NAME "
                "(or torchrun --rdzv_id NAME) and the same name again to resume"
            )
    return None


def launch_rank() -> int:
    """This process's global rank as the launcher's environment gives it (0 when nothing launched it)."""
    if TorchElasticEnvironment.detect():
        return int(os.environ["RANK"])
    if SLURMEnvironment.detect():
        return int(os.environ.get("SLURM_PROCID", "0"))
    return int(os.environ.get("LOCAL_RANK", "0")) + int(os.environ.get("NODE_RANK", "0"))


def is_run_dir(path: Path) -> bool:
    """True for a folder that segfpn made a run folder (it holds ``run.json``)."""
    return (path / RUN_FILE).is_file()


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """``run.json`` of a run folder (empty when absent)."""
    try:
        return json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def write_run_info(run_dir: Path, info: dict[str, Any]) -> None:
    """Write ``run.json`` atomically."""
    temp = run_dir / f".{RUN_FILE}.{os.getpid()}.tmp"
    temp.write_text(json.dumps(info, indent=1))
    os.replace(temp, run_dir / RUN_FILE)


def create_run_dir(root: Path) -> Path:
    """A new run folder ``root/<new_run_id()>``; ``mkdir`` is atomic, so two starts never share one."""
    root.mkdir(parents=True, exist_ok=True)
    while True:
        path = root / new_run_id()
        try:
            path.mkdir()
        except FileExistsError:
            continue
        init_run_dir(path)
        _created.add(path)
        return path


def remove_unused_run_dirs() -> None:
    """Remove the run folders this process created that hold nothing but ``run.json`` (e.g. the command failed on
    a bad option before writing anything)."""
    for path in list(_created):
        _created.discard(path)
        if path.is_dir() and {p.name for p in path.iterdir()} <= {RUN_FILE, LOCK_FILE}:
            for name in (LOCK_FILE, RUN_FILE):
                (path / name).unlink(missing_ok=True)
            path.rmdir()


def init_run_dir(path: Path) -> None:
    """Create ``path`` and its ``run.json`` if missing."""
    path.mkdir(parents=True, exist_ok=True)
    if not is_run_dir(path):
        write_run_info(path, {"id": path.name, "created": time.time()})


def runs_newest_first(root: Path) -> list[Path]:
    """The run folders directly below ``root``, newest first (by creation time in ``run.json``)."""
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and is_run_dir(p)]
    return sorted(runs, key=lambda p: (read_run_info(p).get("created", 0.0), p.name), reverse=True)


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint file lies in (``<run>/checkpoints/x.ckpt`` or ``<run>/hpc_ckpt_N.ckpt``)."""
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        if is_run_dir(folder):
            return folder
    return None


# --- the lock -------------------------------------------------------------------------------------------------


def _this_holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
        "since": time.time(),
    }


def lock_holder(run_dir: Path) -> dict[str, Any] | None:
    """The process recorded in ``run.lock`` (``None`` when there is no lock)."""
    try:
        return json.loads((run_dir / LOCK_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        return {}  # being written: count it as held


def _holder_alive(holder: dict[str, Any]) -> bool:
    if not holder:
        return True
    if holder.get("slurm_job") and holder["slurm_job"] == os.environ.get("SLURM_JOB_ID"):
        return False  # the same Slurm job before its requeue
    if holder.get("host") != socket.gethostname():
        return True  # cannot check a process on another host
    if holder.get("pid") == os.getpid():
        return False
    return process_alive(int(holder["pid"]))


def live_holder(run_dir: Path) -> dict[str, Any] | None:
    """The live process holding the run folder (``{}`` while its lock is being written), else ``None``."""
    holder = lock_holder(run_dir)
    return holder if holder is not None and _holder_alive(holder) else None


def busy_error(run_dir: Path, holder: dict[str, Any], hint: str) -> RunFolderBusyError:
    """The error for a run folder that the live process ``holder`` holds, ending with what to do."""
    if not holder:
        return RunFolderBusyError(
            f"run folder {str(run_dir)!r} is being taken by another process ({LOCK_FILE}). {hint}"
        )
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    return RunFolderBusyError(
        f"run folder {str(run_dir)!r} is in use by process {holder.get('pid')} on {holder.get('host')!r} "
        f"(since {since}; {LOCK_FILE}). {hint}"
    )


def acquire_lock(run_dir: Path) -> None:
    """Hold ``run_dir`` for this process; a lock of a dead process (or of this Slurm job before its requeue) is
    taken over. Raises :class:`RunFolderBusyError` when a live process holds it."""
    lock = run_dir / LOCK_FILE
    temp = run_dir / f".{LOCK_FILE}.{os.getpid()}.tmp"
    _held.add(run_dir)
    mine = _this_holder()
    temp.write_text(json.dumps(mine))
    try:
        try:
            os.link(temp, lock)  # fails when a lock exists: creation with its whole content, atomically
            return
        except FileExistsError:
            pass
        # a take-over is check-then-replace: two processes finding the same stale lock would both replace it.
        # They do it one at a time under an OS lock (released by the kernel if its holder dies), the second one
        # then finds the first alive
        with open(run_dir / f".{LOCK_FILE}.guard", "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            holder = live_holder(run_dir)
            if holder is not None:
                raise busy_error(run_dir, holder, "Wait for it to end, or start a new run without --run_dir/--run_name")
            os.replace(temp, lock)  # stale: the holder is gone
    finally:
        temp.unlink(missing_ok=True)


def release_lock(run_dir: Path) -> None:
    """Remove ``run.lock`` if this process holds it."""
    _held.discard(run_dir)
    holder = lock_holder(run_dir)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        (run_dir / LOCK_FILE).unlink(missing_ok=True)


def release_locks_of_this_process() -> None:
    """Release every run folder :func:`acquire_lock` took in this process."""
    for run_dir in list(_held):
        release_lock(run_dir)


def evaluation_name(trainer: Any, stage: str) -> str:
    """``<fn>_<val|test>_step<N>``: how the files of one evaluation are named in a run folder (results, evaluation
    tables, overlays), e.g. ``fit_val_step0000400``."""
    return f"{trainer.state.fn.value}_{stage}_step{trainer.global_step:07d}"
