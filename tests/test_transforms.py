"""The albumentations training recipe: sizes, padding, cat_max_ratio, photometric distortion, rescale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segfpn.datasets import ADE20KDataset, train_transform
from segfpn.datasets.transforms import CatMaxRatioCrop, PhotoMetricDistortion, RandomRescale, fit_size


@pytest.fixture
def fully_labelled_root(samples_root: Path, tmp_path: Path) -> Path:
    """The real sample pairs with "other" (0) pixels relabelled as wall, so 255 can only come from padding."""
    root = tmp_path / "ADEChallengeData2016"
    for kind in ("images", "annotations"):
        (root / kind / "validation").mkdir(parents=True)
    for img in (samples_root / "images" / "validation").iterdir():
        (root / "images" / "validation" / img.name).write_bytes(img.read_bytes())
        ann = np.asarray(Image.open(samples_root / "annotations" / "validation" / f"{img.stem}.png"))
        Image.fromarray(np.where(ann == 0, 1, ann).astype(np.uint8)).save(
            root / "annotations" / "validation" / f"{img.stem}.png"
        )
    return root


def test_train_pipeline_gives_512_crops_with_255_only_in_padding(fully_labelled_root: Path) -> None:
    ds = ADE20KDataset(fully_labelled_root, "val", transform=train_transform(512))
    ds.transform.set_random_seed(0)
    padded_seen = 0
    for k in range(12):
        image, mask = ds[k % 3]
        assert image.shape == (3, 512, 512) and mask.shape == (512, 512)
        padding = (image == 0).all(0)
        assert bool(((mask == 255) == padding).all()), "255 must mark exactly the padded pixels"
        padded_seen += int(padding.any())
        # padding sits at the bottom/right: a padded row/column stays padded to the border
        rows = padding.all(1).nonzero()
        if len(rows):
            assert rows.max() == 511
    assert padded_seen > 0, "with scale ratios down to 0.5 some crops must be padded"


def test_fit_size_and_random_rescale_keep_ratio() -> None:
    assert fit_size(512, 683, (2048, 512)) == (512, 683)
    assert fit_size(300, 400, (2048, 512)) == (512, 683)
    assert fit_size(1000, 4000, (2048, 512)) == (512, 2048)
    t = RandomRescale((2048, 512), (0.5, 2.0))
    t.set_random_seed(0)
    for _ in range(20):
        out = t(image=np.zeros((300, 400, 3), np.uint8), mask=np.zeros((300, 400), np.uint8))
        h, w = out["image"].shape[:2]
        assert out["mask"].shape == (h, w)
        assert 256 * 0.99 <= h <= 1024 * 1.01 and abs(w / h - 4 / 3) < 0.02


def test_cat_max_ratio_prefers_balanced_crops() -> None:
    mask = np.ones((100, 400), np.uint8)
    mask[:, 300:] = 2
    image = np.zeros((100, 400, 3), np.uint8)

    def balanced_fraction(ratio: float) -> float:
        crop = CatMaxRatioCrop(100, 100, cat_max_ratio=ratio)
        crop.set_random_seed(1)
        hits = 0
        for _ in range(200):
            m = crop(image=image, mask=mask)["mask"]
            counts = np.bincount(m.ravel())
            hits += counts.max() / counts.sum() < 0.75
        return hits / 200

    assert balanced_fraction(0.75) > 0.85
    assert balanced_fraction(1.0) < 0.4


def test_photometric_distortion_changes_image_not_mask() -> None:
    t = PhotoMetricDistortion()
    t.set_random_seed(0)
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    mask = np.arange(32 * 32, dtype=np.int32).reshape(32, 32).astype(np.uint8)
    unchanged = 0
    for _ in range(200):
        out = t(image=image, mask=mask)
        assert out["image"].dtype == np.uint8 and out["image"].shape == image.shape
        np.testing.assert_array_equal(out["mask"], mask)
        unchanged += np.array_equal(out["image"], image)
    assert unchanged / 200 < 0.15  # each of the four distortions is skipped with probability 0.5: 1/16


def _reference_distortion(img: np.ndarray, brightness, contrast_first, contrast, saturation, hue) -> np.ndarray:
    """mmsegmentation's PhotoMetricDistortion arithmetic, step by step in float."""
    import cv2

    def to_uint8(x: np.ndarray) -> np.ndarray:
        return np.clip(x, 0, 255).astype(np.uint8)

    if brightness is not None:
        img = to_uint8(img.astype(np.float32) + brightness)
    if contrast is not None and contrast_first:
        img = to_uint8(img.astype(np.float32) * contrast)
    if saturation is not None:  # two separate uint8 HSV round trips, as mmsegmentation
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
        img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    if hue is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + hue) % 180
        img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    if contrast is not None and not contrast_first:
        img = to_uint8(img.astype(np.float32) * contrast)
    return img


def test_photometric_lookup_tables_match_float_arithmetic() -> None:
    t = PhotoMetricDistortion()
    t.set_random_seed(3)
    image = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for _ in range(50):
        params = t.get_params()
        np.testing.assert_array_equal(t.apply(image, **params), _reference_distortion(image, **params))


def test_seeded_augmentation_steps_draw_independently() -> None:
    """One seed for a pipeline gives its transforms one shared stream: a horizontal flip is not decided by the
    same number as a vertical one (albumentations' set_random_seed seeds each transform alike)."""
    import albumentations as A

    from segfpn.datasets.base import seed_transform

    pipeline = A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)])
    image = np.arange(4, dtype=np.uint8).reshape(2, 2, 1)  # [[0, 1], [2, 3]]: each flip moves a different pixel
    outcomes = set()
    for seed in range(64):
        seed_transform(pipeline, seed)
        out = pipeline(image=image)["image"][..., 0]
        outcomes.add((bool(out[0, 0] in (1, 3)), bool(out[0, 0] in (2, 3))))  # (flipped left-right, up-down)
    assert outcomes == {(False, False), (True, False), (False, True), (True, True)}
