"""BestAndLastCheckpoint: Lightning's ModelCheckpoint plus a ``best.ckpt`` beside ``last.ckpt``."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn

from segfpn.atomic_files import atomic_link


class BestAndLastCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that also keeps a copy of the best checkpoint as ``best.ckpt`` in ``dirpath``, so
    ``--ckpt_path best`` works from a new process (validate/test after fit).

    Args:
        dirpath: checkpoint folder (default: the run folder's ``checkpoints/``).
        filename: name pattern of the top-k checkpoints, filled from the step and the logged metrics.
        monitor: logged metric that ranks checkpoints for ``best.ckpt`` and top-k (``val/mIoU``, ``val/loss``...).
        mode: ``max`` when a higher ``monitor`` is better (mIoU), ``min`` when lower is better (loss).
        save_last: also keep ``last.ckpt`` (what ``--ckpt_path last`` resumes from).
        save_top_k: number of best checkpoints kept (-1: all, 0: none besides last).
        every_n_train_steps: save every this many training steps (default: after each validation).
        every_n_epochs: save every this many epochs (default: after each validation).
        save_on_train_epoch_end: save at the end of the training epoch instead of after validation.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str = "step{step:07d}-miou{val/mIoU:.4f}",
        monitor: str = "val/mIoU",
        mode: str = "max",
        save_last: bool = True,
        save_top_k: int = 1,
        every_n_train_steps: int | None = None,
        every_n_epochs: int | None = None,
        save_on_train_epoch_end: bool | None = None,
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            monitor=monitor,
            mode=mode,
            save_last=save_last,
            save_top_k=save_top_k,
            every_n_train_steps=every_n_train_steps,
            every_n_epochs=every_n_epochs,
            auto_insert_metric_name=False,
            save_on_train_epoch_end=save_on_train_epoch_end,
        )
        best = Path(dirpath or "") / "best.ckpt"
        if dirpath and best.is_file():
            self.best_model_path = str(best)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        due = not self._should_skip_saving_checkpoint(trainer) and self._should_save_on_train_epoch_end(trainer)
        super().on_train_epoch_end(trainer, pl_module)
        self._refresh_last(trainer, due)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        due = not self._should_skip_saving_checkpoint(trainer) and not self._should_save_on_train_epoch_end(trainer)
        super().on_validation_end(trainer, pl_module)
        self._refresh_last(trainer, due)

    def _refresh_last(self, trainer: L.Trainer, due: bool) -> None:
        """``last.ckpt`` at every scheduled save, also when the score is not a new best: since Lightning 2.6
        ModelCheckpoint writes it only together with a top-k checkpoint, so it went stale (a resume lost the
        steps since the last best) and was then written by ``on_train_end`` with the epoch already counted."""
        if due and self.save_last and trainer.global_step != self._last_global_step_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Also save ``last.ckpt`` when training stops between two scheduled saves (e.g. max_steps mid-epoch)."""
        if self.save_last and not trainer.fast_dev_run and trainer.global_step != self._last_global_step_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        """A NaN score never ranks: Lightning would keep it (as -inf) while fewer than ``save_top_k`` exist."""
        if current is not None and bool(torch.isnan(torch.as_tensor(current))):
            rank_zero_warn(f"{self.monitor} is NaN at step {trainer.global_step}: not considered for best.ckpt")
            return False
        return super().check_monitor_top_k(trainer, current)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        if filepath == self.best_model_path and trainer.is_global_zero:
            atomic_link(filepath, Path(filepath).with_name("best.ckpt"))  # complete or absent, even on SIGKILL
