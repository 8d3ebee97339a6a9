"""EvaluationFiles: the per-class table and confusion matrix of each validation/test as files in the run folder,
whatever the logger (W&B gets them from WandbMedia), and in TensorBoard when a TensorBoardLogger is attached."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import matplotlib.pyplot as plt
import numpy as np

from segfpn.metrics import per_class_rows
from segfpn.tables import markdown_table, write_csv
from segfpn.training.runs import evaluation_name


class EvaluationFiles(L.Callback):
    """After each validation/test (not the sanity check), rank 0 writes to ``<run>/evaluation/``:
    ``<fn>_<val|test>_step<N>-per_class.csv`` (id, class, IoU, Acc, ground-truth pixels; classes absent from
    ground truth and prediction have empty IoU/Acc), ``...-confusion.npy`` (the raw ``[C, C]`` pixel counts,
    rows = ground truth) and ``...-confusion.png`` (rows normalised, the ``top_k`` classes with most pixels).
    A TensorBoardLogger also gets the figure (``add_figure``) and the table (``add_text``, Markdown).

    Args:
        enabled: write the files.
        top_k: classes shown in the confusion matrix figure.
    """

    def __init__(self, enabled: bool = True, top_k: int = 30) -> None:
        self.enabled = enabled
        self.top_k = top_k
        self.written: list[Path] = []

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        scores = getattr(pl_module, "last_scores", {})
        if not self.enabled or trainer.sanity_checking or not trainer.is_global_zero or "IoU" not in scores:
            return
        from segfpn.utils.visualize import plot_confusion_matrix

        names = pl_module.dataset_info.classes
        confmat = scores["confmat"].numpy()
        stem = evaluation_name(trainer, stage)
        folder = Path(trainer.default_root_dir) / "evaluation"
        folder.mkdir(parents=True, exist_ok=True)
        rows = [{**r, "IoU": _cell(r["IoU"]), "Acc": _cell(r["Acc"])} for r in per_class_rows(scores, names)]
        table = write_csv(rows, folder / f"{stem}-per_class.csv")
        np.save(folder / f"{stem}-confusion.npy", confmat)
        figure = plot_confusion_matrix(confmat, names, top_k=self.top_k)
        figure.axes[0].set_title(f"confusion matrix, {stage} at step {trainer.global_step} (rows normalised)")
        figure.savefig(folder / f"{stem}-confusion.png", dpi=110, bbox_inches="tight")
        self.written = [table, folder / f"{stem}-confusion.npy", folder / f"{stem}-confusion.png"]
        tensorboard = _tensorboard(trainer)
        if tensorboard is not None:
            # the step Lightning gave the logger for this evaluation's scalars (global_step - 1 during fit)
            step = trainer.fit_loop.epoch_loop._batches_that_stepped
            tensorboard.add_figure(f"{stage}/confusion_matrix", figure, global_step=step)
            present = sorted((r for r in rows if r["IoU"] != ""), key=lambda r: -float(r["IoU"]))
            markdown = markdown_table(
                [{**r, "gt pixels": r["gt_pixels"]} for r in present], ["class", "IoU", "Acc", "gt pixels"]
            )
            tensorboard.add_text(f"{stage}/per_class", markdown, global_step=step)
        plt.close(figure)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # not on_validation_epoch_end: callbacks run before the module's hook that computes the scores
        self._write(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module, "test")


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _tensorboard(trainer: L.Trainer) -> object | None:
    """The SummaryWriter of an attached TensorBoardLogger, or None."""
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    return None if logger is None else logger.experiment
