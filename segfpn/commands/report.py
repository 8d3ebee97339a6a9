"""``segfpn report FOLDER``: gather the runs below FOLDER into report.md / report.html with tables and figures."""

from __future__ import annotations

import argparse
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The options of ``segfpn report``."""
    parser = argparse.ArgumentParser(prog="segfpn report", description=__doc__)
    parser.add_argument("folder", type=Path, help="folder whose runs are gathered; the report is written there")
    parser.add_argument("--title", help='title of the report (default: "Report: <folder name>")')
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from segfpn.analysis.report import write_report

    files = write_report(args.folder, args.title)
    print(f"report: {files['markdown']} and {files['html']}")
