"""Pictures: colourised masks, overlays, batches, feature maps, confusion matrices, per-class bars."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from segfpn.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from segfpn.datasets.info import DatasetInfo, default_palette
from segfpn.datasets.transforms import to_pixels
from segfpn.metrics import to_labels

# without a dataset description: generated colours for every id, the default ignore index black
_GENERIC_TABLE = np.array(default_palette(256), np.uint8)
_GENERIC_TABLE[IGNORE_INDEX] = 0


def class_names_or_generic(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    """``class_names`` (a dataset's), or ``class_0``.. when not given."""
    return list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]


def colour_table(dataset_info: DatasetInfo | None = None) -> np.ndarray:
    """``[256, 3]`` uint8 colours by train id: the dataset's palette, black for its ignore index and any id
    past its classes; without ``dataset_info``, generated colours (ignore index black)."""
    if dataset_info is None:
        return _GENERIC_TABLE
    table = np.zeros((256, 3), np.uint8)
    table[: dataset_info.num_classes] = np.asarray(dataset_info.palette, np.uint8)[:256]
    return table


def denormalize(image: torch.Tensor, dataset_info: DatasetInfo | None = None) -> np.ndarray:
    """A normalised ``[3, H, W]`` tensor back to RGB uint8 ``[H, W, 3]`` (the dataset's mean/std, ImageNet's
    without ``dataset_info``): :func:`~segfpn.datasets.transforms.to_pixels` of one image."""
    mean, std = (dataset_info.mean, dataset_info.std) if dataset_info is not None else (IMAGENET_MEAN, IMAGENET_STD)
    return to_pixels(image.detach()[None], mean, std)[0]


def colorize(labels: np.ndarray | torch.Tensor, dataset_info: DatasetInfo | None = None) -> np.ndarray:
    """Train ids ``[H, W]`` to the dataset's palette colours (ignore = black); see :func:`colour_table`."""
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else labels
    return colour_table(dataset_info)[labels.astype(np.int64) % 256]


def overlay(image: np.ndarray, colours: np.ndarray, alpha: float = 0.5, keep: np.ndarray | None = None) -> np.ndarray:
    """Blend an RGB image with a colour mask of the same size at ``alpha``; pixels where ``keep`` is true keep the
    image's own colour. The one blend of segfpn's figures, overlays and prediction files."""
    painted = (image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).round()
    if keep is not None:
        painted = np.where(np.asarray(keep)[..., None], image, painted)
    return painted.astype(np.uint8)


def blend(image: np.ndarray, labels: np.ndarray, info: DatasetInfo, alpha: float = 0.5) -> np.ndarray:
    """The image with its labels painted on in the dataset's palette; ignored pixels keep the image's colour."""
    return overlay(image, colorize(labels, info), alpha, keep=np.asarray(labels) == info.ignore_index)


def _save(fig: Figure, save_path: str | Path | None) -> Figure:
    if save_path is not None:
        Path(save_path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save_path, dpi=110, bbox_inches="tight")
    return fig


def visualize_batch(
    images: torch.Tensor,
    masks: torch.Tensor,
    predictions: torch.Tensor | None = None,
    max_images: int = 4,
    save_path: str | Path | None = None,
    dataset_info: DatasetInfo | None = None,
) -> Figure:
    """Grid of image / ground truth / prediction (logits ``[B, C, H, W]`` or labels ``[B, H, W]``) rows, in the
    colours and normalisation of ``dataset_info`` (generic colours, ImageNet statistics without it)."""
    n = min(len(images), max_images)
    cols = 3 if predictions is not None else 2
    fig, axes = plt.subplots(n, cols, figsize=(4 * cols, 3.2 * n), squeeze=False)
    if predictions is not None:
        predictions = to_labels(predictions)
    for i in range(n):
        panels = [denormalize(images[i], dataset_info), colorize(masks[i], dataset_info)]
        titles = ["image", "ground truth"]
        if predictions is not None:
            panels.append(colorize(predictions[i], dataset_info))
            titles.append("prediction")
        for ax, panel, title in zip(axes[i], panels, titles):
            ax.imshow(panel)
            ax.set_title(title)
            ax.axis("off")
    fig.tight_layout()
    return _save(fig, save_path)


