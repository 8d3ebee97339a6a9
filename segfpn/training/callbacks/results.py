"""ResultsWriter: the scores of each evaluation as a JSON file in the run folder."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from segfpn.metrics import write_scores
from segfpn.training.runs import evaluation_name


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
