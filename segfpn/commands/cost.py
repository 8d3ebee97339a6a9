"""``segfpn cost``: parameters, FLOPs and latency of the model variants of an experiment side by side (e.g. the
attention overhead). The variants are those of ``experiments/<name>.yaml``, built as ``segfpn experiment`` trains
them (the base config's model options, then each variant's overrides)."""

from __future__ import annotations

import argparse
from pathlib import Path

from segfpn.commands.arguments import add_input_size, positive_int
from segfpn.errors import ConfigError
from segfpn.packaged_configs import resolve_config
from segfpn.tables import format_table, write_csv

EXPERIMENTS = Path("experiments")


def experiment_file(name_or_path: str) -> Path:
    """An experiment YAML given as a path, or by name (``attention`` -> ``experiments/attention.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    named = Path(resolve_config(str(EXPERIMENTS / f"{name_or_path}.yaml"), "experiment"))  # the wheel's too
    if named.is_file():
        return named
    known = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))
    raise ConfigError(
        f"segfpn cost: {name_or_path!r} is neither an experiment file nor one of {known} in {EXPERIMENTS}/"
    )


def build_parser() -> argparse.ArgumentParser:
    """The options of ``segfpn cost`` (``--model.NAME=VALUE`` overrides are passed on, not declared here)."""
    parser = argparse.ArgumentParser(
        prog="segfpn cost",
        description=__doc__,
        epilog="--model.NAME=VALUE options override every variant's model options.",
    )
    parser.add_argument(
        "experiment",
        nargs="?",
        default="attention",
        help="experiment YAML, or its name in experiments/ (attention, fpn_ablation, backbones...)",
    )
    parser.add_argument("--backbone", help="replace the experiment's backbone (default: its base config's)")
    add_input_size(parser, "--size")
    parser.add_argument("--device", default="cpu", help="device to build and time the models on (cpu, cuda...)")
    parser.add_argument("--no_latency", "--no-latency", action="store_true", help="skip timing the forward pass")
    parser.add_argument("--rounds", type=positive_int, default=5, help="latency rounds (more: less noise)")
    parser.add_argument("--csv", type=Path, help="also write the table to this CSV file")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    from segfpn.analysis.cost import cost_table
    from segfpn.training.experiment import Experiment

    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    unknown = [a for a in extra if not a.startswith("--model.")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (only --model.NAME=VALUE overrides pass on)")
    experiment = Experiment.load(experiment_file(args.experiment))
    if args.backbone:
        extra.append(f"--model.backbone_name={args.backbone}")
    variants = {v: experiment.model_options(v, extra) for v in experiment.variants}
    rows = cost_table(variants, tuple(args.size), latency=not args.no_latency, device=args.device, rounds=args.rounds)
    print(f"{experiment.name} (base {experiment.base}) at {args.size[0]}x{args.size[1]} on {args.device}")
    print(format_table(rows, list(rows[0])))
    if args.csv:
        print(f"wrote {write_csv(rows, args.csv)}")
