"""Data pipeline throughput of one worker: segfpn's train and val pipelines against the bare JPEG decode of
the same files (and the decode of the JPEG + PNG pair, which every pipeline must do), and against an
equivalent torchvision.transforms.v2 pipeline. Measured on generated ADE20K-sized files and, when
``../shared/ade20k_samples`` is there, on the real ADE20K validation files."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segfpn.datasets import ADE20KDataset, generate_dataset, train_transform, val_transform

REAL_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "ade20k_samples" / "ADEChallengeData2016"


def ade_sized_dataset(root: Path, count: int) -> Path:
    """``count`` generated pairs at ADE20K's typical sizes (512 short side, up to 683 long side)."""
    return generate_dataset(root, num_train=count, num_val=1, seed=1, size_range=(512, 683), progress=False)


def _rate(fn, n: int, rounds: int = 3) -> float:
    """Best items/s of ``rounds`` passes over ``n`` items (the least disturbed pass on a shared machine)."""
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        best = max(best, n / (time.perf_counter() - start))
    return best


def torchvision_train_pipeline(crop: int = 512):
    """torchvision.transforms.v2 near-equivalent of the recipe (short-side resize stands in for the
    (2048, 512) x [0.5, 2] rescale; no cat_max_ratio)."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    fill = {tv_tensors.Image: 0, tv_tensors.Mask: 255}
    return v2.Compose(
        [
            v2.RandomResize(256, 1024),
            v2.RandomCrop(crop, pad_if_needed=True, fill=fill),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=32 / 255, contrast=0.5, saturation=0.5, hue=18 / 180),
            v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
            v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )


def _decode(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB") if im.mode != "L" else im)


def measure(root: Path, split: str, n: int, files: str) -> list[dict]:
    """Rates of the pipelines over ``n`` items cycling through the pairs of ``root``/``split``."""
    from torchvision import tv_tensors
    from torchvision.io import decode_jpeg, decode_png, read_file

    train = ADE20KDataset(root, split, transform=train_transform(512))
    val = ADE20KDataset(root, split, transform=val_transform())
    pairs = train.pairs
    tv_pipeline = torchvision_train_pipeline()

    def tv_train(i: int) -> None:
        image, ann = pairs[i % len(pairs)]
        img = tv_tensors.Image(decode_jpeg(read_file(str(image))))
        mask = tv_tensors.Mask(decode_png(read_file(str(ann)))[0].long() - 1)
        tv_pipeline(img, mask)

    rates = {
        "bare JPEG decode (PIL)": _rate(lambda i: _decode(pairs[i % len(pairs)][0]), n),
        "bare JPEG + PNG decode (PIL)": _rate(lambda i: [_decode(p) for p in pairs[i % len(pairs)]], n),
        "segfpn val pipeline": _rate(lambda i: val[i % len(val)], n),
        "segfpn train pipeline": _rate(lambda i: train[i % len(train)], n),
        "torchvision v2 train pipeline": _rate(tv_train, n),
    }
    jpeg, pair = rates["bare JPEG decode (PIL)"], rates["bare JPEG + PNG decode (PIL)"]
    return [
        {"files": files, "pipeline": k, "images_per_s": v, "vs_bare_jpeg_decode": v / jpeg, "vs_pair_decode": v / pair}
        for k, v in rates.items()
    ]


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    count = 16 if quick else 48
    with tempfile.TemporaryDirectory() as tmp:
        root = ade_sized_dataset(Path(tmp) / "ADEChallengeData2016", count)
        rows = measure(root, "training", count, "generated, 512x(512..683)")
    if (REAL_SAMPLES / "images" / "validation").is_dir():
        rows += measure(REAL_SAMPLES, "validation", count, "real ADE20K val (3 files, cycled)")
    return rows
