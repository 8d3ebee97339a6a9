"""One spelling for each argument across the tools, as LightningCLI spells them (``--ckpt_path``, ``--data_root``:
multi-word options with underscores; the older dashed spellings stay accepted as aliases), and a help line on every
argument of every tool."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest

from segfpn.commands import TOOLS

# The tools taking a checkpoint / a data folder as an option, and the one spelling they use.
CHECKPOINT_TOOLS = {"analyze", "feature-maps", "export"}
DATA_ROOT_TOOLS = {"analyze", "class-stats", "feature-maps"}


def tool_parser(tool: str) -> argparse.ArgumentParser:
    module = importlib.import_module(TOOLS[tool][0].split(":")[0])
    assert callable(getattr(module, "build_parser", None)), f"segfpn {tool}: its module has no build_parser()"
    parser = module.build_parser()
    assert isinstance(parser, argparse.ArgumentParser), f"segfpn {tool}: build_parser() returned {parser!r}"
    return parser


def arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every argument of ``parser`` except -h/--help."""
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def label(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or (action.metavar if isinstance(action.metavar, str) else action.dest)


@pytest.mark.parametrize("tool", list(TOOLS))
def test_every_argument_has_a_help_line(tool: str) -> None:
    for action in arguments(tool_parser(tool)):
        assert action.help and action.help.strip(), f"segfpn {tool}: argument {label(action)} has no help"


@pytest.mark.parametrize("tool", list(TOOLS))
def test_multi_word_options_are_spelled_with_underscores(tool: str) -> None:
    """A dashed option (``--top-k``) is only an alias beside its underscore spelling (``--top_k``), listed first
    so that help shows it."""
    for action in arguments(tool_parser(tool)):
        long = [s for s in action.option_strings if s.startswith("--")]
        for option in long:
            underscored = "--" + option[2:].replace("-", "_")
            assert underscored in action.option_strings, (
                f"segfpn {tool}: option {option} has no underscore spelling {underscored} (all of its spellings: "
                f"{action.option_strings})"
            )
        if long:
            assert "-" not in long[0][2:], (
                f"segfpn {tool}: argument {label(action)} lists the dashed spelling {long[0]} first; help should "
                "show the underscore spelling"
            )


@pytest.mark.parametrize("tool", list(TOOLS))
def test_checkpoint_and_data_folder_have_one_spelling(tool: str) -> None:
    actions = arguments(tool_parser(tool))
    for action in actions:
        names = [s[2:].replace("-", "_") for s in action.option_strings if s.startswith("--")]
        if any("ckpt" in n or "checkpoint" in n for n in names):
            assert action.option_strings[0] == "--ckpt_path", (
                f"segfpn {tool}: the checkpoint option {label(action)} is not spelled --ckpt_path"
            )
        if any(n in ("data_root", "data_dir", "data_folder", "root") for n in names):
            assert action.option_strings[0] == "--data_root", (
                f"segfpn {tool}: the data folder option {label(action)} is not spelled --data_root"
            )
    options = {s for a in actions for s in a.option_strings}
    if tool in CHECKPOINT_TOOLS:
        assert "--ckpt_path" in options, f"segfpn {tool}: no --ckpt_path option (its options: {sorted(options)})"
    if tool in DATA_ROOT_TOOLS:
        assert "--data_root" in options, f"segfpn {tool}: no --data_root option (its options: {sorted(options)})"


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the checkpoint is required: --ckpt_path CKPT"),
        (["--ckpt_path", "a.ckpt", "b.ckpt"], "the checkpoint is given twice"),
    ],
)
def test_analyze_takes_the_checkpoint_once(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    """``segfpn analyze``: ``--ckpt_path CKPT`` or the older positional ``CKPT``, exactly one of them."""
    from segfpn.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_old_and_new_spellings_give_the_same_result(synthetic_root: Path, tmp_path: Path) -> None:
    """``segfpn class-stats --data-root`` (the old spelling) writes what ``--data_root`` writes."""
    from segfpn.cli import main

    written = {}
    for option in ("--data-root", "--data_root"):
        out = tmp_path / option.strip("-")
        main(["class-stats", option, str(synthetic_root), "--split", "val", "--out", str(out), "--workers", "0"])
        written[option] = {p.name: p.read_bytes() for p in out.glob("*.csv")}
    assert written["--data_root"] == written["--data-root"]
    assert list(written["--data_root"]) == ["class_stats_validation.csv"]
