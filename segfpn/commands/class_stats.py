"""``segfpn class-stats``: per-class pixel and image counts of a split, as CSV and a bar chart, with the
dataset's class names. The data is given by a training config's ``data:`` section (any dataset the DataModule
reads) and/or ``--data_root`` (the dataset folder)."""

from __future__ import annotations

import argparse
import inspect
import os
from pathlib import Path

from segfpn.commands.arguments import non_negative_int
from segfpn.errors import ConfigError
from segfpn.packaged_configs import resolve_config
from segfpn.text_files import load_yaml_file


def data_settings(config: Path | None, data_root: Path | None) -> dict:
    """DataModule arguments: the ``data:`` section of ``config`` (if given), ``data_root`` overriding its folder."""
    settings: dict = {}
    if config is not None:
        config = Path(resolve_config(str(config)))  # `--config demo`: the packaged config too
        if not config.is_file():
            raise ConfigError(f"--config {str(config)!r} is not a file; expected a training config (YAML)")
        loaded = load_yaml_file(config, "--config") or {}
        data = loaded.get("data") if isinstance(loaded, dict) else None
        if not isinstance(data, dict):
            raise ConfigError(f"--config {str(config)!r}: expected a 'data:' section (a mapping), found {data!r}")
        settings = dict(data.get("init_args", data))
    if data_root is not None:
        settings["data_root"] = str(data_root)
    from segfpn.datasets.datamodule import SegmentationDataModule

    accepted = inspect.signature(SegmentationDataModule).parameters
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        raise ConfigError(
            f"--config {str(config)!r}: unknown data options {unknown}; expected some of {sorted(accepted)}"
        )
    if "data_root" not in settings and not settings.get("embedded"):
        raise ConfigError(
            "class-stats needs the data: --data_root, or --config with data_root (or embedded: true) in its data: "
            "section; found neither"
        )
    return settings


def build_parser() -> argparse.ArgumentParser:
    """The options of ``segfpn class-stats`` (built without importing torch: ``--help`` stays fast)."""
    parser = argparse.ArgumentParser(prog="segfpn class-stats", description=__doc__)
    parser.add_argument("--config", type=Path, help="a training config; its data: section chooses the dataset")
    parser.add_argument(
        "--data_root",
        "--data-root",
        type=Path,
        metavar="DIR",
        help="the dataset folder (overrides the config's data_root)",
    )
    parser.add_argument(
        "--split",
        default="train",
        choices=["train", "val", "training", "validation"],
        help="the dataset's training or validation split (its own folder name)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/class_stats"), help="output folder (default: runs/class_stats)"
    )
    parser.add_argument(
        "--workers",
        type=non_negative_int,
        default=os.cpu_count() or 1,
        help="processes reading the annotations (default: one per CPU; 0: in this process)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from segfpn.datasets.class_stats import plot_class_distribution, write_class_stats_csv
    from segfpn.datasets.datamodule import SegmentationDataModule

    data = SegmentationDataModule(**{**data_settings(args.config, args.data_root), "num_workers": args.workers})
    data.prepare_data()
    split = data.splits["train" if args.split in ("training", "train") else "val"]
    stats = data.class_stats(split)
    info = data.dataset_info
    csv_path = write_class_stats_csv(stats, args.out / f"class_stats_{split}.csv", info.classes)
    png_path = plot_class_distribution(stats, args.out / f"class_distribution_{split}.png", info.classes, info.name)
    present = int((stats.pixels > 0).sum())
    print(
        f"{info.name}: {len(stats.presence)} annotations, {present} of {info.num_classes} classes present, "
        f"{stats.ignored_pixels} ignored pixels; wrote {csv_path} and {png_path}"
    )
