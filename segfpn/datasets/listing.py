"""Recursive listing of a data folder: files keyed by relative path without extension, links followed."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from segfpn.errors import DataError


@dataclass
class Listing:
    """``files``: key (relative path without extension, ``/``-separated) -> path under the folder;
    ``broken``: key -> why the entry cannot be read (dangling link, link loop)."""

    files: dict[str, Path] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)


def _key(path: Path, folder: Path) -> str:
    return path.relative_to(folder).with_suffix("").as_posix()


def _link_problem(path: Path) -> str | None:
    """Why the symlink ``path`` cannot be followed, or ``None`` when it can."""
    try:
        path.resolve(strict=True)
    except FileNotFoundError:
        return f"dangling symlink {str(path)!r} -> {os.readlink(path)!r} (target does not exist)"
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError on a loop, 3.13 OSError(ELOOP)
        return f"symlink loop at {str(path)!r} -> {os.readlink(path)!r} (the chain of links never reaches a file)"
    return None


def list_files(folder: Path, suffixes: tuple[str, ...]) -> Listing:
    """Files with one of ``suffixes`` (lower-case) in ``folder`` and its subfolders, following symlinks.

    A stem present with two suffixes (``a.jpg`` and ``a.png``) raises :class:`DataError` naming both.
    """
    listing = Listing()
    seen_dirs = {folder.resolve()}
    pending = [folder]
    while pending:
        current = pending.pop()
        for entry in sorted(current.iterdir()):
            if entry.is_symlink():
                problem = _link_problem(entry)
                if problem is not None:
                    if entry.suffix.lower() in suffixes or not entry.suffix:
                        listing.broken[_key(entry, folder)] = problem
                    continue
            if entry.is_dir():
                target = entry.resolve()
                if target in seen_dirs:  # a link back to a folder already listed: would repeat forever
                    listing.broken[_key(entry, folder)] = (
                        f"symlink loop at {str(entry)!r}: folder {str(target)!r} is already listed"
                    )
                    continue
                seen_dirs.add(target)
                pending.append(entry)
            elif entry.suffix.lower() in suffixes:
                key = _key(entry, folder)
                if key in listing.files:
                    raise DataError(
                        f"two files for sample {key!r}: {str(listing.files[key])!r} and {str(entry)!r}; "
                        "expected one image per name (remove or rename one)"
                    )
                listing.files[key] = entry
    return listing
