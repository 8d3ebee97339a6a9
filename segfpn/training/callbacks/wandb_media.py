"""WandbMedia: per-class IoU table, confusion matrix and prediction masks in W&B after each validation."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np

from segfpn.constants import IGNORE_INDEX
from segfpn.metrics import per_class_rows
from segfpn.utils.visualize import denormalize


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
                [r["id"], r["class"], r["IoU"], r["Acc"]] for r in per_class_rows(scores, names) if r["IoU"] is not None
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
