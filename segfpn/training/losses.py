"""Segmentation losses on logits ``[B, C, H, W]`` and targets ``[B, H, W]`` (``ignore_index`` = ignore)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segfpn.constants import IGNORE_INDEX
from segfpn.errors import ConfigError


def _resize_to(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return logits


def mmseg_mean(
    pixel_loss: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    avg_non_ignore: bool = False,
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """mmsegmentation's ``mean`` reduction of a per-pixel loss (ignored pixels hold 0): the sum divided by
    ``avg_factor`` = all pixels (``avg_non_ignore=False``, its default and that of its Semantic FPN configs) or the
    labelled pixels only (``True``, PyTorch's mean). With class weights each labelled pixel counts with its
    class's weight, and an ignored pixel 1 when ``avg_non_ignore=False`` (mmseg 1.2.2 indexes the weights
    with the ignore label and fails as soon as a pixel is ignored: it has no reference value there)."""
    valid = target != ignore_index
    if class_weight is None:
        factor = valid.sum() if avg_non_ignore else torch.tensor(target.numel(), device=target.device)
    else:
        factor = (class_weight[target.masked_fill(~valid, 0)] * valid).sum()
        if not avg_non_ignore:
            factor = factor + (~valid).sum()
    # mmseg adds float32's eps: an all-ignored batch gives 0 (with a gradient) instead of 0/0
    return pixel_loss.sum() / (factor + torch.finfo(torch.float32).eps)


class CrossEntropyLoss(nn.Module):
    """Pixel cross-entropy with ignore index and optional per-class weights, reduced as mmsegmentation's
    ``CrossEntropyLoss(avg_non_ignore=...)`` (see :func:`mmseg_mean`)."""

    def __init__(
        self,
        class_weight: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int = IGNORE_INDEX,
        label_smoothing: float = 0.0,
        avg_non_ignore: bool = False,
    ) -> None:
        super().__init__()
        # not saved in checkpoints: given weights come back from the hparams, derived ones from the data
        weight = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float)
        self.register_buffer("class_weight", weight, persistent=False)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.avg_non_ignore = avg_non_ignore

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = _resize_to(logits, target)
        pixel_loss = F.cross_entropy(
            logits,
            target,
            weight=self.class_weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction="none",
        )
        return mmseg_mean(pixel_loss, target, self.ignore_index, self.avg_non_ignore, self.class_weight)


class OHEMCrossEntropyLoss(nn.Module):
    """Online hard example mining as mmsegmentation's ``OHEMPixelSampler`` + ``CrossEntropyLoss``: with
    ``thresh``, keep the labelled pixels whose softmax probability of the true class is below
    ``max(thresh, p_k)``, p_k the (k+1)-th smallest such probability, k = ``min_kept`` x batch size; without
    (``thresh=None``), keep the k pixels of largest CE. The kept pixels' CE is summed and divided as
    :func:`mmseg_mean` does (by all B*H*W pixels by default), not averaged over the kept pixels."""

    def __init__(
        self,
        thresh: float | None = 0.7,
        min_kept: int = 100_000,
        ignore_index: int = IGNORE_INDEX,
        avg_non_ignore: bool = False,
    ) -> None:
        super().__init__()
        self.thresh, self.min_kept, self.ignore_index = thresh, min_kept, ignore_index
        self.avg_non_ignore = avg_non_ignore

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = _resize_to(logits, target)
        pixel_loss = F.cross_entropy(logits, target, ignore_index=self.ignore_index, reduction="none")
        kept = self.kept_pixels(logits, target, pixel_loss)
        return mmseg_mean(pixel_loss * kept, target, self.ignore_index, self.avg_non_ignore)

    @torch.no_grad()
    def kept_pixels(self, logits: torch.Tensor, target: torch.Tensor, pixel_loss: torch.Tensor) -> torch.Tensor:
        """``[B, H, W]`` weights, 1 for the pixels OHEM keeps and 0 elsewhere."""
        valid = target != self.ignore_index
        batch_kept = self.min_kept * target.shape[0]
        kept = logits.new_zeros(int(valid.sum()))  # one weight per labelled pixel
        if self.thresh is None:
            kept[pixel_loss[valid].sort(descending=True).indices[:batch_kept]] = 1.0
        else:
            index = target.masked_fill(~valid, 0).unsqueeze(1)
            prob = logits.softmax(1).gather(1, index).squeeze(1)[valid]
            threshold = self.thresh
            if prob.numel():
                threshold = max(float(prob.sort().values[min(batch_kept, prob.numel() - 1)]), self.thresh)
            kept[prob < threshold] = 1.0
        weights = torch.zeros_like(target, dtype=logits.dtype)
        weights[valid] = kept
        return weights


class DiceLoss(nn.Module):
    """Soft multi-class Dice loss 1 - mean_c (2|P_c G_c| + s) / (|P_c| + |G_c| + s) on softmax
    probabilities, each class's sums over the labelled pixels of the whole batch. Not mmsegmentation's
    ``DiceLoss`` (sigmoid by default, eps 1e-3, squared sums in the denominator, one value per image and
    class averaged), so no published config uses it."""

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
    """Softmax focal loss (Lin et al., 2017): mean over labelled pixels of -alpha (1 - p_t)^gamma log p_t,
    p_t the softmax probability of the true class. Not mmsegmentation's ``FocalLoss`` (sigmoid per class
    on one-hot targets, alpha 0.5 balancing positives and negatives)."""

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
    """Lovasz-softmax (Berman et al., CVPR 2018): a convex surrogate of 1 - IoU averaged over the classes
    present in the labelled pixels, as mmsegmentation's ``LovaszLoss(loss_type='multi_class',
    classes='present')``: over the whole batch (``per_image=False``) or per image then averaged over the
    images (``per_image=True``; an image without labelled pixels counts 0, where mmseg fails)."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, per_image: bool = False) -> None:
        super().__init__()
        self.ignore_index, self.per_image = ignore_index, per_image

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = _resize_to(logits, target)
        prob = logits.softmax(1)
        if self.per_image:
            return torch.stack([self._flat(p[None], t[None]) for p, t in zip(prob, target)]).mean()
        return self._flat(prob, target)

    def _flat(self, prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        prob = prob.permute(0, 2, 3, 1).reshape(-1, prob.shape[1])
        labels = target.reshape(-1)
        valid = labels != self.ignore_index
        if not valid.any():
            return prob.sum() * 0.0
        prob, labels = prob[valid], labels[valid]
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
    """Weighted sum of named losses; ``class_weight`` reaches the losses that take it (ce), ``avg_non_ignore``
    (mmseg's normalisation, see :func:`mmseg_mean`) those that are mmseg's CE (ce, ohem), ``ignore_index`` (the
    dataset's) every one."""

    def __init__(
        self,
        spec: str | Mapping[str, float] = "ce",
        class_weight: torch.Tensor | None = None,
        ohem_thresh: float | None = 0.7,
        ohem_min_kept: int = 100_000,
        focal_gamma: float = 2.0,
        avg_non_ignore: bool = False,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.weights = parse_loss_spec(spec)
        options = {
            "ce": {"class_weight": class_weight, "avg_non_ignore": avg_non_ignore},
            "ohem": {"thresh": ohem_thresh, "min_kept": ohem_min_kept, "avg_non_ignore": avg_non_ignore},
            "focal": {"gamma": focal_gamma},
        }
        self.terms = nn.ModuleDict(
            {name: LOSSES[name](ignore_index=ignore_index, **options.get(name, {})) for name in self.weights}
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each weighted term under its name, and their sum under ``"loss"``."""
        parts = {name: self.weights[name] * term(logits, target) for name, term in self.terms.items()}
        parts["loss"] = sum(parts.values())
        return parts
