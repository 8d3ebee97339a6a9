"""Images of a folder (or a list of files) for prediction."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from segfpn.datasets.base import load_image
from segfpn.datasets.transforms import val_transform
from segfpn.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ImageFolder(Dataset):
    """``(image, path)`` for every image file in ``root`` (sorted), normalised like validation images."""

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        if root.is_file():
            self.paths = [root]
        elif root.is_dir():
            self.paths = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            raise DataError(f"predict_dir {str(root)!r} is neither an image file nor a folder")
        if not self.paths:
            raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(root)!r}")
        self.transform = val_transform()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        path = self.paths[index]
        return self.transform(image=load_image(path))["image"], str(path)


def collate_with_paths(batch: list[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, list[str]]:
    """Batch of one or more same-size images with their paths (use batch size 1 for mixed sizes)."""
    sizes = {img.shape for img, _ in batch}
    if len(sizes) != 1:
        raise ConfigError(f"predict batches need images of one size, got {sorted(sizes)}; use batch size 1")
    return torch.stack([img for img, _ in batch]), [p for _, p in batch]
