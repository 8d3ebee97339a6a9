"""Fit-loop overhead: ``Trainer.fit`` on SegmentationModule against a hand-written PyTorch loop doing the
same work (same model, loss, AdamW parameter groups, per-step schedule, same in-memory batches)."""

from __future__ import annotations

import statistics
import time

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from segfpn.training.module import SegmentationModule
from segfpn.training.optim import build_optimizer, lr_factor, param_groups


def _data(steps: int, batch: int, size: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(steps * batch, 3, size, size, generator=g)
    masks = torch.randint(0, 150, (steps * batch, size, size), generator=g)
    return DataLoader(TensorDataset(images, masks), batch_size=batch, shuffle=False)


def _module() -> SegmentationModule:
    torch.manual_seed(0)
    return SegmentationModule(num_classes=150, backbone_name="pvt_v2_b0", lr=1e-4, max_iters=10_000)


class _StepTimer(L.Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_start(self, *args, **kwargs) -> None:
        self.stamps.append(time.perf_counter())


def lightning_step_times(steps: int, batch: int, size: int, **trainer_kwargs) -> list[float]:
    timer = _StepTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[timer],
        **trainer_kwargs,
    )
    trainer.fit(_module(), train_dataloaders=_data(steps, batch, size))
    return [b - a for a, b in zip(timer.stamps, timer.stamps[1:])]


def manual_step_times(steps: int, batch: int, size: int) -> list[float]:
    module = _module()
    model, criterion = module.model.train(), module.criterion
    optimizer = build_optimizer(param_groups(model, 1e-4), "adamw", 1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, 10_000, "poly"))
    stamps = []
    for images, masks in _data(steps, batch, size):
        stamps.append(time.perf_counter())
        loss = criterion(model(images)["p0"], masks)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        loss.item()  # Lightning reads the loss each step too (progress bar / logging)
    return [b - a for a, b in zip(stamps, stamps[1:])]


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    steps, batch, size = (12, 4, 64) if quick else (30, 4, 128)
    warm = 3
    results: dict[str, list[float]] = {"hand-written loop": [], "Trainer.fit": []}
    for _ in range(2):  # alternate, so drifts of a shared machine hit both
        results["hand-written loop"] += manual_step_times(steps, batch, size)[warm:]
        results["Trainer.fit"] += lightning_step_times(steps, batch, size)[warm:]
    manual = statistics.median(results["hand-written loop"])
    rows = []
    for name, times in results.items():
        step = statistics.median(times)
        rows.append(
            {"loop": name, "steps_per_s": 1 / step, "step_ms": 1e3 * step, "time_vs_hand_written": step / manual}
        )
    return rows
