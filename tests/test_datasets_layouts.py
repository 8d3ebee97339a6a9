"""The Cityscapes and folder layouts: pairing, label mapping, classes files, and every bad-input check that the
ADE20K layout has (tests/test_dataset.py), each on generated data in that layout."""

from __future__ import annotations

import shutil
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segfpn.datasets.base import CorruptSampleError, SegmentationDataset
from segfpn.datasets.cityscapes import CITYSCAPES_INFO, TRAIN_IDS, CityscapesDataset
from segfpn.datasets.datamodule import ADE20KDataModule, DatasetName, SegmentationDataModule
from segfpn.datasets.folder import FolderDataset, load_classes_file
from segfpn.datasets.registry import LAYOUTS, open_dataset
from segfpn.datasets.synthetic_layouts import FOLDER_CLASSES, generate_cityscapes, generate_folder
from segfpn.errors import ConfigError, DataError


@dataclass
class Layout:
    """Generated data in one layout: how to open a split, and where its files are."""

    root: Path
    build: Callable[..., SegmentationDataset]
    image_dir: Path  # the train split's images
    mask_dir: Path  # ... and annotations

    def first(self) -> tuple[Path, Path]:
        return self.build().pairs[0]


def cityscapes_layout(tmp_path: Path) -> Layout:
    root = generate_cityscapes(tmp_path / "cityscapes", (3, 2, 1), shape=(32, 64), progress=False)
    return Layout(
        root,
        lambda split="train", **kw: CityscapesDataset(root, split, **kw),
        root / "leftImg8bit" / "train",
        root / "gtFine" / "train",
    )


def folder_layout(tmp_path: Path) -> Layout:
    root = generate_folder(tmp_path / "mydata", (3, 2), size_range=(32, 48), progress=False)
    return Layout(
        root,
        lambda split="train", **kw: FolderDataset(root, split, **kw),
        root / "images" / "train",
        root / "masks" / "train",
    )


@pytest.fixture(params=["cityscapes", "folder"])
def layout(request: pytest.FixtureRequest, tmp_path: Path) -> Layout:
    return {"cityscapes": cityscapes_layout, "folder": folder_layout}[request.param](tmp_path)


# --- pairing and labels -------------------------------------------------------------------------------------------


def test_cityscapes_pairs_by_city_and_frame_and_maps_label_ids(tmp_path: Path) -> None:
    data = cityscapes_layout(tmp_path)
    ds = data.build()
    assert len(ds) == 3 and len(data.build("val")) == 2 and len(data.build("test")) == 1
    # *_gtFine_color.png lies beside every annotation and is not one
    assert all(a.name.endswith("_gtFine_labelIds.png") for _, a in ds.pairs)
    assert [i.name.removesuffix("_leftImg8bit.png") for i, _ in ds.pairs] == [
        a.name.removesuffix("_gtFine_labelIds.png") for _, a in ds.pairs
    ]
    assert {i.parent.name for i, _ in ds.pairs} == {"city0", "city1"}
    stored = np.asarray(Image.open(ds.pairs[0][1]))
    ids = ds.load_labels(0)
    for label_id in np.unique(stored):
        expected = TRAIN_IDS.get(int(label_id), 255)
        assert (ids[stored == label_id] == expected).all()
    assert 255 in ids and (ids[stored == 1] == 255).all()  # ego vehicle ignored
    image, mask = ds[0]
    assert image.shape == (3, 32, 64) and mask.shape == (32, 64) and np.array_equal(mask.numpy(), ids)
    assert ds.info is CITYSCAPES_INFO and ds.classes[:2] == ("road", "sidewalk") and ds.info.num_classes == 19


def test_every_label_id_maps_as_cityscapes_scripts_table() -> None:
    # cityscapesScripts helpers/labels.py: (name, id, trainId) of the evaluated classes
    table = {"road": 7, "sidewalk": 8, "building": 11, "wall": 12, "fence": 13, "pole": 17, "traffic light": 19,
             "traffic sign": 20, "vegetation": 21, "terrain": 22, "sky": 23, "person": 24, "rider": 25, "car": 26,
             "truck": 27, "bus": 28, "train": 31, "motorcycle": 32, "bicycle": 33}  # fmt: skip
    label_map = np.asarray(CITYSCAPES_INFO.label_map)
    for train_id, name in enumerate(CITYSCAPES_INFO.classes):
        assert label_map[table[name]] == train_id, name
    assert set(np.nonzero(label_map != 255)[0]) == set(table.values())


