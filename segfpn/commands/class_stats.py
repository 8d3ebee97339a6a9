"""``segfpn class-stats``: per-class pixel and image counts of a split, as CSV and a bar chart."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="segfpn class-stats", description=__doc__)
    parser.add_argument("--data-root", required=True, type=Path, help="the ADEChallengeData2016 folder")
    parser.add_argument("--split", default="training")
    parser.add_argument("--out", type=Path, default=Path("runs/class_stats"))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    from segfpn.datasets.ade20k import list_pairs, resolve_split
    from segfpn.datasets.class_stats import compute_class_stats, plot_class_distribution, write_class_stats_csv

    split = resolve_split(args.split)
    annotations = [ann for _, ann in list_pairs(args.data_root, split)]
    stats = compute_class_stats(annotations, num_workers=args.workers)
    csv_path = write_class_stats_csv(stats, args.out / f"class_stats_{split}.csv")
    png_path = plot_class_distribution(stats, args.out / f"class_distribution_{split}.png")
    present = int((stats.pixels > 0).sum())
    print(
        f"{len(annotations)} annotations, {present} classes present, "
        f"{stats.ignored_pixels} ignored pixels; wrote {csv_path} and {png_path}"
    )
