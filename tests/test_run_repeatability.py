"""A run's outcome does not depend on which run it is: the same seed trains the same, and ``last.ckpt`` is the
newest state whether or not the last validation was a new best (the two causes of a DDP test that failed on
the first run of a fresh clone and passed on the second)."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch

import segfpn.training.cli as cli_module
from segfpn.training.cli import run_cli
from tests.test_cli import only_run, tiny_args


def _train_losses(root: Path) -> list[float]:
    rows = csv.DictReader(open(next(only_run(root).glob("version_*/metrics.csv"))))
    return [float(r["train/loss"]) for r in rows if r["train/loss"]]


def test_same_seed_same_training_without_workers(tmp_path: Path, synthetic_root: Path) -> None:
    # num_workers=0: the augmentation runs in the main process, where albumentations seeds itself from the OS
    for name in ("a", "b"):
        run_cli(["fit", *tiny_args(tmp_path / name, synthetic_root, max_steps=3), "--trainer.limit_val_batches=0"])
    first, second = _train_losses(tmp_path / "a"), _train_losses(tmp_path / "b")
    assert len(first) == 3
    assert first == second


class _LastStepAtEpochStart(L.Callback):
    """global_step and epoch held by last.ckpt when each training epoch starts."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        last = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
        if last.is_file():
            ckpt = torch.load(last, map_location="cpu", weights_only=True)
            self.seen.append((ckpt["global_step"], ckpt["epoch"]))


@pytest.mark.parametrize("check_val_every_n_epoch", [1, 2])  # saved at the train epoch end / validation end
def test_last_checkpoint_follows_training_when_the_score_does_not_improve(
    tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch, check_val_every_n_epoch: int
) -> None:
    # monitoring "step" with mode=min makes every validation after the first one worse than the best
    recorder = _LastStepAtEpochStart()
    original = cli_module.SegFPNCLI.instantiate_trainer
    monkeypatch.setattr(
        cli_module.SegFPNCLI, "instantiate_trainer", lambda self, **kw: original(self, callbacks=[recorder], **kw)
    )
    run_cli(
        [
            "fit",
            *tiny_args(tmp_path, synthetic_root, max_steps=8),
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=1",
            f"--trainer.check_val_every_n_epoch={check_val_every_n_epoch}",
            "--checkpoint.monitor=step",
            "--checkpoint.mode=min",
        ]
    )
    every = check_val_every_n_epoch
    # one step per epoch: after epoch e (0-based) with a validation, last.ckpt holds step e + 1 and epoch e
    expected = [(e + 1, e) for e in range(8 - 1) if (e + 1) % every == 0]
    assert list(dict.fromkeys(recorder.seen)) == expected
    checkpoints = only_run(tmp_path) / "checkpoints"
    assert len({p.name for p in checkpoints.glob("step*.ckpt")}) == 1  # the best stayed the first
    final = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert (final["global_step"], final["epoch"]) == (8, 7)
