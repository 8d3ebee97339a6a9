"""Inference without Lightning: evaluation protocols, the checkpoint reader, the ``Segmenter`` predictor and
ONNX/TorchScript export. Nothing here imports Lightning (``tests/test_imports.py`` checks it)."""

from segfpn.inference.protocols import (
    PROTOCOLS,
    InferenceConfig,
    Protocol,
    Stats,
    eval_input,
    from_pixels,
    inference_config,
    predict_logits,
    slide_logits,
    to_pixels,
)

__all__ = [
    "PROTOCOLS",
    "InferenceConfig",
    "Protocol",
    "Stats",
    "eval_input",
    "from_pixels",
    "inference_config",
    "predict_logits",
    "slide_logits",
    "to_pixels",
]
