"""Write a converted checkpoint as a segfpn (Lightning) checkpoint plus the YAML config that evaluates it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning
import yaml

from segfpn.datasets.registry import get_layout, layout_with_classes
from segfpn.models.from_mmseg import Conversion
from segfpn.training.checkpoint_io import atomic_save

# The evaluation protocol of the code behind each layout's published numbers.
PROTOCOLS: dict[str, str] = {"mmseg-0.x": "mmseg", "mmseg-1.x": "mmseg", "mmseg (bare state dict)": "mmseg"}
PROTOCOLS["pvtv2-seg"] = "align_resize"


def save_converted(conversion: Conversion, ckpt_path: str | Path, source: str | Path = "") -> tuple[Path, Path]:
    """Write ``ckpt_path`` (loadable by ``segfpn validate --ckpt_path`` and ``SegmentationModule.load_from_checkpoint``)
    and a YAML config beside it (same name, ``.yaml``); returns both paths."""
    from segfpn.training.module import SegmentationModule

    ckpt_path = Path(ckpt_path)
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    module = SegmentationModule(**conversion.model_args)
    result = module.model.load_state_dict(conversion.state_dict, strict=False)
    if sorted(result.missing_keys) != sorted(conversion.unfilled) or result.unexpected_keys:
        raise RuntimeError(f"conversion and model disagree: {result}")
    dataset = layout_with_classes(conversion.model_args.get("num_classes", 0))
    hyper_parameters: dict[str, Any] = {**conversion.model_args, "inference": evaluation_settings(conversion)}
    if dataset is not None:  # what the predictor, export and analyze read: the data's classes and statistics
        hyper_parameters["dataset_info"] = get_layout(dataset).info.as_dict()
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": hyper_parameters,
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
        "segfpn_conversion": {
            "source": str(source),
            "layout": conversion.layout,
            "classes": conversion.classes,
            "notes": conversion.notes,
            "unmapped": conversion.unmapped,
            "unfilled": conversion.unfilled,
        },
    }
    atomic_save(checkpoint, ckpt_path)
    config_path = ckpt_path.with_suffix(".yaml")
    config_path.write_text(_config_yaml(conversion, ckpt_path, source))
    return ckpt_path, config_path


def validate_command(ckpt_path: Path, config_path: Path) -> str:
    """The command that evaluates the converted checkpoint on its dataset's validation split."""
    return f"segfpn validate --config {config_path} --ckpt_path {ckpt_path} --data.data_root /path/to/dataset"


def evaluation_settings(conversion: Conversion) -> dict[str, Any]:
    """The reference's single-scale evaluation (``InferenceConfig`` fields): whole image at the dataset's recipe
    scale, with the protocol of the code the checkpoint comes from."""
    dataset = layout_with_classes(conversion.model_args.get("num_classes", 0))
    test_scale = list(get_layout(dataset).test_scale) if dataset else [2048, 512]
    inference: dict[str, Any] = {"mode": "whole", "test_scale": test_scale, "scales": [1.0], "flip": False}
    protocol = PROTOCOLS.get(conversion.layout)
    if protocol:
        inference["protocol"] = protocol
    return inference


def _config_yaml(conversion: Conversion, ckpt_path: Path, source: str | Path) -> str:
    model: dict[str, Any] = {k: v for k, v in conversion.model_args.items() if k != "num_classes"}
    model["pretrained"] = False
    dataset = layout_with_classes(conversion.model_args.get("num_classes", 0))
    inference = evaluation_settings(conversion)
    protocol = inference.get("protocol")
    model["inference"] = inference
    config = {
        "trainer": {"default_root_dir": f"runs/converted/{ckpt_path.stem}"},
        "model": model,
        "data": {"val_batch_size": 1, **({"dataset": dataset} if dataset else {})},
    }
    header = [
        f"# Converted by `segfpn convert` from {source or 'a checkpoint'} ({conversion.layout}).",
        f"# Reference evaluation protocol: {protocol or 'unknown'}; the model's weights are in {ckpt_path.name}.",
        f"#   {validate_command(ckpt_path, ckpt_path.with_suffix('.yaml'))}",
        "# Multi-scale + flip as mmseg's aug_test: --model.inference.scales=[0.5,0.75,1.0,1.25,1.5,1.75] "
        "--model.inference.flip=true",
    ]
    if dataset is None:
        header.append(
            f"# num_classes={conversion.model_args.get('num_classes')}: no registered dataset has this many classes; "
            "use data.dataset=folder with a classes file of that length"
        )
    return "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False)
