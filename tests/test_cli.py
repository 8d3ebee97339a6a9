"""The segfpn LightningCLI end to end on tiny generated data: fit -> validate -> test -> predict, resume,
W&B offline logging, config saving and bad configuration values."""

from __future__ import annotations

import copy
import csv
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segfpn.datasets.sampling import EpochShuffleSampler
from segfpn.errors import CheckpointError
from segfpn.training.cli import run_cli
from segfpn.training.runs import runs_newest_first

CSV_LOGGER = "--trainer.logger=lightning.pytorch.loggers.CSVLogger"


def tiny_args(root: Path, data: Path, max_steps: int = 4, logger: str = CSV_LOGGER) -> list[str]:
    return [
        "--seed_everything=0",
        "--model.backbone_name=pvt_v2_b0",
        "--model.fpn_channels=32",
        "--model.head_channels=32",
        "--model.lr=0.001",
        "--model.inference.test_scale=null",
        f"--data.data_root={data}",
        "--data.batch_size=4",
        "--data.num_workers=0",
        "--data.crop_size=64",
        "--data.scale=[128, 64]",
        f"--trainer.default_root_dir={root}",
        f"--trainer.max_steps={max_steps}",
        "--trainer.limit_val_batches=3",
        "--trainer.check_val_every_n_epoch=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.log_every_n_steps=1",
        logger,
        *([f"--trainer.logger.init_args.save_dir={root}"] if logger == CSV_LOGGER else []),
    ]


def only_run(root: Path) -> Path:
    """The single run folder below ``root`` (``trainer.default_root_dir``)."""
    found = runs_newest_first(root)
    assert len(found) == 1, found
    return found[0]


def test_fit_validate_test_predict_round(tmp_path: Path, synthetic_root: Path) -> None:
    args = tiny_args(tmp_path, synthetic_root)
    cli = run_cli(["fit", *args])
    run = only_run(tmp_path)
    ckpts = run / "checkpoints"
    assert (ckpts / "best.ckpt").is_file() and (ckpts / "last.ckpt").is_file()
    assert cli.trainer.global_step == 4
    assert (Path(cli.trainer.log_dir) / "config.yaml").is_file() and list((run / "configs").glob("fit-*.yaml"))
    fit_miou = float(cli.trainer.callback_metrics["val/mIoU"])

    cli = run_cli(["validate", *args, "--ckpt_path=best"])
    assert float(cli.trainer.callback_metrics["val/mIoU"]) == pytest.approx(fit_miou, abs=1e-6)
    cli = run_cli(["test", *args, "--ckpt_path=best"])
    assert 0.0 <= float(cli.trainer.callback_metrics["test/mIoU"]) <= 1.0

    run_cli(["predict", *args, "--ckpt_path=last", f"--predictions.output_dir={tmp_path / 'pred'}"])
    images = sorted((synthetic_root / "images" / "validation").iterdir())
    labels = sorted((tmp_path / "pred" / "labels").iterdir())
    assert [p.stem for p in labels] == [p.stem for p in images]
    for image, label in zip(images, labels):
        values = np.asarray(Image.open(label))
        assert Image.open(label).size == Image.open(image).size
        assert values.min() >= 1 and values.max() <= 150  # ADE20K submission format
    assert len(list((tmp_path / "pred" / "overlays").glob("*.jpg"))) == len(images)


def test_second_run_of_a_config_gets_its_own_folder_and_configs(tmp_path: Path, synthetic_root: Path) -> None:
    args = tiny_args(tmp_path, synthetic_root, max_steps=1) + ["--trainer.limit_val_batches=1"]
    args[args.index(CSV_LOGGER)] = "--trainer.logger=lightning.pytorch.loggers.WandbLogger"  # log_dir = save_dir
    args.append(f"--trainer.logger.init_args.save_dir={tmp_path}")
    run_cli(["fit", *args])
    run_cli(["fit", *args, "--model.lr=0.002"])
    second, first = runs_newest_first(tmp_path)
    for run, lr in ((first, "0.001"), (second, "0.002")):
        assert len(list((run / "configs").glob("fit-*.yaml"))) == 1
        assert f"lr: {lr}" in (run / "config.yaml").read_text()


class _RecordResume(__import__("lightning").Callback):
    def __init__(self) -> None:
        self.start_step: int | None = None
        self.optimizer_state: dict | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.start_step = trainer.global_step
        self.optimizer_state = copy.deepcopy(trainer.optimizers[0].state_dict())


