"""A non-ADE20K dataset description (5 own classes, ignore index 254) flows through everything downstream of the
data: metrics, losses and padding ignore its label; class statistics, class weights, error analysis, the report
and the figures' colours use its 5 classes and their names."""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from segfpn.analysis.class_errors import evaluate, write_error_analysis
from segfpn.analysis.report import write_report
from segfpn.datasets.base import SegmentationDataset, match_pairs
from segfpn.datasets.class_stats import compute_class_stats, plot_class_distribution, write_class_stats_csv
from segfpn.datasets.collate import pad_collate
from segfpn.datasets.info import DatasetInfo
from segfpn.datasets.sampling import class_weights
from segfpn.inference.protocols import predict_logits
from segfpn.metrics import SegmentationMetrics, write_scores
from segfpn.training.callbacks import overlay_masks
from segfpn.training.losses import CombinedLoss, CrossEntropyLoss
from segfpn.utils.visualize import colorize

CLASSES = ("sky", "road", "tree", "car", "pedestrian")  # "pedestrian" is never annotated
IGNORE = 254
PALETTE = [(0, 0, 255), (128, 64, 128), (0, 128, 0), (255, 0, 0), (9, 9, 9)]
TINY = DatasetInfo("tiny_streets", CLASSES, palette=PALETTE, ignore_index=IGNORE)


