"""``segfpn cost``: parameters, FLOPs and latency of model variants side by side (e.g. attention overhead)."""

from __future__ import annotations

import argparse
from pathlib import Path

from segfpn.commands.summary import format_table, write_csv

PRESETS = {
    "attention": {
        "baseline": {},
        "se": {"attention": "se"},
        "cbam": {"attention": "cbam"},
        "fusion": {"fusion": "attention"},
        "cbam+fusion": {"attention": "cbam", "fusion": "attention"},
    },
    "fpn": {
        "baseline": {},
        "no_lateral": {"lateral_connections": False},
        "no_top_down": {"top_down": False},
        "bilinear": {"upsample_mode": "bilinear"},
        "transposed": {"upsample_mode": "transposed"},
        "channels_64": {"fpn_channels": 64},
        "channels_128": {"fpn_channels": 128},
    },
    "backbones": {
        "convnext_tiny": {"backbone_name": "convnext_tiny"},
        "pvt_v2_b0": {"backbone_name": "pvt_v2_b0"},
        "swin_tiny": {"backbone_name": "swin_tiny_patch4_window7_224"},
    },
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="segfpn cost", description=__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", choices=sorted(PRESETS), default="attention")
    source.add_argument("--experiment", type=Path, help="use the model overrides of an experiment YAML")
    parser.add_argument("--backbone", default="pvt_v2_b0")
    parser.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--rounds", type=int, default=5, help="latency rounds (more: less noise)")
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args(argv)
    import yaml

    from segfpn.analysis.cost import cost_table
    from segfpn.analysis.experiment import Experiment

    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.experiment:
        experiment = Experiment.load(args.experiment)
        variants = {v: experiment.model_overrides(v) for v in experiment.variants}
        base = (yaml.safe_load(experiment.base.read_text()) or {}).get("model", {})
        base = {"backbone_name": base.get("backbone_name", args.backbone)}
    else:
        variants, base = PRESETS[args.preset], {"backbone_name": args.backbone}
    rows = cost_table(
        variants, tuple(args.size), latency=not args.no_latency, device=args.device, base=base, rounds=args.rounds
    )
    print(f"{base['backbone_name']} at {args.size[0]}x{args.size[1]} on {args.device}")
    print(format_table(rows, list(rows[0])))
    if args.csv:
        print(f"wrote {write_csv(rows, args.csv)}")
