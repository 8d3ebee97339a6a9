"""Slurm pre-emption: checkpoint and requeue at a step boundary, never inside the signal handler."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info

log = logging.getLogger(__name__)


def next_hpc_checkpoint(folder: str | Path) -> Path:
    """``folder/hpc_ckpt_<N+1>.ckpt`` after the highest N there (Lightning's naming, so it resumes from it too)."""
    numbers = [
        int(m.group(1))
        for p in Path(folder).glob("hpc_ckpt_*.ckpt")
        if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name))
    ]
    return Path(folder) / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"


def running_under_slurm() -> bool:
    """True inside a Slurm job step (not an interactive allocation), as Lightning decides it."""
    return SLURMEnvironment.detect()


def slurm_job_id() -> str:
    """The id ``scontrol requeue`` takes for this job (array jobs: ``<array id>_<task id>``)."""
    array_id = os.environ.get("SLURM_ARRAY_JOB_ID")
    return f"{array_id}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_id else os.environ["SLURM_JOB_ID"]


class SlurmRequeue(L.Callback):
    """When Slurm warns that a job will end (``#SBATCH --signal=SIGUSR1@90``), save ``hpc_ckpt_N.ckpt`` in the
    run folder, stop, and requeue the job; the requeued job resumes from it (``--ckpt_path last``).

    Lightning's own auto-requeue saves inside the signal handler. Under DDP the handler can interrupt a rank in
    the middle of a collective, and the checkpoint's barrier then waits forever (Lightning issue #21406; seen
    here once in six pre-emptions on two CPU ranks). Here the handler only sets a flag. At each training batch
    end the ranks agree on it (one one-element all-reduce per step, under Slurm only), all save together, and
    training stops; rank 0 requeues in ``teardown``, once the last checkpoint is on disk. A handler installed
    in ``setup`` also keeps Lightning from installing its own. A signal that arrives during validation acts
    after it: give long validations a longer lead time.
    """

    def __init__(self, enabled: bool = True, signal_name: str = "SIGUSR1") -> None:
        if signal_name not in signal.Signals.__members__:
            raise ValueError(f"slurm_requeue.signal_name must be a signal name such as 'SIGUSR1', got {signal_name!r}")
        self.enabled = enabled
        self.signum = signal.Signals[signal_name]
        self.requested = False
        self.saved: Path | None = None
        self._previous: Any = None
        self._installed = False

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.requested = True  # nothing else may happen here: see the class docstring

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not self.enabled or not running_under_slurm():
            return
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(self.signum, self._on_signal)
            self._installed = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if not self._installed or self.saved is not None:
            return
        if not trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            return
        path = trainer.strategy.broadcast(str(next_hpc_checkpoint(trainer.default_root_dir)))
        rank_zero_info(f"Slurm pre-emption ({self.signum.name}): saving {path} at step {trainer.global_step}")
        trainer.save_checkpoint(path)
        self.saved = Path(path)
        trainer.should_stop = True

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._installed:
            signal.signal(self.signum, self._previous)
            self._installed = False
        if self.saved is not None and trainer.is_global_zero:
            job = slurm_job_id()
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if result.returncode == 0:
                rank_zero_info(f"Requeued Slurm job {job}: it resumes at step {trainer.global_step} (--ckpt_path last)")
            else:
                log.error("scontrol requeue %s failed (%s): %s", job, result.returncode, result.stderr.strip())
