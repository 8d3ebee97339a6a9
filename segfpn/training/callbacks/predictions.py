"""PredictionWriter: ``segfpn predict`` writes label maps and overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image

from segfpn.utils.visualize import blend, denormalize


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
                Image.fromarray(blend(denormalize(image, info), labels, info)).save(
                    self.output_dir / "overlays" / f"{stem}.jpg"
                )

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rank_zero_info(f"predictions written to {self.output_dir} (labels/{', overlays/' if self.overlays else ''})")
