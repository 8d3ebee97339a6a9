"""``segfpn convert SRC``: import a published Semantic FPN checkpoint (mmsegmentation 0.x/1.x, PVTv2-Seg) as a
segfpn checkpoint plus its YAML config, and report every key that did not map."""

from __future__ import annotations

import argparse
from pathlib import Path

from segfpn.errors import CheckpointError


def build_parser() -> argparse.ArgumentParser:
    """The options of ``segfpn convert`` (built without importing torch: ``--help`` stays fast)."""
    parser = argparse.ArgumentParser(prog="segfpn convert", description=__doc__)
    parser.add_argument("source", type=Path, help="mmseg or PVTv2-Seg checkpoint (.pth)")
    parser.add_argument("--out", type=Path, help="segfpn checkpoint to write (default: converted/<source>.ckpt)")
    parser.add_argument("--strict", action="store_true", help="fail when a key does not map either way")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint and config")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from segfpn.commands.output_paths import check_output
    from segfpn.models.from_mmseg import convert_state_dict, read_checkpoint
    from segfpn.training.converted_checkpoint import save_converted, validate_command

    out = args.out or Path("converted") / f"{args.source.stem}.ckpt"
    if out.suffix == ".yaml":
        raise CheckpointError(f"--out {str(out)!r}: name the checkpoint (.ckpt); its YAML config is written beside it")
    for path in (out, out.with_suffix(".yaml")):
        check_output(path, "--out", [args.source], args.overwrite)
    state, meta, layout = read_checkpoint(args.source)
    conversion = convert_state_dict(state, meta, layout)
    print(conversion.report())
    if args.strict and (conversion.unmapped or conversion.unfilled):
        raise CheckpointError(
            f"--strict: {len(conversion.unmapped)} source keys not mapped, {len(conversion.unfilled)} model keys "
            "not filled (listed above); nothing written"
        )
    ckpt, config = save_converted(conversion, out, args.source)
    print(f"wrote {ckpt} and {config}\nevaluate with:\n  {validate_command(ckpt, config)}")
