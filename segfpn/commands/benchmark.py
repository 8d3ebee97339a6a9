"""``segfpn benchmark --config CONFIG``: images/s of the config's training loader, of its model's training step,
of its fit loop and of whole-image inference, on the device it trains on, with a verdict on what bounds the fit.
Results: a table here, and benchmark.json / benchmark.md in the run folder."""

from __future__ import annotations

import argparse

from segfpn.commands.arguments import non_negative_int, positive_int

WHAT = ("data", "model", "fit", "inference", "all")


def build_parser() -> argparse.ArgumentParser:
    """The options of ``segfpn benchmark`` (``--model.*``, ``--data.*``, ``--trainer.*`` are passed on)."""
    parser = argparse.ArgumentParser(
        prog="segfpn benchmark",
        description=__doc__,
        epilog="Other options (--model.NAME=VALUE, --data.KEY=VALUE, --trainer.KEY=VALUE) override the config, as in "
        "segfpn fit; e.g. --data.num_workers=8 --trainer.precision=bf16-mixed --model.channels_last=true.",
    )
    parser.add_argument(
        "--config", "-c", action="append", default=[], help="LightningCLI YAML or a packaged config's name (repeat)"
    )
    parser.add_argument("--steps", type=positive_int, default=20, help="timed steps (images for inference) per phase")
    parser.add_argument("--warmup", type=non_negative_int, default=3, help="untimed steps before each phase's timing")
    parser.add_argument(
        "--what",
        choices=WHAT,
        default="all",
        help="what to measure: the training loader, the model's step, the fit loop, inference, or all",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args, overrides = build_parser().parse_known_args(argv)
    unknown = [a for a in overrides if not a.startswith(("--model.", "--data.", "--trainer.", "--seed_everything"))]
    if unknown:
        build_parser().error(f"unrecognized arguments: {' '.join(unknown)}")
    from pathlib import Path

    from segfpn.training.benchmark import PHASES, print_report, run_benchmark, write_report

    what = set(PHASES) if args.what == "all" else {args.what}
    config_args = [a for config in args.config for a in ("--config", config)] + overrides
    report = run_benchmark(config_args, what, args.steps, args.warmup)
    print_report(report)
    json_path, md_path = write_report(report, Path(report["run_dir"]) / "benchmark")
    print(f"wrote {json_path} and {md_path}")
