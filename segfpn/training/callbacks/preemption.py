"""Graceful stop on SIGTERM/SIGINT and Slurm pre-emption: checkpoint at a step boundary, never inside the signal
handler, then stop (and requeue under Slurm)."""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info

from segfpn.errors import ConfigError
from segfpn.training.runs import slurm_job_id

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


class GracefulStop(L.Callback):
    """Stop training cleanly on a signal: save a resumable checkpoint at the next step boundary, on all ranks
    together, and stop. SIGTERM and SIGINT always (the process then exits 143 / 130: ``exit_code``);
    under Slurm, ``requeue_signal`` (``#SBATCH --signal=SIGUSR1@90``) saves ``hpc_ckpt_N.ckpt`` in the run
    folder, stops, and requeues the job, which resumes from it (``--ckpt_path last``).

    Lightning's own handlers save (Slurm auto-requeue) or broadcast (SIGTERM) inside the signal handler. Under
    DDP the handler can interrupt a rank in the middle of a collective, and the checkpoint's barrier then waits
    forever (Lightning issue #21406). Here the handler only
    records the signal. At each training batch end, and at the end of each validation during fit, the ranks agree
    on it (one one-element all-reduce), all save together, and training stops; rank 0 requeues in ``teardown``,
    once the last checkpoint is on disk. The handlers are installed in ``setup`` and again at ``on_train_start``
    (Lightning installs its own in between) and removed in ``teardown``; a signal recorded before (see
    :func:`recording_stop_signals`) is acted on at the first step boundary.

    Args:
        enabled: handle the stop signals this way (false: Lightning's default handling).
        requeue_signal: the signal a Slurm job gets before its time limit (``#SBATCH --signal``), e.g. SIGUSR1.
    """

    def __init__(self, enabled: bool = True, requeue_signal: str = "SIGUSR1") -> None:
        if requeue_signal not in signal.Signals.__members__:
            raise ConfigError(
                f"graceful_stop.requeue_signal must be a signal name such as 'SIGUSR1', got {requeue_signal!r}"
            )
        self.enabled = enabled
        self.requeue_signal = signal.Signals[requeue_signal]
        self.received: signal.Signals | None = None
        self.stopped_by: signal.Signals | None = None
        self.saved: Path | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def _signals(self) -> list[signal.Signals]:
        return [signal.SIGTERM, signal.SIGINT] + ([self.requeue_signal] if running_under_slurm() else [])

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.received = self.received or signal.Signals(signum)  # nothing else may happen here: see the docstring

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not self.enabled or threading.current_thread() is not threading.main_thread():
            return
        self.received = self.received or _recorded
        self._previous = {signum: signal.getsignal(signum) for signum in self._signals()}
        self._install()  # before Lightning's: its Slurm handler is then not installed (it checks for one)

    def _install(self) -> None:
        for signum in self._previous:
            signal.signal(signum, self._on_signal)

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning registers its own SIGTERM handler (a collective inside the handler) after the callbacks' setup
        # and before the sanity check: ours replaces it again here and at the train start
        self._install()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        # a stop between the micro-batches of one optimiser step, or just before a validation, would resume as
        # another run: wait for the step's end, or for the validation's
        if stepped(trainer) and not validation_follows(trainer):
            self._act(trainer, lambda callback: callback.on_train_batch_end(trainer, pl_module, *args))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit" and stepped(trainer):
            self._act(trainer, lambda callback: callback.on_validation_end(trainer, pl_module))

    def _act(self, trainer: L.Trainer, checkpoint_hook: Callable[[L.Callback], None]) -> None:
        if not self._previous or self.stopped_by is not None:
            return
        local = torch.tensor(int(self.received or 0), device=trainer.strategy.root_device)
        agreed = int(trainer.strategy.reduce(local, reduce_op="max"))  # one signal for all ranks
        if not agreed:
            return
        self.stopped_by = signal.Signals(agreed)
        requeue = self.stopped_by == self.requeue_signal and running_under_slurm()
        if requeue:
            path = next_hpc_checkpoint(trainer.default_root_dir)
        else:
            folder = getattr(trainer.checkpoint_callback, "dirpath", None) or trainer.default_root_dir
            path = Path(folder) / f"stop-step{trainer.global_step:07d}.ckpt"
        path = Path(trainer.strategy.broadcast(str(path)))
        what = "Slurm pre-emption" if requeue else "Stop"
        rank_zero_info(f"{what} ({self.stopped_by.name}): saving {path} at step {trainer.global_step} and stopping")
        # Lightning runs the checkpoint callbacks after all others: their save of this step goes first, so that the
        # stop checkpoint holds their state after it (best score, top-k list), as the uninterrupted run's would
        for callback in trainer.checkpoint_callbacks:
            checkpoint_hook(callback)
        trainer.save_checkpoint(path)
        self.saved = path if requeue else None
        trainer.should_stop = True
        trainer.limit_val_batches = 0  # Lightning validates when told to stop; a pre-empted job has no time for it
        # a SIGTERM that reached Lightning's handler before ours was reinstalled would make Lightning raise after
        # the stop (exit 0 instead of 143): this stop is the answer to it
        connector = getattr(trainer, "_signal_connector", None)
        if connector is not None:
            connector.received_sigterm = False

    @property
    def exit_code(self) -> int:
        """128 + the signal number after a stop on SIGTERM/SIGINT (143 / 130); 0 otherwise (also after a requeue)."""
        return 0 if self.stopped_by is None or self.saved is not None else 128 + int(self.stopped_by)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()  # after Lightning's own teardown, which re-installs what it found at its start
        if self.saved is not None and trainer.is_global_zero:
            job = slurm_job_id()
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if result.returncode == 0:
                rank_zero_info(f"Requeued Slurm job {job}: it resumes at step {trainer.global_step} (--ckpt_path last)")
            else:
                log.error("scontrol requeue %s failed (%s): %s", job, result.returncode, result.stderr.strip())


def stepped(trainer: L.Trainer) -> bool:
    """Whether the training batch that just ended finished an optimiser step (not inside gradient accumulation)."""
    return not trainer.fit_loop.epoch_loop._should_accumulate()


def validation_follows(trainer: L.Trainer) -> bool:
    """Whether Lightning validates after the training batch that just ended."""
    loop = trainer.fit_loop
    return trainer.enable_validation and loop.epoch_loop._should_check_val_fx(loop._data_fetcher)


_recorded: signal.Signals | None = None


def _record(signum: int, frame: Any) -> None:
    global _recorded
    _recorded = _recorded or signal.Signals(signum)


@contextmanager
def recording_stop_signals() -> Iterator[None]:
    """While the CLI parses and builds a ``fit``, record SIGTERM/SIGINT instead of dying, so that
    :class:`GracefulStop` acts on them at the first step boundary."""
    global _recorded
    _recorded = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _record) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _recorded = None


def stopped_by_signal(callbacks: list[L.Callback]) -> bool:
    """Whether a GracefulStop among these callbacks ended the run early (SIGTERM, SIGINT or a Slurm pre-emption)."""
    return any(c.stopped_by is not None for c in callbacks if isinstance(c, GracefulStop))


def stop_exit_code(callbacks: list[L.Callback]) -> int:
    """The exit code a run with these callbacks ends with: 143 / 130 after a stop on SIGTERM / SIGINT, else 0."""
    return max((c.exit_code for c in callbacks if isinstance(c, GracefulStop)), default=0)
