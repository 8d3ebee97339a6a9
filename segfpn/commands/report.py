"""``segfpn report FOLDER``: gather the runs below FOLDER into report.md / report.html with tables and figures."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="segfpn report", description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--title")
    args = parser.parse_args(argv)
    from segfpn.analysis.report import write_report

    files = write_report(args.folder, args.title)
    print(f"report: {files['markdown']} and {files['html']}")