def _record_orders(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Every epoch order the training sampler hands to the DataLoader."""
    orders: list[list[int]] = []
    original = EpochShuffleSampler.__iter__

    def recording_iter(self):
        order = list(original(self))
        orders.append(order)
        return iter(order)

    monkeypatch.setattr(EpochShuffleSampler, "__iter__", recording_iter)
    return orders


def test_resume_continues_from_the_saved_step_with_identical_optimizer_state(
    tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 16 training images, batch 4: 4 steps per epoch; stop after epoch 1, resume to the end of epoch 3
    run_cli(["fit", *tiny_args(tmp_path, synthetic_root, max_steps=4)])
    saved = torch.load(only_run(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)
    recorder = _RecordResume()
    import segfpn.training.cli as cli_module

    original = cli_module.SegFPNCLI.instantiate_trainer
    monkeypatch.setattr(
        cli_module.SegFPNCLI, "instantiate_trainer", lambda self, **kw: original(self, callbacks=[recorder], **kw)
    )
    resumed_orders = _record_orders(monkeypatch)
    resumed = run_cli(["fit", *tiny_args(tmp_path, synthetic_root, max_steps=12), "--ckpt_path=last"])
    assert saved["global_step"] == 4 and recorder.start_step == 4
    for key, state in saved["optimizer_states"][0]["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(recorder.optimizer_state["state"][key][name], value)
    assert resumed.trainer.global_step == 12
    assert resumed.trainer.lr_scheduler_configs[0].scheduler.last_epoch == 12

    monkeypatch.undo()
    fresh_orders = _record_orders(monkeypatch)
    run_cli(["fit", *tiny_args(tmp_path / "fresh", synthetic_root, max_steps=12)])
    assert len(fresh_orders) == 3 and resumed_orders == fresh_orders[1:], "resumed epochs must see the same data"
    assert fresh_orders[0] != fresh_orders[1]


def test_logged_lrs_follow_the_schedule_and_backbone_multiplier(tmp_path: Path, synthetic_root: Path) -> None:
    args = tiny_args(tmp_path, synthetic_root, max_steps=4)
    run_cli(["fit", *args, "--model.backbone_lr_mult=0.1", "--model.max_iters=4", "--trainer.limit_val_batches=0"])
    rows = [r for r in csv.DictReader(open(next(tmp_path.glob("*/version_*/metrics.csv")))) if r["train/lr"]]
    lr = [float(r["train/lr"]) for r in rows]
    # poly (power 0.9) over max_iters=4, base lr 1e-3: step k has 1e-3 * (1 - k/4) ** 0.9
    assert lr == pytest.approx([1e-3 * (1 - k / 4) ** 0.9 for k in range(4)], rel=1e-5)
    assert [float(r["train/lr_backbone"]) for r in rows] == pytest.approx([0.1 * v for v in lr], rel=1e-5)


def test_wandb_offline_run_folder_holds_logged_keys(
    tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = tiny_args(
        tmp_path, synthetic_root, max_steps=4, logger="--trainer.logger=lightning.pytorch.loggers.WandbLogger"
    )
    run_cli(
        [
            "fit",
            *args,
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.logger.init_args.project=t",
            "--grad_monitor.every_n_steps=1",
        ]
    )
    runs = list((only_run(tmp_path) / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    keys = [b"train/loss", b"train/lr", b"val/mIoU", b"val/aAcc", b"val/per_class", b"val/predictions"]
    keys += [b"val/confusion_matrix", b"grad/model.backbone/norm", b"cli_config"]
    # wandb.finish() can return before W&B's writer process has flushed the last records to the file (seen 2 in
    # ~10 runs, complete a moment later): wait for the file to hold them, with a bound
    deadline = time.monotonic() + 60
    while (missing := [k for k in keys if k not in runs[0].read_bytes()]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not missing, missing


@pytest.mark.parametrize(
    "arg, message",
    [
        ("--model.loss=ce+hinge", r"unknown loss \['hinge'\]"),
        ("--model.lr=-0.1", "model.lr must be positive, got -0.1"),
        ("--data.batch_size=0", "data.batch_size must be a positive integer, got 0"),
        ("--model.backbone_name=resnet_doesnotexist", "is not a timm model"),
    ],
)
def test_bad_config_values_fail_before_training(tmp_path: Path, synthetic_root: Path, arg: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_cli(["fit", *tiny_args(tmp_path, synthetic_root), arg])
    assert not runs_newest_first(tmp_path)  # no run folder left behind


def test_invalid_choice_is_rejected_by_the_parser(
    tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture
) -> None:
    from segfpn.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["fit", *tiny_args(tmp_path, synthetic_root), "--model.optimizer=adam"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and 'segfpn: error: Parser key "model.optimizer"' in err and "adam" in err


def test_print_config(tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", *tiny_args(tmp_path, synthetic_root), "--print_config"])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "backbone_name: pvt_v2_b0" in out and "num_classes" not in out.split("model:")[1].split("\n")[1]


def test_best_checkpoint_missing_is_a_clear_error(tmp_path: Path, synthetic_root: Path) -> None:
    with pytest.raises(CheckpointError, match="--ckpt_path best: no .*best.ckpt"):
        run_cli(["validate", *tiny_args(tmp_path, synthetic_root), "--ckpt_path=best"])


# (lr, max_steps, val_check_interval, batch, protocol): pvt_v2_b0 follows whai362/PVTv2-Seg's code, the others the
# papers' stated recipe with mmseg's protocol (see each config's header)
RECIPES = {
    "convnext_tiny": (1e-4, 80000, 8000, 16, "mmseg"),
    "pvt_v2_b0": (2e-4, 40000, 4000, 32, "align_resize"),
    "swin_tiny": (1e-4, 80000, 8000, 16, "mmseg"),
}


@pytest.mark.parametrize("name", list(RECIPES))
def test_published_recipe_configs(name: str, capsys: pytest.CaptureFixture) -> None:
    import yaml

    repo = Path(__file__).resolve().parents[1]
    with pytest.raises(SystemExit):
        run_cli(
            [
                "fit",
                "--config",
                str(repo / f"configs/{name}_fpn_ade20k.yaml"),
                "--config",
                str(repo / "configs/trainer/ddp.yaml"),
                "--print_config",
            ]
        )
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["backbone_name"].removeprefix("mmseg_").startswith(name)  # Swin: mmseg's computation
    lr, max_steps, val_every, batch, protocol = RECIPES[name]
    assert (config["model"]["lr"], config["model"]["weight_decay"], config["model"]["optimizer"]) == (
        lr,
        1e-4,
        "adamw",
    )
    assert (config["model"]["schedule"], config["model"]["poly_power"]) == ("poly", 0.9)
    assert (config["trainer"]["max_steps"], config["trainer"]["val_check_interval"]) == (max_steps, val_every)
    assert (config["data"]["batch_size"], config["data"]["crop_size"], config["data"]["cat_max_ratio"]) == (
        batch,
        512,
        0.75,
    )
    assert config["model"]["inference"]["protocol"] == protocol
    assert config["model"]["inference"]["test_scale"] == [2048, 512]
    assert config["data"]["scale"] == [2048, 512] and config["data"]["ratio_range"] == [0.5, 2.0]
    assert config["trainer"]["strategy"] == "ddp" and config["trainer"]["sync_batchnorm"] is True


def test_precision_accumulation_clipping_and_tensorboard(tmp_path: Path, synthetic_root: Path) -> None:
    """bf16 autocast is emulated on this CPU: a tiny run only checks the path works end to end."""
    args = tiny_args(
        tmp_path, synthetic_root, max_steps=2, logger="--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger"
    )
    cli = run_cli(
        [
            "fit",
            *args,
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.precision=bf16-mixed",
            "--trainer.accumulate_grad_batches=2",
            "--trainer.gradient_clip_val=1.0",
            "--model.channels_last=true",
            "--data.crop_size=32",
            "--trainer.limit_val_batches=1",
        ]
    )
    assert cli.trainer.global_step == 2 and cli.trainer.precision == "bf16-mixed"
    assert list(tmp_path.rglob("events.out.tfevents.*"))
    assert cli.model.model.head.classifier.weight.is_contiguous(memory_format=torch.channels_last)


def test_class_weights_from_the_data_and_checkpoint_reload(tmp_path: Path, synthetic_root: Path) -> None:
    from segfpn.training.module import SegmentationModule

    cli = run_cli(
        [
            "fit",
            *tiny_args(tmp_path, synthetic_root, max_steps=2),
            "--model.class_weight=inverse_log",
            "--data.sampler=repeat_factor",
            "--data.repeat_threshold=0.5",
        ]
    )
    weights = cli.model.criterion.terms["ce"].class_weight
    present = cli.datamodule.class_stats().pixels > 0
    assert torch.all(weights[torch.from_numpy(present)] > 0) and torch.all(weights[torch.from_numpy(~present)] == 0)
    checkpoint = only_run(tmp_path) / "checkpoints" / "last.ckpt"
    module = SegmentationModule.load_from_checkpoint(checkpoint, weights_only=True)  # strict load without the data
    assert module.hparams.class_weight == "inverse_log"
