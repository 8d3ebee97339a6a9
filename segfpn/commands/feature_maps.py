"""``segfpn feature-maps``: backbone and FPN feature maps of one image (and attention maps when the model
has attention blocks), saved as PNG figures."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from segfpn.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from segfpn.datasets.info import DatasetInfo


def load_input(
    image: Path | None,
    data_root: Path | None,
    index: int,
    split: str | None,
    dataset: str = "ade20k",
    info: DatasetInfo | None = None,
) -> torch.Tensor:
    """A normalised ``[1, 3, H, W]`` image from a file (with ``info``'s mean/std: a checkpoint's data; ImageNet's
    without) or from sample ``index`` of a dataset's split (with the dataset's)."""
    from segfpn.datasets.base import load_image
    from segfpn.datasets.registry import open_dataset
    from segfpn.datasets.transforms import val_transform

    if image is not None:
        stats = (info.mean, info.std) if info is not None else ()
        return val_transform(*stats)(image=load_image(image))["image"].unsqueeze(0)
    if data_root is None:
        raise ConfigError("pass --image FILE or --data_root DIR (with --index)")
    return open_dataset(dataset, data_root, split)[index][0].unsqueeze(0)


def build_parser() -> argparse.ArgumentParser:
    """The options of ``segfpn feature-maps`` (built without importing torch: ``--help`` stays fast)."""
    parser = argparse.ArgumentParser(prog="segfpn feature-maps", description=__doc__)
    parser.add_argument("--image", type=Path, help="image file to plot the maps of (or --data_root with --index)")
    parser.add_argument(
        "--data_root", "--data-root", type=Path, metavar="DIR", help="dataset folder to take the image from"
    )
    parser.add_argument("--index", type=int, default=0, help="sample of --data_root's split to plot (default: 0)")
    parser.add_argument("--dataset", default="ade20k", help="layout of --data_root: ade20k, cityscapes or folder")
    parser.add_argument("--split", help="split of --data_root (default: the dataset's validation split)")
    parser.add_argument(
        "--ckpt_path",
        "--ckpt",
        type=Path,
        metavar="CKPT",
        help="checkpoint written by segfpn fit (default: a new model)",
    )
    parser.add_argument("--backbone", default="convnext_tiny", help="backbone of the new model")
    parser.add_argument("--attention", help="attention of the new model (se, cbam)")
    parser.add_argument(
        "--channel", type=int, default=0, help="channel plotted beside the channel mean of each level (default: 0)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/feature_maps"), help="output folder (default: runs/feature_maps)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    import matplotlib.pyplot as plt
    import torch

    from segfpn.models import SegmentationModel
    from segfpn.utils.visualize import plot_attention_maps, plot_feature_maps

    info = None
    if args.ckpt_path:
        from segfpn.inference.predictor import load_trained_network

        # the network and its data's statistics, no data needed
        loaded = load_trained_network(args.ckpt_path, "--ckpt_path")
        model, info = loaded.network.model, loaded.dataset_info
    else:
        # one class: the classifier is not plotted and its width does not change the feature maps
        model = SegmentationModel(num_classes=1, backbone_name=args.backbone, attention=args.attention)
    x = load_input(args.image, args.data_root, args.index, args.split, args.dataset, info)
    model.eval()
    with torch.no_grad():
        backbone = model.extract_backbone_features(x)
        pyramid = model.neck(backbone)
        model.head(pyramid)
    args.out.mkdir(parents=True, exist_ok=True)
    written = [args.out / "backbone_features.png", args.out / "fpn_features.png"]
    image_size = tuple(x.shape[-2:])
    sizes = {"image_size": image_size, "input_size": model.padded_size(*image_size), "strides": model.backbone.strides}
    plt.close(plot_feature_maps(backbone, args.channel, "backbone", save_path=written[0], **sizes))
    plt.close(plot_feature_maps(pyramid, args.channel, "FPN", save_path=written[1], **sizes))
    maps = [m.last_map for m in model.neck.attention if getattr(m, "last_map", None) is not None]
    fusion = getattr(model.head.fusion, "last_map", None)
    if maps or fusion is not None:
        written.append(args.out / "attention_maps.png")
        plt.close(plot_attention_maps(maps, fusion, save_path=written[-1], **sizes))
    print("wrote " + ", ".join(map(str, written)))
