"""``segfpn analyze CKPT``: error analysis of a trained model on its validation split (confusion matrix,
per-class IoU, most confused pairs, small vs large objects, Boundary IoU)."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="segfpn analyze", description=__doc__)
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--data-root", help="override the data folder stored in the checkpoint")
    parser.add_argument("--out", type=Path, help="default: <run folder>/analysis")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    from segfpn.analysis.checkpoint import load_trained
    from segfpn.analysis.errors import evaluate, write_error_analysis
    from segfpn.datasets.ade20k_classes import ADE20K_CLASSES
    from segfpn.inference import predict_logits

    module, data = load_trained(args.ckpt, args.data_root, args.device)
    data.prepare_data()
    data.setup("validate")
    num_classes = module.hparams.num_classes
    result = evaluate(
        module,
        data.val_dataloader(),
        num_classes,
        lambda m, x: predict_logits(m, x, m.inference, num_classes),
        args.device,
    )
    out = args.out or args.ckpt.resolve().parent.parent / "analysis"
    names = list(ADE20K_CLASSES) if num_classes == len(ADE20K_CLASSES) else [f"class_{i}" for i in range(num_classes)]
    files = write_error_analysis(result, out, names, args.top_k)
    print((files["markdown"]).read_text())
    print(f"wrote {', '.join(str(p) for p in files.values())}")
