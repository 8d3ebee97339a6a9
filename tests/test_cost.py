"""``segfpn cost`` and ``segfpn experiment`` build an experiment's variants from one reading of its files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from segfpn.cli import main
from segfpn.commands.cost import experiment_file
from segfpn.errors import ConfigError
from segfpn.models import SegmentationModel
from segfpn.models.segmentation_model import ARCHITECTURE_OPTIONS
from segfpn.training.experiment import Experiment

REPO = Path(__file__).resolve().parents[1]


def _write_experiment(tmp_path: Path, data_root: Path) -> Path:
    base = tmp_path / "base.yaml"
    base.write_text(
        "model:\n  backbone_name: pvt_v2_b0\n  fpn_channels: 32\n  head_channels: 16\n  inference:\n"
        "    test_scale: null\n"
        f"data:\n  data_root: {data_root}\n  batch_size: 2\n  num_workers: 0\n  crop_size: 64\n  scale: [128, 64]\n"
        "trainer:\n  max_steps: 2\n  limit_val_batches: 2\n  logger: false\n  enable_progress_bar: false\n"
    )
    spec = tmp_path / "agree.yaml"
    spec.write_text(
        f"name: agree\nbase: {base}\nargs: ['--model.aux_classifiers=true']\n"
        "variants:\n  baseline: {}\n  se: {model.attention: se}\n"
    )
    return spec


def test_cost_and_experiment_report_the_same_models(
    tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture
) -> None:
    spec = _write_experiment(tmp_path, synthetic_root)
    out = tmp_path / "out"
    main(["experiment", str(spec), "--out", str(out), "--cost_size", "64", "64"])
    main(["cost", str(spec), "--size", "64", "64", "--no_latency", "--csv", str(tmp_path / "cost.csv")])
    assert f"wrote {tmp_path / 'cost.csv'}" in capsys.readouterr().out
    cost = {r["variant"]: r for r in csv.DictReader((tmp_path / "cost.csv").open())}
    report = {r["variant"]: r for r in csv.DictReader((out / "agree" / "results.csv").open())}
    assert set(cost) == set(report) == {"baseline", "se"}
    experiment = Experiment.load(spec)
    for variant in ("baseline", "se"):
        # the network each training run built, as its checkpoint's hyper-parameters name it
        trained = json.loads((out / "agree" / variant / "results" / "final.json").read_text())["hparams"]
        options = experiment.model_options(variant)
        assert {k: trained[k] for k in options} == options
        assert options["fpn_channels"] == 32 and options["aux_classifiers"] is True  # base config, shared args
        counted = sum(p.numel() for p in SegmentationModel(**options).parameters()) / 1e6
        assert float(cost[variant]["params_M"]) == pytest.approx(counted, rel=1e-9)
        assert report[variant]["params (M)"] == f"{counted:.2f}"
    assert float(cost["se"]["params_M"]) > float(cost["baseline"]["params_M"])


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.stem)
def test_model_options_of_the_published_experiments(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the experiment files name their base config relative to the repository
    experiment = Experiment.load(path)
    network = {"num_classes", *ARCHITECTURE_OPTIONS, "pretrained", "pretrained_path"}
    for variant in experiment.variants:
        options = experiment.model_options(variant)
        assert set(options) <= network  # loss, sampler... are not part of the network's cost
        assert options["num_classes"] >= 1 and options["backbone_name"]
        overrides = {k: v for k, v in experiment.model_overrides(variant).items() if k in network}
        assert {k: options[k] for k in overrides} == overrides
    if path.stem == "backbones":  # swin keeps the img_size the experiment trains it with
        assert experiment.model_options("swin_tiny")["img_size"] == 128


def test_cost_names_unknown_experiments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError, match=r"'nope'.*attention.*fpn_ablation"):
        experiment_file("nope")
    assert experiment_file("attention") == Path("experiments/attention.yaml")


def test_a_config_cannot_run_code_through_data_class_path(
    tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture
) -> None:
    """``segfpn cost`` and ``segfpn browse-data`` build only segfpn's DataModule, as ``fit`` does: a config naming
    ``os.system`` is refused before anything runs."""
    from segfpn.commands import browse_data

    marker = tmp_path / "ran"
    evil = {"class_path": "os.system", "init_args": {"command": f"touch {marker}"}}
    base = tmp_path / "evil.yaml"
    base.write_text(json.dumps({"model": {"backbone_name": "pvt_v2_b0"}, "data": evil}))
    spec = tmp_path / "evil_experiment.yaml"
    spec.write_text(f"name: evil\nbase: {base}\nvariants:\n  baseline: {{}}\n")
    with pytest.raises(SystemExit):
        main(["cost", str(spec), "--size", "64", "64", "--no_latency"])
    assert "data.class_path must name segfpn's SegmentationDataModule" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"data.class_path.*'os.system'"):
        browse_data.build_datamodule([base], [])
    assert not marker.exists()
    own = {"class_path": "segfpn.datasets.SegmentationDataModule", "init_args": {"data_root": str(synthetic_root)}}
    base.write_text(json.dumps({"data": own}))
    assert browse_data.build_datamodule([base], ["--data.num_workers=0"]).num_classes == 150
