"""Your own data: ``<root>/images/<split>/`` + ``<root>/masks/<split>/``, classes from a YAML or CSV file.

Masks are single-channel PNGs of train ids (mode L, I, 1) or images coloured with the classes' palette (RGB, or
palette PNGs); the format is read per file. A palette (mode P) PNG is read through its palette when the classes
file gives colours (its indices are the editor's, not necessarily the train ids) and as train ids when it gives
none. See :func:`load_classes_file` for the classes file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from segfpn.constants import IGNORE_INDEX
from segfpn.datasets.base import (
    IMAGE_SUFFIXES,
    CorruptSampleError,
    OnError,
    SegmentationDataset,
    check_on_error,
    match_pairs,
    require_folder,
)
from segfpn.datasets.info import DatasetInfo
from segfpn.errors import ConfigError, DataError
from segfpn.text_files import load_yaml_file, read_text

LAYOUT = "<root>/{images,masks}/<split>/<name>.<ext> (masks: .png/.bmp/.tif, train ids or palette colours)"
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
CLASSES_FILE_NAMES = ("classes.yaml", "classes.yml", "classes.csv")
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class FolderClasses:
    """A classes file's content: the dataset description, the colour of ignored pixels in colour masks, and
    whether the file gave the classes' colours (else the palette is generated and palette PNGs hold train ids)."""

    info: DatasetInfo
    ignore_color: RGB | None = None
    colours_given: bool = True


def find_classes_file(root: Path) -> Path:
    """``<root>/classes.yaml`` (or ``.yml``/``.csv``), the default classes file of a folder dataset."""
    for name in CLASSES_FILE_NAMES:
        if (root / name).is_file():
            return root / name
    raise DataError(
        f"no classes file in {str(root)!r} (looked for {', '.join(CLASSES_FILE_NAMES)})",
        hint="write one (README, 'Your own data') or set data.classes_file",
    )


def _colour(value: Any, path: Path, where: str) -> RGB:
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, int) for v in value)):
        raise ConfigError(f"classes file {str(path)!r}: {where} must be an RGB triple like [128, 64, 128], got {value}")
    if not all(0 <= v <= 255 for v in value):
        raise ConfigError(f"classes file {str(path)!r}: {where} {list(value)} has values outside 0..255")
    return (value[0], value[1], value[2])


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = load_yaml_file(path, "classes file")
    except yaml.YAMLError as err:
        raise ConfigError(f"classes file {str(path)!r} is not valid YAML: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise ConfigError(
            f"classes file {str(path)!r} must be a mapping with a 'classes' list (names, or {{name:, color:}} "
            f"entries), found {type(data).__name__}"
        )
    names, palette = [], []
    for i, entry in enumerate(data["classes"]):
        if isinstance(entry, dict) and "name" in entry:
            names.append(str(entry["name"]))
            if "color" in entry:
                palette.append(_colour(entry["color"], path, f"the color of class {i} ({entry['name']!r})"))
        elif isinstance(entry, (str, int)):
            names.append(str(entry))
        else:
            raise ConfigError(f"classes file {str(path)!r}: class {i} must be a name or {{name:, color:}}, got {entry}")
    if "palette" in data:
        palette = [_colour(c, path, f"palette entry {i}") for i, c in enumerate(data["palette"])]
    return {**data, "classes": names, "palette": palette}


def _read_csv(path: Path) -> dict[str, Any]:
    rows = list(csv.DictReader(io.StringIO(read_text(path, "classes file"), newline="")))
    if not rows or "name" not in rows[0]:
        raise ConfigError(
            f"classes file {str(path)!r} must be a CSV with a header holding 'name' (and optionally r,g,b), one row "
            "per class in train-id order"
        )
    has_colours = all(k in rows[0] for k in "rgb")
    palette = []
    for i, row in enumerate(rows):
        if has_colours:
            try:
                palette.append(_colour([int(row[k]) for k in "rgb"], path, f"row {i + 2}"))
            except (TypeError, ValueError) as err:
                raise ConfigError(f"classes file {str(path)!r}: row {i + 2} r,g,b must be integers, got {row}") from err
    return {"classes": [row["name"] for row in rows], "palette": palette}


def _ignore_index(value: object, path: Path) -> int:
    """A classes file's ``ignore_index``: a whole number from 0 to 255 (masks are 8-bit)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise ConfigError(f"classes file {str(path)!r}: ignore_index must be an integer from 0 to 255, got {value!r}")
    return value


def load_classes_file(path: str | Path, name: str | None = None) -> FolderClasses:
    """Read a classes file.

    YAML: ``classes:`` a list of names or of ``{name:, color: [r, g, b]}``; optional ``palette`` (list of RGB),
    ``name``, ``ignore_index`` (default 255) and ``ignore_color`` (the RGB of ignored pixels in colour masks).
    CSV: a header with ``name`` and optionally ``r,g,b``; one row per class in train-id order.
    Without colours the palette is generated (then masks must hold ids).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"classes file {str(path)!r} does not exist; expected a .yaml/.yml or .csv file")
    if path.suffix.lower() in (".yaml", ".yml"):
        data = _read_yaml(path)
    elif path.suffix.lower() == ".csv":
        data = _read_csv(path)
    else:
        raise ConfigError(f"classes file {str(path)!r} must end in .yaml, .yml or .csv")
    ignore_color = data.get("ignore_color")
    duplicates = sorted({n for n in data["classes"] if data["classes"].count(n) > 1})
    if duplicates:
        raise ConfigError(f"classes file {str(path)!r}: class names must be unique, found {duplicates} twice or more")
    info = DatasetInfo(
        name=str(data.get("name") or name or path.parent.name or "folder"),
        classes=tuple(data["classes"]),
        palette=tuple(data["palette"]),
        ignore_index=_ignore_index(data.get("ignore_index", IGNORE_INDEX), path),
    )
    colour = _colour(ignore_color, path, "ignore_color") if ignore_color is not None else None
    if colour is not None and colour in info.palette:
        raise ConfigError(f"classes file {str(path)!r}: ignore_color {list(colour)} is also a class colour")
    if len(set(info.palette)) != len(info.palette):
        raise ConfigError(f"classes file {str(path)!r}: two classes share a colour (RGB masks would be ambiguous)")
    return FolderClasses(info, colour, colours_given=bool(data["palette"]))


