"""Helpers for users: metrics of one batch, pictures, model summaries."""

from segfpn.metrics import calculate_metrics
from segfpn.utils.visualize import (
    colorize,
    denormalize,
    overlay,
    plot_confusion_matrix,
    plot_feature_maps,
    plot_per_class_iou,
    top_confusions,
    visualize_batch,
)

__all__ = [
    "calculate_metrics",
    "colorize",
    "denormalize",
    "overlay",
    "plot_confusion_matrix",
    "plot_feature_maps",
    "plot_per_class_iou",
    "top_confusions",
    "visualize_batch",
]
