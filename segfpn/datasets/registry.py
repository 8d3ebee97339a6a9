"""The dataset layouts ``data.dataset`` chooses from: how to build a split, generate embedded data, describe it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from segfpn.datasets.ade20k import ADE20K_INFO, ADE20KDataset
from segfpn.datasets.base import OnError, SegmentationDataset
from segfpn.datasets.cityscapes import CITYSCAPES_INFO, CityscapesDataset
from segfpn.datasets.folder import FolderClasses, FolderDataset, find_classes_file, load_classes_file
from segfpn.datasets.info import DatasetInfo
from segfpn.datasets.synthetic import generate_dataset
from segfpn.datasets.synthetic_layouts import FOLDER_CLASSES, generate_cityscapes, generate_folder
from segfpn.errors import ConfigError


@dataclass(frozen=True)
class Layout:
    """One dataset layout.

    ``build(root, split, transform, on_error, classes)`` makes a split's dataset (``classes``: the folder
    layout's classes, else ``None``); ``generate(root, num_train, num_val, seed)`` writes its embedded data;
    ``info`` describes it (``None``: read from the folder layout's classes file); ``splits`` are the default
    (train, val, test) split names; ``image_dir`` the images of a split, relative to the root (the default
    ``predict_dir``); ``test_scale`` the evaluation scale of its published recipes (mmseg's test Resize)."""

    build: Callable[[Path, str, Callable | None, OnError, FolderClasses | None], SegmentationDataset]
    generate: Callable[[Path, int, int, int], Path]
    splits: tuple[str, str, str]
    image_dir: str
    default_embedded_root: str
    info: DatasetInfo | None = None
    test_scale: tuple[int, int] = (2048, 512)


LAYOUTS: dict[str, Layout] = {
    "ade20k": Layout(
        build=lambda root, split, transform, on_error, _: ADE20KDataset(root, split, transform, on_error=on_error),
        generate=lambda root, n_train, n_val, seed: generate_dataset(root, n_train, n_val, seed=seed),
        splits=("training", "validation", "validation"),
        image_dir="images/{split}",
        default_embedded_root="data/embedded_ade20k",
        info=ADE20K_INFO,
    ),
    "cityscapes": Layout(
        build=lambda root, split, transform, on_error, _: CityscapesDataset(root, split, transform, on_error),
        generate=lambda root, n_train, n_val, seed: generate_cityscapes(root, (n_train, n_val, n_val), seed),
        splits=("train", "val", "val"),
        image_dir="leftImg8bit/{split}",
        default_embedded_root="data/embedded_cityscapes",
        info=CITYSCAPES_INFO,
        test_scale=(2048, 1024),
    ),
    "folder": Layout(
        build=lambda root, split, transform, on_error, names: FolderDataset(root, split, names, transform, on_error),
        generate=lambda root, n_train, n_val, seed: generate_folder(root, (n_train, n_val), seed),
        splits=("train", "val", "val"),
        image_dir="images/{split}",
        default_embedded_root="data/embedded_folder",
    ),
}

# the values data.dataset takes, derived from LAYOUTS (the one list) for the CLI's type check and help
DatasetName = Literal[tuple(LAYOUTS)]  # type: ignore[valid-type]


def get_layout(name: str) -> Layout:
    """The layout called ``name`` (a named error listing the known ones otherwise)."""
    if name not in LAYOUTS:
        raise ConfigError(f"data.dataset must be one of {sorted(LAYOUTS)}, got {name!r}")
    return LAYOUTS[name]


def layout_with_classes(num_classes: int) -> str | None:
    """The name of the first registered layout with ``num_classes`` classes (a converted checkpoint's data)."""
    return next(
        (name for name, layout in LAYOUTS.items() if layout.info and layout.info.num_classes == num_classes), None
    )


def folder_classes(root: Path, classes_file: str | None, embedded: bool) -> FolderClasses:
    """The folder layout's classes: ``classes_file``, else the embedded data's, else ``<root>/classes.yaml``."""
    if classes_file is not None:
        return load_classes_file(classes_file)
    if embedded:
        return FOLDER_CLASSES
    return load_classes_file(find_classes_file(root))


def open_dataset(
    name: str, root: str | Path, split: str | None = None, classes_file: str | None = None, on_error: OnError = "raise"
) -> SegmentationDataset:
    """Split ``split`` (default: the layout's validation split) of the ``name`` dataset at ``root``, with the
    validation transform: for commands that read a dataset without a DataModule (class-stats, feature maps...)."""
    layout = get_layout(name)
    classes = folder_classes(Path(root), classes_file, embedded=False) if name == "folder" else None
    return layout.build(Path(root), split or layout.splits[1], None, on_error, classes)
