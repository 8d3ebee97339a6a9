"""Datasets (ADE20K, Cityscapes, your own folder data), albumentations recipe, DataModule, class statistics,
embedded demo data."""

from segfpn.constants import IMAGENET_MEAN, IMAGENET_STD
from segfpn.datasets.ade20k import ADE20K_INFO, IGNORE_INDEX, NUM_CLASSES, ADE20KDataset
from segfpn.datasets.ade20k_classes import ADE20K_CLASSES, ADE20K_PALETTE
from segfpn.datasets.base import CorruptSampleError, SegmentationDataset
from segfpn.datasets.cityscapes import CITYSCAPES_INFO, CityscapesDataset
from segfpn.datasets.folder import FolderDataset, load_classes_file
from segfpn.datasets.info import DatasetInfo
from segfpn.datasets.sampling import RepeatFactorSampler, class_weights, repeat_factors
from segfpn.datasets.synthetic import generate_dataset
from segfpn.datasets.transforms import train_transform, val_transform

__all__ = [
    "ADE20KDataModule",
    "ADE20KDataset",
    "ADE20K_CLASSES",
    "ADE20K_INFO",
    "CITYSCAPES_INFO",
    "CityscapesDataset",
    "FolderDataset",
    "SegmentationDataModule",
    "load_classes_file",
    "DatasetInfo",
    "SegmentationDataset",
    "ADE20K_PALETTE",
    "CorruptSampleError",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NUM_CLASSES",
    "RepeatFactorSampler",
    "class_weights",
    "generate_dataset",
    "repeat_factors",
    "train_transform",
    "val_transform",
]

# The DataModules need Lightning (seconds to import): loaded on first use, so that the predictor, export and the
# datasets themselves stay light.
_LAZY = {"SegmentationDataModule", "ADE20KDataModule"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from segfpn.datasets import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
