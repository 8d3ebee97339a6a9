"""``segfpn plot-curves RUN_DIR``: training curves (loss, learning rate, validation mIoU/aAcc/mAcc vs step) of a
run from its own logs (CSV, TensorBoard or W&B offline files), as PNGs in ``RUN_DIR/figures``."""

from __future__ import annotations

import argparse
from pathlib import Path

from segfpn.analysis.curves import READERS, plot_curves, read_curves


def build_parser() -> argparse.ArgumentParser:
    """The options of ``segfpn plot-curves``."""
    parser = argparse.ArgumentParser(prog="segfpn plot-curves", description=__doc__)
    parser.add_argument("run_dir", type=Path, help="a run folder written by `segfpn fit`")
    parser.add_argument(
        "--source", default="auto", choices=["auto", *READERS], help="logs to read (auto: csv, tensorboard, wandb)"
    )
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/figures)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    source, curves = read_curves(args.run_dir, args.source)
    written = plot_curves(curves, args.out or args.run_dir / "figures", args.run_dir.name, source)
    print(f"read {source} logs of {args.run_dir}; wrote:")
    for path in written:
        print(f"  {path}")
