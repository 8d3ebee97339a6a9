"""segfpn: Semantic FPN segmentation on timm backbones, with PyTorch Lightning."""

__version__ = "0.1.0"