def test_folder_rgb_masks_map_through_the_palette(tmp_path: Path) -> None:
    data = folder_layout(tmp_path)
    ds = data.build()
    assert ds.classes == FOLDER_CLASSES.info.classes and ds.info.name == "embedded_folder"
    colours = np.asarray(Image.open(ds.pairs[0][1]).convert("RGB"))
    ids = ds.load_labels(0)
    for train_id, colour in enumerate(ds.palette):
        assert (ids[(colours == colour).all(-1)] == train_id).all()
    assert (ids[(colours == 0).all(-1)] == 255).all()  # the ignore colour


def _palette_png(indices: np.ndarray, colours: list[tuple[int, int, int]]) -> Image.Image:
    """A mode-P PNG: ``indices`` into the palette ``colours`` (an editor's order, not the train ids)."""
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette([v for colour in colours for v in colour])
    return image


def test_folder_palette_pngs_are_read_through_their_palette_when_the_classes_have_colours(tmp_path: Path) -> None:
    data = folder_layout(tmp_path)
    ds = data.build()
    mask = ds.pairs[0][1]
    expected = ds.load_labels(0)  # the RGB mask's train ids (ignore colour -> 255)
    colours = np.asarray(Image.open(mask).convert("RGB"))
    # the same picture as a palette PNG whose palette lists the colours in reverse order, ignore colour first
    editor_order = [(0, 0, 0), *reversed(ds.palette)]
    indices = np.zeros(colours.shape[:2], np.uint8)
    for index, colour in enumerate(editor_order):
        indices[(colours == colour).all(-1)] = index
    _palette_png(indices, editor_order).save(mask)
    assert Image.open(mask).mode == "P"
    assert np.array_equal(ds.load_labels(0), expected)
    _palette_png(indices, [(1, 2, 3), *editor_order[1:]]).save(mask)  # an unknown colour for the ignored pixels
    with pytest.raises(CorruptSampleError, match=r"holds colour \[1, 2, 3\] .* read through its palette"):
        ds.load_labels(0)


def test_folder_palette_and_bilevel_masks_hold_train_ids_when_the_classes_have_no_colours(tmp_path: Path) -> None:
    root = tmp_path / "ids"
    (root / "images" / "train").mkdir(parents=True)
    (root / "masks" / "train").mkdir(parents=True)
    (root / "classes.csv").write_text("name\nbackground\nlesion\n")
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 2, (20, 30)).astype(np.uint8)
    for name in ("p", "bilevel"):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(
            root / "images" / "train" / f"{name}.png"
        )
    _palette_png(ids, [(200, 0, 0), (0, 0, 200)]).save(root / "masks" / "train" / "p.png")
    Image.fromarray(ids * 255).convert("1").save(root / "masks" / "train" / "bilevel.png")
    assert Image.open(root / "masks" / "train" / "bilevel.png").mode == "1"
    ds = FolderDataset(root, "train")
    assert [p[1].stem for p in ds.pairs] == ["bilevel", "p"]
    assert np.array_equal(ds.load_labels(0), ids) and np.array_equal(ds.load_labels(1), ids)


def test_folder_single_channel_id_masks_and_any_image_extension(tmp_path: Path) -> None:
    root = tmp_path / "ids"
    for split in ("train",):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split / "sub").mkdir(parents=True)
    (root / "classes.csv").write_text("name\nbackground\nlesion\n")
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 2, (20, 30)).astype(np.uint8)
    ids[0, 0] = 255
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(root / "images" / "train" / "a.bmp")
    (root / "images" / "train" / "sub").mkdir()
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(root / "images" / "train" / "sub" / "b.tif")
    Image.fromarray(ids).save(root / "masks" / "train" / "a.png")
    Image.fromarray(ids).save(root / "masks" / "train" / "sub" / "b.png")
    ds = FolderDataset(root, "train")
    assert ds.classes == ("background", "lesion") and ds.info.name == "ids" and len(ds) == 2
    assert np.array_equal(ds.load_labels(1), ids)
    ids[1, 1] = 2
    Image.fromarray(ids).save(root / "masks" / "train" / "a.png")
    with pytest.raises(CorruptSampleError, match=r"a.png' holds value 2; expected train ids 0..1 or 255"):
        ds[0]


