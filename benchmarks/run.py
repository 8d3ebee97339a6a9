"""Run segfpn's benchmarks and print/write their tables.

    python -m benchmarks.run                 # everything at 512x512 (about 15 min on 2 CPU cores)
    python -m benchmarks.run --quick         # smaller sizes (a few minutes)
    python -m benchmarks.run --only data metric
Results: ``benchmarks/results/<table>.{json,csv,md}``; ``README.md`` there gathers every table measured so far,
each under the machine and date of its own run (``--only`` re-measures some and keeps the others).
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import torch

from benchmarks.common import machine_name
from segfpn.tables import format_table, write_csv

SECTIONS = {
    "machine": "benchmarks.machine",
    "model": "benchmarks.model_speed",
    "loop": "benchmarks.loop_overhead",
    "data": "benchmarks.data_pipeline",
    "metric": "benchmarks.metric_cost",
    "inference": "benchmarks.inference_modes",
    "export": "benchmarks.export_parity",
    "resume": "benchmarks.resume_cost",
    "swin": "benchmarks.swin_reference",
}
# Tables in report order (the model section writes two).
TABLES = ("machine", "model", "model_ratios", "loop", "data", "metric", "inference", "export", "resume", "swin")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = f"{machine_name()}; {'quick' if args.quick else 'full'} run, {time.strftime('%Y-%m-%d %H:%M')}"
    for name in args.only or list(SECTIONS):
        print(f"== {name}", flush=True)
        module = importlib.import_module(SECTIONS[name])
        rows = module.run(device=args.device, quick=args.quick)
        tables = {name: rows}
        if name == "model":
            from benchmarks.model_speed import ratios

            tables["model_ratios"] = ratios(rows)
        for table_name, table in tables.items():
            text = format_table(table, list(table[0]))
            print(text, flush=True)
            (args.out / f"{table_name}.json").write_text(json.dumps(table, indent=2))
            write_csv(table, args.out / f"{table_name}.csv")
            (args.out / f"{table_name}.md").write_text(f"## {table_name}\n\n{stamp}\n\n```\n{text}\n```\n")
    fragments = [args.out / f"{t}.md" for t in TABLES]
    report = ["# segfpn benchmarks\n"] + [f.read_text() for f in fragments if f.is_file()]
    (args.out / "README.md").write_text("\n".join(report))
    print(f"wrote {args.out}/")


if __name__ == "__main__":
    main()
