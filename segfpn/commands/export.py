"""``segfpn export --ckpt_path CKPT --format onnx|torchscript``: the trained network as an ONNX or TorchScript file
with dynamic batch, height and width (any size); input a normalised batch, output logits (or labels), computed as
the checkpoint's evaluation protocol computes one whole-image forward (see segfpn.inference.export)."""

from __future__ import annotations

import argparse
from pathlib import Path

from segfpn.constants import EXPORT_SUFFIXES


def build_parser() -> argparse.ArgumentParser:
    """The options of ``segfpn export`` (built without importing torch: ``--help`` stays fast)."""
    parser = argparse.ArgumentParser(prog="segfpn export", description=__doc__)
    parser.add_argument(
        "--ckpt_path", type=Path, metavar="CKPT", required=True, help="checkpoint written by segfpn fit"
    )
    parser.add_argument(
        "--format", choices=list(EXPORT_SUFFIXES), required=True, help="onnx (onnxruntime) or torchscript (traced)"
    )
    parser.add_argument(
        "--output", type=Path, help="file to write (default: the checkpoint's path with .onnx / .pt as suffix)"
    )
    parser.add_argument("--labels", action="store_true", help="output the label map [B, H, W] instead of logits")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument(
        "--no_check",
        "--no-check",
        dest="check",
        action="store_false",
        help="skip comparing the file with PyTorch at a new size",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from segfpn.commands.output_paths import check_output
    from segfpn.inference.export import CHECK_SIZE, check_export, export_network
    from segfpn.inference.predictor import load_trained_network

    suffix = EXPORT_SUFFIXES[args.format]
    output = args.output or args.ckpt_path.with_name(args.ckpt_path.stem + ("-labels" if args.labels else "") + suffix)
    check_output(output, "--output", [args.ckpt_path], args.overwrite)
    loaded = load_trained_network(args.ckpt_path, "--ckpt_path")
    inference = loaded.inference
    export_network(loaded.network, output, args.format, loaded.dataset_info, args.labels, inference)
    size_mb = output.stat().st_size / 2**20
    print(f"wrote {output} ({size_mb:.1f} MB, {args.format})")
    out = "labels [B, H, W] int64" if args.labels else f"logits [B, {loaded.network.num_classes}, H, W] float32"
    print(
        f"input: images [B, 3, H, W] float32, normalised with mean {list(loaded.dataset_info.mean)} and std "
        f"{list(loaded.dataset_info.std)} (0..255 scale), any H and W; output: {out}"
    )
    resize = f"resized to fit {inference.test_scale} first" if inference.test_scale else "at its own size"
    print(
        f"protocol {inference.protocol!r}: one whole-image forward of the image {resize} "
        "(segfpn.inference.export.prepare_input; its padding is inside the graph)"
    )
    if args.labels and inference.test_scale:
        print(
            "note: with --labels the graph takes the argmax at the resized size; for the labels of the image's own "
            "size (segfpn predict's), export logits and resize them with "
            "segfpn.inference.export.to_image_size before the argmax"
        )
    if inference.mode == "slide" or len(inference.scales) > 1 or inference.flip:
        print(
            f"note: the checkpoint evaluates with mode {inference.mode!r}, scales {inference.scales}, flip "
            f"{inference.flip}; the exported graph is the single whole-image forward"
        )
    if args.check:
        diff = check_export(loaded.network, output, args.format, args.labels, protocol=inference.protocol)
        what = "labels differing" if args.labels else "max abs logit difference"
        h, w = CHECK_SIZE
        print(f"check against PyTorch on a random 2x3x{h}x{w} batch: {what} {diff:.3g}")
