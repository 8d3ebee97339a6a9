"""``segfpn browse-data --config CONFIG``: a grid of samples as the model sees them (the DataModule's own train
augmentation for ``--split train``), image | mask with a legend of the classes present, written to a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from segfpn.commands.arguments import positive_int
from segfpn.errors import ConfigError
from segfpn.packaged_configs import resolve_config
from segfpn.text_files import load_yaml_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SPLITS = {"train": "fit", "val": "validate", "test": "test"}


def data_section(configs: list[Path]) -> tuple[str | None, dict[str, Any]]:
    """The DataModule class path (``None``: the CLI's default) and init arguments of LightningCLI config files
    (later files win)."""
    class_path, init_args = None, {}
    for path in configs:
        try:
            data = (load_yaml_file(path, "--config") or {}).get("data") or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"--config {str(path)!r}: not a readable YAML file ({error})") from error
        if not isinstance(data, dict):
            raise ConfigError(f"--config {str(path)!r}: 'data' must be a mapping, found {type(data).__name__}")
        class_path = data.get("class_path", class_path)
        init_args.update(data.get("init_args", {k: v for k, v in data.items() if k != "class_path"}))
    return class_path, init_args


def build_datamodule(configs: list[Path], overrides: list[str]) -> Any:
    """The DataModule of the config files, with ``--data.KEY=VALUE`` overrides, parsed as LightningCLI does."""
    from jsonargparse import ArgumentParser

    from segfpn.datasets.datamodule import datamodule_class

    class_path, init_args = data_section(configs)
    cls = datamodule_class(class_path)
    parser = ArgumentParser(prog="segfpn browse-data", exit_on_error=False)
    parser.add_class_arguments(cls, "data", fail_untyped=False)
    parser.set_defaults({f"data.{k}": v for k, v in init_args.items()})
    try:
        config = parser.parse_args(overrides)
    except Exception as error:  # noqa: BLE001 - jsonargparse's messages name the option
        raise ConfigError(f"data options: {error}") from error
    return parser.instantiate_classes(config).data


def pick_indices(length: int, n: int, seed: int) -> list[int]:
    """``n`` distinct sample indices drawn with ``seed`` (all of them when the split is smaller)."""
    import torch

    return torch.randperm(length, generator=torch.Generator().manual_seed(seed))[:n].tolist()


def sample_grid(datamodule: Any, split: str, n: int, seed: int) -> Figure:
    """The grid figure of ``n`` samples of ``split`` as the DataModule delivers them (seeded augmentation)."""
    import numpy as np

    from segfpn.datasets.stream import stream_seed
    from segfpn.utils.label_figures import plot_sample_grid
    from segfpn.utils.visualize import denormalize

    datamodule.prepare_data()
    datamodule.setup(SPLITS[split])
    dataset = datamodule.datasets[split]
    info = datamodule.dataset_info
    samples = []
    for index in pick_indices(len(dataset), n, seed):
        image, mask = dataset[(index, stream_seed(seed, index))]
        name = Path(dataset.pairs[index][0]).name if hasattr(dataset, "pairs") else str(index)
        caption = f"{name} ({image.shape[-1]}x{image.shape[-2]} px)"
        samples.append((denormalize(image, info), mask.numpy().astype(np.uint8), caption))
    augmented = "augmented " if split == "train" else ""
    title = f"{info.name} {split}: {len(samples)} {augmented}samples (image | mask, classes by pixel count)"
    return plot_sample_grid(samples, info, title)


def build_parser() -> argparse.ArgumentParser:
    """The options of ``segfpn browse-data`` (``--data.KEY=VALUE`` overrides are passed on, not declared here)."""
    parser = argparse.ArgumentParser(
        prog="segfpn browse-data",
        description=__doc__,
        epilog="--data.KEY=VALUE options (e.g. --data.data_root=DIR) override the config's data: section.",
    )
    parser.add_argument(
        "--config", "-c", type=Path, action="append", required=True, help="LightningCLI YAML (repeat: later wins)"
    )
    parser.add_argument(
        "--split", choices=list(SPLITS), default="train", help="split to draw from (train: with its augmentation)"
    )
    parser.add_argument("--n", type=positive_int, default=8, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="draws the samples and their augmentation")
    parser.add_argument("--out", type=Path, help="PNG to write (default: runs/browse_data/<split>.png)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    unknown = [a for a in overrides if not a.startswith("--data.")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (only --data.KEY=VALUE options are passed on)")
    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    import matplotlib.pyplot as plt

    configs = [Path(resolve_config(str(c))) for c in args.config]  # `--config demo`: the packaged config too
    fig = sample_grid(build_datamodule(configs, overrides), args.split, args.n, args.seed)
    out = args.out or Path("runs/browse_data") / f"{args.split}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")