def test_classes_files_yaml_and_csv(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "name: fields\nignore_index: 0\nignore_color: [1, 2, 3]\nclasses: [void_is_0, crop, weed]\n"
        "palette: [[9, 9, 9], [0, 255, 0], [255, 0, 0]]\n"
    )
    with pytest.raises(ConfigError, match="ignore_index 0 is a class id"):
        load_classes_file(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("classes: [{name: crop, color: [0, 255, 0]}, {name: weed, color: [255, 0, 0]}]\n")
    loaded = load_classes_file(tmp_path / "c.yaml")
    assert loaded.info.classes == ("crop", "weed") and loaded.info.palette == ((0, 255, 0), (255, 0, 0))
    assert loaded.info.ignore_index == 255 and loaded.ignore_color is None
    (tmp_path / "c.csv").write_text("name,r,g,b\ncrop,0,255,0\nweed,255,0,0\n")
    assert load_classes_file(tmp_path / "c.csv").info.palette == loaded.info.palette
    (tmp_path / "bad.csv").write_text("name,r,g,b\ncrop,0,255,0\nweed,0,255,0\n")
    with pytest.raises(ConfigError, match=r"bad.csv': two classes share a colour"):
        load_classes_file(tmp_path / "bad.csv")
    (tmp_path / "bad.yaml").write_text("classes: [{name: crop, color: [0, 300, 0]}]\n")
    with pytest.raises(ConfigError, match=r"bad.yaml': the color of class 0 \('crop'\) \[0, 300, 0\] has values"):
        load_classes_file(tmp_path / "bad.yaml")
    (tmp_path / "bom.csv").write_bytes("\ufeffname,r,g,b\ncrop,0,255,0\nweed,255,0,0\n".encode())  # as Excel saves
    assert load_classes_file(tmp_path / "bom.csv").info.classes == ("crop", "weed")
    (tmp_path / "latin1.yaml").write_bytes("classes: [blé, maïs]\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml' is not UTF-8 text \(byte 0xe9 at offset 12\)"):
        load_classes_file(tmp_path / "latin1.yaml")
    (tmp_path / "twice.csv").write_text("name\ncrop\nweed\ncrop\n")
    with pytest.raises(ConfigError, match=r"twice.csv': class names must be unique, found \['crop'\]"):
        load_classes_file(tmp_path / "twice.csv")
    (tmp_path / "list.yaml").write_text("- crop\n- weed\n")
    with pytest.raises(ConfigError, match=r"list.yaml' must be a mapping with a 'classes' list"):
        load_classes_file(tmp_path / "list.yaml")
    with pytest.raises(DataError, match=r"classes file '.*missing.yaml' does not exist"):
        load_classes_file(tmp_path / "missing.yaml")
    with pytest.raises(DataError, match=r"no classes file in '.*empty'"):
        (tmp_path / "empty" / "images" / "train").mkdir(parents=True)
        FolderDataset(tmp_path / "empty", "train")


# --- bad input: every check of the ADE20K layout, in each layout ---------------------------------------------------


def test_missing_root_split_folder_and_file_as_root(layout: Layout, tmp_path: Path) -> None:
    kind = type(layout.build())
    with pytest.raises(DataError, match=r"'.*nowhere' does not exist; expected the layout"):
        kind(tmp_path / "nowhere", "train")
    shutil.rmtree(layout.mask_dir)
    with pytest.raises(DataError, match=rf"missing folder '{layout.mask_dir}'; expected the layout"):
        layout.build()
    (tmp_path / "a_file").write_text("")
    with pytest.raises(DataError, match="is not a folder"):
        kind(tmp_path / "a_file", "train")


def test_unknown_cityscapes_split_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"Cityscapes split must be one of \['train', 'val', 'test'\], got 'training'"
    ):
        cityscapes_layout(tmp_path).build("training")


def test_no_images(layout: Layout) -> None:
    for path in layout.image_dir.rglob("*.*"):
        path.unlink()
    with pytest.raises(DataError, match=rf"no images .* in '{layout.image_dir}'"):
        layout.build()


def test_unpaired_files_are_named(layout: Layout) -> None:
    image, mask = layout.first()
    mask.unlink()
    with pytest.raises(DataError, match=r"unpaired files .*1 images without annotation \['(city0/)?"):
        layout.build()


