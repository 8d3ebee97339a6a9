"""Exported models vs PyTorch: logit parity on the three real ADE20K samples and CPU latency, per backbone x format.

    python -m benchmarks.run --only export           # full-size images, about 5 min
    python -m benchmarks.export_parity               # the same, table printed only

Each backbone is built with the published config's options (pretrained=False, seeded random weights,
channels_last as trained), exported with :func:`segfpn.inference.export.export_network` (the ``mmseg`` protocol:
the graph
pads a Swin to its patch size itself), and run on each sample at its own size (512x683, 364x500, 300x400: none a
multiple of 32), against PyTorch's ``network(x, pad=False)``. Latency: the largest
sample, PyTorch (``network(x, pad=False)``, no_grad) and the exported file timed in alternating rounds in one
process, with onnxruntime given torch's thread count; ``latency_ratio`` = exported / PyTorch (< 1: faster).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import interleaved
from segfpn.datasets.base import load_image
from segfpn.datasets.info import DatasetInfo
from segfpn.datasets.transforms import eval_size, resize_image
from segfpn.inference.export import FORMATS, compare_logits, export_network, load_exported, prepare_input
from segfpn.inference.predictor import TrainedNetwork
from segfpn.models.segmentation_model import SegmentationModel

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "ade20k_samples" / "ADEChallengeData2016"
# the published configs' network options (configs/*_fpn_ade20k.yaml)
BACKBONES = {
    "convnext_tiny": {"img_size": 512},
    "pvt_v2_b0": {"img_size": 512, "drop_path_rate": 0.1},
    "mmseg_swin_tiny_patch4_window7_224": {"img_size": 512},
    "resnet50c": {},  # mmseg's R-50 as `segfpn convert` gives it
}


def sample_inputs(ratio: float, info: DatasetInfo) -> list[tuple[torch.Tensor, int, int]]:
    paths = sorted((SAMPLES / "images" / "validation").glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no real ADE20K samples in {SAMPLES / 'images' / 'validation'}")
    inputs = []
    for path in paths:
        pixels = load_image(path)
        if ratio != 1.0:
            pixels = resize_image(pixels, eval_size(*pixels.shape[:2], None, ratio))
        inputs.append(prepare_input(pixels, info))
    return inputs


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    info = DatasetInfo.generic(150)
    inputs = sample_inputs(0.5 if quick else 1.0, info)
    largest = max(inputs, key=lambda item: item[0].numel())[0]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for backbone, options in BACKBONES.items():
            torch.manual_seed(0)
            model = SegmentationModel(num_classes=info.num_classes, backbone_name=backbone, **options)
            network = TrainedNetwork(model, channels_last=True).eval()
            with torch.no_grad():
                references = [network(x, pad=False)["p0"].numpy() for x, _, _ in inputs]
            runs, sizes = {}, {}
            for fmt in FORMATS:
                path = export_network(network, Path(folder) / f"{backbone}.{fmt}", fmt, info)
                sizes[fmt] = path.stat().st_size / 2**20
                runs[fmt] = load_exported(path, fmt, threads=torch.get_num_threads())
            batch = largest.numpy()

            def pytorch() -> np.ndarray:
                with torch.no_grad():
                    return network(largest, pad=False)["p0"].numpy()

            times = interleaved(
                {"pytorch": pytorch, **{fmt: (lambda r=r: r(batch)) for fmt, r in runs.items()}},
                rounds=3 if quick else 5,
            )
            for fmt, run_exported in runs.items():
                results = [compare_logits(ref, run_exported(x.numpy())) for ref, (x, _, _) in zip(references, inputs)]
                pixels = [ref.shape[-2] * ref.shape[-1] for ref in references]
                rows.append(
                    {
                        "backbone": backbone,
                        "format": fmt,
                        "images": " ".join(f"{x.shape[-2]}x{x.shape[-1]}" for x, _, _ in inputs),
                        "max_abs_diff": max(r.max_abs_diff for r in results),
                        "argmax_agreement": float(np.average([r.argmax_agreement for r in results], weights=pixels)),
                        "untied_disagreements": sum(r.untied_disagreements for r in results),
                        "file_MB": round(sizes[fmt], 1),
                        "latency_size": "x".join(map(str, largest.shape[-2:])),
                        "pytorch_s": times["pytorch"],
                        "exported_s": times[fmt],
                        "latency_ratio": times[fmt] / times["pytorch"],
                    }
                )
            print(f"{backbone}: done", flush=True)
    return rows


if __name__ == "__main__":
    from segfpn.tables import format_table

    table = run()
    print(format_table(table, list(table[0])))
