"""GradientMonitor: gradient norm, mean and std per module group, logged every N steps."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from segfpn.errors import ConfigError


def gradient_stats(module: torch.nn.Module, depth: int = 1) -> dict[str, dict[str, float]]:
    """Gradient norm, mean and std per module group (parameter names cut at ``depth + 1`` components)."""
    sums: dict[str, list[float]] = {}
    for name, p in module.named_parameters():
        if p.grad is None:
            continue
        group = ".".join(name.split(".")[: depth + 1])
        g = p.grad.detach().float()
        s = sums.setdefault(group, [0.0, 0.0, 0])
        s[0] += g.sum().item()
        s[1] += g.pow(2).sum().item()
        s[2] += g.numel()
    stats = {}
    for group, (total, squares, n) in sums.items():
        mean = total / n
        stats[group] = {"norm": squares**0.5, "mean": mean, "std": max(squares / n - mean**2, 0.0) ** 0.5}
    return stats


class GradientMonitor(L.Callback):
    """Every ``every_n_steps`` optimiser steps, log norm/mean/std of the (unscaled) gradients per module
    group, e.g. ``grad/model.backbone/norm``; ``depth`` 2 splits deeper (``model.backbone.body``...).

    Args:
        every_n_steps: log the gradient statistics every this many optimiser steps (at least 1).
        depth: module-name depth of the groups: 1 = backbone/neck/head, 2 = their children, ...
    """

    def __init__(self, every_n_steps: int = 50, depth: int = 1) -> None:
        if every_n_steps < 1:
            raise ConfigError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.depth = depth
        self.last: dict[str, dict[str, float]] = {}

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        self.last = gradient_stats(pl_module, self.depth)
        pl_module.log_dict({f"grad/{g}/{k}": v for g, s in self.last.items() for k, v in s.items()})
