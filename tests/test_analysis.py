"""The course's analysis commands on tiny data: files written, contents sane."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segfpn.cli import main
from segfpn.training.cli import run_cli
from segfpn.training.experiment import Experiment
from tests.test_cli import only_run, tiny_args

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.stem)
def test_experiment_files_load_and_reach_init_arguments(path: Path, capsys: pytest.CaptureFixture) -> None:
    experiment = Experiment.load(path)
    variant = list(experiment.variants)[-1]
    with pytest.raises(SystemExit):
        run_cli(["fit", *experiment.variant_args(variant, Path("/tmp/x")), "--print_config"])
    printed = capsys.readouterr().out
    for key, value in experiment.variants[variant].items():
        section, name = key.split(".", 1)
        assert f"{name}: {str(value).lower() if isinstance(value, bool) else value}" in printed, key


def test_experiment_runs_variants_and_writes_report(tmp_path: Path, synthetic_root: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "name: tiny\nbase: " + str(REPO / "configs" / "demo.yaml") + "\n"
        "variants:\n  baseline: {}\n  no_lateral: {model.lateral_connections: false}\n"
    )
    extra = [
        a for a in tiny_args(tmp_path, synthetic_root, max_steps=4) if "default_root_dir" not in a and "logger" not in a
    ] + ["--trainer.logger=false", "--data.embedded=false", "--cost_size", "64", "64"]
    main(["experiment", str(spec), "--out", str(tmp_path / "out"), *extra])
    folder = tmp_path / "out" / "tiny"
    report = (folder / "report.md").read_text()
    assert "| baseline |" in report and "| no_lateral |" in report and "params (M)" in report
    assert "<table>" in (folder / "report.html").read_text()
    for png in ("training_curves.png", "per_class_iou_no_lateral_vs_baseline.png"):
        assert Image.open(folder / png).size[0] > 300
    rows = (folder / "results.csv").read_text().splitlines()
    assert len(rows) == 3
    final = json.loads((folder / "baseline" / "results" / "final.json").read_text())
    assert 0 <= final["mIoU"] <= 1 and final["hparams"]["lateral_connections"] is True
    assert (
        json.loads((folder / "no_lateral" / "results" / "final.json").read_text())["hparams"]["lateral_connections"]
        is False
    )
    # a second call finds both variants done and only rewrites the report
    main(["experiment", str(spec), "--out", str(tmp_path / "out"), "--no_cost", *extra[:-3]])


def test_analyze_confusion_rows_sum_to_label_counts(tmp_path: Path, synthetic_root: Path) -> None:
    run_cli(["fit", *tiny_args(tmp_path, synthetic_root, max_steps=4)])
    run = only_run(tmp_path)
    main(["analyze", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "analysis")])
    summary = json.loads((tmp_path / "analysis" / "error_analysis.json").read_text())
    files = json.loads(sorted((run / "results").glob("fit_val_step*.json"))[-1].read_text())
    assert set(summary["size_recall"]) == {"small (<1%)", "medium (1-10%)", "large (>10%)"}
    assert 0 <= summary["boundary_iou"] <= 1 and summary["worst_classes"]
    assert files["confmat"]  # the training run wrote its own confusion matrix too
    # recompute label counts from the PNGs: they must equal the confusion-matrix rows the analysis used
    from segfpn.analysis.class_errors import evaluate
    from segfpn.datasets.datamodule import evaluation_datamodule
    from segfpn.inference.predictor import load_trained_network
    from segfpn.inference.protocols import predict_logits

    loaded = load_trained_network(run / "checkpoints" / "last.ckpt")
    data = evaluation_datamodule(loaded.data_hparams, loaded.dataset_info, "last.ckpt")
    data.setup("validate")
    result = evaluate(
        loaded.network, data.val_dataloader(), 150, lambda m, x: predict_logits(m, x, loaded.inference, 150)
    )
    counts = np.zeros(150, np.int64)
    for p in sorted((synthetic_root / "annotations" / "validation").iterdir()):
        raw = np.asarray(Image.open(p)).ravel()
        counts += np.bincount(raw[raw > 0] - 1, minlength=150)
    np.testing.assert_array_equal(result["scores"]["confmat"].sum(1).numpy(), counts)
    assert summary["mIoU"] == pytest.approx(float(result["scores"]["mIoU"]))
    assert Image.open(tmp_path / "analysis" / "confusion_matrix.png").size[0] > 300


def test_feature_maps_and_cost_commands(tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture) -> None:
    image = sorted((synthetic_root / "images" / "validation").iterdir())[0]
    main(
        [
            "feature-maps",
            "--image",
            str(image),
            "--backbone",
            "pvt_v2_b0",
            "--attention",
            "cbam",
            "--out",
            str(tmp_path),
        ]
    )
    for name in ("backbone_features.png", "fpn_features.png", "attention_maps.png"):
        assert Image.open(tmp_path / name).size[0] > 500
    main(
        [
            "cost",
            str(REPO / "experiments" / "attention.yaml"),
            "--size",
            "64",
            "64",
            "--csv",
            str(tmp_path / "cost.csv"),
        ]
    )
    lines = (tmp_path / "cost.csv").read_text().splitlines()
    assert lines[0].startswith("variant,params_M,GFLOPs") and len(lines) == 6
    rows = {line.split(",")[0]: line.split(",") for line in lines[1:]}
    assert float(rows["baseline"][1]) < float(rows["se"][1]) and float(rows["cbam"][2]) > float(rows["baseline"][2])
    spread = lines[0].split(",").index("latency_spread_%")
    # the spread's size depends on the machine's load: only its presence and sign are behaviour
    assert all(float(r[spread]) >= 0 for r in rows.values())


def test_feature_maps_are_cropped_to_the_image() -> None:
    """A 64x75 input is padded to 64x96: each level keeps the columns that cover the image (ceil), the padding
    band goes; same arithmetic for an ADE20K-sized 512x683 image padded to 512x704."""
    import torch

    from segfpn.models import SegmentationModel
    from segfpn.utils.visualize import crop_to_image

    torch.manual_seed(0)
    model = SegmentationModel(num_classes=5, backbone_name="pvt_v2_b0").eval()
    x = torch.randn(1, 3, 64, 75)  # padded to 64x96
    with torch.no_grad():
        levels = model.extract_fpn_features(x)
    cropped = [crop_to_image(f, (64, 75), (64, 96)) for f in levels]
    assert [tuple(f.shape[-2:]) for f in cropped] == [(16, 19), (8, 10), (4, 5), (2, 3)]
    assert crop_to_image(torch.zeros(128, 176), (512, 683), (512, 704)).shape == (128, 171)


def test_summary_command(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    main(["summary", "--backbones", "pvt_v2_b0", "--size", "64", "64", "--features", "--csv", str(tmp_path / "s.csv")])
    out = capsys.readouterr().out
    assert "pvt_v2_b0" in out and "(1, 32, 16, 16)" in out and "(1, 256, 2, 2)" in out
    header, row = (tmp_path / "s.csv").read_text().splitlines()
    assert "gflops" in header and float(row.split(",")[header.split(",").index("M_total")]) == pytest.approx(
        7.545, abs=0.01
    )
    torch.manual_seed(0)
