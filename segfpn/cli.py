"""The ``segfpn`` command: a light top-level parser over the command table (:mod:`segfpn.commands`), and dispatch.

Nothing here imports torch, Lightning, timm or wandb: ``segfpn --help`` and ``segfpn <tool> --help`` stay fast.
fit/validate/test/predict run :mod:`segfpn.training.cli`; each tool is ``module:function`` taking argv.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
import warnings
from typing import Any

from segfpn.commands import LIGHTNING_COMMANDS, TOOLS
from segfpn.errors import debug_requested, handle_errors

# Names that used to be importable from here: they live in segfpn.training.cli (loaded, with Lightning, on first use)
_MOVED_TO_TRAINING_CLI = {"run_cli", "SegFPNCLI", "CheckpointMismatchError", "TimestampedSaveConfig"}


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_TRAINING_CLI:
        warnings.warn(f"segfpn.cli.{name} moved: import it from segfpn.training.cli", FutureWarning, stacklevel=2)
        return getattr(importlib.import_module("segfpn.training.cli"), name)
    if name == "ARCHITECTURE_OPTIONS":
        warnings.warn(
            "segfpn.cli.ARCHITECTURE_OPTIONS moved: import it from segfpn.models.segmentation_model",
            FutureWarning,
            stacklevel=2,
        )
        return importlib.import_module("segfpn.models.segmentation_model").ARCHITECTURE_OPTIONS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def normalize_sweep_args(args: list[str]) -> list[str]:
    """W&B sweep agents write a null parameter as ``--key=None``; LightningCLI's Optional types want ``null``."""
    return [a.split("=", 1)[0] + "=null" if a.startswith("--") and a.endswith("=None") else a for a in args]


class _CommandListFormatter(argparse.HelpFormatter):
    """Summaries in one column beside the longest command name (argparse measures only the top-level options)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=24, width=110)
        self._action_max_length = 4 + max(len(name) for name in [*LIGHTNING_COMMANDS, *TOOLS])


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: every command as a subcommand with its summary (for help and errors)."""
    parser = argparse.ArgumentParser(
        prog="segfpn",
        formatter_class=_CommandListFormatter,
        description="Semantic FPN segmentation on timm backbones with PyTorch Lightning.",
        epilog="`segfpn <command> --help` shows a command's options; --debug shows tracebacks. "
        "Configs shipped with segfpn are reachable by name: `segfpn fit --config demo`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>", title="commands")
    for name, summary in LIGHTNING_COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    for name, (_, summary) in TOOLS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def run_tool(name: str, argv: list[str]) -> None:
    """Import the tool's module only now, and run it on ``argv``."""
    module, function = TOOLS[name][0].split(":")
    getattr(importlib.import_module(module), function)(argv)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``segfpn`` and ``python -m segfpn``: user errors exit 2 with one line (see segfpn.errors);
    a run stopped by SIGTERM / SIGINT exits 143 / 130 after saving a resumable checkpoint."""
    debug, args = debug_requested(list(sys.argv[1:] if argv is None else argv))
    if not args or args[0] in ("-h", "--help"):
        build_parser().print_help()
        return
    command = args[0]
    if not command.startswith("-") and command not in LIGHTNING_COMMANDS and command not in TOOLS:
        known = [*LIGHTNING_COMMANDS, *TOOLS]
        near = difflib.get_close_matches(command, known, n=1)
        hint = f"did you mean `segfpn {near[0]}`?" if near else "`segfpn --help` lists the commands"
        build_parser().error(f"unknown command {command!r}: {hint} (commands: {', '.join(known)})")
    with handle_errors(debug):
        if command in TOOLS:
            run_tool(command, args[1:])
            return
        from segfpn.training.callbacks.preemption import stop_exit_code
        from segfpn.training.cli import run_cli

        cli = run_cli(normalize_sweep_args(args))
        code = stop_exit_code(cli.trainer.callbacks) if getattr(cli, "trainer", None) is not None else 0
    if code:
        raise SystemExit(code)
