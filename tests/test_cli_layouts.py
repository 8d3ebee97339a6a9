"""``segfpn fit`` + ``segfpn validate`` + ``segfpn analyze`` on generated data in the Cityscapes layout and in the
folder layout with RGB-palette masks: the run's model, checkpoint, per-class results and error analysis are those of
THAT dataset's classes."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
import torch

from segfpn.cli import main
from segfpn.datasets.cityscapes import CITYSCAPES_CLASSES
from segfpn.datasets.datamodule import SegmentationDataModule
from segfpn.datasets.synthetic_layouts import FOLDER_CLASSES
from segfpn.training.cli import run_cli
from segfpn.training.runs import runs_newest_first

CLASSES = {"cityscapes": CITYSCAPES_CLASSES, "folder": FOLDER_CLASSES.info.classes}
CROPS = {"cityscapes": "[32, 64]", "folder": "64"}


def layout_args(root: Path, dataset: str) -> list[str]:
    return [
        "--seed_everything=0",
        "--model.backbone_name=resnet18",
        "--model.pretrained=false",
        "--model.fpn_channels=16",
        "--model.head_channels=16",
        "--model.inference.test_scale=null",
        f"--data.dataset={dataset}",
        "--data.embedded=true",
        f"--data.data_root={root / 'data'}",
        "--data.embedded_num_train=4",
        "--data.embedded_num_val=2",
        "--data.batch_size=2",
        "--data.num_workers=0",
        f"--data.crop_size={CROPS[dataset]}",
        "--data.scale=[128, 64]",
        f"--trainer.default_root_dir={root / 'runs'}",
        "--trainer.max_steps=2",
        "--trainer.check_val_every_n_epoch=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={root / 'runs'}",
    ]


@pytest.mark.parametrize("dataset", ["cityscapes", "folder"])
def test_fit_and_validate_carry_the_datasets_class_names(tmp_path: Path, dataset: str) -> None:
    args = layout_args(tmp_path, dataset)
    cli = run_cli(["fit", *args])
    names = CLASSES[dataset]
    assert cli.model.dataset_info.classes == names and cli.model.hparams.num_classes == len(names)
    (run,) = runs_newest_first(tmp_path / "runs")
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert tuple(ckpt["hyper_parameters"]["dataset_info"]["classes"]) == names
    assert ckpt["state_dict"]["model.head.classifier.weight"].shape[0] == len(names)

    cli = run_cli(["validate", *args, "--ckpt_path=best"])
    assert cli.model.dataset_info.classes == names
    results = sorted((run / "results").glob("validate_val_*.json"))
    assert results, list((run / "results").iterdir())
    record = json.loads(results[-1].read_text())
    assert len(record["IoU"]) == len(record["Acc"]) == len(names)
    table = dict(zip(names, record["IoU"], strict=True))  # the per-class table of this run
    seen = {name for name, iou in table.items() if iou is not None}
    assert "sky" in seen  # the top band of every generated scene: scored in any layout
    if "classes" in record:  # written by ResultsWriter once it names the classes
        assert tuple(record["classes"]) == names

    # the error analysis of the checkpoint names the same classes, in its table and its figures' files
    main(["analyze", "--ckpt_path", str(run / "checkpoints" / "best.ckpt"), "--data_root", str(tmp_path / "data")])
    markdown = (run / "analysis" / "error_analysis.md").read_text()
    assert f"| 0 | {names[0]} |" in markdown and f"| 1 | {names[1]} |" in markdown
    assert (run / "analysis" / "per_class_iou.png").stat().st_size > 0


def test_every_data_option_has_a_help_line_and_dataset_lists_its_choices(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        run_cli(["fit", "--help"])
    text = capsys.readouterr().out
    options = [name for name in inspect.signature(SegmentationDataModule).parameters]
    for name in options:
        # the help starts on the option's line (short names) or the next one
        match = re.search(rf"\n  --data\.{name}(?: [A-Z_]+| \{{[^}}]*\}}| \[ITEM,\.\.\.\])?\s+(\S[^\n]*)", text)
        assert match, f"--data.{name} not in the help"
        assert not match.group(1).startswith("(type:"), f"--data.{name} has no help line"
    assert "--data.dataset {ade20k,cityscapes,folder}" in text
