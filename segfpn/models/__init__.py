"""Models: timm backbones, the FPN neck, the Semantic FPN head and SegmentationModel."""

from segfpn.models.attention import CBAM, SqueezeExcitation, build_attention
from segfpn.models.backbone import TESTED_BACKBONES, TimmBackbone, list_backbones
from segfpn.models.fpn import FPN
from segfpn.models.head import SemanticFPNHead
from segfpn.models.segmentation_model import SegmentationModel

__all__ = [
    "CBAM",
    "FPN",
    "TESTED_BACKBONES",
    "SegmentationModel",
    "SemanticFPNHead",
    "SqueezeExcitation",
    "TimmBackbone",
    "build_attention",
    "list_backbones",
]