def test_empty_file(layout: Layout) -> None:
    image, _ = layout.first()
    image.write_bytes(b"")
    with pytest.raises(CorruptSampleError, match=rf"1 unusable files .*empty file .*{image.name}"):
        layout.build()


def test_corrupt_image_raises_or_is_skipped(layout: Layout) -> None:
    image, _ = layout.first()
    image.write_bytes(b"not an image at all")
    with pytest.raises(CorruptSampleError, match=rf"cannot read image .*{image.name}"):
        layout.build()[0]
    ds = layout.build(on_error="skip")
    _, mask = ds[0]
    assert mask.ndim == 2 and ds.skipped_count == 1
    with pytest.warns(UserWarning, match="1 corrupt samples skipped"):
        ds.report_skipped()


def test_mask_size_mismatch(layout: Layout) -> None:
    _, mask = layout.first()
    stored = Image.open(mask)
    stored.resize((stored.width + 2, stored.height), Image.NEAREST).save(mask)
    with pytest.raises(CorruptSampleError, match=r"is \d+x\d+ \(WxH\) but its annotation .* is \d+x\d+"):
        layout.build()[0]


def test_bad_annotation_values(layout: Layout) -> None:
    ds = layout.build()
    _, mask = ds.pairs[0]
    shape = np.asarray(Image.open(mask)).shape[:2]
    if isinstance(ds, CityscapesDataset):  # every labelId 0..255 maps; a colour image is no labelIds file
        Image.fromarray(np.zeros((*shape, 3), np.uint8)).save(mask)
        with pytest.raises(CorruptSampleError, match=r"must be single-channel \(mode L or P\), found mode RGB"):
            ds[0]
    else:  # a colour that is no class's
        colours = np.zeros((*shape, 3), np.uint8)
        colours[3, 5] = (1, 2, 3)
        Image.fromarray(colours).save(mask)
        with pytest.raises(CorruptSampleError, match=rf"{mask.name}' holds colour \[1, 2, 3\] at \(x=5, y=3\)"):
            ds[0]


def test_dangling_symlink_is_named_and_skippable(layout: Layout) -> None:
    image, _ = layout.first()
    image.unlink()
    image.symlink_to(image.with_name("moved_away.png"))
    with pytest.raises(CorruptSampleError, match=rf"dangling symlink .*{image.name}' -> .*moved_away.png"):
        layout.build()
    assert len(layout.build(on_error="skip")) == 2


def test_same_name_with_two_image_extensions(tmp_path: Path) -> None:
    data = folder_layout(tmp_path)
    image, _ = data.first()
    shutil.copy(image, image.with_suffix(".png"))
    with pytest.raises(DataError, match=r"two files for sample 'sample_0000'"):
        data.build()


# --- the DataModule ---------------------------------------------------------------------------------------------


def test_datamodule_describes_each_layout_before_reading_any_file(tmp_path: Path) -> None:
    city = SegmentationDataModule(str(tmp_path / "not_yet"), dataset="cityscapes", embedded=True)
    assert city.dataset_info is CITYSCAPES_INFO and city.num_classes == 19
    assert not (tmp_path / "not_yet").exists()
    folder = SegmentationDataModule(dataset="folder", embedded=True)
    assert folder.dataset_info == FOLDER_CLASSES.info and str(folder.data_root) == "data/embedded_folder"
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "labels.csv").write_text("name\nsoil\nroot\nstone\n")
    own = SegmentationDataModule(str(tmp_path / "own"), dataset="folder", classes_file=str(tmp_path / "own/labels.csv"))
    assert own.dataset_info.classes == ("soil", "root", "stone")
    ade = ADE20KDataModule(str(tmp_path / "ade"))  # the old name: ADE20K, data_root first
    assert ade.dataset_info.name == "ade20k" and ade.hparams.dataset == "ade20k"
    with pytest.raises(ConfigError, match=r"data.dataset must be one of \['ade20k', 'cityscapes', 'folder'\]"):
        SegmentationDataModule(str(tmp_path), dataset="voc")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="data.classes_file is for data.dataset=folder; cityscapes has its own"):
        SegmentationDataModule(str(tmp_path), dataset="cityscapes", classes_file="x.yaml")
    with pytest.raises(DataError, match=r"no classes file in '.*nothing'"):
        SegmentationDataModule(str(tmp_path / "nothing"), dataset="folder")


