"""The plots and views of issue 13 on a tiny real run: plot-curves (CSV, TensorBoard, W&B offline logs), the
per-class/confusion files of every evaluation, validate overlays, browse-data and the report's figures."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import yaml
from PIL import Image

from segfpn.analysis.curves import curve_figures, find_logs, read_curves
from segfpn.analysis.report import per_class_figure, write_report
from segfpn.cli import main
from segfpn.commands import browse_data, plot_curves
from segfpn.datasets.ade20k import ADE20K_INFO
from segfpn.errors import DataError
from segfpn.training.cli import run_cli

LOGGERS = [
    {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "unused"}},
    {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": "unused"}},
    {"class_path": "lightning.pytorch.loggers.WandbLogger", "init_args": {"save_dir": "unused", "project": "t"}},
]
CURVE_METRICS = ("train/loss", "train/lr", "val/loss", "val/mIoU", "val/aAcc", "val/mAcc")


def tiny_args(root: Path, data: Path) -> list[str]:
    return [
        "--seed_everything=0",
        "--model.backbone_name=resnet18",
        "--model.pretrained=false",
        "--model.fpn_channels=32",
        "--model.head_channels=32",
        "--model.inference.test_scale=null",
        f"--data.data_root={data}",
        "--data.batch_size=4",
        "--data.num_workers=0",
        "--data.crop_size=64",
        "--data.scale=[128, 64]",
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
    ]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path) -> Path:
    """A 4-step fit validated at steps 2 and 4, logged by CSV, TensorBoard and W&B (offline) at once."""
    root = tmp_path_factory.mktemp("runs")
    loggers = root / "loggers.yaml"
    loggers.write_text(yaml.safe_dump({"trainer": {"logger": LOGGERS}}))
    run_cli(
        [
            "fit",
            f"--config={loggers}",
            *tiny_args(root, synthetic_root),
            "--run_name=tiny",
            "--trainer.max_steps=4",
            "--trainer.val_check_interval=2",
            "--trainer.check_val_every_n_epoch=1",
            "--trainer.log_every_n_steps=1",
        ]
    )
    return root / "tiny"


def test_the_run_has_logs_of_all_three_loggers(trained_run: Path) -> None:
    assert set(find_logs(trained_run)) == {"csv", "tensorboard", "wandb"}


@pytest.mark.parametrize("source", ["tensorboard", "wandb"])
def test_curves_read_from_each_logger_match_the_csv_log(trained_run: Path, source: str) -> None:
    _, from_csv = read_curves(trained_run, "csv")
    _, other = read_curves(trained_run, source)
    for metric in CURVE_METRICS:
        steps, values = zip(*from_csv[metric])
        other_steps, other_values = zip(*other[metric])
        assert other_steps == steps, metric
        np.testing.assert_allclose(other_values, values, rtol=1e-6, err_msg=metric)
    assert len(from_csv["train/loss"]) == 4
    assert len(from_csv["val/mIoU"]) == 2


def test_validation_curve_holds_the_scores_of_the_results_files(trained_run: Path) -> None:
    _, curves = read_curves(trained_run)
    results = [json.loads(p.read_text()) for p in sorted((trained_run / "results").glob("fit_val_step*.json"))]
    for key in ("mIoU", "aAcc", "mAcc"):
        np.testing.assert_allclose([v for _, v in curves[f"val/{key}"]], [r[key] for r in results], rtol=1e-6)


def test_plot_curves_command_writes_titled_figures_in_the_run_folder(
    trained_run: Path, capsys: pytest.CaptureFixture
) -> None:
    plot_curves.main([str(trained_run), "--source", "tensorboard"])
    printed = capsys.readouterr().out
    for name in ("loss.png", "lr.png", "val_scores.png"):
        path = trained_run / "figures" / name
        assert str(path) in printed
        with Image.open(path) as image:
            assert image.width > 400 and image.height > 200
            assert np.asarray(image.convert("L")).std() > 10  # not blank
    figures = curve_figures(read_curves(trained_run)[1], "tiny", "csv")
    scores = figures["val_scores.png"].axes[0]
    assert scores.get_title() == "validation scores: tiny (csv logs)"
    assert (scores.get_xlabel(), scores.get_ylabel()) == ("step", "score")
    assert [line.get_label() for line in scores.lines] == ["val/mIoU", "val/aAcc", "val/mAcc"]
    loss = figures["loss.png"].axes[0]
    assert [line.get_label() for line in loss.lines] == ["train/loss", "val/loss"]
    for fig in figures.values():
        plt.close(fig)


def test_plot_curves_without_logs_names_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="metrics.csv"):
        plot_curves.main([str(tmp_path)])


def test_every_validation_writes_per_class_table_and_confusion_files(trained_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for step in (2, 4):
        stem = trained_run / "evaluation" / f"fit_val_step{step:07d}"
        results = json.loads((trained_run / "results" / f"fit_val_step{step:07d}.json").read_text())
        with Path(f"{stem}-per_class.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert [r["class"] for r in rows] == list(ADE20K_INFO.classes)
        ious = [None if r["IoU"] == "" else float(r["IoU"]) for r in rows]
        assert ious == pytest.approx(results["IoU"], abs=1e-6)
        confmat = np.load(f"{stem}-confusion.npy")
        np.testing.assert_array_equal(confmat, np.array(results["confmat"]))
        assert [int(r["gt_pixels"]) for r in rows] == confmat.sum(1).tolist()
        assert Path(f"{stem}-confusion.png").stat().st_size > 5000
    (events,) = [p for p in find_logs(trained_run)["tensorboard"]]
    accumulator = EventAccumulator(str(events), size_guidance={"images": 0, "tensors": 0})
    accumulator.Reload()
    validation_steps = [e.step for e in accumulator.Scalars("val/mIoU")]
    assert len(validation_steps) == 2
    assert [e.step for e in accumulator.Images("val/confusion_matrix")] == validation_steps
    text = accumulator.Tensors("val/per_class/text_summary")
    assert [e.step for e in text] == validation_steps
    assert "| class | IoU | Acc | gt pixels |" in text[-1].tensor_proto.string_val[0].decode()


def test_validate_writes_an_overlay_per_image_and_stays_out_of_the_training_curves(
    trained_run: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "tiny"
    shutil.copytree(trained_run, run)
    # two images of different sizes per batch: each overlay must be cropped back to its own image
    run_cli(
        [
            "validate",
            *tiny_args(tmp_path, synthetic_root),
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--run_dir={run}",
            "--ckpt_path=best",
            "--data.val_batch_size=2",
            "--overlays.dir=overlays",
        ]
    )
    folder = run / "overlays" / "validate_val_step0000000"
    images = sorted((synthetic_root / "images" / "validation").glob("*.jpg"))
    assert sorted(p.stem for p in folder.glob("*.png")) == [p.stem for p in images]
    for path in images:
        with Image.open(path) as original, Image.open(folder / f"{path.stem}.png") as strip:
            assert strip.size == (3 * original.width, original.height)
            left = np.asarray(strip)[20:, : original.width].astype(int)  # below the caption
            assert np.abs(left - np.asarray(original.convert("RGB"))[20:].astype(int)).max() <= 1
    strip = np.asarray(Image.open(folder / f"{images[0].stem}.png"))[20:]
    width = strip.shape[1] // 3
    assert not np.array_equal(strip[:, :width], strip[:, width : 2 * width])  # the ground truth is painted on
    assert (run / "evaluation" / "validate_val_step0000000-per_class.csv").is_file()
    # the validate run's CSV log (a new version, stepped from 0) is not a training curve
    assert len(find_logs(run)["csv"]) == 2
    assert read_curves(run, "csv")[1]["val/mIoU"] == read_curves(trained_run, "csv")[1]["val/mIoU"]


def test_browse_data_shows_augmented_crops_with_a_legend_of_their_classes(
    synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({"data": {"data_root": str(synthetic_root), "crop_size": 64, "scale": [128, 64]}}))
    out = tmp_path / "grid.png"
    browse_data.main(["--config", str(config), "--n", "4", "--out", str(out), "--data.num_workers=0"])
    assert f"wrote {out}" in capsys.readouterr().out
    assert out.stat().st_size > 10000
    datamodule = browse_data.build_datamodule([config], ["--data.crop_size=48"])
    assert datamodule.hparams.crop_size == 48  # command-line options win over the config file
    fig = browse_data.sample_grid(datamodule, "train", 3, seed=1)
    assert "3 augmented samples" in fig._suptitle.get_text()
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 6
    for ax_image, ax_mask in zip(image_axes[::2], image_axes[1::2]):
        assert ax_image.images[0].get_array().shape[:2] == (48, 48)  # the training crop, not the stored image
        legend = fig.axes[fig.axes.index(ax_mask) + 1].get_legend()
        names = {t.get_text() for t in legend.get_texts()} - {f"ignored ({ADE20K_INFO.ignore_index})"}
        assert names and names <= set(ADE20K_INFO.classes)
    plt.close(fig)


def test_report_per_class_chart_is_titled_and_sorted_and_curves_show_all_scores(
    trained_run: Path, tmp_path: Path
) -> None:
    results = json.loads(sorted((trained_run / "results").glob("fit_val_step*.json"))[-1].read_text())
    iou = np.array([np.nan if v is None else v for v in results["IoU"]])
    fig = per_class_figure(iou, ADE20K_INFO.classes, "Per-class IoU of tiny")
    ax = fig.axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == sorted(heights, reverse=True)
    assert len(heights) == int((~np.isnan(iou)).sum())
    assert ax.get_title() == "Per-class IoU of tiny"
    best = int(np.nanargmax(iou))
    assert ax.get_xticklabels()[0].get_text() == ADE20K_INFO.classes[best]
    plt.close(fig)

    folder = tmp_path / "experiment"
    for name in ("a", "b"):
        (folder / name / "results").mkdir(parents=True)
        for f in (trained_run / "results").glob("fit_val_step*.json"):
            (folder / name / "results" / f.name).write_bytes(f.read_bytes())
    files = write_report(folder)
    for key in ("curves", "iou_best", "iou_b"):
        assert files[key].stat().st_size > 5000
    assert "Validation scores and loss during training" in files["markdown"].read_text()


def test_feature_maps_of_a_trained_checkpoint(trained_run: Path, samples_root: Path, tmp_path: Path) -> None:
    """`segfpn feature-maps --ckpt_path`: the checkpoint's network on an image file, without its training data."""
    image = sorted((samples_root / "images" / "validation").glob("*.jpg"))[0]
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    main(["feature-maps", "--ckpt_path", str(ckpt), "--image", str(image), "--out", str(tmp_path)])
    for name in ("backbone_features.png", "fpn_features.png"):
        assert Image.open(tmp_path / name).size[0] > 500


