"""OverlayWriter: ``image | ground truth | prediction`` PNGs of every evaluated image (mmsegmentation's
``--show-dir``), on request: ``segfpn validate|test ... --overlays.dir overlays``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image

from segfpn.training.runs import evaluation_name
from segfpn.utils.label_figures import comparison_strip
from segfpn.utils.visualize import denormalize


class OverlayWriter(L.Callback):
    """Writes ``<dir>/<stage>_step<N>/<image name>.png`` for each image of a validate/test run: the image, its
    ground truth and the prediction blended in the dataset's palette, side by side at the annotation's size.

    Args:
        dir: output folder; a relative path is below the run folder (as mmsegmentation's ``--show-dir`` is below
            its work_dir). ``None`` (default) writes nothing.
        during_fit: also write at each validation during ``fit`` (one folder per validation).
        alpha: opacity of the painted labels.
    """

    def __init__(self, dir: str | None = None, during_fit: bool = False, alpha: float = 0.5) -> None:
        self.dir = dir
        self.during_fit = during_fit
        self.alpha = alpha
        self.folder: Path | None = None
        self._batches: list[list[int]] | None = None
        self._dataset: Any = None
        self._written = 0

    def _active(self, trainer: L.Trainer) -> bool:
        if self.dir is None or trainer.sanity_checking:
            return False
        return self.during_fit or trainer.state.fn.value != "fit"

    def _start(self, trainer: L.Trainer, stage: str, loaders: Any) -> None:
        self.folder = None
        if not self._active(trainer):
            return
        base = Path(self.dir)
        base = base if base.is_absolute() else Path(trainer.default_root_dir) / base
        self.folder = base / evaluation_name(trainer, stage)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._written = 0
        loader = loaders[0] if isinstance(loaders, list) else loaders
        # the sample indices of each batch (evaluation samplers are deterministic), to name files after images
        batch_sampler = getattr(loader, "batch_sampler", None)
        self._batches = [list(b) for b in batch_sampler] if batch_sampler is not None else None
        datasets = getattr(trainer.datamodule, "datasets", None) or {}
        self._dataset = datasets.get(stage) if hasattr(datasets.get(stage), "pairs") else None

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, logits: Any, batch: Any, idx: int) -> None:
        if self.folder is None:
            return
        info = pl_module.dataset_info
        images, masks = batch
        predictions = logits.argmax(1).cpu().numpy().astype(np.uint8)
        for i, (image, mask, prediction) in enumerate(zip(images, masks, predictions)):
            name, size = f"batch{idx:05d}_{i}", mask.shape[-2:]
            if self._batches is not None and idx < len(self._batches) and self._dataset is not None:
                image_path = Path(self._dataset.pairs[self._batches[idx][i]][0])
                name = image_path.stem
                with Image.open(image_path) as original:
                    size = (original.height, original.width)  # crops the padding of a batch of several sizes
            h, w = size
            strip = comparison_strip(
                denormalize(image[:, :h, :w], info),
                mask[:h, :w].cpu().numpy().astype(np.uint8),
                prediction[:h, :w],
                info,
                self.alpha,
            )
            Image.fromarray(strip).save(self.folder / f"{name}.png")
            self._written += 1

    def _finish(self) -> None:
        if self.folder is not None:
            rank_zero_info(f"overlays: {self._written} images in {self.folder}")

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer, "val", trainer.val_dataloaders)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer, "test", trainer.test_dataloaders)

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, *_: Any
    ) -> None:
        self._write(trainer, pl_module, outputs, batch, batch_idx)

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, *_: Any
    ) -> None:
        self._write(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish()

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish()
