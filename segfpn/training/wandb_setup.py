"""Choose online or offline W&B before any run starts."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_info


def wandb_credentials_present() -> bool:
    """True when a W&B API key is in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(path).authenticators("api.wandb.ai") is not None
    except (netrc.NetrcParseError, OSError):
        return False


def configure_wandb_mode() -> str:
    """Honour ``WANDB_MODE``; without it and without credentials, switch to offline and say so once."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    if wandb_credentials_present():
        return "online"
    os.environ["WANDB_MODE"] = "offline"
    rank_zero_info("W&B: no credentials found, logging offline (sync later with `wandb sync <run dir>`).")
    return "offline"