def _codes(colours: np.ndarray) -> np.ndarray:
    """RGB uint8 ``[..., 3]`` -> one int32 per colour."""
    colours = colours.astype(np.int32)
    return (colours[..., 0] << 16) | (colours[..., 1] << 8) | colours[..., 2]


class FolderDataset(SegmentationDataset):
    """Image/mask pairs of ``<root>/images/<split>/`` and ``<root>/masks/<split>/``, paired by relative path
    without extension (subfolders allowed); any image extension.

    Args:
        root_dir: the folder holding ``images/`` and ``masks/``.
        split: the split folder name (``train``, ``val``, ...).
        classes: the classes file's content (:func:`load_classes_file`), or the path of that file
            (default: ``<root>/classes.yaml``/``.csv``).
        transform: albumentations pipeline (default: the validation transform).
        on_error: ``"raise"`` or ``"skip"`` a corrupt sample (see :class:`SegmentationDataset`).
    """

    def __init__(
        self,
        root_dir: str | Path,
        split: str = "train",
        classes: FolderClasses | str | Path | None = None,
        transform: Callable | None = None,
        on_error: OnError = "raise",
    ) -> None:
        check_on_error(on_error)
        root = Path(root_dir)
        require_folder(root, "data_root", LAYOUT)
        if not isinstance(classes, FolderClasses):
            classes = load_classes_file(classes if classes is not None else find_classes_file(root))
        self.info, self.ignore_color, self.colours_given = classes.info, classes.ignore_color, classes.colours_given
        img_dir, mask_dir = root / "images" / split, root / "masks" / split
        for folder in (img_dir, mask_dir):
            require_folder(folder, None, LAYOUT)
        self.skipped: list[str] = []
        self.pairs = match_pairs(
            img_dir, mask_dir, f"{str(root)!r} ({split})", on_error, self.skipped, IMAGE_SUFFIXES, MASK_SUFFIXES
        )
        codes = _codes(np.asarray(self.info.palette, np.uint8))
        self._order = np.argsort(codes)
        self._sorted_codes = codes[self._order]
        self._init_samples(root, split, transform, on_error)

    def read_annotation(self, path: Path) -> np.ndarray:
        """Train ids (uint8) of a mask: stored ids, or colours (RGB, or a palette PNG's when the classes file
        gives colours) mapped through the classes' palette."""
        try:
            with Image.open(path) as mask:
                coloured = mask.mode in ("RGB", "RGBA") or (mask.mode == "P" and self.colours_given)
                colours = np.asarray(mask.convert("RGB")) if coloured else None
                palette = mask.mode == "P"
        except (OSError, UnidentifiedImageError, SyntaxError) as err:
            raise CorruptSampleError(f"cannot read mask {str(path)!r}: {err}") from err
        if colours is None:
            return super().read_annotation(path)
        note = " (a palette PNG is read through its palette when the classes file gives colours)" if palette else ""
        return self.colours_to_ids(colours, path, note)

    def colours_to_ids(self, colours: np.ndarray, path: Path, note: str = "") -> np.ndarray:
        """RGB ``[H, W, 3]`` -> train ids; a colour that is no class's (nor ``ignore_color``) raises, naming it."""
        codes = _codes(colours)
        slot = np.clip(np.searchsorted(self._sorted_codes, codes), 0, len(self._sorted_codes) - 1)
        ids = self._order[slot].astype(np.uint8)
        known = self._sorted_codes[slot] == codes
        if self.ignore_color is not None:
            ignored = codes == _codes(np.asarray(self.ignore_color, np.uint8))
            ids[ignored] = self.info.ignore_index
            known |= ignored
        if not known.all():
            ys, xs = np.nonzero(~known)
            colour = [int(v) for v in colours[ys[0], xs[0]]]
            raise CorruptSampleError(
                f"mask {str(path)!r} holds colour {colour} at (x={xs[0]}, y={ys[0]}) ({len(ys)} pixels of unknown "
                f"colours), which is no class's colour in the classes file"
                + ("" if self.ignore_color is None else f" nor the ignore_color {list(self.ignore_color)}")
                + note
            )
        return ids


__all__ = ["FolderClasses", "FolderDataset", "find_classes_file", "load_classes_file"]
