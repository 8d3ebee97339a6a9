"""Lightning callbacks: gradient monitoring, best/last checkpoints, prediction writing, W&B media."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from PIL import Image

from segfpn.checkpoint_io import atomic_link
from segfpn.constants import IGNORE_INDEX
from segfpn.errors import ConfigError
from segfpn.metrics import write_scores
from segfpn.runs import evaluation_name
from segfpn.utils.visualize import colorize, denormalize, overlay

log = logging.getLogger(__name__)


def gradient_stats(module: torch.nn.Module, depth: int = 1) -> dict[str, dict[str, float]]:
    """Gradient norm, mean and std per module group (parameter names cut at ``depth + 1`` components)."""
    sums: dict[str, list[float]] = {}
    for name, p in module.named_parameters():
        if p.grad is None:
            continue
        group = ".".join(name.split(".")[: depth + 1])
        g = p.grad.detach().float()
        s = sums.setdefault(group, [0.0, 0.0, 0])
        s[0] += g.sum().item()
        s[1] += g.pow(2).sum().item()
        s[2] += g.numel()
    stats = {}
    for group, (total, squares, n) in sums.items():
        mean = total / n
        stats[group] = {"norm": squares**0.5, "mean": mean, "std": max(squares / n - mean**2, 0.0) ** 0.5}
    return stats


class GradientMonitor(L.Callback):
    """Every ``every_n_steps`` optimiser steps, log norm/mean/std of the (unscaled) gradients per module
    group, e.g. ``grad/model.backbone/norm``; ``depth`` 2 splits deeper (``model.backbone.body``...).

    Args:
        every_n_steps: log the gradient statistics every this many optimiser steps (at least 1).
        depth: module-name depth of the groups: 1 = backbone/neck/head, 2 = their children, ...
    """

    def __init__(self, every_n_steps: int = 50, depth: int = 1) -> None:
        if every_n_steps < 1:
            raise ConfigError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.depth = depth
        self.last: dict[str, dict[str, float]] = {}

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        self.last = gradient_stats(pl_module, self.depth)
        pl_module.log_dict({f"grad/{g}/{k}": v for g, s in self.last.items() for k, v in s.items()})


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


class PredictionWriter(BasePredictionWriter):
    """Writes ``labels/<name>.png`` (the dataset's stored annotation values: ADE20K's submission format 1..150,
    Cityscapes' labelIds; see ``DatasetInfo.stored_labels``) and ``overlays/<name>.jpg`` in the colours of
    ``pl_module.dataset_info``.

    Args:
        output_dir: folder for ``labels/`` and ``overlays/`` (default: the run folder's ``predictions/``).
        overlays: also write each image blended with its predicted classes' colours.
    """

    def __init__(self, output_dir: str | None = None, overlays: bool = True) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir or "predictions")
        self.overlays = overlays

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        images, _ = batch
        (self.output_dir / "labels").mkdir(parents=True, exist_ok=True)
        for image, labels, path in zip(images, prediction["labels"].cpu().numpy(), prediction["paths"]):
            stem = Path(path).stem
            stored = pl_module.dataset_info.stored_labels(labels)
            Image.fromarray(stored).save(self.output_dir / "labels" / f"{stem}.png")
            if self.overlays:
                (self.output_dir / "overlays").mkdir(parents=True, exist_ok=True)
                info = pl_module.dataset_info
                Image.fromarray(overlay(denormalize(image, info), colorize(labels, info))).save(
                    self.output_dir / "overlays" / f"{stem}.jpg"
                )

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rank_zero_info(f"predictions written to {self.output_dir} (labels/{', overlays/' if self.overlays else ''})")


class ResultsWriter(L.Callback):
    """After each validation/test (not the sanity check), rank 0 writes the module's ``last_scores`` and
    hparams to ``<default_root_dir>/results/<fn>_<val|test>_step<N>.json`` (read by ``segfpn experiment`` and
    ``report``); corrupt samples skipped so far (``data.on_error=skip``) are reported after each epoch."""

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, prefix: str) -> None:
        scores = getattr(pl_module, "last_scores", {})
        if trainer.sanity_checking or not trainer.is_global_zero or not scores:
            return
        name = f"{evaluation_name(trainer, prefix)}.json"
        write_scores(scores, Path(trainer.default_root_dir) / "results" / name, pl_module.hparams)

    @staticmethod
    def _report_skipped(trainer: L.Trainer) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if hasattr(datamodule, "report_skipped"):
            datamodule.report_skipped()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module, "val")
        self._report_skipped(trainer)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module, "test")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report_skipped(trainer)


class WandbMedia(L.Callback):
    """After each validation: a per-class IoU table, the confusion matrix and ``num_images`` prediction
    overlays as W&B masks (only when a WandbLogger is attached; rank 0 only).

    Args:
        num_images: validation images logged with their prediction overlay after each validation (0: none).
    """

    def __init__(self, num_images: int = 4) -> None:
        self.num_images = num_images
        self._samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    @staticmethod
    def _wandb_logger(trainer: L.Trainer) -> Any:
        from lightning.pytorch.loggers import WandbLogger

        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or len(self._samples) >= self.num_images:
            return
        if self._wandb_logger(trainer) is None:
            return
        images, masks = batch
        for image, mask, logits in zip(images, masks, outputs):
            if len(self._samples) < self.num_images:
                rgb = denormalize(image, pl_module.dataset_info)
                self._samples.append((rgb, mask.cpu().numpy(), logits.argmax(0).cpu().numpy()))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # not on_validation_epoch_end: callbacks run before the module's hook that computes the scores
        logger = self._wandb_logger(trainer)
        if logger is None or trainer.sanity_checking or not trainer.is_global_zero:
            self._samples = []
            return
        import wandb

        info = pl_module.dataset_info
        names = list(info.classes)
        scores = getattr(pl_module, "last_scores", {})
        if "IoU" in scores:
            rows = [
                [c, names[c], float(scores["IoU"][c]), float(scores["Acc"][c])]
                for c in range(len(names))
                if not torch.isnan(scores["IoU"][c])
            ]
            logger.experiment.log(
                {
                    "val/per_class": wandb.Table(columns=["id", "class", "IoU", "Acc"], data=rows),
                    "trainer/global_step": trainer.global_step,
                }
            )
            from segfpn.utils.visualize import plot_confusion_matrix

            fig = plot_confusion_matrix(scores["confmat"].numpy(), names, top_k=30)
            logger.experiment.log(
                {"val/confusion_matrix": wandb.Image(fig), "trainer/global_step": trainer.global_step}
            )
        images = [
            wandb.Image(img, masks=overlay_masks(pred, gt, names, info.ignore_index)) for img, gt, pred in self._samples
        ]
        if images:
            logger.experiment.log({"val/predictions": images, "trainer/global_step": trainer.global_step})
        self._samples = []


def overlay_masks(
    pred: np.ndarray, gt: np.ndarray, names: list[str], ignore_index: int = IGNORE_INDEX
) -> dict[str, dict[str, Any]]:
    """W&B ``masks`` of a prediction and its ground truth with the dataset's class ``names``; ignored pixels keep
    their own id (the dataset's ``ignore_index``) and the name "ignored", not those of class 0."""
    labels = dict(enumerate(names))
    return {
        "prediction": {"mask_data": pred, "class_labels": labels},
        "ground_truth": {"mask_data": gt, "class_labels": {**labels, ignore_index: "ignored"}},
    }
