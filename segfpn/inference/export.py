"""Export a trained network to ONNX or TorchScript, with dynamic batch size, height and width.

The exported graph takes a normalised batch ``[B, 3, H, W]`` (float32, ``(pixels - mean) / std`` with the dataset's
mean/std, stored in the file's metadata) of any ``H x W`` and returns the logits ``[B, C, H, W]`` at the input size,
or the label map ``[B, H, W]`` (int64) when exported with ``labels=True``. It is one whole-image forward of the
checkpoint's evaluation protocol, with the protocol's padding inside the graph: ``mmseg`` and ``align_resize`` pad
only to a Swin's patch size and resize the logits to the input, ``pad`` pads to multiples of 32 and crops back. The
protocol's test-time resize works on the 8-bit pixels (cv2, as mmcv) and stays outside the graph:
:func:`prepare_input` does it, :func:`to_image_size` takes the logits back to the image's size. Slide and multi-scale
evaluation are not part of the graph (the metadata says what the checkpoint evaluates with).

Both formats are built by tracing (``torch.jit.script`` fails on timm's backbones). A traced graph keeps what the
trace-time sizes decided, so the network pads and resizes unconditionally while traced (a zero pad, an identity
resize at the trace size); :func:`check_export` verifies the file at a size that is no multiple of 4 or 32.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segfpn.atomic_files import replace_atomically
from segfpn.constants import EXPORT_SUFFIXES
from segfpn.datasets.info import DatasetInfo
from segfpn.datasets.transforms import val_transform
from segfpn.errors import ConfigError
from segfpn.inference.protocols import InferenceConfig, Protocol, eval_input

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = tuple(EXPORT_SUFFIXES)
METADATA_KEY = "segfpn"  # ONNX metadata_props key / TorchScript extra file holding the JSON description
TRACE_SIZE = (64, 96)  # small (fast to trace) and not square, so height and width cannot be mixed up unseen
ONNX_OPSET = 18


class ExportWrapper(nn.Module):
    """``network(x, pad=<protocol is pad>)["p0"]`` (a tensor instead of the dict), or its argmax with
    ``labels=True``."""

    def __init__(self, network: nn.Module, labels: bool = False, protocol: Protocol = "mmseg") -> None:
        super().__init__()
        self.network = network
        self.labels = labels
        self.pad = protocol == "pad"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(x, pad=self.pad)["p0"]
        return logits.argmax(1) if self.labels else logits


def require_export_extra(name: str) -> Any:
    """The module ``name`` of the ``export`` extra, or an error saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ConfigError(
            f"--format onnx needs the {name!r} package, which is not installed: pip install 'segfpn[export]'"
        ) from error


def metadata(dataset_info: DatasetInfo, size_divisor: int, labels: bool, inference: InferenceConfig) -> dict:
    """What a user of the exported file needs besides the graph: classes, palette, normalisation, the protocol."""
    return {
        "input": "normalised float32 [B, 3, H, W] of any H x W, (pixels - mean) / std on the 0..255 scale, resized "
        "as the inference settings say (segfpn.inference.export.prepare_input)",
        "output": "int64 labels [B, H, W]" if labels else "float32 logits [B, C, H, W]",
        "size_divisor": size_divisor,
        "inference": dataclasses.asdict(inference),
        "dataset_info": dataset_info.as_dict(),
    }


@contextmanager
def _quiet() -> Iterator[None]:
    """Without torch.jit's deprecation notices (TorchScript still works in this torch) and the tracer's warnings
    about sizes read as Python numbers (:func:`check_export` verifies that the sizes stay dynamic)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def prepare_input(
    pixels: np.ndarray, dataset_info: DatasetInfo, inference: InferenceConfig | None = None
) -> tuple[torch.Tensor, int, int]:
    """An RGB uint8 image ``[H, W, 3]`` as the exported graph takes it: normalised with the dataset's mean/std and
    resized as the protocol's whole-image inference does (``test_scale``, ``align_resize``'s stretch; on the 8-bit
    pixels); returns the batch of one and the image's ``H, W`` for :func:`to_image_size`."""
    config = inference or InferenceConfig(test_scale=None)
    x = val_transform(dataset_info.mean, dataset_info.std)(image=pixels)["image"].unsqueeze(0)
    return eval_input(x, config, 1.0, dataset_info.mean, dataset_info.std), *pixels.shape[:2]


def to_image_size(logits: np.ndarray, h: int, w: int) -> np.ndarray:
    """Logits ``[B, C, h', w']`` of a resized input back at the image's ``h x w`` (bilinear, as the protocols do;
    logits, not labels: take the argmax after)."""
    if logits.shape[-2:] == (h, w):
        return logits
    resized = F.interpolate(torch.from_numpy(logits), size=(h, w), mode="bilinear", align_corners=False)
    return resized.numpy()


def _example(size: tuple[int, int] = TRACE_SIZE, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0))


