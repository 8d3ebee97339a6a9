"""``segfpn experiment FILE``: train and validate every variant of an experiment, then write its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from segfpn.commands.arguments import add_input_size
from segfpn.packaged_configs import resolve_config


def build_parser() -> argparse.ArgumentParser:
    """The options of ``segfpn experiment`` (other options, e.g. ``--trainer.max_steps=...``, go to every
    variant's ``segfpn fit``)."""
    parser = argparse.ArgumentParser(
        prog="segfpn experiment",
        description=__doc__,
        epilog="Other options (e.g. --trainer.max_steps=100, --data.data_root=DIR) are passed to every variant's fit.",
    )
    parser.add_argument("file", type=Path, help="experiment YAML (see experiments/)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/experiments"),
        help="output folder; the runs and the report go to OUT/<experiment name> (default: runs/experiments)",
    )
    parser.add_argument("--only", nargs="+", help="run only these variants")
    parser.add_argument("--no_cost", "--no-cost", action="store_true", help="skip the params/GFLOPs/latency columns")
    add_input_size(parser, "--cost_size", "--cost-size", what="the cost columns' input")
    return parser


def main(argv: list[str] | None = None) -> None:
    args, extra = build_parser().parse_known_args(argv)
    args.file = Path(resolve_config(str(args.file), "experiment file"))  # experiments/x.yaml of the wheel too
    from segfpn.analysis.cost import cost_table
    from segfpn.analysis.report import write_report
    from segfpn.training.experiment import Experiment, run_experiment

    experiment = Experiment.load(args.file)
    runs = run_experiment(experiment, args.out, args.only, extra)
    cost = None
    if not args.no_cost:
        variants = {v: experiment.model_options(v, extra) for v in runs}
        rows = cost_table(variants, tuple(args.cost_size))
        cost = {r["variant"]: r for r in rows}
    files = write_report(args.out / experiment.name, f"Experiment: {experiment.name}", cost, order=list(runs))
    print(f"report: {files['markdown']} and {files['html']}")
