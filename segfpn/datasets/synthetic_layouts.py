"""The embedded scenes of ``synthetic.py`` written in the Cityscapes layout and in the folder layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from tqdm import tqdm

from segfpn.datasets.cityscapes import ANNOTATION_SUFFIX, CITYSCAPES_PALETTE, IMAGE_SUFFIX, TRAIN_IDS
from segfpn.datasets.folder import FolderClasses
from segfpn.datasets.info import DatasetInfo
from segfpn.datasets.synthetic import (
    ADE20K_COLOURS,
    BUILDING,
    CAR,
    FLOOR,
    GRASS,
    PERSON,
    ROAD,
    SKY,
    TREE,
    WALL,
    WATER,
    claim_folder,
    finish_folder,
    make_layout,
    make_sample,
    render,
)

# ADE20K value of a scene part -> Cityscapes labelId (water becomes "ground", an ignored id)
TO_CITYSCAPES = {SKY: 23, WALL: 12, BUILDING: 11, FLOOR: 8, ROAD: 7, GRASS: 22,
                 WATER: 6, TREE: 21, PERSON: 24, CAR: 26}  # fmt: skip
SMALL_OBJECTS = (13, 17, 19, 20, 25, 27, 28, 31, 32, 33)  # fence, pole, lights, signs, rider, truck ... bicycle
EGO_VEHICLE = 1  # an ignored id, drawn at the bottom like the real car bonnet
CITY_COLOURS = {label_id: CITYSCAPES_PALETTE[train_id] for label_id, train_id in TRAIN_IDS.items()}

# The folder demo's classes: the scene parts of the ADE20K generator, under their own names and colours.
FOLDER_VALUES = (SKY, WALL, BUILDING, FLOOR, TREE, ROAD, GRASS, PERSON, CAR,
                 WATER)  # fmt: skip
FOLDER_CLASSES = FolderClasses(
    DatasetInfo(
        name="embedded_folder",
        classes=("sky", "wall", "building", "floor", "tree", "road", "grass", "person", "car", "water"),
        palette=tuple(ADE20K_COLOURS[v] for v in FOLDER_VALUES),
    ),
    ignore_color=(0, 0, 0),
)


def cityscapes_sample(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, labelIds annotation): a street scene using evaluated ids plus ignored ones (0, 1, 6)."""
    ann = np.asarray([0, *[TO_CITYSCAPES.get(v, 0) for v in range(1, 256)]], np.uint8)[make_layout(rng, h, w)]
    for _ in range(rng.integers(1, 4)):
        y, x = int(rng.integers(0, h - h // 6)), int(rng.integers(0, w - w // 10))
        ann[y : y + h // 6, x : x + w // 10] = rng.choice(SMALL_OBJECTS)
    ann[h - max(h // 16, 1) :] = EGO_VEHICLE
    return render(ann, CITY_COLOURS, rng), ann


def generate_cityscapes(
    root: str | Path, counts: tuple[int, int, int] = (8, 4, 2), seed: int = 0, shape: tuple[int, int] = (64, 128),
    progress: bool = True,
) -> Path:  # fmt: skip
    """Write ``counts`` (train, val, test) images of ``shape`` (H, W) in the Cityscapes layout under ``root``,
    two cities per split; skipped if already complete, refused in a folder of images it did not write."""
    root = Path(root)
    signature = f"cityscapes {counts} {seed} {shape}"
    if claim_folder(root, signature, "leftImg8bit/*/*/*"):
        return root
    for offset, (split, count) in enumerate(zip(("train", "val", "test"), counts, strict=True)):
        for kind in ("leftImg8bit", "gtFine"):
            for stale in (root / kind / split).glob("*/*.png"):
                stale.unlink()
        for i in tqdm(range(count), desc=f"synthetic Cityscapes {split}", disable=not progress):
            image, ann = cityscapes_sample(np.random.default_rng(seed * 10_000_019 + offset * 1_000_000 + i), *shape)
            city = f"city{i % 2}"
            name = f"{city}_{i:06d}_000019"
            for kind, suffix, pixels in (("leftImg8bit", IMAGE_SUFFIX, image), ("gtFine", ANNOTATION_SUFFIX, ann)):
                (root / kind / split / city).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / kind / split / city / f"{name}{suffix}.png")
            colour = np.asarray([CITY_COLOURS.get(v, (0, 0, 0)) for v in range(256)], np.uint8)[ann]
            Image.fromarray(colour).save(root / "gtFine" / split / city / f"{name}_gtFine_color.png")
    finish_folder(root, signature)
    return root


def generate_folder(
    root: str | Path, counts: tuple[int, int] = (16, 4), seed: int = 0, size_range: tuple[int, int] = (96, 160),
    progress: bool = True,
) -> Path:  # fmt: skip
    """Write ``counts`` (train, val) JPEG images with RGB-palette PNG masks and ``classes.yaml`` under ``root``
    (the folder layout, :data:`FOLDER_CLASSES`; "other" pixels are black, the ignore colour)."""
    root = Path(root)
    signature = f"folder {counts} {seed} {size_range}"
    if claim_folder(root, signature, "images/*/*"):
        return root
    info = FOLDER_CLASSES.info
    classes = [{"name": n, "color": list(c)} for n, c in zip(info.classes, info.palette, strict=True)]
    content = {"name": info.name, "ignore_color": list(FOLDER_CLASSES.ignore_color), "classes": classes}
    text = yaml.safe_dump(content, sort_keys=False, default_flow_style=None)
    (root / "classes.yaml").write_text(text)
    colours = np.zeros((256, 3), np.uint8)
    for value, colour in zip(FOLDER_VALUES, info.palette, strict=True):
        colours[value] = colour
    for offset, (split, count) in enumerate(zip(("train", "val"), counts, strict=True)):
        for kind in ("images", "masks"):
            (root / kind / split).mkdir(parents=True, exist_ok=True)
            for stale in (root / kind / split).glob("sample_*"):
                stale.unlink()
        for i in tqdm(range(count), desc=f"synthetic folder {split}", disable=not progress):
            image, ann = make_sample(np.random.default_rng(seed * 10_000_019 + offset * 1_000_000 + i), size_range)
            Image.fromarray(image).save(root / "images" / split / f"sample_{i:04d}.jpg", quality=92)
            Image.fromarray(colours[ann]).save(root / "masks" / split / f"sample_{i:04d}.png")
    finish_folder(root, signature)
    return root
