"""Files that are complete or absent: write beside, fsync, rename over (a kill never leaves half a file)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync(path: Path) -> None:
    """Flush a file's bytes, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_beside(path: Path) -> Path:
    # same folder (so os.replace is atomic), a name no checkpoint glob (*.ckpt) matches
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _remove_stale_temps(path: Path) -> None:
    """Remove the temp files of ``path`` that killed writers left (their process is gone)."""
    for temp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = temp.name[len(path.name) + 2 : -len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            temp.unlink(missing_ok=True)


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temp file beside ``path``, then rename it over ``path``: ``path`` is the old or the new file.
    Temp files of ``path`` left by killed writers are removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    temp = _temp_beside(path)
    temp.unlink(missing_ok=True)
    try:
        try:
            write(temp)
            _fsync(temp)  # whatever wrote it (torch, onnx, a copy): its bytes on disk before the rename
            os.replace(temp, path)
        except (OSError, RuntimeError) as err:
            named = _write_error(err, temp, path)
            if named is None:
                raise
            raise named from err
    finally:
        temp.unlink(missing_ok=True)
    _fsync(path.parent)


def _write_error(err: OSError | RuntimeError, temp: Path, path: Path) -> OSError | None:
    """The OS error behind a failed write, naming ``path`` instead of its temp file (``None``: ``err`` as it is);
    torch's writer reports a failed write of a file object as a RuntimeError raised while handling the OSError."""
    os_error = err if isinstance(err, OSError) else err.__context__
    if not isinstance(os_error, OSError) or os_error.errno is None:
        return None
    if os_error.filename not in (None, str(temp)):
        return None if os_error is err else os_error  # another file (a copy's source)
    return OSError(os_error.errno, os_error.strerror, str(path))


def atomic_link(source: str | Path, target: str | Path) -> None:
    """Make ``target`` the same file as ``source`` (hard link, a copy where links are not supported), atomically."""

    def link_or_copy(temp: Path) -> None:
        try:
            os.link(source, temp)
        except OSError:
            with open(source, "rb") as src, open(temp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)

    replace_atomically(Path(target), link_or_copy)
