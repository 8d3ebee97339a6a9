"""``segfpn summary``: parameters, GFLOPs and backbone feature statistics of each backbone."""

from __future__ import annotations

import argparse
from pathlib import Path

from segfpn.commands.arguments import add_input_size, positive_int


def build_parser() -> argparse.ArgumentParser:
    """The options of ``segfpn summary`` (built without importing torch: ``--help`` stays fast)."""
    parser = argparse.ArgumentParser(prog="segfpn summary", description=__doc__)
    parser.add_argument("--backbones", nargs="+", help="timm backbone names (default: the tested backbones)")
    add_input_size(parser, "--size")
    parser.add_argument(
        "--num_classes",
        "--num-classes",
        type=positive_int,
        help="classifier width (default: the demo data's classes)",
    )
    parser.add_argument("--features", action="store_true", help="also print per-stage feature statistics")
    parser.add_argument("--latency", action="store_true", help="also time one forward pass")
    parser.add_argument("--csv", type=Path, help="write the table to this CSV file")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    import torch

    from segfpn.models import TESTED_BACKBONES, SegmentationModel
    from segfpn.tables import format_table, write_csv
    from segfpn.training.experiment import data_num_classes
    from segfpn.utils.model_summary import backbone_feature_stats, summarize

    num_classes = args.num_classes or data_num_classes(None, {"embedded": True})
    rows, feature_rows = [], []
    for name in args.backbones or TESTED_BACKBONES:
        torch.manual_seed(0)
        model = SegmentationModel(num_classes=num_classes, backbone_name=name).eval()
        rows.append(summarize(model, tuple(args.size), name, latency=args.latency).as_row())
        if args.features:
            x = torch.randn(1, 3, *args.size)
            feature_rows += [{"backbone": name, **s} for s in backbone_feature_stats(model, x)]
    for r in rows:
        for k in ("params_backbone", "params_neck", "params_head", "params_total"):
            r[k.replace("params", "M")] = r.pop(k) / 1e6
    print(format_table(rows, [c for c in rows[0] if rows[0][c] is not None]))
    if feature_rows:
        print()
        print(format_table(feature_rows, ["backbone", "stage", "shape", "stride", "mean", "std"]))
    if args.csv:
        print(f"wrote {write_csv(rows, args.csv)}")
