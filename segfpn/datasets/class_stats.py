"""Per-class pixel and image counts of an ADE20K split, computed from the annotation PNGs alone."""

from __future__ import annotations

import csv
import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from segfpn.datasets.ade20k import NUM_CLASSES, load_annotation, reduce_zero_label
from segfpn.datasets.ade20k_classes import ADE20K_CLASSES


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


def _count(path: Path) -> tuple[np.ndarray, int]:
    ids = reduce_zero_label(load_annotation(path))
    counts = np.bincount(ids.ravel(), minlength=256)
    return counts[:NUM_CLASSES].astype(np.int64), int(counts[255])


def _cache_file(paths: list[Path], cache_dir: Path) -> Path:
    h = hashlib.sha1()
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return cache_dir / f"class_stats_{h.hexdigest()[:16]}.npz"


def default_cache_dir() -> Path:
    return Path(os.environ.get("SEGFPN_CACHE", Path.home() / ".cache" / "segfpn"))


def compute_class_stats(
    annotation_paths: list[Path], num_workers: int = 0, cache_dir: Path | None = None, progress: bool = True
) -> ClassStats:
    """Count every annotation (in ``num_workers`` processes), reusing a cached result for the same files."""
    cache = _cache_file(annotation_paths, cache_dir or default_cache_dir())
    if cache.is_file():
        data = np.load(cache)
        return ClassStats(data["pixels"], data["presence"], int(data["ignored"]))
    bar = dict(total=len(annotation_paths), desc="class statistics", disable=not progress)
    if num_workers > 0:
        with ProcessPoolExecutor(num_workers) as pool:
            results = list(tqdm(pool.map(_count, annotation_paths, chunksize=16), **bar))
    else:
        results = [_count(p) for p in tqdm(annotation_paths, **bar)]
    per_image = np.stack([r[0] for r in results]) if results else np.zeros((0, NUM_CLASSES), np.int64)
    stats = ClassStats(per_image.sum(0), per_image > 0, sum(r[1] for r in results))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, pixels=stats.pixels, presence=stats.presence, ignored=stats.ignored_pixels)
    return stats


def write_class_stats_csv(stats: ClassStats, path: Path, class_names: tuple[str, ...] = ADE20K_CLASSES) -> Path:
    """CSV: train id, name, pixels, pixel fraction, images containing the class."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["train_id", "name", "pixels", "pixel_fraction", "images"])
        for c, name in enumerate(class_names):
            writer.writerow([c, name, int(stats.pixels[c]), f"{stats.frequency[c]:.6g}", int(stats.images[c])])
    return path


def plot_class_distribution(stats: ClassStats, path: Path, class_names: tuple[str, ...] = ADE20K_CLASSES) -> Path:
    """Bar chart of pixel fraction per class, sorted, log scale, with class names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(-stats.pixels)
    order = order[stats.pixels[order] > 0]
    fig, ax = plt.subplots(figsize=(max(8, 0.16 * len(order) + 2), 5))
    ax.bar(range(len(order)), stats.frequency[order], color="tab:blue")
    ax.set_yscale("log")
    ax.set_xticks(range(len(order)), [class_names[c] for c in order], rotation=90, fontsize=6)
    ax.set_ylabel("fraction of labelled pixels (log)")
    ax.set_title(f"Class distribution: {len(stats.presence)} images, {len(order)} classes present")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
