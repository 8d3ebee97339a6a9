"""SegmentationDataModule: loaders for Lightning on a dataset of any registered layout, real or embedded."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from segfpn.datasets.base import SegmentationDataset
from segfpn.datasets.class_stats import compute_class_stats
from segfpn.datasets.collate import pad_collate
from segfpn.datasets.image_folder import ImageFolder, collate_with_paths
from segfpn.datasets.info import DatasetInfo
from segfpn.datasets.registry import DatasetName, folder_classes, get_layout
from segfpn.datasets.sampling import (
    EpochShuffleSampler,
    RepeatFactorSampler,
    class_weights,
    repeat_factors,
)
from segfpn.datasets.stream import StreamPosition, TrainStream, seed_step, stream_seed
from segfpn.datasets.transforms import train_transform
from segfpn.errors import ConfigError

log = logging.getLogger(__name__)
# Lightning warns that a mid-epoch resume repeats or skips data unless the loader itself has a state_dict; this
# DataModule's state (the stream position, restored with it) makes the resume exact
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")


class SegmentationDataModule(L.LightningDataModule):
    """Train/val/test/predict loaders for a dataset layout (ADE20K, Cityscapes or your own folder data).

    Args:
        data_root: the dataset's root folder. With ``embedded=true`` it defaults to ``data/embedded_<dataset>``
            and the generated dataset is written there on first use.
        dataset: the layout of ``data_root``: ``ade20k`` (ADEChallengeData2016), ``cityscapes``
            (leftImg8bit/ + gtFine/, labelIds mapped to the 19 train ids) or ``folder`` (images/<split>/ +
            masks/<split>/ with a classes file; README, "Your own data").
        classes_file: the folder layout's classes (YAML or CSV); default ``<data_root>/classes.yaml`` (or
            ``.csv``). Only for ``dataset=folder``.
        train_split: split folder used by ``fit`` (default: training / train, by layout).
        val_split: split folder used for validation (default: validation / val, by layout).
        test_split: split folder used by ``test`` (default: the validation split; ADE20K's and Cityscapes'
            test annotations are not public).
        embedded: use generated, download-free data in the chosen layout (see ``segfpn.datasets.synthetic``).
        embedded_num_train: training images of the embedded data.
        embedded_num_val: validation (and Cityscapes test) images of the embedded data.
        batch_size: training images per process and step.
        val_batch_size: evaluation images per batch (1 evaluates every image at its own size, as mmseg does).
        num_workers: DataLoader worker processes (0: load in the main process).
        crop_size: training crop, one size or (height, width), e.g. [512, 1024] for Cityscapes.
        scale: (long side, short side) that training images are resized to fit before the random ratio.
        ratio_range: (min, max) random factor applied to ``scale``.
        cat_max_ratio: re-draw a crop (up to 10 times) while one class covers more than this fraction of it.
        photometric: random brightness/contrast/saturation/hue distortion (mmseg's PhotoMetricDistortion).
        sampler: ``random`` (shuffle) or ``repeat_factor`` (class-balanced, threshold ``repeat_threshold``).
        repeat_threshold: class image frequency below which images of that class are repeated.
        predict_dir: image file or folder for ``predict`` (default: the validation images).
        on_error: ``raise`` on a corrupt sample, or ``skip`` it with a warning.
        pin_memory: pin batches in page-locked memory (only with a GPU).
        seed: seed of the sampler order and of the embedded data.

    The training stream resumes exactly (``segfpn.datasets.stream``): its position and seed are saved in each
    checkpoint (``state_dict``), and a resumed run trains on the samples, with the augmentation draws, the
    uninterrupted run would have.
    """

    def __init__(
        self,
        data_root: str | None = None,
        dataset: DatasetName = "ade20k",
        classes_file: str | None = None,
        train_split: str | None = None,
        val_split: str | None = None,
        test_split: str | None = None,
        embedded: bool = False,
        embedded_num_train: int = 64,
        embedded_num_val: int = 16,
        batch_size: int = 16,
        val_batch_size: int = 1,
        num_workers: int = 4,
        crop_size: int | tuple[int, int] = 512,
        scale: tuple[int, int] = (2048, 512),
        ratio_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        photometric: bool = True,
        sampler: Literal["random", "repeat_factor"] = "random",
        repeat_threshold: float = 0.01,
        predict_dir: str | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        pin_memory: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.layout = get_layout(dataset)
        if data_root is None and not embedded:
            raise ConfigError(f"data.data_root is required (the {dataset} dataset's folder), or set data.embedded=true")
        for name, value in (("batch_size", batch_size), ("val_batch_size", val_batch_size)):
            if value < 1:
                raise ConfigError(f"data.{name} must be a positive integer, got {value}")
        if min((crop_size,) if isinstance(crop_size, int) else crop_size) < 1:
            raise ConfigError(f"data.crop_size must be a positive size or (height, width), got {crop_size}")
        if len(scale) != 2 or min(scale) < 1:
            raise ConfigError(f"data.scale must be (long side, short side) in pixels, both positive; got {list(scale)}")
        if len(ratio_range) != 2 or not 0 < ratio_range[0] <= ratio_range[1]:
            raise ConfigError(f"data.ratio_range must be (min, max) with 0 < min <= max; got {list(ratio_range)}")
        if num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {num_workers}")
        if sampler not in ("random", "repeat_factor"):
            raise ConfigError(f"data.sampler must be 'random' or 'repeat_factor', got {sampler!r}")
        if classes_file is not None and dataset != "folder":
            raise ConfigError(f"data.classes_file is for data.dataset=folder; {dataset} has its own classes")
        self.save_hyperparameters()
        self.data_root = Path(data_root or self.layout.default_embedded_root)
        default_train, default_val, default_test = self.layout.splits
        self.splits = {"train": train_split or default_train, "val": val_split or default_val}
        self.splits["test"] = test_split or (val_split or default_test)
        # known before any image is read: the CLI links it into the model at instantiation
        self.classes = folder_classes(self.data_root, classes_file, embedded) if dataset == "folder" else None
        self.dataset_info: DatasetInfo = self.classes.info if self.classes is not None else self.layout.info
        self.num_classes = self.dataset_info.num_classes
        self.datasets: dict[str, Dataset] = {}
        # the augmentation and step seed: from torch's seed (``seed_everything``) at the first fit, then the
        # checkpoint's; and how far this rank got in the training stream
        self.stream_seed: int | None = None
        self.position = StreamPosition()

    def prepare_data(self) -> None:
        hp = self.hparams
        if hp.embedded:
            self.layout.generate(self.data_root, hp.embedded_num_train, hp.embedded_num_val, hp.seed)

    def build_dataset(self, split: str, transform: Callable | None = None) -> SegmentationDataset:
        """The dataset of split folder ``split`` in this layout (``transform`` default: the dataset's validation
        one)."""
        return self.layout.build(self.data_root, split, transform, self.hparams.on_error, self.classes)

    def setup(self, stage: str | None = None) -> None:
        hp, info = self.hparams, self.dataset_info
        if stage in ("fit", None) and "train" not in self.datasets:
            transform = train_transform(
                hp.crop_size, hp.scale, hp.ratio_range, hp.cat_max_ratio, hp.photometric,
                mean=info.mean, std=info.std, ignore_index=info.ignore_index,
            )  # fmt: skip
            self.datasets["train"] = self.build_dataset(self.splits["train"], transform)
            if self.stream_seed is None:
                seed = stream_seed(hp.seed, torch.initial_seed())
                self.stream_seed = self.trainer.strategy.broadcast(seed) if self.trainer is not None else seed
        for split, stages in (("val", ("fit", "validate", None)), ("test", ("test", None))):
            if stage in stages and split not in self.datasets:
                self.datasets[split] = self.build_dataset(self.splits[split])
        if stage == "predict" and "predict" not in self.datasets:
            folder = hp.predict_dir or self.data_root / self.layout.image_dir.format(split=self.splits["val"])
            self.datasets["predict"] = ImageFolder(folder, self.dataset_info.mean, self.dataset_info.std)

    def _loader(self, split: str, batch_size: int, shuffle: bool = False, **kwargs) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            self.datasets[split],
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=workers,
            pin_memory=self.hparams.pin_memory and torch.cuda.is_available(),
            persistent_workers=workers > 0,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        if hp.sampler == "repeat_factor":
            order = RepeatFactorSampler(repeat_factors(self.class_stats().presence, hp.repeat_threshold), hp.seed)
        else:
            order = EpochShuffleSampler(len(self.datasets["train"]), hp.seed)
        world_size, rank = self._world()
        stream = TrainStream(order, self._seed, world_size, rank, self._trainer_epoch, self._resume_start)
        return self._loader("train", hp.batch_size, sampler=stream, drop_last=True, collate_fn=self._collate)

    @property
    def _seed(self) -> int:
        return self.stream_seed if self.stream_seed is not None else stream_seed(self.hparams.seed, 0)

    def _trainer_epoch(self) -> int | None:
        return self.trainer.current_epoch if self.trainer is not None else None

    def _world(self) -> tuple[int, int]:
        return (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)

    def _resume_start(self, epoch: int) -> int:
        """The samples of ``epoch`` this rank already trained on (0 unless the run resumed inside it)."""
        position, world_size = self.position, self._world()[0]
        if position.epoch != epoch or position.batches == 0:
            return 0
        if (position.world_size, position.batch_size) != (world_size, self.hparams.batch_size):
            warnings.warn(
                f"resuming epoch {epoch} with {world_size} processes of batch {self.hparams.batch_size}, saved with "
                f"{position.world_size} of batch {position.batch_size}: the epoch starts over (its first "
                f"{position.batches} steps see their samples again); the run is not the uninterrupted one",
                stacklevel=2,
            )
            self.position = StreamPosition(epoch, 0, self.hparams.batch_size, world_size, self._seed)
            return 0
        return position.batches * position.batch_size

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """Count the training batches as the loop takes them (not as workers prefetch them) and seed the step."""
        trainer = self.trainer
        if trainer is not None and trainer.training and not trainer.sanity_checking:
            epoch, (world_size, rank) = trainer.current_epoch, self._world()
            done = self.position.batches if self.position.epoch == epoch else 0
            self.position = StreamPosition(epoch, done + 1, self.hparams.batch_size, world_size, self._seed)
            seed_step(self._seed, epoch, done, rank)
        return batch

    def state_dict(self) -> dict:
        return {"train_stream": dataclasses.replace(self.position, seed=self._seed).state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Resume the training stream where the checkpoint left it (one saved before it existed: the epoch
        starts over)."""
        if "train_stream" in state_dict:
            self.position = StreamPosition.from_state_dict(state_dict["train_stream"])
            self.stream_seed = self.position.seed

    def _eval_loader(self, split: str) -> DataLoader:
        """Under DDP every sample is evaluated exactly once (no padding duplicates: UnrepeatedDistributedSampler)."""
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        sampler = UnrepeatedDistributedSampler(self.datasets[split], shuffle=False) if distributed else None
        return self._loader(split, self.hparams.val_batch_size, sampler=sampler, collate_fn=self._collate)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", 1, collate_fn=collate_with_paths)

    @property
    def _collate(self) -> Callable:
        """Batches padded with the dataset's ignore index (a partial: cheap to send to worker processes)."""
        return functools.partial(pad_collate, ignore_index=self.dataset_info.ignore_index)

    def report_skipped(self) -> int:
        """Warn about corrupt samples skipped in any split so far (``on_error="skip"``); returns their number."""
        return sum(ds.report_skipped() for ds in self.datasets.values() if isinstance(ds, SegmentationDataset))

    def class_stats(self, split: str | None = None):
        """Per-class pixel/image counts of a split (default: the training split; cached, see
        ``segfpn.datasets.class_stats``)."""
        split = split or self.splits["train"]
        key = next((k for k, name in self.splits.items() if name == split and k in self.datasets), None)
        dataset = self.datasets[key] if key is not None else self.build_dataset(split)
        return compute_class_stats(dataset, num_workers=self.hparams.num_workers)

    def class_weights(self, method: str = "inverse_log") -> torch.Tensor:
        """Loss weights per class from the training split's pixel counts."""
        return class_weights(self.class_stats().pixels, method)


# the name of older configs and of the course; ``dataset`` defaults to ade20k and ``data_root`` stays first
ADE20KDataModule = SegmentationDataModule


def datamodule_class(class_path: str | None) -> type[SegmentationDataModule]:
    """The DataModule class a config's ``data.class_path`` names: segfpn's own (as ``segfpn fit`` builds), nothing
    else. A foreign path is refused before anything is imported, so a config file cannot run code."""
    if class_path is None:
        return SegmentationDataModule
    module, _, name = str(class_path).rpartition(".")
    found = None
    if module == "segfpn" or module.startswith("segfpn."):
        found = getattr(importlib.import_module(module), name, None)
    if not (isinstance(found, type) and issubclass(found, SegmentationDataModule)):
        raise ConfigError(
            f"data.class_path must name segfpn's SegmentationDataModule (e.g. "
            f"segfpn.datasets.SegmentationDataModule), as segfpn fit requires; got {class_path!r}"
        )
    return found


def evaluation_datamodule(
    saved: dict, trained: DatasetInfo, source: str, data_root: str | None = None
) -> SegmentationDataModule:
    """A DataModule (no workers) with the data settings a checkpoint saved (``data_root`` replaced when given); its
    classes must be those the network was trained on (``trained``, the checkpoint's ``dataset_info``)."""
    accepted = inspect.signature(SegmentationDataModule).parameters
    settings = {k: v for k, v in saved.items() if k in accepted}
    settings.update(num_workers=0, **({"data_root": data_root} if data_root else {}))
    data = SegmentationDataModule(**settings)
    found = data.dataset_info
    if (trained.num_classes, trained.ignore_index) != (found.num_classes, found.ignore_index):
        raise ConfigError(
            f"{source!r} was trained on {trained.name!r} ({trained.num_classes} classes, ignore index "
            f"{trained.ignore_index}), but its data settings give {found.name!r} ({found.num_classes} classes, "
            f"ignore index {found.ignore_index})"
        )
    return data