def test_damaged_logs_are_named_and_a_cut_wandb_tail_is_read_up_to_it(trained_run: Path, tmp_path: Path) -> None:
    import struct

    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("*.ckpt", "*.png"))
    (wandb_file,) = find_logs(run)["wandb"]
    _, complete = read_curves(run, "wandb")
    data = wandb_file.read_bytes()
    wandb_file.write_bytes(data[: len(data) - 40])  # the run was killed while writing its last record
    _, cut = read_curves(run, "wandb")
    assert cut["train/loss"] == complete["train/loss"][: len(cut["train/loss"])] and cut["train/loss"]
    _, length, _ = struct.unpack("<IHB", data[7:14])  # the first record: a 7-byte header, then its bytes
    wandb_file.write_bytes(data[:14] + b"\xff" * min(length, 8) + data[14 + min(length, 8) :])
    with pytest.raises(DataError, match=rf"W&B run file '{wandb_file}' is damaged: record 0 \({length} bytes\)"):
        read_curves(run, "wandb")
    (metrics,) = find_logs(run)["csv"][-1:]
    metrics.write_bytes(metrics.read_bytes().replace(b"\n", "\nbl\xe9,".encode("latin-1"), 1))
    with pytest.raises(DataError, match=rf"metrics file '{metrics}' is not UTF-8 text \(byte 0xe9"):
        read_curves(run, "csv")
    metrics.write_text("step,train/loss\n1,0.5\n2,nan?\n")
    with pytest.raises(DataError, match=rf"metrics file '{metrics}', line 3: expected numbers, found"):
        read_curves(run, "csv")
