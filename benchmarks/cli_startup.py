"""Start-up time of the ``segfpn`` command: ``--help`` of each command beside ``python -c "import torch"``.

Each command runs as a fresh subprocess (``python -m segfpn ...``, WANDB_MODE=offline); the timings are wall
times, median of ``--repeats`` warm runs, interleaved across commands and source trees so that load on a shared
machine hits all of them alike. ``--tree LABEL=PATH`` (repeatable) puts PATH first on PYTHONPATH, e.g. a checkout
of an older commit, to compare before/after in one run::

    git archive 751e9cb segfpn configs | tar -x -C /tmp/segfpn-before
    python benchmarks/cli_startup.py --tree before=/tmp/segfpn-before --tree after=.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TOOLS = (
    "summary",
    "class-stats",
    "feature-maps",
    "cost",
    "experiment",
    "analyze",
    "report",
    "convert",
    "export",
    "plot-curves",
    "browse-data",
)
RESULTS = Path(__file__).parent / "results"


def commands() -> dict[str, list[str]]:
    """Benchmark name -> argv after ``python``."""
    table = {"import torch": ["-c", "import torch"], "segfpn --help": ["-m", "segfpn", "--help"]}
    table.update({f"segfpn {tool} --help": ["-m", "segfpn", tool, "--help"] for tool in TOOLS})
    table["segfpn fit --help"] = ["-m", "segfpn", "fit", "--help"]
    return table


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall seconds, exit code and the first stdout line of ``python argv``."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True, cwd="/")
    return time.perf_counter() - start, done.returncode, (done.stdout.strip().splitlines() or [""])[0]


def measure(trees: dict[str, Path], repeats: int) -> list[dict]:
    """One row per (tree, command): median/min seconds of ``repeats`` runs after one warm-up run."""
    envs = {}
    for label, path in trees.items():
        env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(path.resolve())}
        envs[label] = env
    times: dict[tuple[str, str], list[float]] = {}
    codes: dict[tuple[str, str], int] = {}
    for round_ in range(repeats + 1):
        for name, argv in commands().items():
            for label, env in envs.items():
                if name == "import torch" and label != next(iter(envs)):
                    continue  # the same for every tree
                seconds, code, _ = run_once(argv, env)
                codes[label, name] = code
                if round_:  # the first round only warms the file cache
                    times.setdefault((label, name), []).append(seconds)
    rows = []
    for (label, name), values in times.items():
        ok = codes[label, name] == 0
        rows.append(
            {
                "tree": "-" if name == "import torch" else label,
                "command": name,
                "median_s": round(statistics.median(values), 3) if ok else None,
                "min_s": round(min(values), 3) if ok else None,
                "repeats": len(values),
                "exit_code": codes[label, name],
            }
        )
    return rows


def table(rows: list[dict], labels: list[str]) -> str:
    """Markdown table: one line per command, one column per tree (median seconds; '-' when it failed)."""
    by = {(r["tree"], r["command"]): r for r in rows}
    lines = ["| command | " + " | ".join(f"{label} median s" for label in labels) + " |"]
    lines.append("|---" * (len(labels) + 1) + "|")
    for name in commands():
        cells = []
        for label in labels:
            row = by.get(("-" if name == "import torch" else label, name))
            value = row and row["median_s"]
            cells.append(f"{value:.2f}" if value is not None else f"fails (exit {row['exit_code']}: no such command?)")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", default=[], help="LABEL=PATH put first on PYTHONPATH")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command (after one warm-up)")
    parser.add_argument("--out", type=Path, default=RESULTS / "cli_startup.json")
    args = parser.parse_args(argv)
    trees = dict(t.split("=", 1) for t in args.tree) or {"current": str(Path(__file__).parents[1])}
    trees = {label: Path(path) for label, path in trees.items()}
    rows = measure(trees, args.repeats)
    markdown = table(rows, list(trees))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": sys.executable,
        "trees": {k: str(v.resolve()) for k, v in trees.items()},
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    md = args.out.with_suffix(".md")
    md.write_text(f"{result['when']}, {os.cpu_count()} CPUs, median of {args.repeats} warm runs\n\n{markdown}\n")
    print(markdown)
    print(f"wrote {args.out} and {md}")


if __name__ == "__main__":
    main()
