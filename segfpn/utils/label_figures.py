"""Pictures of labelled images in a dataset's own colours and class names (a :class:`DatasetInfo`): sample grids
with a class legend (``segfpn browse-data``) and image | ground truth | prediction strips (overlay callback)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image, ImageDraw, ImageFont

from segfpn.datasets.info import DatasetInfo
from segfpn.utils.visualize import blend, colorize, colour_table


def comparison_strip(
    image: np.ndarray, truth: np.ndarray | None, prediction: np.ndarray, info: DatasetInfo, alpha: float = 0.5
) -> np.ndarray:
    """``image | ground truth | prediction`` side by side (``H x 3W``, ``H x 2W`` without ground truth), each
    panel captioned, the labels blended onto the image in the dataset's palette."""
    panels = [("image", image)]
    if truth is not None:
        panels.append(("ground truth", blend(image, truth, info, alpha)))
    panels.append(("prediction", blend(image, prediction, info, alpha)))
    strip = Image.fromarray(np.concatenate([p for _, p in panels], axis=1))
    draw = ImageDraw.Draw(strip)
    height, width = image.shape[:2]
    font = ImageFont.load_default(size=max(10, height // 28))  # readable on large images, small on thumbnails
    for i, (caption, _) in enumerate(panels):
        x, y = i * width + 3, 2
        box = draw.textbbox((x, y), caption, font=font)
        draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(0, 0, 0))
        draw.text((x, y), caption, fill=(255, 255, 255), font=font)
    return np.asarray(strip)


def class_legend(labels: np.ndarray, info: DatasetInfo, max_entries: int = 10) -> list[Patch]:
    """Legend patches of the classes present in ``labels``, most pixels first (at most ``max_entries``, then a
    count of the rest), plus ``ignored`` when ignored pixels are present."""
    ids, counts = np.unique(np.asarray(labels), return_counts=True)
    order = [int(i) for i in ids[np.argsort(-counts, kind="stable")] if i < info.num_classes]
    lut = colour_table(info) / 255.0
    handles = [Patch(color=lut[i], label=info.classes[i]) for i in order[:max_entries]]
    if len(order) > max_entries:
        handles.append(Patch(color="white", label=f"+{len(order) - max_entries} more classes"))
    if info.ignore_index in ids:
        handles.append(Patch(facecolor="black", edgecolor="grey", label=f"ignored ({info.ignore_index})"))
    return handles


def plot_sample_grid(
    samples: Sequence[tuple[np.ndarray, np.ndarray, str]], info: DatasetInfo, title: str, per_row: int = 2
) -> Figure:
    """``image | mask`` pairs (RGB uint8, train ids, caption), ``per_row`` pairs per row, each mask with a legend
    of its classes (names and colours from ``info``)."""
    rows = -(-len(samples) // per_row)
    fig, axes = plt.subplots(
        rows,
        3 * per_row,
        figsize=(7.4 * per_row, 2.9 * rows + 0.7),
        squeeze=False,
        gridspec_kw={"wspace": 0.04, "hspace": 0.2, "width_ratios": [1, 1, 0.75] * per_row},
    )
    for ax in axes.flat:
        ax.axis("off")
    for k, (image, labels, caption) in enumerate(samples):
        ax_image, ax_mask, ax_legend = axes[k // per_row, 3 * (k % per_row) : 3 * (k % per_row) + 3]
        ax_image.imshow(image)
        ax_image.set_title(caption, fontsize=8)
        ax_mask.imshow(colorize(labels, info), interpolation="nearest")
        ax_mask.set_title("mask", fontsize=8)
        ax_legend.legend(
            handles=class_legend(labels, info), loc="center left", fontsize=7, frameon=False, handlelength=1.0
        )
    fig.suptitle(title)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.8 / fig.get_figheight(), bottom=0.02)
    return fig
