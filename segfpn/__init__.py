"""segfpn: Semantic FPN segmentation on timm backbones, with PyTorch Lightning."""

from segfpn import moved_modules

__version__ = "0.1.0"

moved_modules.install()
