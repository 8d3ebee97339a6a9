"""Parameter groups and per-iteration learning-rate schedules."""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import nn

from segfpn.errors import ConfigError

OptimizerName = Literal["adamw", "sgd"]
ScheduleName = Literal["poly", "cosine", "constant"]
NO_DECAY_NAMES = ("pos_embed", "absolute_pos_embed", "relative_position_bias_table", "cls_token")


def param_groups(model: nn.Module, weight_decay: float, backbone_lr_mult: float = 1.0) -> list[dict]:
    """Groups: (backbone | rest) x (decay | no decay). Norms, biases, scales and position tables get no decay."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or any(k in name for k in NO_DECAY_NAMES)
        groups.setdefault((name.startswith("backbone."), no_decay), []).append(p)
    return [
        {
            "params": params,
            "weight_decay": 0.0 if no_decay else weight_decay,
            "lr_mult": backbone_lr_mult if in_backbone else 1.0,
            "name": f"{'backbone' if in_backbone else 'decoder'}{'_no_decay' if no_decay else ''}",
        }
        for (in_backbone, no_decay), params in sorted(groups.items())
    ]


def lr_factor(
    step: int,
    max_steps: int,
    schedule: ScheduleName,
    warmup_steps: int = 0,
    warmup_ratio: float = 1e-6,
    power: float = 0.9,
    min_lr_ratio: float = 0.0,
) -> float:
    """Multiplier of the base learning rate at ``step`` (linear warm-up, then poly/cosine decay)."""
    progress = min(step / max(max_steps, 1), 1.0)
    if schedule == "poly":
        factor = (1 - progress) ** power * (1 - min_lr_ratio) + min_lr_ratio
    elif schedule == "cosine":
        factor = min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    elif schedule == "constant":
        factor = 1.0
    else:
        check_choice(schedule, ScheduleName, "schedule")
    if step < warmup_steps:
        factor *= warmup_ratio + (1 - warmup_ratio) * step / warmup_steps
    return factor


def build_optimizer(
    groups: list[dict],
    name: OptimizerName,
    lr: float,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """AdamW or SGD over ``groups``, each group's lr scaled by its ``lr_mult``."""
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    check_choice(name, OptimizerName, "optimizer")
    raise AssertionError("unreachable")


def check_choice(value: str, choices: object, option: str) -> None:
    """Raise a ConfigError naming ``option`` unless ``value`` is one of the ``Literal`` type ``choices``."""
    allowed = get_args(choices)
    if value not in allowed:
        raise ConfigError(f"{option} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
