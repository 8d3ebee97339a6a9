"""SegmentationModule: the LightningModule that trains and evaluates a SegmentationModel."""

from __future__ import annotations

import logging
from typing import Any, Literal

import lightning as L
import torch
from torchmetrics import MeanMetric

from segfpn.datasets.info import DatasetInfo
from segfpn.errors import ConfigError
from segfpn.inference.protocols import InferenceConfig, inference_config, predict_logits
from segfpn.metrics import BoundaryIoU, SegmentationMetrics, to_labels
from segfpn.models import SegmentationModel
from segfpn.models.segmentation_model import architecture_options
from segfpn.training.losses import CombinedLoss, CrossEntropyLoss
from segfpn.training.optim import (
    OptimizerName,
    ScheduleName,
    build_optimizer,
    check_choice,
    lr_factor,
    param_groups,
)

log = logging.getLogger(__name__)


class SegmentationModule(L.LightningModule):
    """Loss, optimiser + per-iteration schedule, dataset-level metrics and logging around SegmentationModel.

    The architecture options (``backbone_name`` ... ``aux_classifiers``) are :class:`segfpn.models.SegmentationModel`'s,
    defined there only: they arrive here as ``**model_options`` and go to it unchanged. The CLI shows them as flat
    ``--model.<name>`` options (jsonargparse follows ``**model_options`` into SegmentationModel).

    Args:
        num_classes: number of classes (the CLI links it from ``data.num_classes``).
        loss: a loss name or a weighted sum of them: ``ce``, ``ohem``, ``dice``, ``focal``, ``lovasz``, e.g.
            ``ce``, ``ce+dice``, ``ce+0.5*dice`` or ``{"ce": 1.0, "lovasz": 0.5}``.
        class_weight: per-class CE weights (a list of num_classes values), or ``inverse_log``/``inverse_sqrt``/
            ``inverse`` to derive them from the training split's pixel counts.
        aux_loss_weight: weight of the CE of each auxiliary level (with ``aux_classifiers=true``).
        ohem_thresh: ``ohem`` loss: keep the pixels whose true-class probability is below this (or below the
            k-th smallest one, to keep at least k); null keeps the k pixels of largest CE.
        ohem_min_kept: ``ohem`` loss: k = ohem_min_kept x batch size (mmseg's ``min_kept``).
        focal_gamma: ``focal`` loss: focusing exponent (0 is plain CE).
        loss_avg_non_ignore: mmseg's ``avg_non_ignore`` for ce/ohem: false (default, as mmseg's and the PVT
            authors' published configs) divides the summed pixel loss by all pixels, ignored ones included; true by
            the labelled pixels only (PyTorch's mean).
        optimizer: ``adamw`` or ``sgd`` (norms, biases and position tables get no weight decay).
        lr: base learning rate (of the decoder; the backbone's is ``lr * backbone_lr_mult``).
        weight_decay: weight decay of the weights that get one.
        momentum: SGD momentum (ignored by AdamW).
        backbone_lr_mult: factor of the backbone's learning rate.
        schedule: per-iteration learning-rate schedule: ``poly``, ``cosine`` or ``constant``.
        warmup_iters: linear warm-up iterations (0: none).
        warmup_ratio: learning-rate factor at the start of the warm-up.
        poly_power: exponent of the ``poly`` schedule.
        min_lr_ratio: the schedule's final learning rate as a fraction of ``lr``.
        max_iters: iterations the schedule spans; null uses the trainer's total number of optimiser steps.
        channels_last: train and evaluate in the channels-last memory format.
        compile: ``torch.compile`` the model.
        inference: how evaluation images are predicted (protocol, whole/slide, test scale, multi-scale, flip):
            see ``--model.inference.help``.
        boundary_iou: also compute Boundary IoU during validation/test.
        dataset_info: the data's :class:`~segfpn.datasets.info.DatasetInfo` as a dict (linked from the
            DataModule by the CLI, kept in checkpoints); default: generic names for ``num_classes`` classes.
        **model_options: the architecture options of :class:`segfpn.models.SegmentationModel`.
    """

    def __init__(
        self,
        num_classes: int,
        loss: str | dict[str, float] = "ce",
        class_weight: Literal["inverse_log", "inverse_sqrt", "inverse"] | list[float] | None = None,
        aux_loss_weight: float = 0.4,
        ohem_thresh: float | None = 0.7,
        ohem_min_kept: int = 100_000,
        focal_gamma: float = 2.0,
        loss_avg_non_ignore: bool = False,
        optimizer: OptimizerName = "adamw",
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        backbone_lr_mult: float = 1.0,
        schedule: ScheduleName = "poly",
        warmup_iters: int = 0,
        warmup_ratio: float = 1e-6,
        poly_power: float = 0.9,
        min_lr_ratio: float = 0.0,
        max_iters: int | None = None,
        channels_last: bool = False,
        compile: bool = False,
        inference: InferenceConfig | None = None,
        boundary_iou: bool = False,
        dataset_info: dict | None = None,
        **model_options: Any,
    ) -> None:
        super().__init__()
        _check_positive(lr=lr, poly_power=poly_power)
        _check_non_negative(
            weight_decay=weight_decay,
            aux_loss_weight=aux_loss_weight,
            warmup_iters=warmup_iters,
            backbone_lr_mult=backbone_lr_mult,
        )
        check_choice(optimizer, OptimizerName, "model.optimizer")
        check_choice(schedule, ScheduleName, "model.schedule")
        self.model = SegmentationModel(num_classes=num_classes, **model_options)
        # save_hyperparameters reads this frame's locals: with the defaults filled in, the hyper-parameters (and so
        # checkpoints and logger configs) name every architecture option of the network, not only those given
        model_options = architecture_options(num_classes, model_options)
        self.save_hyperparameters()
        weights = torch.tensor(class_weight, dtype=torch.float) if isinstance(class_weight, list) else None
        if weights is not None and len(weights) != num_classes:
            raise ConfigError(f"model.class_weight has {len(weights)} values, expected num_classes={num_classes}")
        self.dataset_info = DatasetInfo.from_hparams(dataset_info, num_classes)
        if self.dataset_info.num_classes != num_classes:
            raise ConfigError(
                f"model.num_classes={num_classes} but dataset {self.dataset_info.name!r} has "
                f"{self.dataset_info.num_classes} classes"
            )
        ignore = self.dataset_info.ignore_index
        self.criterion = CombinedLoss(
            loss, weights, ohem_thresh, ohem_min_kept, focal_gamma, loss_avg_non_ignore, ignore_index=ignore
        )
        if class_weight is not None and "ce" not in self.criterion.terms:
            raise ConfigError(f"model.class_weight applies to the 'ce' loss term, but model.loss={loss!r} has none")
        self.aux_criterion = CrossEntropyLoss(ignore_index=ignore, avg_non_ignore=loss_avg_non_ignore)
        # evaluation: the mean over labelled pixels, so that weighting batches by their labelled pixels is exact
        self.eval_criterion = CrossEntropyLoss(ignore_index=ignore, avg_non_ignore=True)
        self.inference = inference_config(inference)  # a dict in checkpoints written without the CLI
        self.val_metrics = SegmentationMetrics(num_classes, ignore)
        self.test_metrics = SegmentationMetrics(num_classes, ignore)
        # evaluation CE as sum over labelled pixels / their count, synchronised like the confusion matrix
        self.val_loss = MeanMetric().set_dtype(torch.float64)
        self.test_loss = MeanMetric().set_dtype(torch.float64)
        self.val_boundary = BoundaryIoU(num_classes, ignore_index=ignore) if boundary_iou else None
        self.test_boundary = BoundaryIoU(num_classes, ignore_index=ignore) if boundary_iou else None
        self.last_scores: dict[str, torch.Tensor] = {}
        self._compiled = False
        if channels_last:
            self.model.use_channels_last()

    # -- set-up -----------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        self._adopt_data_description(getattr(self.trainer, "datamodule", None))
        if isinstance(self.hparams.class_weight, str) and "ce" in self.criterion.terms:
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is None or not hasattr(datamodule, "class_weights"):
                raise ConfigError(
                    f"model.class_weight={self.hparams.class_weight!r} needs a DataModule with class_weights() "
                    "(segfpn's), which derives them from the training split"
                )
            weights = datamodule.class_weights(self.hparams.class_weight)
            self.criterion.terms["ce"].class_weight = weights.to(self.device)
            log.info("class weights (%s): min %.3f max %.3f", self.hparams.class_weight, weights.min(), weights.max())

    def _adopt_data_description(self, datamodule: Any) -> None:
        """A module built without ``dataset_info`` (Python API: ``Trainer.fit(module, datamodule)``) takes the
        DataModule's class names, colours and statistics, and keeps them in its checkpoints; an ignore index or a
        class count that differs from the one its losses and metrics were built with is an error."""
        data_info = getattr(datamodule, "dataset_info", None)
        if not isinstance(data_info, DatasetInfo) or self.hparams.get("dataset_info"):
            return
        ours = self.dataset_info
        if (data_info.num_classes, data_info.ignore_index) != (ours.num_classes, ours.ignore_index):
            raise ConfigError(
                f"the data ({data_info.name!r}) has {data_info.num_classes} classes and ignore index "
                f"{data_info.ignore_index}; the model was built for {ours.num_classes} and {ours.ignore_index}: pass "
                "SegmentationModule(..., dataset_info=datamodule.dataset_info.as_dict())"
            )
        self.dataset_info = data_info
        self.hparams["dataset_info"] = data_info.as_dict()

    def configure_model(self) -> None:
        if self.hparams.compile and not self._compiled:
            self.model.compile()
            self._compiled = True

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The data's ``(mean, std)`` on the 0..255 scale: what evaluation images were normalised with."""
        return self.dataset_info.mean, self.dataset_info.std

    # -- forward / steps --------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, pad: bool = True) -> dict[str, torch.Tensor]:
        return self.model(images, pad=pad)

    def training_loss(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss of a batch (main + weighted auxiliary terms) and its parts, without logging."""
        outputs = self(images)
        parts = self.criterion(outputs["p0"], masks)
        loss = parts["loss"]
        for key in sorted(k for k in outputs if k != "p0"):
            aux = self.hparams.aux_loss_weight * self.aux_criterion(outputs[key], masks)
            parts[f"aux_{key}"] = aux
            loss = loss + aux
        return loss, parts

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, masks = batch
        loss, parts = self.training_loss(images, masks)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {loss.item()} at step {self.global_step}")
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        if len(parts) > 1:
            self.log_dict({f"train/loss_{k}": v for k, v in parts.items() if k != "loss"}, batch_size=len(images))
        return loss

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        lrs = {group["name"]: group["lr"] for group in self.trainer.optimizers[0].param_groups}
        self.log("train/lr", lrs["decoder"], batch_size=1)  # model.lr x schedule
        if "backbone" in lrs and self.hparams.backbone_lr_mult != 1.0:
            self.log("train/lr_backbone", lrs["backbone"], batch_size=1)

    def _evaluate(
        self,
        batch: tuple[torch.Tensor, torch.Tensor],
        metrics: SegmentationMetrics,
        boundary: BoundaryIoU | None,
        loss: MeanMetric,
    ) -> torch.Tensor:
        images, masks = batch
        logits = predict_logits(self, images, self.inference, self.hparams.num_classes, *self.normalization)
        # plain cross-entropy whatever the training loss: cheap at full resolution, comparable across runs;
        # weighted by the labelled pixels so that the evaluation set's mean does not depend on the batching
        labelled = (masks != self.dataset_info.ignore_index).sum()
        loss.update(self.eval_criterion(logits, masks).detach(), weight=labelled)
        metrics.update(logits, masks)
        if boundary is not None:
            boundary.update(logits, masks)
        return logits

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, self.val_metrics, self.val_boundary, self.val_loss)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, self.test_metrics, self.test_boundary, self.test_loss)

    def _log_scores(
        self, metrics: SegmentationMetrics, boundary: BoundaryIoU | None, loss: MeanMetric, prefix: str
    ) -> None:
        scores = metrics.compute()
        # already reduced over processes by the metrics; sync_dist only averages identical values
        self.log_dict({f"{prefix}/{k}": scores[k].float() for k in ("mIoU", "aAcc", "mAcc")}, sync_dist=True)
        scores["loss"] = loss.compute().double()
        self.log(f"{prefix}/loss", scores["loss"].float(), sync_dist=True)
        if boundary is not None:
            self.log(f"{prefix}/bIoU", boundary.compute().float(), sync_dist=True)
            boundary.reset()
        self.last_scores = {k: v.detach().cpu() for k, v in scores.items()}  # read by ResultsWriter, WandbMedia
        metrics.reset()
        loss.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_scores(self.val_metrics, self.val_boundary, self.val_loss, "val")

    def on_test_epoch_end(self) -> None:
        self._log_scores(self.test_metrics, self.test_boundary, self.test_loss, "test")

    def predict_step(self, batch: tuple[torch.Tensor, list[str]], batch_idx: int) -> dict[str, Any]:
        images, paths = batch
        logits = predict_logits(self, images, self.inference, self.hparams.num_classes, *self.normalization)
        return {"labels": to_labels(logits).to(torch.uint8), "paths": paths}

    # -- optimisation -----------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        hp = self.hparams
        optimizer = build_optimizer(
            param_groups(self.model, hp.weight_decay, hp.backbone_lr_mult), hp.optimizer, hp.lr, hp.momentum
        )
        max_iters = hp.max_iters or int(self.trainer.estimated_stepping_batches)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(
                step, max_iters, hp.schedule, hp.warmup_iters, hp.warmup_ratio, hp.poly_power, hp.min_lr_ratio
            ),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(f"model.{name} must be positive, got {value}")


def _check_non_negative(**values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise ConfigError(f"model.{name} must be non-negative, got {value}")
