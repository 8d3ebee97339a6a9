"""The Lightning callbacks ``segfpn fit|validate|test|predict`` attach: checkpoints, gradients, results, media,
overlays, evaluation files and pre-emption."""

from segfpn.training.callbacks.checkpoints import BestAndLastCheckpoint
from segfpn.training.callbacks.evaluation_files import EvaluationFiles
from segfpn.training.callbacks.gradients import GradientMonitor, gradient_stats
from segfpn.training.callbacks.overlays import OverlayWriter
from segfpn.training.callbacks.predictions import PredictionWriter
from segfpn.training.callbacks.preemption import GracefulStop
from segfpn.training.callbacks.results import ResultsWriter
from segfpn.training.callbacks.wandb_media import WandbMedia, overlay_masks

__all__ = [
    "BestAndLastCheckpoint",
    "EvaluationFiles",
    "GracefulStop",
    "GradientMonitor",
    "OverlayWriter",
    "PredictionWriter",
    "ResultsWriter",
    "WandbMedia",
    "gradient_stats",
    "overlay_masks",
]