def crop_to_image(
    feature: torch.Tensor, image_size: tuple[int, int] | None, input_size: tuple[int, int] | None
) -> torch.Tensor:
    """The part of a ``[..., h, w]`` map computed from an ``input_size`` input that covers the ``image_size``
    image (the rest saw only the padding that SegmentationModel adds to reach a multiple of its stride);
    the whole map when either size is not given."""
    if image_size is None or input_size is None:
        return feature
    h, w = feature.shape[-2:]
    rows = -(-image_size[0] * h // input_size[0])
    cols = -(-image_size[1] * w // input_size[1])
    return feature[..., :rows, :cols]


def level_names(count: int, strides: Sequence[int] | None = None) -> list[str]:
    """Names of pyramid levels by their stride ("stride 4" ... "stride 32"); without ``strides``, the Semantic FPN
    levels 4, 8, 16, 32 (finest first)."""
    strides = list(strides) if strides is not None else [4 * 2**i for i in range(count)]
    if len(strides) != count:
        raise ValueError(f"level_names: {count} levels but {len(strides)} strides {strides}")
    return [f"stride {s}" for s in strides]


def plot_feature_maps(
    features: Sequence[torch.Tensor],
    channel: int = 0,
    title: str = "FPN",
    save_path: str | Path | None = None,
    image_size: tuple[int, int] | None = None,
    input_size: tuple[int, int] | None = None,
    strides: Sequence[int] | None = None,
) -> Figure:
    """Per pyramid level (named by its ``strides``, see :func:`level_names`): one channel (top row) and the
    channel-mean map (bottom row) of sample 0; ``title`` names the maps (``FPN``, ``backbone``).
    With ``image_size`` and the padded ``input_size``, each map is cropped to the image (no padding band)."""
    fig, axes = plt.subplots(2, len(features), figsize=(3.6 * len(features), 6.5), squeeze=False)
    for i, (feat, level) in enumerate(zip(features, level_names(len(features), strides))):
        f = crop_to_image(feat[0].detach().float().cpu(), image_size, input_size)
        axes[0, i].imshow(f[channel].numpy(), cmap="viridis")
        axes[0, i].set_title(f"{level}: channel {channel} {tuple(f.shape[-2:])}")
        axes[1, i].imshow(f.mean(0).numpy(), cmap="magma")
        axes[1, i].set_title(f"{level}: channel mean")
        for ax in axes[:, i]:
            ax.axis("off")
    fig.suptitle(f"{title} feature maps")
    fig.tight_layout()
    return _save(fig, save_path)


def plot_attention_maps(
    level_maps: Sequence[torch.Tensor],
    fusion: torch.Tensor | None = None,
    save_path: str | Path | None = None,
    image_size: tuple[int, int] | None = None,
    input_size: tuple[int, int] | None = None,
    strides: Sequence[int] | None = None,
) -> Figure:
    """Attention of sample 0: per FPN level (named by its stride) its spatial map (CBAM) or channel gates (SE),
    and the head's per-level fusion weights when present; spatial maps cropped to the image as in
    :func:`plot_feature_maps`."""
    n = len(level_maps) + (len(fusion[0]) if fusion is not None else 0)
    fig, axes = plt.subplots(1, max(n, 1), figsize=(3.4 * max(n, 1), 3.4), squeeze=False)
    axes = list(axes[0])
    count = len(level_maps) or (len(fusion[0]) if fusion is not None else 0)
    names = level_names(count, strides)
    for i, amap in enumerate(level_maps):
        a = amap[0].float().cpu()
        ax = axes.pop(0)
        if a.shape[-1] == 1 and a.shape[-2] == 1:  # channel gates
            ax.bar(range(a.shape[0]), a.flatten().numpy(), width=1.0)
            ax.set_title(f"{names[i]}: channel gates")
        else:
            ax.imshow(crop_to_image(a[0], image_size, input_size).numpy(), cmap="inferno", vmin=0, vmax=1)
            ax.set_title(f"{names[i]}: spatial attention")
            ax.axis("off")
    if fusion is not None:
        for level, w in enumerate(fusion[0].float().cpu()):
            ax = axes.pop(0)
            ax.imshow(crop_to_image(w, image_size, input_size).numpy(), cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"fusion weight, {names[level]}")
            ax.axis("off")
    fig.suptitle("Attention per FPN level")
    fig.tight_layout()
    return _save(fig, save_path)


def plot_confusion_matrix(
    confmat: np.ndarray,
    class_names: Sequence[str] | None = None,
    top_k: int = 30,
    save_path: str | Path | None = None,
) -> Figure:
    """Row-normalised confusion matrix restricted to the ``top_k`` classes with the most ground-truth pixels,
    labelled with ``class_names`` (the dataset's; ``class_i`` when not given)."""
    confmat = np.asarray(confmat, dtype=np.float64)
    class_names = class_names_or_generic(class_names, len(confmat))
    support = confmat.sum(1)
    keep = np.argsort(-support)[: min(top_k, int((support > 0).sum()) or 1)]
    sub = confmat[np.ix_(keep, keep)]
    norm = sub / np.maximum(sub.sum(1, keepdims=True), 1)
    size = max(5, 0.28 * len(keep) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    names = [class_names[i] for i in keep]
    ax.set_xticks(range(len(keep)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(keep)), names, fontsize=7)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title("confusion matrix (rows normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _save(fig, save_path)


def top_confusions(
    confmat: np.ndarray, class_names: Sequence[str] | None = None, k: int = 10
) -> list[tuple[str, str, float]]:
    """The ``k`` largest off-diagonal entries as (ground truth, prediction, fraction of the GT class)."""
    confmat = np.asarray(confmat, dtype=np.float64)
    class_names = class_names_or_generic(class_names, len(confmat))
    rates = confmat / np.maximum(confmat.sum(1, keepdims=True), 1)
    np.fill_diagonal(rates, 0)
    flat = np.argsort(-rates, axis=None)[:k]
    pairs = [np.unravel_index(i, rates.shape) for i in flat]
    return [(class_names[g], class_names[p], float(rates[g, p])) for g, p in pairs if rates[g, p] > 0]


def plot_per_class_iou(
    iou: Sequence[float] | np.ndarray,
    class_names: Sequence[str] | None = None,
    other: Sequence[float] | None = None,
    labels: tuple[str, str] = ("run", "baseline"),
    save_path: str | Path | None = None,
    title: str = "per-class IoU",
) -> Figure:
    """Bar chart of per-class IoU (NaN classes left out), optionally beside a second run's, labelled with
    ``class_names`` (the dataset's; ``class_i`` when not given)."""
    iou = np.asarray(iou, dtype=np.float64)
    class_names = class_names_or_generic(class_names, len(iou))
    keep = np.where(~np.isnan(iou))[0] if other is None else np.where(~np.isnan(iou) | ~np.isnan(np.asarray(other)))[0]
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(keep) + 2), 4.5))
    x = np.arange(len(keep))
    width = 0.4 if other is not None else 0.8
    ax.bar(x - (width / 2 if other is not None else 0), np.nan_to_num(iou[keep]), width, label=labels[0])
    if other is not None:
        ax.bar(x + width / 2, np.nan_to_num(np.asarray(other, dtype=np.float64)[keep]), width, label=labels[1])
        ax.legend()
    ax.set_xticks(x, [class_names[i] for i in keep], rotation=90, fontsize=7)
    ax.set_xlabel("class")
    ax.set_ylabel("IoU")
    ax.set_title(title)
    ax.set_ylim(0, 1)
    fig.tight_layout()
    return _save(fig, save_path)


__all__ = [
    "class_names_or_generic",
    "colorize",
    "colour_table",
    "crop_to_image",
    "denormalize",
    "level_names",
    "overlay",
    "plot_attention_maps",
    "plot_confusion_matrix",
    "plot_feature_maps",
    "plot_per_class_iou",
    "top_confusions",
    "visualize_batch",
]
