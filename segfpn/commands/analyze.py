"""``segfpn analyze CKPT``: error analysis of a trained model on its validation split (confusion matrix,
per-class IoU, most confused pairs, small vs large objects, Boundary IoU)."""

from __future__ import annotations

import argparse
from pathlib import Path

from segfpn.commands.arguments import positive_int


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="segfpn analyze", description=__doc__)
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--data-root", help="override the data folder stored in the checkpoint")
    parser.add_argument("--out", type=Path, help="default: <run folder>/analysis")
    parser.add_argument("--top-k", type=positive_int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    from segfpn.analysis.class_errors import evaluate, write_error_analysis
    from segfpn.datasets.datamodule import evaluation_datamodule
    from segfpn.inference.predictor import load_trained_network
    from segfpn.inference.protocols import predict_logits

    loaded = load_trained_network(args.ckpt, "ckpt")
    info = loaded.dataset_info  # the classes the model was trained on, from the checkpoint
    data = evaluation_datamodule(loaded.data_hparams, info, str(args.ckpt), args.data_root)
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
    out = args.out or args.ckpt.resolve().parent.parent / "analysis"
    files = write_error_analysis(result, out, list(info.classes), args.top_k, info.name)
    print((files["markdown"]).read_text())
    print(f"wrote {', '.join(str(p) for p in files.values())}")
