"""Use a trained model outside the training loop: ``Segmenter.from_checkpoint(path).predict(image)``.

The predictor runs what ``segfpn validate`` / ``segfpn predict`` run: the dataset's normalisation
(:func:`~segfpn.datasets.transforms.val_transform` with the checkpoint's ``dataset_info`` mean/std) and
:func:`~segfpn.inference.predict_logits` under the checkpoint's :class:`~segfpn.inference.InferenceConfig`. It builds
the bare :class:`~segfpn.models.SegmentationModel` from the checkpoint's hyper-parameters, so Lightning is not needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

from segfpn.datasets.base import load_image, rgb8
from segfpn.datasets.info import DatasetInfo
from segfpn.datasets.transforms import val_transform
from segfpn.errors import CheckpointError, ConfigError, DataError
from segfpn.inference.checkpoint import STATE_PREFIX, load_segfpn_checkpoint
from segfpn.inference.protocols import InferenceConfig, inference_config, predict_logits
from segfpn.models.segmentation_model import SegmentationModel, model_arguments

ImageInput = Union[str, Path, Image.Image, np.ndarray]


class TrainedNetwork(nn.Module):
    """A checkpoint's SegmentationModel in the memory format it was trained with: ``net(x, pad)`` ->
    ``{"p0": logits, ...}``."""

    def __init__(self, model: SegmentationModel, channels_last: bool = False) -> None:
        super().__init__()
        self.model = model.use_channels_last(channels_last) if channels_last else model
        self.num_classes = model.num_classes

    @property
    def channels_last(self) -> bool:
        return self.model.channels_last

    def forward(self, x: torch.Tensor, pad: bool = True) -> dict[str, torch.Tensor]:
        return self.model(x, pad=pad)


@dataclass
class LoadedCheckpoint:
    """What a segfpn checkpoint holds for inference: the network (eval mode, CPU), its evaluation settings, the
    dataset description, the raw hyper-parameters and the data settings it was trained with."""

    network: TrainedNetwork
    inference: InferenceConfig
    dataset_info: DatasetInfo
    hparams: dict[str, Any]
    data_hparams: dict[str, Any]


def load_trained_network(path: str | Path, option: str = "checkpoint") -> LoadedCheckpoint:
    """Build the network of a segfpn checkpoint from its hyper-parameters and load its weights (no Lightning).

    Raises :class:`CheckpointError` for a missing/damaged file or a checkpoint segfpn did not write."""
    ckpt = load_segfpn_checkpoint(path, option)
    hparams, state = ckpt["hyper_parameters"], ckpt["state_dict"]
    weights = {k.removeprefix(STATE_PREFIX): v for k, v in state.items() if k.startswith(STATE_PREFIX)}
    # the checkpoint's weights replace the pretrained ones
    model = SegmentationModel(**{**model_arguments(hparams), "pretrained": False, "pretrained_path": None})
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{option} {str(path)!r}: its weights do not fit the network its hyper-parameters describe "
            f"({len(missing)} missing, e.g. {missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})"
        )
    dataset_info = DatasetInfo.from_hparams(hparams.get("dataset_info"), model.num_classes)
    network = TrainedNetwork(model, bool(hparams.get("channels_last", False))).eval()
    data_hparams = dict(ckpt.get("datamodule_hyper_parameters") or {})
    return LoadedCheckpoint(network, inference_config(hparams.get("inference")), dataset_info, hparams, data_hparams)


class Segmenter:
    """A trained segmentation model with its evaluation protocol, for images from files, PIL or numpy.

    ``predict(image)`` returns the label map (train ids ``[H, W]``, uint8 for up to 256 classes, else int64) at
    the image's own size, exactly as ``segfpn predict`` computes it; a list of images gives a list of maps.
    """

    def __init__(
        self,
        network: TrainedNetwork,
        inference: InferenceConfig | None = None,
        dataset_info: DatasetInfo | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.network = network.eval().to(self.device)
        self.inference = inference or InferenceConfig()
        self.dataset_info = dataset_info or DatasetInfo.generic(network.num_classes)
        if self.dataset_info.num_classes != network.num_classes:
            raise ConfigError(
                f"dataset_info {self.dataset_info.name!r} has {self.dataset_info.num_classes} classes, "
                f"the network predicts {network.num_classes}"
            )
        self.transform = val_transform(self.dataset_info.mean, self.dataset_info.std)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", inference: InferenceConfig | None = None
    ) -> Segmenter:
        """Load a ``.ckpt`` written by ``segfpn fit`` (or ``segfpn convert``); ``inference`` overrides the
        checkpoint's evaluation settings."""
        loaded = load_trained_network(path)
        return cls(loaded.network, inference or loaded.inference, loaded.dataset_info, device)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.dataset_info.classes

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return self.dataset_info.palette

    @property
    def num_classes(self) -> int:
        return self.dataset_info.num_classes

    def colorize(self, labels: np.ndarray | torch.Tensor) -> np.ndarray:
        """Label map ``[H, W]`` -> RGB uint8 ``[H, W, 3]`` in the dataset's palette (ignored / unknown ids black)."""
        from segfpn.utils.visualize import colorize  # matplotlib: only when colours are asked for

        return colorize(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels), self.dataset_info)

    def to_array(self, image: ImageInput) -> np.ndarray:
        """An input image as RGB uint8 ``[H, W, 3]`` (paths are read as ``segfpn predict`` reads them)."""
        if isinstance(image, (str, Path)):
            path = Path(image)
            if not path.is_file():
                raise DataError(f"image {str(path)!r} does not exist" + (" (a folder)" if path.is_dir() else ""))
            return load_image(path)
        if isinstance(image, Image.Image):
            return rgb8(image, "<PIL image>")  # 16-bit scaled as files are
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ConfigError(
                    f"numpy images must be RGB uint8 [H, W, 3], got {image.dtype} {list(image.shape)}"
                    + (" (convert with .astype(np.uint8) from 0..255 values)" if image.dtype != np.uint8 else "")
                )
            return image
        raise TypeError(
            f"cannot predict a {type(image).__name__}: expected a file path (str/Path), a PIL image or a numpy "
            "RGB uint8 array [H, W, 3], or a list of these"
        )

    def logits(self, image: ImageInput) -> torch.Tensor:
        """Logits ``[C, H, W]`` (float32, on the predictor's device) of one image at its own size."""
        x = self.transform(image=self.to_array(image))["image"].unsqueeze(0).to(self.device)
        info = self.dataset_info
        try:
            return predict_logits(self.network, x, self.inference, self.num_classes, info.mean, info.std)[0].float()
        except DataError as err:
            if isinstance(image, (str, Path)):
                raise DataError(f"image {str(image)!r}: {err}") from err
            raise

    def predict(
        self, images: ImageInput | Sequence[ImageInput], return_probs: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray] | list[Any]:
        """Label map ``[H, W]`` of an image (or a list of maps for a list of images); with ``return_probs`` also
        the class probabilities ``[C, H, W]`` (float32, softmax of the logits) as ``(labels, probs)``.

        Images are predicted one at a time, as ``segfpn validate`` does (each at its own size)."""
        if isinstance(images, (list, tuple)):
            return [self.predict(image, return_probs) for image in images]
        logits = self.logits(images)
        dtype = torch.uint8 if self.num_classes <= 256 else torch.int64
        labels = logits.argmax(0).to(dtype).cpu().numpy()
        if not return_probs:
            return labels
        return labels, logits.softmax(0).cpu().numpy()
