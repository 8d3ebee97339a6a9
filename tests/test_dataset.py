"""ADE20KDataset on the real sample pairs, and every bad input it must name."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from segfpn.datasets import ADE20K_CLASSES, ADE20K_PALETTE, IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, ADE20KDataset
from segfpn.datasets.ade20k import CorruptSampleError


def test_real_pairs_shapes_dtype_and_label_mapping(samples_root: Path) -> None:
    ds = ADE20KDataset(samples_root, split="validation")
    assert len(ds) == 3
    for i, (img_path, ann_path) in enumerate(ds.pairs):
        image, mask = ds[i]
        raw = np.asarray(Image.open(ann_path))
        rgb = np.asarray(Image.open(img_path).convert("RGB"), dtype=np.float32)
        assert image.dtype == torch.float32 and mask.dtype == torch.int64
        assert image.shape == (3, *raw.shape) and mask.shape == raw.shape
        expected = np.where(raw == 0, IGNORE_INDEX, raw.astype(np.int64) - 1)
        np.testing.assert_array_equal(mask.numpy(), expected)
        normalised = (rgb - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
        np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), normalised, atol=1e-4)
        assert mask.max() <= IGNORE_INDEX and ((mask < 150) | (mask == IGNORE_INDEX)).all()


def test_split_aliases_and_metadata(samples_root: Path) -> None:
    assert len(ADE20KDataset(samples_root, split="val")) == 3
    assert len(ADE20K_CLASSES) == len(ADE20K_PALETTE) == 150 and ADE20K_CLASSES[0] == "wall"
    with pytest.raises(ValueError, match="split must be one of"):
        ADE20KDataset(samples_root, split="testing")


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """Two valid pairs in the ADE20K layout, to break in each test."""
    root = tmp_path / "ADEChallengeData2016"
    rng = np.random.default_rng(0)
    for split in ("training", "validation"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in range(2):
            name = f"ADE_{split}_{i:08d}"
            Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(
                root / "images" / split / f"{name}.jpg"
            )
            Image.fromarray(rng.integers(0, 151, (40, 60), dtype=np.uint8)).save(
                root / "annotations" / split / f"{name}.png"
            )
    return root


def _first(root: Path, kind: str) -> Path:
    return sorted((root / kind / "training").iterdir())[0]


def test_missing_root_and_split_folders(tmp_path: Path, tiny_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist; expected the layout ADEChallengeData2016/"):
        ADE20KDataset(tmp_path / "nowhere")
    shutil.rmtree(tiny_root / "annotations" / "training")
    with pytest.raises(FileNotFoundError, match=r"missing folder .*annotations/training"):
        ADE20KDataset(tiny_root, "training")


def test_no_images(tiny_root: Path) -> None:
    for p in (tiny_root / "images" / "training").iterdir():
        p.unlink()
    with pytest.raises(FileNotFoundError, match=r"no images .*images/training"):
        ADE20KDataset(tiny_root, "training")


def test_unpaired_files_are_named(tiny_root: Path) -> None:
    _first(tiny_root, "annotations").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 images without annotation \['ADE_training_00000000'\]"):
        ADE20KDataset(tiny_root, "training")


def test_empty_file(tiny_root: Path) -> None:
    _first(tiny_root, "images").write_bytes(b"")
    with pytest.raises(CorruptSampleError, match=r"1 unusable files .*empty file .*ADE_training_00000000.jpg"):
        ADE20KDataset(tiny_root, "training")


def test_corrupt_and_truncated_images(tiny_root: Path) -> None:
    path = _first(tiny_root, "images")
    data = path.read_bytes()
    path.write_bytes(b"not a jpeg at all" * 10)
    with pytest.raises(CorruptSampleError, match=r"cannot read image .*ADE_training_00000000.jpg"):
        ADE20KDataset(tiny_root, "training")[0]
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptSampleError, match=r"cannot read image .*ADE_training_00000000.jpg.*truncated"):
        ADE20KDataset(tiny_root, "training")[0]


def test_mask_size_mismatch(tiny_root: Path) -> None:
    Image.fromarray(np.ones((41, 60), np.uint8)).save(_first(tiny_root, "annotations"))
    with pytest.raises(CorruptSampleError, match=r"is 60x40 \(WxH\) but its annotation .* is 60x41"):
        ADE20KDataset(tiny_root, "training")[0]


def test_multichannel_annotation(tiny_root: Path) -> None:
    Image.fromarray(np.ones((40, 60, 3), np.uint8)).save(_first(tiny_root, "annotations"))
    with pytest.raises(CorruptSampleError, match=r"must be single-channel .* found mode RGB with 3 channels"):
        ADE20KDataset(tiny_root, "training")[0]


def test_annotation_value_out_of_range(tiny_root: Path) -> None:
    values = np.ones((40, 60), np.uint8)
    values[3, 4] = 200
    Image.fromarray(values).save(_first(tiny_root, "annotations"))
    with pytest.raises(CorruptSampleError, match=r"holds value 200; expected 0..150"):
        ADE20KDataset(tiny_root, "training")[0]


def test_skip_mode_counts_and_warns(tiny_root: Path) -> None:
    _first(tiny_root, "images").write_bytes(b"garbage" * 20)
    ds = ADE20KDataset(tiny_root, "training", on_error="skip")
    image, mask = ds[0]  # replaced by the next good sample
    assert image.shape == (3, 40, 60) and mask.shape == (40, 60)
    with pytest.warns(UserWarning, match="1 corrupt samples skipped"):
        assert ds.report_skipped() == 1


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK"])
def test_grayscale_rgba_cmyk_images_become_rgb(tiny_root: Path, mode: str) -> None:
    path = _first(tiny_root, "images")
    img = Image.open(path).convert(mode)
    if mode == "RGBA":  # JPEG has no alpha: store as PNG under the same stem
        path.unlink()
        img.save(path.with_suffix(".png"))
    else:
        img.save(path)
    image, mask = ADE20KDataset(tiny_root, "training")[0]
    assert image.shape == (3, 40, 60)


def _save_with_orientation(array: np.ndarray, path: Path, orientation: int) -> None:
    img = Image.fromarray(array)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, exif=exif)


def test_exif_rotation(tiny_root: Path) -> None:
    path, ann = _first(tiny_root, "images"), _first(tiny_root, "annotations")
    pixels = np.zeros((60, 40, 3), np.uint8)  # stored 40 wide, 60 high
    pixels[:5] = 255  # a white band at the stored top
    _save_with_orientation(pixels, path, 6)  # displayed rotated by 90 degrees: 60 wide, 40 high
    image, _ = ADE20KDataset(tiny_root, "training")[0]  # the annotation is 60x40: the oriented image fits
    assert image.shape == (3, 40, 60)
    assert image[:, :, -5:].mean() > image[:, :, :-5].mean()  # the band moved to the right edge
    Image.fromarray(np.ones((60, 40), np.uint8)).save(ann)  # annotated on the stored pixels instead
    with pytest.raises(CorruptSampleError, match=r"has EXIF orientation 6 .* upright it is 60x40 .* is 40x60, the st"):
        ADE20KDataset(tiny_root, "training")[0]


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_every_exif_orientation_pairs_the_upright_image_with_the_annotation(tiny_root: Path, orientation: int) -> None:
    """One rule for every orientation, the shape-keeping ones included (mirrors, 180 degrees, square images)."""
    path, ann = _first(tiny_root, "images"), _first(tiny_root, "annotations")
    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)  # square: every orientation keeps the shape
    _save_with_orientation(stored, path.with_suffix(".png"), orientation)
    path.unlink()
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path.with_suffix(".png"))))
    assert not np.array_equal(upright, stored)
    Image.fromarray(np.ones((48, 48), np.uint8)).save(ann)
    image, _ = ADE20KDataset(tiny_root, "training").load_pair(0)
    assert np.array_equal(image, upright)


def test_skips_in_dataloader_workers_are_counted_in_the_main_process(tiny_root: Path) -> None:
    _first(tiny_root, "images").write_bytes(b"garbage" * 20)
    ds = ADE20KDataset(tiny_root, "training", on_error="skip")
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2)
    assert len(list(loader)) == 2
    assert ds.skipped == []  # the workers skipped, not this process
    with pytest.warns(UserWarning, match="1 corrupt samples skipped"):
        assert ds.report_skipped() == 1


def test_embedded_dataset_is_deterministic_and_rewritten_cleanly(tmp_path: Path) -> None:
    from segfpn.datasets import generate_dataset

    a = generate_dataset(tmp_path / "a", num_train=3, num_val=2, progress=False)
    b = generate_dataset(tmp_path / "b", num_train=3, num_val=2, progress=False)
    for f in sorted(a.rglob("ADE_*")):
        assert f.read_bytes() == (b / f.relative_to(a)).read_bytes()
    generate_dataset(a, num_train=2, num_val=1, progress=False)  # other settings: no stale files left
    assert len(list((a / "images" / "training").iterdir())) == 2
    assert len(ADE20KDataset(a, "validation")) == 1
    from segfpn.datasets.synthetic import CLASS_VALUES

    values = set(np.unique(np.asarray(Image.open(sorted((a / "annotations" / "training").iterdir())[0]))).tolist())
    assert values <= {0, *CLASS_VALUES} and len(values) >= 3


def test_file_as_root_is_not_a_folder(tmp_path: Path) -> None:
    archive = tmp_path / "ADEChallengeData2016.zip"
    archive.write_bytes(b"PK")
    with pytest.raises(FileNotFoundError, match=r"ADEChallengeData2016.zip' is not a folder \(found a file\)"):
        ADE20KDataset(archive)


def test_pairs_in_subfolders_are_read_recursively(tiny_root: Path, samples_root: Path) -> None:
    real_img = sorted((samples_root / "images" / "validation").iterdir())[0]
    real_ann = samples_root / "annotations" / "validation" / f"{real_img.stem}.png"
    for kind, source in (("images", real_img), ("annotations", real_ann)):
        (tiny_root / kind / "training" / "scene_a").mkdir()
        shutil.copy(source, tiny_root / kind / "training" / "scene_a" / source.name)
    ds = ADE20KDataset(tiny_root, "training")
    assert len(ds) == 3
    image_path, ann_path = ds.pairs[2]
    assert image_path.parent.name == ann_path.parent.name == "scene_a" and image_path.stem == ann_path.stem
    assert ds[2][1].shape == np.asarray(Image.open(real_ann)).shape
    (tiny_root / "annotations" / "training" / "scene_a" / real_ann.name).rename(
        tiny_root / "annotations" / "training" / real_ann.name
    )  # same name, other subfolder: not a pair
    with pytest.raises(FileNotFoundError, match=rf"1 images without annotation \['scene_a/{real_img.stem}'\]"):
        ADE20KDataset(tiny_root, "training")


def test_symlinked_files_and_folders_are_followed(tiny_root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    image = _first(tiny_root, "images")
    image.rename(elsewhere / image.name)
    image.symlink_to(elsewhere / image.name)
    (tiny_root / "annotations" / "training").rename(elsewhere / "annotations")
    (tiny_root / "annotations" / "training").symlink_to(elsewhere / "annotations", target_is_directory=True)
    ds = ADE20KDataset(tiny_root, "training")
    assert len(ds) == 2 and ds[0][0].shape == (3, 40, 60)


def test_dangling_link_and_loop_are_named_and_skippable(tiny_root: Path) -> None:
    image = _first(tiny_root, "images")
    image.unlink()
    image.symlink_to(image.with_name("moved_away.jpg"))
    with pytest.raises(CorruptSampleError, match=rf"dangling symlink .*{image.name}' -> .*moved_away.jpg"):
        ADE20KDataset(tiny_root, "training")
    ds = ADE20KDataset(tiny_root, "training", on_error="skip")
    assert len(ds) == 1 and ds.pairs[0][0].name == "ADE_training_00000001.jpg"
    with pytest.warns(UserWarning, match=r"1 corrupt samples skipped .*dangling symlink"):
        assert ds.report_skipped() == 1

    loop = tiny_root / "images" / "training" / "ADE_training_00000000.jpg"
    loop.unlink()
    loop.symlink_to(loop)  # a link to itself
    with pytest.raises(CorruptSampleError, match=r"symlink loop at .*ADE_training_00000000.jpg"):
        ADE20KDataset(tiny_root, "training")
    (tiny_root / "images" / "training" / "again").symlink_to(tiny_root / "images" / "training")
    with pytest.raises(CorruptSampleError, match=r"symlink loop at .*again': folder .* is already listed"):
        ADE20KDataset(tiny_root, "training")
    ds = ADE20KDataset(tiny_root, "training", on_error="skip")
    assert len(ds) == 1 and ds.skipped_count == 2


def test_same_stem_as_jpg_and_png_names_both_files(tiny_root: Path) -> None:
    image = _first(tiny_root, "images")
    Image.open(image).save(image.with_suffix(".png"))
    with pytest.raises(FileNotFoundError, match=r"two files for sample 'ADE_training_00000000': .*\.jpg' and .*\.png'"):
        ADE20KDataset(tiny_root, "training")


def test_embedded_data_never_overwrites_a_dataset_it_did_not_generate(samples_root: Path, tmp_path: Path) -> None:
    """data.embedded=true with data_root pointing at real data: refused with a named error, nothing deleted."""
    import shutil

    from segfpn.datasets.synthetic import generate_dataset
    from segfpn.errors import DataError

    real = tmp_path / "ADEChallengeData2016"
    shutil.copytree(samples_root, real)
    before = sorted(p.relative_to(real) for p in real.rglob("*") if p.is_file())
    with pytest.raises(DataError, match="holds images that segfpn did not generate"):
        generate_dataset(real, num_train=2, num_val=1, progress=False)
    assert sorted(p.relative_to(real) for p in real.rglob("*") if p.is_file()) == before
    # a generated folder is regenerated with other settings as before
    generated = generate_dataset(tmp_path / "gen", num_train=2, num_val=1, size_range=(64, 80), progress=False)
    assert (
        len(
            list(
                (
                    generate_dataset(generated, num_train=3, num_val=1, size_range=(64, 80), progress=False)
                    / "images"
                    / "training"
                ).glob("*.jpg")
            )
        )
        == 3
    )


def test_16_bit_images_are_scaled_to_8_bits_and_float_images_refused(tiny_root: Path) -> None:
    """A 16-bit grayscale image (a dark gradient) keeps its picture: PIL's convert would clip every value to 255."""
    from segfpn.datasets.base import load_image
    from segfpn.datasets.image_folder import ImageFolder

    path = _first(tiny_root, "images")
    path.unlink()
    values = np.linspace(0, 65535, 40 * 60).reshape(40, 60).astype(np.uint16)
    Image.fromarray(values).save(path.with_suffix(".png"))
    expected = np.round(values / 257.0).astype(np.uint8)
    image = load_image(path.with_suffix(".png"))
    assert image.dtype == np.uint8 and image.shape == (40, 60, 3)
    assert np.abs(image[..., 0].astype(int) - expected).max() <= 1 and (image[..., 0] == image[..., 2]).all()
    assert image.mean() < 140  # not the white a clip would give
    # the same pixels reach training and predict
    normalised, _ = ADE20KDataset(tiny_root, "training")[0]
    from_folder, _ = ImageFolder(path.parent)[0]
    assert torch.allclose(normalised, from_folder)
    floats = path.with_suffix(".tif")
    Image.fromarray(values.astype(np.float32)).save(floats)
    with pytest.raises(CorruptSampleError, match=r"image '.*\.tif': floating-point pixels \(mode F\)"):
        load_image(floats)
