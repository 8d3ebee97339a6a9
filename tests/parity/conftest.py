"""Parity tests against mmsegmentation's own code: installs a stub for the four compiled ``mmcv.ops`` names that
``mmseg.models`` imports (no compared model uses them), and fails when mmseg is absent."""

from __future__ import annotations

import sys
import types

import pytest


def _install_mmcv_ops_stub() -> None:
    if "mmcv.ops" in sys.modules:
        return
    stub = types.ModuleType("mmcv.ops")

    def _unavailable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("mmcv.ops is a test stub: compiled ops are not installed (mmcv-lite)")

    for name in ("CrissCrossAttention", "PSAMask", "point_sample", "sigmoid_focal_loss"):
        setattr(stub, name, _unavailable)
    sys.modules["mmcv.ops"] = stub


_install_mmcv_ops_stub()


@pytest.fixture(scope="session")
def mmseg() -> types.ModuleType:
    """The mmseg package (fails, never skips, when the parity extra is missing)."""
    try:
        import mmseg
        import mmseg.models  # noqa: F401
    except ImportError as err:
        pytest.fail(f"mmsegmentation is not installed ({err}): run `make install` (installs the parity extra)")
    return mmseg
