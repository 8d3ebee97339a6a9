"""Load a trained SegmentationModule and the data it was trained on from a Lightning checkpoint."""

from __future__ import annotations

import inspect
from pathlib import Path

from segfpn.checkpoint_file import load_segfpn_checkpoint
from segfpn.datasets.datamodule import SegmentationDataModule
from segfpn.errors import ConfigError
from segfpn.module import SegmentationModule


def load_trained(
    ckpt: str | Path, data_root: str | None = None, device: str = "cpu"
) -> tuple[SegmentationModule, SegmentationDataModule]:
    """The module (eval mode, on ``device``) and a DataModule with the checkpoint's data settings; the module's
    ``dataset_info`` (saved in the checkpoint) is the class metadata, and the data must have the same classes."""
    ckpt = Path(ckpt)
    saved = load_segfpn_checkpoint(ckpt, lightning=True).get("datamodule_hyper_parameters", {})
    module = SegmentationModule.load_from_checkpoint(ckpt, map_location=device, weights_only=True).eval()
    accepted = inspect.signature(SegmentationDataModule).parameters
    settings = {k: v for k, v in saved.items() if k in accepted}
    settings.update(num_workers=0, **({"data_root": data_root} if data_root else {}))
    data = SegmentationDataModule(**settings)
    trained, found = module.dataset_info, data.dataset_info
    if (trained.num_classes, trained.ignore_index) != (found.num_classes, found.ignore_index):
        raise ConfigError(
            f"{str(ckpt)!r} was trained on {trained.name!r} ({trained.num_classes} classes, ignore index "
            f"{trained.ignore_index}), but its data settings give {found.name!r} ({found.num_classes} classes, "
            f"ignore index {found.ignore_index})"
        )
    return module, data
