"""User errors and the top-level handler that prints them as one line.

A user error (bad option value, missing or bad file, bad checkpoint) is printed as
``segfpn: error: <message>`` (plus ``hint: ...``) on stderr with exit code 2; any other exception is a bug
and keeps its traceback (exit code 1). ``SEGFPN_DEBUG=1`` or ``--debug`` shows the traceback of user
errors too.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

USER_ERROR_EXIT = 2
# the OS errors that are about the user's files and disks, not bugs -> what to do
_PERMISSION = "this user may not read or write there: check its permissions or choose another path"
FILE_SYSTEM_ERRORS = {
    errno.ENOENT: "check the path: it, or a folder on it, does not exist",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "the path is a folder; give a file path",
    errno.EACCES: _PERMISSION,
    errno.EPERM: _PERMISSION,
    errno.EROFS: "the file system is read-only: choose a folder on a writable disk",
    errno.ENOSPC: "the disk is full: free space or choose another folder",
    errno.EDQUOT: "the disk quota is used up: free space or choose another folder",
    errno.EFBIG: "the file exceeds the size this process may write (ulimit -f)",
    errno.ENAMETOOLONG: "shorten the path",
}
DEBUG_FLAG = "--debug"


class UserError(Exception):
    """Bad input from the user; ``hint`` is an optional one-line suggestion."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(UserError, ValueError):
    """A configuration value that is out of range or malformed."""


class DataError(UserError, FileNotFoundError):
    """A data folder or file that is missing or not usable."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file that is missing, not a checkpoint, or truncated."""


# jsonargparse's message for an option that a link fills in -> what to say instead
_LINKED = re.compile(r'Linked "(?P<target>[\w.]+)" must be given via "(?P<source>[\w.]+)"')
_LINK_HINTS = {
    "model.num_classes": (
        "--model.num_classes cannot be set: it comes from the data (data.num_classes, the number of class names "
        "in the dataset's description), expected no value, found one",
        "the number of classes changes only with the dataset: train on another label set by choosing a dataset "
        "(data options) whose classes differ",
    )
}


def debug_requested(args: list[str]) -> tuple[bool, list[str]]:
    """Whether ``--debug`` or ``SEGFPN_DEBUG=1`` asks for tracebacks, and ``args`` without ``--debug``."""
    env = os.environ.get("SEGFPN_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    return env or DEBUG_FLAG in args, [a for a in args if a != DEBUG_FLAG]


def as_user_error(err: BaseException) -> UserError | None:
    """The :class:`UserError` that ``err`` is or wraps (``raise ... from``), a jsonargparse parse error or a
    Lightning misconfiguration as one; ``None`` for anything else (a bug)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UserError):
            return current
        if isinstance(current, argparse.ArgumentError):
            return _from_parse_error(current)
        if type(current).__name__ == "MisconfigurationException":  # Lightning's bad trainer options
            return ConfigError(" ".join(str(current).split()))
        if isinstance(current, OSError) and current.filename is not None and current.errno in FILE_SYSTEM_ERRORS:
            return file_system_error(current)
        current = current.__cause__  # explicit wrapping only: an error raised while handling one is a bug
    return None


def file_system_error(err: OSError) -> UserError:
    """A failed read or write of a path (missing folder, read-only or full disk, a folder where a file should be)
    as one line naming the path."""
    path = str(err.filename) + ("" if err.filename2 is None else f" -> {err.filename2}")
    return UserError(f"{path!r}: {err.strerror} ({errno.errorcode[err.errno]})", FILE_SYSTEM_ERRORS[err.errno])


def _from_parse_error(err: argparse.ArgumentError) -> UserError:
    message = " ".join(str(err).split())  # jsonargparse indents details on further lines
    linked = _LINKED.search(message)
    if linked and linked["target"] in _LINK_HINTS:
        return ConfigError(*_LINK_HINTS[linked["target"]])
    return ConfigError(message, "run `segfpn <command> --help` for the accepted options")


def format_user_error(err: UserError) -> str:
    """``segfpn: error: ...`` plus ``hint: ...`` on a second line when there is a hint."""
    message = str(err)
    if "\nOriginal Traceback" in message:  # re-raised from a DataLoader worker: keep the worker's own message
        last = message.rstrip().splitlines()[-1]
        message = last.split(": ", 1)[1] if last.startswith(type(err).__module__) else last
    message = " ".join(message.split())
    lines = [f"segfpn: error: {message}"]
    if err.hint:
        lines.append(f"hint: {err.hint}")
    return "\n".join(lines)


@contextmanager
def handle_errors(debug: bool = False) -> Iterator[None]:
    """Turn user errors into one stderr line and ``SystemExit(2)``; other exceptions pass unchanged."""
    try:
        yield
    except Exception as err:
        user_error = as_user_error(err)
        if user_error is None:
            raise
        if debug:
            traceback.print_exception(err, file=sys.stderr)
        print(format_user_error(user_error), file=sys.stderr, flush=True)
        raise SystemExit(USER_ERROR_EXIT) from None
