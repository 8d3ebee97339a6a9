"""Constants shared across datasets, models and tools. This module imports nothing, so anything may import it."""

# mmsegmentation's label for "not annotated": the default ignore index of a dataset description
IGNORE_INDEX = 255

# ImageNet statistics of RGB pixels on the 0..255 scale (mmseg's SegDataPreProcessor, timm's weights)
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

# `segfpn export` formats -> file suffix
EXPORT_SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
