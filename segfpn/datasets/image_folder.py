"""Images of a folder (or a list of files) for prediction."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from segfpn.constants import IMAGENET_MEAN, IMAGENET_STD
from segfpn.datasets.base import IMAGE_SUFFIXES, load_image
from segfpn.datasets.transforms import val_transform
from segfpn.errors import ConfigError, DataError


class ImageFolder(Dataset):
    """``(image, path)`` for every image file in ``root`` and its subfolders (sorted, e.g. Cityscapes' cities),
    normalised like validation images with ``mean``/``std`` (0..255 scale)."""

    def __init__(
        self, root: str | Path, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
    ) -> None:
        root = Path(root)
        if root.is_file():
            self.paths = [root]
        elif root.is_dir():
            self.paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            raise DataError(f"predict_dir {str(root)!r} is neither an image file nor a folder")
        if not self.paths:
            raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(root)!r}")
        seen: dict[str, Path] = {}
        for path in self.paths:  # predictions are written as <stem>.png: one image per name
            if path.stem in seen:
                raise DataError(
                    f"predict_dir {str(root)!r}: two images named {path.stem!r} ({str(seen[path.stem])!r} and "
                    f"{str(path)!r}); their predictions would overwrite each other (rename one)"
                )
            seen[path.stem] = path
        self.transform = val_transform(mean, std)

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
