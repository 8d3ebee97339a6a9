"""Per-class pixel and image counts of a dataset split, computed from its annotations alone (train ids)."""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from segfpn.datasets.base import SegmentationDataset
from segfpn.datasets.info import DatasetInfo


@dataclass
class ClassStats:
    """``pixels[c]``: labelled pixels of class c; ``presence[i, c]``: image i contains class c."""

    pixels: np.ndarray  # int64 [C]
    presence: np.ndarray  # bool [N, C]
    ignored_pixels: int

    @property
    def images(self) -> np.ndarray:
        """Number of images that contain each class."""
        return self.presence.sum(0)

    @property
    def frequency(self) -> np.ndarray:
        """Fraction of labelled pixels per class."""
        return self.pixels / max(int(self.pixels.sum()), 1)


# the dataset a worker process counts (set once per process by the pool's initializer, not pickled per task)
_DATASET: SegmentationDataset | None = None


def _set_dataset(dataset: SegmentationDataset) -> None:
    global _DATASET
    _DATASET = dataset


def _count(index: int) -> tuple[np.ndarray, int]:
    assert _DATASET is not None
    return count_labels(_DATASET.load_labels(index), _DATASET.info)


def count_labels(train_ids: np.ndarray, info: DatasetInfo) -> tuple[np.ndarray, int]:
    """Pixels per class ``[C]`` and ignored pixels of one train-id mask."""
    counts = np.bincount(train_ids.ravel(), minlength=256)
    return counts[: info.num_classes].astype(np.int64), int(counts[info.ignore_index])


def _cache_file(dataset: SegmentationDataset, cache_dir: Path) -> Path:
    # how labels are read is part of the key: the same files give other counts under another label mapping
    # (or, for colour-coded masks, another palette; the dataset class decides how it reads a mask)
    info = dataset.info
    reading = (type(dataset).__qualname__, info.num_classes, info.ignore_index, info.label_map, info.palette)
    h = hashlib.sha1(repr(reading).encode())
    for _, p in dataset.pairs:
        st = p.stat()
        h.update(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return cache_dir / f"class_stats_{h.hexdigest()[:16]}.npz"


def default_cache_dir() -> Path:
    return Path(os.environ.get("SEGFPN_CACHE", Path.home() / ".cache" / "segfpn"))


def compute_class_stats(
    dataset: SegmentationDataset, num_workers: int = 0, cache_dir: Path | None = None, progress: bool = True
) -> ClassStats:
    """Count the train ids of every annotation of ``dataset`` (``dataset.load_labels``, in ``num_workers``
    processes), reusing a cached result for the same files and label mapping."""
    cache = _cache_file(dataset, cache_dir or default_cache_dir())
    if cache.is_file():
        data = np.load(cache)
        return ClassStats(data["pixels"], data["presence"], int(data["ignored"]))
    indices = range(len(dataset.pairs))
    bar = dict(total=len(indices), desc="class statistics", disable=not progress)
    if num_workers > 0:
        with ProcessPoolExecutor(num_workers, initializer=_set_dataset, initargs=(dataset,)) as pool:
            results = list(tqdm(pool.map(_count, indices, chunksize=16), **bar))
    else:
        results = [count_labels(dataset.load_labels(i), dataset.info) for i in tqdm(indices, **bar)]
    num_classes = dataset.info.num_classes
    per_image = np.stack([r[0] for r in results]) if results else np.zeros((0, num_classes), np.int64)
    stats = ClassStats(per_image.sum(0), per_image > 0, sum(r[1] for r in results))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, pixels=stats.pixels, presence=stats.presence, ignored=stats.ignored_pixels)
    return stats


def write_class_stats_csv(stats: ClassStats, path: Path, class_names: Sequence[str]) -> Path:
    """CSV: train id, name (``class_names``: the dataset's), pixels, pixel fraction, images containing the class."""
    _check_names(stats, class_names)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["train_id", "name", "pixels", "pixel_fraction", "images"])
        for c, name in enumerate(class_names):
            writer.writerow([c, name, int(stats.pixels[c]), f"{stats.frequency[c]:.6g}", int(stats.images[c])])
    return path


def plot_class_distribution(stats: ClassStats, path: Path, class_names: Sequence[str], dataset_name: str = "") -> Path:
    """Bar chart of pixel fraction per class, sorted, log scale, with the dataset's class names."""
    _check_names(stats, class_names)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(-stats.pixels)
    order = order[stats.pixels[order] > 0]
    fig, ax = plt.subplots(figsize=(max(8, 0.16 * len(order) + 2), 5))
    ax.bar(range(len(order)), stats.frequency[order], color="tab:blue")
    ax.set_yscale("log")
    ax.set_xticks(range(len(order)), [class_names[c] for c in order], rotation=90, fontsize=6)
    ax.set_xlabel("class (sorted by pixel share)")
    ax.set_ylabel("fraction of labelled pixels (log)")
    title = f"Class distribution{f' of {dataset_name}' if dataset_name else ''}"
    ax.set_title(f"{title}: {len(stats.presence)} images, {len(order)} of {len(class_names)} classes present")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _check_names(stats: ClassStats, class_names: Sequence[str]) -> None:
    if len(class_names) != len(stats.pixels):
        raise ValueError(f"class statistics of {len(stats.pixels)} classes, but {len(class_names)} class names given")