def export_network(
    network: nn.Module,
    output: str | Path,
    format: Format,
    dataset_info: DatasetInfo,
    labels: bool = False,
    inference: InferenceConfig | None = None,
) -> Path:
    """Trace ``network`` (eval mode, CPU) into ``output`` in ``format``, following the ``inference`` protocol
    (default: ``mmseg``); returns the path written."""
    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    inference = inference or InferenceConfig()
    wrapper = ExportWrapper(network.eval(), labels, inference.protocol).eval()
    divisor = int(getattr(getattr(network, "model", network), "size_divisor", 32))
    info = json.dumps(metadata(dataset_info, divisor, labels, inference))
    example = _example()

    with torch.no_grad(), _quiet():
        if format == "torchscript":
            buffer = io.BytesIO()
            traced = torch.jit.trace(wrapper, example, check_trace=False)
            torch.jit.save(traced, buffer, _extra_files={f"{METADATA_KEY}.json": info})
            exported = buffer.getvalue()
        else:
            exported = _export_onnx(wrapper, example, labels, info)
    # serialised in memory and written by Python: torch's C++ file writer aborts the process on a full disk.
    # A temp file renamed over ``output``: a failed export leaves no part file
    replace_atomically(output, lambda temp: temp.write_bytes(exported))
    return output


def _export_onnx(wrapper: nn.Module, example: torch.Tensor, labels: bool, info: str) -> bytes:
    """The ONNX file's bytes, with segfpn's metadata."""
    onnx = require_export_extra("onnx")
    buffer = io.BytesIO()

    dims = {0: "batch", 1: "height", 2: "width"} if labels else {0: "batch", 2: "height", 3: "width"}
    # the TorchScript-based exporter: the dynamo one specialised the batch size to the example's in torch 2.14
    torch.onnx.export(
        wrapper,
        (example,),
        buffer,
        input_names=["images"],
        output_names=["labels" if labels else "logits"],
        dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "labels" if labels else "logits": dims},
        opset_version=ONNX_OPSET,
        dynamo=False,
    )
    model = onnx.load_from_string(buffer.getvalue())
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, info
    return model.SerializeToString()


def load_exported(path: str | Path, format: Format, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """``run(images)`` for an exported file: normalised float32 ``[B, 3, H, W]`` -> its output, as numpy; another
    shape or dtype is refused by name."""
    path = Path(path)
    if format == "torchscript":
        with _quiet():
            module = torch.jit.load(str(path), map_location="cpu").eval()

        def run_graph(images: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(images)).numpy()

    else:
        ort = require_export_extra("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run_graph(images: np.ndarray) -> np.ndarray:
            return session.run(None, {name: images})[0]

    def run(images: np.ndarray) -> np.ndarray:
        if not isinstance(images, np.ndarray) or images.dtype != np.float32 or images.ndim != 4 or images.shape[1] != 3:
            found = f"{images.dtype} {list(images.shape)}" if isinstance(images, np.ndarray) else type(images).__name__
            raise ConfigError(
                f"{str(path)!r} takes a normalised float32 batch [B, 3, H, W] (segfpn.inference.export.prepare_input), "
                f"got {found}"
            )
        return run_graph(images)

    return run


def read_metadata(path: str | Path, format: Format) -> dict:
    """The JSON description :func:`export_network` stored in the file."""
    if format == "torchscript":
        files = {f"{METADATA_KEY}.json": ""}
        with _quiet():
            torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        return json.loads(files[f"{METADATA_KEY}.json"])
    onnx = require_export_extra("onnx")

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props[METADATA_KEY])


@dataclass(frozen=True)
class Parity:
    """How far exported logits are from PyTorch's: max abs difference, argmax agreement (fraction of pixels), and
    the disagreeing pixels that are not float ties (PyTorch's top-2 margin there exceeds twice the max difference:
    a real error; 0 when every disagreement is a near-tie that rounding decides)."""

    max_abs_diff: float
    argmax_agreement: float
    untied_disagreements: int


def compare_logits(expected: np.ndarray, found: np.ndarray) -> Parity:
    """:class:`Parity` of logits ``found`` against ``expected`` (both ``[B, C, H, W]``)."""
    if found.shape != expected.shape:
        raise ValueError(f"logits shaped {list(found.shape)}, expected {list(expected.shape)}")
    diff = float(np.abs(found - expected).max())
    differs = found.argmax(1) != expected.argmax(1)
    top2 = np.sort(expected, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    return Parity(diff, float(1.0 - differs.mean()), int((differs & (margin > 2 * diff)).sum()))


CHECK_SIZE = (97, 131)  # no multiple of 4 or 32: every padding and resize of the graph must follow the input


def check_export(
    network: nn.Module,
    path: str | Path,
    format: Format,
    labels: bool = False,
    size: tuple[int, int] = CHECK_SIZE,
    protocol: Protocol = "mmseg",
) -> float:
    """Max abs difference between the exported file and ``network`` on a random batch of 2 at ``size`` (not the
    trace size; for ``labels=True`` the number of differing labels). Raises when the output shape is wrong."""
    images = _example(size, batch=2)
    with torch.no_grad():
        expected = ExportWrapper(network.eval(), labels, protocol)(images).numpy()
    found = load_exported(path, format)(images.numpy())
    if found.shape != expected.shape:
        raise RuntimeError(
            f"exported {format} file {str(path)!r} gives shape {list(found.shape)} for input {list(images.shape)}, "
            f"expected {list(expected.shape)}: the traced graph did not keep the input size dynamic"
        )
    if labels:
        return float((found != expected).sum())
    return compare_logits(expected, found).max_abs_diff
