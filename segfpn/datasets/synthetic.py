"""A small, learnable dataset written in the exact ADEChallengeData2016 layout (no download needed).

Each image is a scene of horizontal bands (sky / wall or building / a ground class) with objects
(tree, person, car) on top and a few "other" blobs (annotation value 0, ignored). Every class has its
own ADE20K palette colour and texture, so appearance alone identifies it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from segfpn.datasets.ade20k_classes import ADE20K_PALETTE
from segfpn.errors import DataError

# ADE20K annotation values (1-based) used by the generator, grouped by role.
SKY, WALL, BUILDING, FLOOR, TREE, ROAD, GRASS, PERSON, CAR, WATER = 3, 1, 2, 4, 5, 7, 10, 13, 21, 22
MIDDLE = (WALL, BUILDING)
GROUND = (FLOOR, ROAD, GRASS, WATER)
OBJECTS = (TREE, PERSON, CAR)
CLASS_VALUES: tuple[int, ...] = (SKY, *MIDDLE, *GROUND, *OBJECTS)
_DONE_MARKER = ".segfpn_synthetic_done"


def _texture(value: int, colour: tuple[int, int, int], h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """[h, w, 3] float pixels of class ``value``: its colour, class-specific stripes, noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = (value * 37 % 180) * np.pi / 180
    period = 4 + value % 7
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    pixels = np.array(colour, dtype=np.float32) * rng.uniform(0.85, 1.1) + 25 * stripes[..., None]
    return pixels + rng.normal(0, 8, (h, w, 3))


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def make_layout(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """uint8 ``[h, w]`` ADE20K annotation (values 0..150) of a scene: bands, objects, a few "other" blobs."""
    ann = np.zeros((h, w), np.uint8)
    top, bottom = sorted(rng.uniform(0.2, 0.8, 2))
    ann[: int(top * h)] = SKY
    ann[int(top * h) : int(bottom * h)] = rng.choice(MIDDLE)
    ann[int(bottom * h) :] = rng.choice(GROUND)
    for _ in range(rng.integers(1, 4)):
        value = rng.choice(OBJECTS)
        cy, cx = rng.uniform(0.3, 0.9) * h, rng.uniform(0.1, 0.9) * w
        ry, rx = rng.uniform(0.08, 0.25) * h, rng.uniform(0.05, 0.2) * w
        if value == CAR:
            ann[int(max(cy - ry / 2, 0)) : int(cy + ry / 2), int(max(cx - rx, 0)) : int(cx + rx)] = value
        else:
            ann[_ellipse(h, w, cy, cx, ry, rx)] = value
    for _ in range(rng.integers(0, 3)):  # "other objects": value 0, ignored in training and metrics
        ann[_ellipse(h, w, rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 14), rng.uniform(4, 14))] = 0
    return ann


def render(ann: np.ndarray, colours: dict[int, tuple[int, int, int]], rng: np.random.Generator) -> np.ndarray:
    """RGB uint8 image of an annotation: each value in ``colours`` gets its colour and texture, the rest noise."""
    h, w = ann.shape
    image = rng.normal(128, 30, (h, w, 3))
    for value in np.unique(ann):
        if int(value) in colours:
            region = ann == value
            image[region] = _texture(int(value), colours[int(value)], h, w, rng)[region]
    return np.clip(image, 0, 255).astype(np.uint8)


ADE20K_COLOURS = {value: ADE20K_PALETTE[value - 1] for value in range(1, len(ADE20K_PALETTE) + 1)}


def make_sample(rng: np.random.Generator, size_range: tuple[int, int] = (160, 256)) -> tuple[np.ndarray, np.ndarray]:
    """One (RGB uint8 image, uint8 annotation with values 0..150) pair."""
    h, w = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, 2))
    ann = make_layout(rng, h, w)
    return render(ann, ADE20K_COLOURS, rng), ann


def claim_folder(root: Path, signature: str, pattern: str) -> bool:
    """``True`` when ``root`` already holds the generated data of ``signature``; otherwise mark ``root`` as ours
    (refusing a folder with files matching ``pattern`` that no generator wrote) and return ``False``."""
    marker = root / _DONE_MARKER
    if marker.is_file() and marker.read_text() == signature:
        return True
    if not marker.is_file() and any(root.glob(pattern)):
        raise DataError(
            f"data_root {str(root)!r} holds images that segfpn did not generate (no {_DONE_MARKER} file): refusing to "
            "write the embedded dataset there, which would delete them",
            hint="set data.embedded=false to train on this folder, or choose an empty data_root for the embedded data",
        )
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text("incomplete")  # ours from now on: an interrupted generation is redone, not refused
    return False


def finish_folder(root: Path, signature: str) -> None:
    """Mark ``root`` as complete for ``signature`` (see :func:`claim_folder`)."""
    (root / _DONE_MARKER).write_text(signature)


def generate_dataset(
    root: str | Path,
    num_train: int = 64,
    num_val: int = 16,
    seed: int = 0,
    size_range: tuple[int, int] = (160, 256),
    progress: bool = True,
) -> Path:
    """Write the dataset under ``root`` (the ``ADEChallengeData2016`` folder); skipped if already complete.
    A folder with images that this generator did not write (no marker file) is refused, never overwritten."""
    root = Path(root)
    signature = f"{num_train} {num_val} {seed} {size_range[0]} {size_range[1]}"
    if claim_folder(root, signature, "images/*/*"):
        return root
    for split, count, offset in (("training", num_train, 0), ("validation", num_val, 1_000_000)):
        for kind in ("images", "annotations"):
            folder = root / kind / split
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob("ADE_*"):  # a dataset written with other settings
                stale.unlink()
        prefix = "ADE_train" if split == "training" else "ADE_val"
        for i in tqdm(range(count), desc=f"synthetic ADE20K {split}", disable=not progress):
            image, ann = make_sample(np.random.default_rng(seed * 10_000_019 + offset + i), size_range)
            name = f"{prefix}_{i + 1:08d}"
            Image.fromarray(image).save(root / "images" / split / f"{name}.jpg", quality=92)
            Image.fromarray(ann, mode="L").save(root / "annotations" / split / f"{name}.png")
    finish_folder(root, signature)
    return root