def test_datamodule_generates_and_loads_the_cityscapes_layout(tmp_path: Path) -> None:
    data = SegmentationDataModule(
        str(tmp_path / "cs"), dataset="cityscapes", embedded=True, embedded_num_train=2, embedded_num_val=1,
        batch_size=2, num_workers=0, crop_size=(32, 48), scale=(128, 64), photometric=False,
    )  # fmt: skip
    data.prepare_data()
    data.setup("fit")
    images, masks = next(iter(data.train_dataloader()))
    assert images.shape == (2, 3, 32, 48) and masks.shape == (2, 32, 48)
    assert set(masks.unique().tolist()) <= {*range(19), 255}
    assert [p.parent.parent.name for p, _ in data.datasets["val"].pairs] == ["val"]
    data.setup("test")
    assert data.datasets["test"].split == "val"  # the test annotations are not public: test on val by default
    data.setup("predict")
    assert data.datasets["predict"].paths[0].name.endswith("_leftImg8bit.png")


def test_the_dataset_choices_are_the_registered_layouts() -> None:
    assert typing.get_args(DatasetName) == tuple(LAYOUTS)


def test_open_dataset_reads_any_layout_by_name(tmp_path: Path) -> None:
    city, folder = cityscapes_layout(tmp_path), folder_layout(tmp_path)
    assert open_dataset("cityscapes", city.root).pairs == city.build("val").pairs
    opened = open_dataset("folder", folder.root, "train")
    assert opened.classes == FOLDER_CLASSES.info.classes and opened.pairs == folder.build().pairs
    with pytest.raises(ConfigError, match="data.dataset must be one of"):
        open_dataset("coco", tmp_path)


@pytest.mark.parametrize("name", [name for name, layout in LAYOUTS.items() if layout.info is not None])
def test_predicted_labels_are_written_as_the_datasets_own_values(name: str) -> None:
    """``stored_labels`` inverts the label mapping (what `segfpn predict` writes): ADE20K's submission values
    (id + 1), Cityscapes' labelIds; mapping them back gives the train ids."""
    info = LAYOUTS[name].info
    ids = np.arange(info.num_classes, dtype=np.uint8)
    stored = info.stored_labels(ids)
    np.testing.assert_array_equal(info.map_labels(stored), ids)
    if name == "ade20k":
        np.testing.assert_array_equal(stored, ids + 1)
    if name == "cityscapes":
        assert stored[0] == 7 and stored[-1] == 33  # road, bicycle labelIds (cityscapesScripts)


def test_dataset_descriptions_fit_in_8_bit_masks() -> None:
    from segfpn.datasets.info import DatasetInfo

    with pytest.raises(ConfigError, match=r"ignore index in 0..255 .* found 2 classes and ignore index -1"):
        DatasetInfo("x", ("a", "b"), ignore_index=-1)
    with pytest.raises(ConfigError, match="at most 255 classes"):
        DatasetInfo("x", tuple(f"c{i}" for i in range(300)))


def test_predict_folder_refuses_two_images_of_one_name(tmp_path: Path) -> None:
    from segfpn.datasets.image_folder import ImageFolder

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / sub / "1.jpg")
    with pytest.raises(DataError, match=r"two images named '1' .*a/1.jpg.*b/1.jpg"):
        ImageFolder(tmp_path)


def test_a_module_built_without_a_description_takes_the_datamodules(tmp_path: Path) -> None:
    """Python API (``Trainer.fit(module, datamodule)``): the module keeps the data's names and statistics in its
    checkpoints; a data set with another class count or ignore index than the module's losses is an error."""
    from segfpn.training.module import SegmentationModule

    data = SegmentationDataModule(str(tmp_path / "cs"), dataset="cityscapes", embedded=True)
    module = SegmentationModule(num_classes=19, backbone_name="resnet18", fpn_channels=16, head_channels=16)
    module._adopt_data_description(data)
    assert module.dataset_info == data.dataset_info == CITYSCAPES_INFO
    assert module.hparams["dataset_info"]["classes"][:2] == ["road", "sidewalk"]
    other = SegmentationModule(num_classes=3, backbone_name="resnet18", fpn_channels=16, head_channels=16)
    with pytest.raises(ConfigError, match=r"'cityscapes'\) has 19 classes .* built for 3"):
        other._adopt_data_description(data)
