"""Messages of third-party packages that a segfpn user cannot act on, kept off the console.

Each is matched by its exact start, so that any other message of the same package still shows.
"""

from __future__ import annotations

import logging
import warnings

# (logger name, message start): Lightning's advertisement for its hosted logger, on every run; W&B's warning
# about a list of images of different sizes, which segfpn logs on purpose (one overlay per validation image)
LOG_MESSAGES: tuple[tuple[str, str], ...] = (
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip: For seamless cloud logging"),
    ("root", "Images sizes do not match"),
)
# deprecation warnings raised inside Lightning's own code, not by segfpn's calls
WARNINGS: tuple[str, ...] = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",)


class _DropMessages(logging.Filter):
    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def quiet_third_party() -> None:
    """Install the filters (once per process)."""
    for name in {name for name, _ in LOG_MESSAGES}:
        logger = logging.getLogger(None if name == "root" else name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(tuple(start for n, start in LOG_MESSAGES if n == name)))
    for message in WARNINGS:
        warnings.filterwarnings("ignore", message=message)
