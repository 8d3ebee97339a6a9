"""ADE20KDataModule: loaders for Lightning, on a real ADEChallengeData2016 folder or the embedded data."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from segfpn.datasets.ade20k import ADE20K_INFO, ADE20KDataset
from segfpn.datasets.class_stats import compute_class_stats
from segfpn.datasets.collate import pad_collate
from segfpn.datasets.image_folder import ImageFolder, collate_with_paths
from segfpn.datasets.sampling import (
    EpochShuffleSampler,
    RepeatFactorSampler,
    class_weights,
    repeat_factors,
)
from segfpn.datasets.synthetic import generate_dataset
from segfpn.datasets.transforms import train_transform
from segfpn.errors import ConfigError

log = logging.getLogger(__name__)


def seed_worker(worker_id: int) -> None:
    """Give every worker (and every epoch) its own numpy, random and albumentations streams."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None:
        seed_transform(info.dataset, seed)


def seed_transform(dataset: Dataset, seed: int) -> None:
    """Seed a dataset's albumentations pipeline, which keeps its own random state (seeded from the OS
    unless told): neither ``seed_everything`` nor numpy/random seeds reach it."""
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


class ADE20KDataModule(L.LightningDataModule):
    """Train/val/test/predict loaders for ADE20K.

    Args:
        data_root: the ``ADEChallengeData2016`` folder. With ``embedded=True`` it defaults to
            ``data/embedded_ade20k`` and the synthetic dataset is written there on first use.
        embedded: use the generated, download-free dataset (see ``segfpn.datasets.synthetic``).
        batch_size: training images per process and step; ``val_batch_size`` for evaluation
            (1 evaluates every image at its own size, as mmsegmentation does).
        crop_size, scale, ratio_range, cat_max_ratio: the training augmentation recipe.
        sampler: ``random`` or ``repeat_factor`` (class-balanced, threshold ``repeat_threshold``).
        test_split: split used by ``test`` (ADE20K's test annotations are not public).
        predict_dir: image file or folder for ``predict`` (default: the validation images).
        on_error: ``raise`` on a corrupt sample, or ``skip`` it with a warning.
    """

    def __init__(
        self,
        data_root: str | None = None,
        embedded: bool = False,
        embedded_num_train: int = 64,
        embedded_num_val: int = 16,
        batch_size: int = 16,
        val_batch_size: int = 1,
        num_workers: int = 4,
        crop_size: int = 512,
        scale: tuple[int, int] = (2048, 512),
        ratio_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        photometric: bool = True,
        sampler: Literal["random", "repeat_factor"] = "random",
        repeat_threshold: float = 0.01,
        test_split: str = "validation",
        predict_dir: str | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        pin_memory: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if data_root is None and not embedded:
            raise ConfigError("data.data_root is required (the ADEChallengeData2016 folder), or set data.embedded=true")
        for name, value in (("batch_size", batch_size), ("val_batch_size", val_batch_size), ("crop_size", crop_size)):
            if value < 1:
                raise ConfigError(f"data.{name} must be a positive integer, got {value}")
        if num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {num_workers}")
        if sampler not in ("random", "repeat_factor"):
            raise ConfigError(f"data.sampler must be 'random' or 'repeat_factor', got {sampler!r}")
        self.save_hyperparameters()
        self.data_root = Path(data_root or "data/embedded_ade20k")
        self.dataset_info = ADE20K_INFO
        self.num_classes = self.dataset_info.num_classes
        self.datasets: dict[str, Dataset] = {}

    def prepare_data(self) -> None:
        if self.hparams.embedded:
            generate_dataset(
                self.data_root, self.hparams.embedded_num_train, self.hparams.embedded_num_val, seed=self.hparams.seed
            )

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in ("fit", None) and "train" not in self.datasets:
            transform = train_transform(hp.crop_size, hp.scale, hp.ratio_range, hp.cat_max_ratio, hp.photometric)
            self.datasets["train"] = ADE20KDataset(self.data_root, "training", transform, on_error=hp.on_error)
        if stage in ("fit", "validate", None) and "val" not in self.datasets:
            self.datasets["val"] = ADE20KDataset(self.data_root, "validation", on_error=hp.on_error)
        if stage in ("test", None) and "test" not in self.datasets:
            self.datasets["test"] = ADE20KDataset(self.data_root, hp.test_split, on_error=hp.on_error)
        if stage == "predict" and "predict" not in self.datasets:
            folder = hp.predict_dir or self.data_root / "images" / "validation"
            self.datasets["predict"] = ImageFolder(folder)

    def _loader(self, split: str, batch_size: int, shuffle: bool = False, **kwargs) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            self.datasets[split],
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=workers,
            pin_memory=self.hparams.pin_memory and torch.cuda.is_available(),
            persistent_workers=workers > 0,
            worker_init_fn=seed_worker,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        epoch_fn = self._trainer_epoch
        if hp.sampler == "repeat_factor":
            factors = repeat_factors(self.class_stats().presence, hp.repeat_threshold)
            sampler = RepeatFactorSampler(factors, hp.seed, epoch_fn)
        else:
            sampler = EpochShuffleSampler(len(self.datasets["train"]), hp.seed, epoch_fn)
        if hp.num_workers == 0:  # workers are seeded by seed_worker; the main process, like them, from torch's seed
            seed_transform(self.datasets["train"], torch.initial_seed() % 2**32)
        return self._loader("train", hp.batch_size, sampler=sampler, drop_last=True, collate_fn=pad_collate)

    def _trainer_epoch(self) -> int | None:
        return self.trainer.current_epoch if self.trainer is not None else None

    def _eval_loader(self, split: str) -> DataLoader:
        """Under DDP every sample is evaluated exactly once (no padding duplicates: UnrepeatedDistributedSampler)."""
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        sampler = UnrepeatedDistributedSampler(self.datasets[split], shuffle=False) if distributed else None
        return self._loader(split, self.hparams.val_batch_size, sampler=sampler, collate_fn=pad_collate)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", 1, collate_fn=collate_with_paths)

    def report_skipped(self) -> int:
        """Warn about corrupt samples skipped in any split so far (``on_error="skip"``); returns their number."""
        return sum(ds.report_skipped() for ds in self.datasets.values() if isinstance(ds, ADE20KDataset))

    def class_stats(self, split: str = "training"):
        """Per-class pixel/image counts of a split (cached; see ``segfpn.datasets.class_stats``)."""
        key = "train" if split == "training" else "val"
        dataset = self.datasets.get(key) or ADE20KDataset(self.data_root, split)
        return compute_class_stats(dataset, num_workers=self.hparams.num_workers)

    def class_weights(self, method: str = "inverse_log") -> torch.Tensor:
        """Loss weights per class from the training split's pixel counts."""
        return class_weights(self.class_stats().pixels, method)
