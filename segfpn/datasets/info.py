"""DatasetInfo: what a dataset says about its labels and pixels, read by everything downstream of the data."""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from segfpn.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from segfpn.errors import ConfigError


@dataclass(frozen=True)
class DatasetInfo:
    """Name, class names and colours, ignore index, label mapping and normalisation of a dataset.

    ``label_map`` maps a stored annotation value (0..255) to a train id (0..num_classes-1, or ``ignore_index``):
    ADE20K's ``reduce_zero_label`` (0 -> ignore, k -> k-1), Cityscapes' labelIds -> trainIds. ``None`` means the
    stored values are the train ids. ``mean``/``std`` are RGB on the 0..255 scale.
    """

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...] = field(default=())
    ignore_index: int = IGNORE_INDEX
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    label_map: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.classes)
        if n < 1:
            raise ConfigError(f"dataset {self.name!r}: no class names")
        palette = tuple(tuple(int(v) for v in colour) for colour in self.palette) or default_palette(n)
        if len(palette) != n or any(len(c) != 3 for c in palette):
            raise ConfigError(f"dataset {self.name!r}: {n} classes but {len(palette)} palette colours (RGB triples)")
        object.__setattr__(self, "palette", palette)
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if n > 255 or not 0 <= self.ignore_index <= 255:  # masks are uint8 from the files to the batches
            raise ConfigError(
                f"dataset {self.name!r}: at most 255 classes and an ignore index in 0..255 (masks are 8-bit); "
                f"found {n} classes and ignore index {self.ignore_index}"
            )
        if 0 <= self.ignore_index < n:
            raise ConfigError(f"dataset {self.name!r}: ignore_index {self.ignore_index} is a class id (0..{n - 1})")
        if self.label_map is not None:
            table = tuple(int(v) for v in self.label_map)
            if len(table) != 256 or any(not (0 <= v < n or v == self.ignore_index) for v in table):
                raise ConfigError(
                    f"dataset {self.name!r}: label_map must give a train id (0..{n - 1}) or {self.ignore_index} "
                    "for each of the 256 stored values"
                )
            object.__setattr__(self, "label_map", table)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def map_labels(self, annotation: np.ndarray) -> np.ndarray:
        """Stored annotation values (uint8) -> train ids (uint8)."""
        if self.label_map is None:
            return annotation.astype(np.uint8, copy=False)
        return np.asarray(self.label_map, dtype=np.uint8)[annotation]

    def stored_labels(self, train_ids: np.ndarray) -> np.ndarray:
        """Train ids -> the dataset's own annotation values (uint8): the smallest stored value that maps to each
        (ADE20K: id + 1, its submission format; Cityscapes: the labelId); train ids where there is no mapping."""
        if self.label_map is None:
            return train_ids.astype(np.uint8)
        inverse = np.arange(256, dtype=np.uint8)
        for stored, train_id in reversed(list(enumerate(self.label_map))):
            if train_id != self.ignore_index:
                inverse[train_id] = stored
        return inverse[train_ids]

    def as_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (for checkpoints, JSON and W&B)."""
        return {
            k: list(map(list, v)) if k == "palette" else list(v) if isinstance(v, tuple) else v
            for k, v in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DatasetInfo:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @classmethod
    def from_hparams(cls, values: dict[str, Any] | None, num_classes: int) -> DatasetInfo:
        """The description a checkpoint or module was given (``dataset_info``), or generic names for
        ``num_classes`` classes when it has none (checkpoints from before, a model built without data)."""
        return cls.from_dict(values) if values else cls.generic(num_classes)

    @classmethod
    def generic(cls, num_classes: int, ignore_index: int = IGNORE_INDEX) -> DatasetInfo:
        """Classes ``class_0``.. with generated colours: for a model built without a dataset."""
        return cls("unnamed", tuple(f"class_{i}" for i in range(num_classes)), ignore_index=ignore_index)


def default_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct, deterministic colours: hues spread by the golden ratio, three brightness levels."""
    colours = []
    for i in range(num_classes):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, (1.0, 0.75, 0.5)[i % 3])
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(colours)
