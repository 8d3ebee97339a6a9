"""GracefulStop in one process: a real SIGUSR1 under (fake) Slurm during a training step is acted on at the step
boundary (checkpoint, stop, requeue after the run); the job scheduler is a script that records what it was asked.
The real Slurm run, with DDP on two ranks, is tests/test_slurm.py."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch

from segfpn.datasets import ADE20KDataModule
from segfpn.training.callbacks.preemption import GracefulStop, next_hpc_checkpoint
from segfpn.training.module import SegmentationModule


class _SignalAt(L.Callback):
    """Sends SIGUSR1 to this process at the start of batch ``index`` (as scancel --signal=USR1 would)."""

    def __init__(self, index: int) -> None:
        self.index = index

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.index:
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Slurm as segfpn.training.callbacks.preemption sees it: detected, job 4242, and an ``scontrol`` that logs its
    arguments."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol_calls.txt"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setattr("segfpn.training.callbacks.preemption.running_under_slurm", lambda: True)
    return calls


def _fit(root: Path, data_root: Path, max_steps: int, callbacks: list[L.Callback]) -> L.Trainer:
    """A tiny real training run in ``root``."""
    torch.manual_seed(0)
    data = ADE20KDataModule(str(data_root), batch_size=2, num_workers=0, crop_size=64, scale=(128, 64))
    module = SegmentationModule(data.num_classes, backbone_name="pvt_v2_b0", fpn_channels=16, head_channels=16, lr=1e-3)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=root,
        callbacks=callbacks,
    )
    trainer.fit(module, datamodule=data)
    return trainer


def test_signal_saves_at_the_step_boundary_stops_and_requeues(
    tmp_path: Path, synthetic_root: Path, fake_slurm: Path
) -> None:
    before = signal.getsignal(signal.SIGUSR1)
    trainer = _fit(tmp_path, synthetic_root, 10, [GracefulStop(), _SignalAt(2)])
    assert trainer.global_step == 3  # the step that was running when the signal came is finished, no more
    saved = torch.load(tmp_path / "hpc_ckpt_1.ckpt", weights_only=True)
    assert saved["global_step"] == 3
    assert fake_slurm.read_text().split() == ["requeue", "4242"]
    assert signal.getsignal(signal.SIGUSR1) == before  # the handler is only there during fit


def test_without_a_signal_the_callback_does_nothing(tmp_path: Path, synthetic_root: Path) -> None:
    callback = GracefulStop()
    handlers = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)]
    trainer = _fit(tmp_path, synthetic_root, 2, [callback])
    assert trainer.global_step == 2 and callback.exit_code == 0 and not list(tmp_path.rglob("*.ckpt"))
    assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)] == handlers


def test_hpc_checkpoint_numbering_and_bad_signal_name(tmp_path: Path) -> None:
    assert next_hpc_checkpoint(tmp_path).name == "hpc_ckpt_1.ckpt"
    for n in (1, 2, 10):
        (tmp_path / f"hpc_ckpt_{n}.ckpt").touch()
    (tmp_path / "hpc_ckpt_x.ckpt").touch()
    assert next_hpc_checkpoint(tmp_path).name == "hpc_ckpt_11.ckpt"
    with pytest.raises(ValueError, match="requeue_signal"):
        GracefulStop(requeue_signal="SIGFOO")
