"""One tiny real training run for tests/test_exact_resume.py: in the test's process, or as a script (2 DDP ranks,
a SIGKILL) with its options as one JSON argument. The final weights go to ``<root>/weights.pt``."""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from segfpn.datasets import ADE20KDataModule
from segfpn.training.callbacks.preemption import GracefulStop
from segfpn.training.module import SegmentationModule


@dataclass
class Run:
    root: str
    data: str
    max_steps: int = 12
    signal_at: int | None = None  # the global training batch (epoch * batches per epoch + index) that gets it
    signal_name: str = "SIGTERM"
    ckpt_path: str | None = None
    num_workers: int = 0
    sampler: str = "random"
    accumulate: int = 1
    devices: int = 1
    every_n_train_steps: int | None = None
    val_check_interval: int | None = None


class SignalAt(L.Callback):
    """Sends a signal to this process at the start of one global training batch (rank 0 only)."""

    def __init__(self, at: int, signal_name: str) -> None:
        self.at, self.signum = at, signal.Signals[signal_name]

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.is_global_zero and trainer.current_epoch * trainer.num_training_batches + batch_idx == self.at:
            os.kill(os.getpid(), self.signum)


def fit(run: Run) -> L.Trainer:
    """Train ``run`` (seed 0, resnet18 with drop-path, 16 images of batch 2) and save its final weights."""
    root = Path(run.root)
    root.mkdir(parents=True, exist_ok=True)
    L.seed_everything(0, verbose=False)
    data = ADE20KDataModule(
        run.data, batch_size=2, num_workers=run.num_workers, crop_size=64, scale=(128, 64), sampler=run.sampler
    )
    module = SegmentationModule(
        data.num_classes, backbone_name="resnet18", drop_path_rate=0.1, fpn_channels=16, head_channels=16,
        lr=0.01, max_iters=run.max_steps,
    )  # fmt: skip
    callbacks: list[L.Callback] = [GracefulStop()]
    if run.signal_at is not None:
        callbacks.append(SignalAt(run.signal_at, run.signal_name))
    validate = run.val_check_interval is not None
    if run.every_n_train_steps or validate:
        callbacks.append(
            ModelCheckpoint(
                root / "checkpoints",
                every_n_train_steps=run.every_n_train_steps,
                save_top_k=-1 if not validate else 2,
                monitor="val/mIoU" if validate else None,
                mode="max",
                save_last=validate,
            )  # fmt: skip
        )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=run.devices,
        strategy="ddp" if run.devices > 1 else "auto",
        max_steps=run.max_steps,
        accumulate_grad_batches=run.accumulate,
        limit_val_batches=2 if validate else 0,
        val_check_interval=run.val_check_interval,
        check_val_every_n_epoch=None if validate else 1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=bool(run.every_n_train_steps or validate),
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=callbacks,
    )
    trainer.fit(module, datamodule=data, ckpt_path=run.ckpt_path)
    if trainer.is_global_zero:
        torch.save(module.state_dict(), root / "weights.pt")
    return trainer


def as_script_args(run: Run) -> list[str]:
    return [sys.executable, "-m", "tests.exact_resume_run", json.dumps(asdict(run))]


if __name__ == "__main__":
    fit(Run(**json.loads(sys.argv[1])))
