"""The light ``segfpn`` entry point: help without torch & co., the command listing, the nearest-command
suggestion, packaged configs by name, and a help line for every callback option of ``fit --help``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from segfpn.commands import LIGHTNING_COMMANDS, TOOLS
from segfpn.errors import ConfigError
from segfpn.packaged_configs import configs_root, packaged_config_names, resolve_config, resolve_config_args

HEAVY = ("torch", "lightning", "timm", "wandb")
CALLBACK_GROUPS = ("checkpoint", "grad_monitor", "wandb_media", "predictions", "results", "graceful_stop")


def segfpn(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "segfpn", *args], capture_output=True, text=True, env=env or os.environ.copy()
    )


@pytest.mark.parametrize("tool", [None, *TOOLS])
def test_help_imports_no_heavy_module(tool: str | None) -> None:
    """Top-level help and each tool's --help run without importing torch, Lightning, timm or wandb."""
    argv = ["--help"] if tool is None else [tool, "--help"]
    code = (
        "import sys\n"
        "from segfpn.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout.splitlines()[-1]
    assert "usage:" in done.stdout


def test_help_lists_every_command_with_its_summary() -> None:
    done = segfpn("--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # argparse wraps long summaries
    summaries = {**LIGHTNING_COMMANDS, **{name: summary for name, (_, summary) in TOOLS.items()}}
    for name, summary in summaries.items():
        assert re.search(rf"\b{re.escape(name)} {re.escape(summary)}", text), name


def test_unknown_command_suggests_the_nearest() -> None:
    done = segfpn("analyse")
    assert done.returncode == 2
    assert "unknown command 'analyse'" in done.stderr and "`segfpn analyze`" in done.stderr


def test_every_tool_module_runs_from_the_table() -> None:
    """Each "module:function" of the table names a callable (a typo would only show when the tool runs)."""
    import importlib

    for name, (target, _) in TOOLS.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name


def test_config_names_resolve_to_the_packaged_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ here: names and repo-relative paths go to the packaged copy
    demo = configs_root() / "demo.yaml"
    assert demo.is_file()
    for value in ("demo", "demo.yaml", "configs/demo.yaml"):
        assert Path(resolve_config(value)) == demo, value
    assert Path(resolve_config("trainer/ddp")) == configs_root() / "trainer" / "ddp.yaml"
    assert {"demo", "trainer/ddp", "sweeps/fpn_ablation"} <= set(packaged_config_names())
    own = tmp_path / "demo.yaml"  # a file of that name wins over the packaged one
    own.write_text("seed_everything: 1\n")
    assert resolve_config("demo.yaml") == "demo.yaml"
    assert resolve_config_args(["fit", "--config", "trainer/ddp", "--config=demo.yaml", "-c", "demo"]) == [
        "fit",
        "--config",
        str(configs_root() / "trainer" / "ddp.yaml"),
        "--config=demo.yaml",
        "-c",
        str(demo),
    ]
    with pytest.raises(ConfigError, match="'nodemo': expected a config file or the name of a packaged config"):
        resolve_config("nodemo")
    assert resolve_config("missing.yaml") == "missing.yaml"  # a missing file: the parser names it


def option_blocks(help_text: str, group: str) -> dict[str, str]:
    """``--group.option`` -> its help text in ``fit --help`` (continuation lines joined)."""
    blocks: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        start = re.match(rf"^  (--{group}\.\S+)(?: \S+)?\s*(.*)$", line)
        if start:
            current = start[1]
            blocks[current] = start[2]
        elif current and line.startswith("    ") and not line.lstrip().startswith("--"):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


def test_fit_help_has_a_help_line_for_each_callback_option() -> None:
    """Each ``--checkpoint.*``, ``--grad_monitor.*``... option says what it does (not only its type), and help
    prints no W&B line even without WANDB_MODE."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    done = segfpn("fit", "--help", env=env)
    assert done.returncode == 0, done.stderr
    assert "W&B" not in done.stdout + done.stderr and "wandb:" not in done.stdout + done.stderr
    seen = 0
    for group in CALLBACK_GROUPS:
        for option, text in option_blocks(done.stdout, group).items():
            described = re.sub(r"\(type: .*?default: .*?\)\s*$", "", " ".join(text.split())).strip()
            assert len(described) > 10, f"{option} has no help line: {text!r}"
            seen += 1
    assert seen >= 15  # the groups were found at all
