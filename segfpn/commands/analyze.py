"""``segfpn analyze --ckpt_path CKPT``: error analysis of a trained model on its validation split (confusion matrix,
per-class IoU, most confused pairs, small vs large objects, Boundary IoU)."""

from __future__ import annotations

import argparse
from pathlib import Path

from segfpn.commands.arguments import positive_int


def build_parser() -> argparse.ArgumentParser:
    """The options of ``segfpn analyze`` (built without importing torch: ``--help`` stays fast)."""
    parser = argparse.ArgumentParser(prog="segfpn analyze", description=__doc__)
    parser.add_argument(
        "--ckpt_path",
        type=Path,
        metavar="CKPT",
        help="checkpoint written by segfpn fit (e.g. <run>/checkpoints/best.ckpt)",
    )
    parser.add_argument(
        "ckpt",
        nargs="?",
        type=Path,
        metavar="CKPT",
        help="the checkpoint as a positional argument (older spelling of --ckpt_path; give one of the two)",
    )
    parser.add_argument(
        "--data_root",
        "--data-root",
        metavar="DIR",
        help="the dataset folder (default: the data folder stored in the checkpoint)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: <run folder>/analysis)")
    parser.add_argument(
        "--top_k",
        "--top-k",
        type=positive_int,
        default=10,
        help="number of most confused class pairs and worst classes to list",
    )
    parser.add_argument("--device", default="cpu", help="device to evaluate on (cpu, cuda, cuda:1...)")
    return parser


def checkpoint_argument(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Path, str]:
    """The checkpoint given as ``--ckpt_path`` or as the positional CKPT, and how it was given (for errors)."""
    if args.ckpt_path is not None and args.ckpt is not None:
        parser.error(
            f"the checkpoint is given twice: --ckpt_path {str(args.ckpt_path)!r} and CKPT {str(args.ckpt)!r}; "
            "give it once, as --ckpt_path"
        )
    if args.ckpt_path is not None:
        return args.ckpt_path, "--ckpt_path"
    if args.ckpt is not None:
        return args.ckpt, "CKPT"
    parser.error("the checkpoint is required: --ckpt_path CKPT (a checkpoint written by segfpn fit)")
    raise AssertionError("unreachable: parser.error exits")


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    ckpt, option = checkpoint_argument(parser, args)
    from segfpn.analysis.class_errors import evaluate, write_error_analysis
    from segfpn.datasets.datamodule import evaluation_datamodule
    from segfpn.inference.predictor import load_trained_network
    from segfpn.inference.protocols import predict_logits

    loaded = load_trained_network(ckpt, option)
    info = loaded.dataset_info  # the classes the model was trained on, from the checkpoint
    data = evaluation_datamodule(loaded.data_hparams, info, str(ckpt), args.data_root)
    data.prepare_data()
    data.setup("validate")
    num_classes = info.num_classes
    result = evaluate(
        loaded.network.to(args.device),
        data.val_dataloader(),
        num_classes,
        lambda m, x: predict_logits(m, x, loaded.inference, num_classes, info.mean, info.std),
        args.device,
        info.ignore_index,
    )
    out = args.out or ckpt.resolve().parent.parent / "analysis"
    files = write_error_analysis(result, out, list(info.classes), args.top_k, info.name)
    print((files["markdown"]).read_text())
    print(f"wrote {', '.join(str(p) for p in files.values())}")