class TinyStreets(SegmentationDataset):
    """``images/*.png`` + ``masks/*.png`` holding train ids 0..4 or 254."""

    def __init__(self, root: Path, info: DatasetInfo = TINY) -> None:
        self.info = info
        self.pairs = match_pairs(root / "images", root / "masks", str(root))
        self._init_samples(root, "val", None, "raise")


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """Four image/mask pairs of different sizes: bands of classes 0..3, an ignored block."""
    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    for i, (h, w) in enumerate([(48, 64), (64, 64), (40, 72), (56, 48)]):
        mask = np.zeros((h, w), np.uint8)
        for c in range(4):
            mask[c * h // 4 : (c + 1) * h // 4] = (c + i) % 4
        mask[: h // 5, : w // 3] = IGNORE
        image = np.asarray(TINY.palette, np.uint8)[np.where(mask == IGNORE, 0, mask)]
        noisy = np.clip(image.astype(np.int16) + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(tmp_path / "data" / "images" / f"s{i}.png")
        Image.fromarray(mask).save(tmp_path / "data" / "masks" / f"s{i}.png")
    return tmp_path / "data"


def stored_masks(root: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted((root / "masks").iterdir())]


def loader(dataset: SegmentationDataset) -> DataLoader:
    return DataLoader(dataset, batch_size=2, collate_fn=partial(pad_collate, ignore_index=dataset.info.ignore_index))


def test_padding_metrics_and_losses_ignore_the_datasets_label(tiny_root: Path) -> None:
    images, masks = next(iter(loader(TinyStreets(tiny_root))))
    assert masks.shape == (2, 64, 64)
    assert (masks[0, 48:] == IGNORE).all() and (masks[0, :, 64:] == IGNORE).all()  # padding
    assert set(masks.unique().tolist()) <= {0, 1, 2, 3, IGNORE}
    preds = torch.where(masks == IGNORE, torch.full_like(masks, 4), masks)  # wrong only where ignored
    metric = SegmentationMetrics(TINY.num_classes, ignore_index=IGNORE)
    metric.update(preds, masks)
    scores = metric.compute()
    assert scores["mIoU"] == 1.0 and int(scores["confmat"].sum()) == int((masks != IGNORE).sum())
    with pytest.raises(ValueError, match="target holds label 254"):  # not ignored under the default index
        SegmentationMetrics(TINY.num_classes).update(preds, masks)
    logits = torch.nn.functional.one_hot(preds, 5).permute(0, 3, 1, 2).float() * 20
    loss = CrossEntropyLoss(ignore_index=IGNORE, avg_non_ignore=True)(logits, masks)
    assert float(loss) < 1e-6  # ignored pixels (where the prediction is wrong) contribute nothing


@pytest.mark.parametrize("spec", ["ce", "ohem", "dice", "focal", "lovasz"])
def test_every_loss_ignores_the_datasets_label(spec: str) -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(2, 5, 16, 16), torch.randint(0, 5, (2, 16, 16))
    target[:, :6] = IGNORE
    loss = CombinedLoss(spec, ignore_index=IGNORE, ohem_min_kept=10)
    changed = logits.clone()
    changed[:, :, :6] = torch.randn(2, 5, 6, 16) * 10  # only where the target is ignored
    assert torch.isclose(loss(logits, target)["loss"], loss(changed, target)["loss"], atol=1e-6)
    unchanged = logits.clone()
    unchanged[:, :, 6:] += torch.randn(2, 5, 10, 16)  # where it is labelled: the loss moves
    assert not torch.isclose(loss(logits, target)["loss"], loss(unchanged, target)["loss"])


def test_class_stats_and_weights_have_the_datasets_classes(tiny_root: Path, tmp_path: Path) -> None:
    dataset = TinyStreets(tiny_root)
    stats = compute_class_stats(dataset, num_workers=1, progress=False)
    raw = stored_masks(tiny_root)
    expected = sum(np.bincount(m.ravel(), minlength=256) for m in raw)
    np.testing.assert_array_equal(stats.pixels, expected[:5])
    assert stats.ignored_pixels == expected[IGNORE] and stats.presence.shape == (4, 5)
    weights = class_weights(stats.pixels)
    assert weights.shape == (5,) and weights[4] == 0 and (weights[:4] > 0).all()

    rows = list(csv.DictReader(write_class_stats_csv(stats, tmp_path / "stats.csv", dataset.info.classes).open()))
    assert [r["name"] for r in rows] == list(CLASSES)
    assert [int(r["pixels"]) for r in rows] == expected[:5].tolist()
    png = plot_class_distribution(stats, tmp_path / "dist.png", dataset.info.classes, dataset.info.name)
    assert Image.open(png).size[0] > 300
    with pytest.raises(ValueError, match="5 classes, but 150 class names"):
        write_class_stats_csv(stats, tmp_path / "bad.csv", tuple(f"c{i}" for i in range(150)))


def test_class_stats_cache_is_keyed_on_the_label_mapping(tiny_root: Path) -> None:
    first = compute_class_stats(TinyStreets(tiny_root), progress=False)
    shifted = DatasetInfo(
        "tiny_shifted", CLASSES, ignore_index=IGNORE, label_map=[(v + 1) % 5 if v < 5 else IGNORE for v in range(256)]
    )
    second = compute_class_stats(TinyStreets(tiny_root, shifted), progress=False)  # same files, other mapping
    np.testing.assert_array_equal(second.pixels, np.roll(first.pixels, 1))


def test_error_analysis_and_report_name_the_datasets_classes(tiny_root: Path, tmp_path: Path) -> None:
    from segfpn.training.module import SegmentationModule

    dataset = TinyStreets(tiny_root)
    runs = tmp_path / "runs"
    for seed, variant in enumerate(("baseline", "wider")):
        torch.manual_seed(seed)
        module = SegmentationModule(
            num_classes=5, backbone_name="resnet18", fpn_channels=32, dataset_info=dataset.info.as_dict()
        ).eval()
        assert module.dataset_info == dataset.info
        result = evaluate(
            module, loader(dataset), 5, lambda m, x: predict_logits(m, x, m.inference, 5), ignore_index=IGNORE
        )
        labelled = sum(int((m != IGNORE).sum()) for m in stored_masks(tiny_root))
        assert int(result["scores"]["confmat"].sum()) == labelled
        write_scores(result["scores"], runs / variant / "results" / "validate_val_step4.json", module.hparams)

    files = write_error_analysis(result, tmp_path / "analysis", list(module.dataset_info.classes), 3, "tiny_streets")
    markdown = files["markdown"].read_text()
    assert markdown.startswith("# Error analysis on tiny_streets")
    for c, name in enumerate(CLASSES):
        assert f"| {c} | {name} |" in markdown
    summary = json.loads(files["json"].read_text())
    assert [row["class"] for row in summary["per_class"]] == list(CLASSES)
    assert summary["per_class"][4]["IoU"] is None or summary["per_class"][4]["IoU"] == 0  # never annotated
    assert {name for name, _ in summary["worst_classes"]} <= set(CLASSES)
    assert Image.open(files["confusion_matrix"]).size[0] > 200

    saved = json.loads((runs / "wider" / "results" / "validate_val_step4.json").read_text())
    assert saved["hparams"]["dataset_info"]["classes"] == list(CLASSES)
    report = write_report(runs)["markdown"].read_text()
    confusions = report.split("Confusions of the best run")[1]
    assert any(f"| {name} |" in confusions for name in CLASSES)
    assert "class_0" not in report and "wall" not in report


def test_figures_and_wandb_masks_use_the_datasets_palette_and_ignore_index() -> None:
    labels = np.array([[0, 1], [3, IGNORE]])
    colours = colorize(labels, TINY)
    assert colours[0, 0].tolist() == [0, 0, 255] and colours[1, 0].tolist() == [255, 0, 0]
    assert colours[1, 1].tolist() == [0, 0, 0]  # ignored: black
    generic = colorize(labels)  # without a description: generated colours, still one per id
    assert generic[0, 0].tolist() != generic[0, 1].tolist()
    masks = overlay_masks(labels, labels, list(TINY.classes), TINY.ignore_index)
    assert masks["ground_truth"]["class_labels"][IGNORE] == "ignored"
    assert masks["prediction"]["class_labels"][4] == "pedestrian"


def test_wandb_table_and_masks_name_the_datasets_classes(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lightning as L
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    from segfpn.training.callbacks import WandbMedia
    from segfpn.training.module import SegmentationModule

    monkeypatch.setenv("WANDB_MODE", "offline")
    # the module's own metrics take mmseg's default ignore index: store 254, map it to 255
    info = DatasetInfo("tiny_streets", CLASSES, PALETTE, label_map=[v if v < 5 else 255 for v in range(256)])
    torch.manual_seed(0)
    module = SegmentationModule(num_classes=5, backbone_name="resnet18", fpn_channels=32, dataset_info=info.as_dict())
    logger = WandbLogger(save_dir=str(tmp_path), project="t", offline=True)
    trainer = L.Trainer(
        accelerator="cpu", logger=logger, callbacks=[WandbMedia(num_images=2)], enable_progress_bar=False
    )
    trainer.validate(module, loader(TinyStreets(tiny_root, info)))
    wandb.finish()
    tables = list(tmp_path.glob("wandb/offline-run-*/files/media/table/val/per_class_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["id", "class", "IoU", "Acc"]
    assert {row[1] for row in table["data"]} <= set(CLASSES) and {row[1] for row in table["data"]} >= {"sky", "road"}
    assert all(row[1] == CLASSES[row[0]] for row in table["data"])
    assert len(list(tmp_path.glob("wandb/offline-run-*/files/media/images/val/predictions_*.png"))) == 2
