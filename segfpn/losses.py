"""Segmentation losses on logits ``[B, C, H, W]`` and targets ``[B, H, W]`` (255 = ignore)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segfpn.datasets.ade20k import IGNORE_INDEX
from segfpn.errors import ConfigError


def _resize_to(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return logits


class CrossEntropyLoss(nn.Module):
    """Pixel cross-entropy with ignore index and optional per-class weights (mean over labelled pixels)."""

    def __init__(
        self,
        class_weight: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int = IGNORE_INDEX,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        # not saved in checkpoints: given weights come back from the hparams, derived ones from the data
        weight = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float)
        self.register_buffer("class_weight", weight, persistent=False)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = _resize_to(logits, target)
        if not (target != self.ignore_index).any():
            return logits.sum() * 0.0
        return F.cross_entropy(
            logits,
            target,
            weight=self.class_weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )


class OHEMCrossEntropyLoss(nn.Module):
    """Online hard example mining (mmsegmentation's OHEMPixelSampler): keep the pixels whose probability
    of the true class is below ``thresh``, and at least the ``min_kept`` hardest ones."""

    def __init__(self, thresh: float = 0.7, min_kept: int = 100_000, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.thresh, self.min_kept, self.ignore_index = thresh, min_kept, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = _resize_to(logits, target)
        pixel_loss = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        valid = target != self.ignore_index
        if not valid.any():
            return logits.sum() * 0.0
        with torch.no_grad():
            prob = torch.exp(-pixel_loss[valid])  # softmax probability of the true class
            sorted_prob = prob.sort().values
            k = min(self.min_kept, sorted_prob.numel()) - 1
            threshold = max(float(sorted_prob[k]), self.thresh) if k >= 0 else self.thresh
        kept = pixel_loss[valid][prob < threshold] if (prob < threshold).any() else pixel_loss[valid]
        return kept.mean()


class DiceLoss(nn.Module):
    """Soft multi-class Dice loss 1 - mean_c (2|P_c G_c| + s) / (|P_c| + |G_c| + s) over labelled pixels."""

    def __init__(self, smooth: float = 1.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.smooth, self.ignore_index = smooth, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = _resize_to(logits, target)
        valid = (target != self.ignore_index).unsqueeze(1)
        prob = logits.softmax(1) * valid
        onehot = F.one_hot(target.masked_fill(~valid.squeeze(1), 0), logits.shape[1]).permute(0, 3, 1, 2) * valid
        dims = (0, 2, 3)
        inter = (prob * onehot).sum(dims)
        denom = prob.sum(dims) + onehot.sum(dims)
        return 1 - ((2 * inter + self.smooth) / (denom + self.smooth)).mean()


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): mean over labelled pixels of -alpha (1 - p_t)^gamma log p_t."""

    def __init__(self, gamma: float = 2.0, alpha: float = 1.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.gamma, self.alpha, self.ignore_index = gamma, alpha, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = _resize_to(logits, target)
        ce = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        valid = target != self.ignore_index
        if not valid.any():
            return logits.sum() * 0.0
        ce = ce[valid]
        return (self.alpha * (1 - torch.exp(-ce)) ** self.gamma * ce).mean()


def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


class LovaszSoftmaxLoss(nn.Module):
    """Lovasz-softmax (Berman et al., CVPR 2018): a convex surrogate of 1 - IoU, averaged over the classes
    present in the batch's labelled pixels."""

    def __init__(self, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = _resize_to(logits, target)
        prob = logits.softmax(1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
        labels = target.reshape(-1)
        valid = labels != self.ignore_index
        prob, labels = prob[valid], labels[valid]
        if labels.numel() == 0:
            return logits.sum() * 0.0
        losses = []
        for c in labels.unique():
            fg = (labels == c).float()
            errors = (fg - prob[:, c]).abs()
            errors_sorted, perm = errors.sort(descending=True)
            losses.append(torch.dot(errors_sorted, _lovasz_grad(fg[perm])))
        return torch.stack(losses).mean()


LOSSES: dict[str, type[nn.Module]] = {
    "ce": CrossEntropyLoss,
    "ohem": OHEMCrossEntropyLoss,
    "dice": DiceLoss,
    "focal": FocalLoss,
    "lovasz": LovaszSoftmaxLoss,
}


def parse_loss_spec(spec: str | Mapping[str, float]) -> dict[str, float]:
    """``"ce"``, ``"ce+dice"``, ``"ce+0.5*dice"`` or ``{"ce": 1.0, "dice": 0.5}`` -> {name: weight}."""
    expected = f"expected a combination of {sorted(LOSSES)} such as 'ce', 'ce+0.5*dice' or {{'ce': 1.0, 'dice': 0.5}}"
    if isinstance(spec, Mapping):
        pairs = [(str(k), v) for k, v in spec.items()]
    else:
        pairs = [(name, weight or "1") for weight, _, name in (p.rpartition("*") for p in str(spec).split("+"))]
    terms = {}
    for name, weight in pairs:
        name = name.strip()
        try:
            terms[name] = float(weight)
        except (TypeError, ValueError):
            found = str(weight).strip()
            raise ConfigError(
                f"model.loss={spec!r}: the weight of {name!r} must be a number, found {found!r}; {expected}"
            ) from None
    unknown = sorted(set(terms) - set(LOSSES))
    if unknown or not terms:
        raise ConfigError(f"model.loss={spec!r}: unknown loss {unknown or spec!r}; {expected}")
    bad = {k: w for k, w in terms.items() if not w >= 0}
    if bad:
        raise ConfigError(f"model.loss={spec!r}: loss weights must be non-negative numbers, found {bad}")
    return terms


class CombinedLoss(nn.Module):
    """Weighted sum of named losses; ``class_weight`` reaches the losses that take it (ce)."""

    def __init__(
        self,
        spec: str | Mapping[str, float] = "ce",
        class_weight: torch.Tensor | None = None,
        ohem_thresh: float = 0.7,
        ohem_min_kept: int = 100_000,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        self.weights = parse_loss_spec(spec)
        options = {
            "ce": {"class_weight": class_weight},
            "ohem": {"thresh": ohem_thresh, "min_kept": ohem_min_kept},
            "focal": {"gamma": focal_gamma},
        }
        self.terms = nn.ModuleDict({name: LOSSES[name](**options.get(name, {})) for name in self.weights})

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each weighted term under its name, and their sum under ``"loss"``."""
        parts = {name: self.weights[name] * term(logits, target) for name, term in self.terms.items()}
        parts["loss"] = sum(parts.values())
        return parts
