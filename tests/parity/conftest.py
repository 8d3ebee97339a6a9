"""Parity tests against mmsegmentation 1.2.2's own code (the ``parity`` extra plus
``requirements/parity-nodeps.txt``, installed by ``make install``). They fail, never skip, without it."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from segfpn.datasets.ade20k import reduce_zero_label

# importing mmseg.models pulls these from mmcv.ops, whose compiled kernels mmcv-lite does not ship
MMCV_OPS_NAMES = ("CrissCrossAttention", "PSAMask", "point_sample", "sigmoid_focal_loss")
MMSEG_VERSION = "1.2.2"


def _unavailable(name: str):
    def fail(*args, **kwargs):
        raise RuntimeError(f"mmcv.ops.{name} is the parity tests' stub: mmcv-lite has no compiled ops")

    return fail


def install_mmcv_ops_stub() -> None:
    """Put a module holding the four names mmseg imports from ``mmcv.ops`` in ``sys.modules`` (unless a
    full mmcv provides them)."""
    if "mmcv.ops" in sys.modules:
        return
    try:
        importlib.import_module("mmcv.ops")
        return
    except Exception:  # mmcv-lite: no mmcv._ext
        sys.modules.pop("mmcv.ops", None)
    stub = types.ModuleType("mmcv.ops")
    for name in MMCV_OPS_NAMES:
        setattr(stub, name, _unavailable(name))
    sys.modules["mmcv.ops"] = stub


def import_reference(name: str) -> ModuleType:
    """Import a module of mmsegmentation/mmcv/mmengine, failing (not skipping) when it is not installed."""
    install_mmcv_ops_stub()
    try:
        module = importlib.import_module(name)
        import mmseg
    except ImportError as err:
        pytest.fail(
            f"parity tests need mmsegmentation=={MMSEG_VERSION} (cannot import {name}: {err}); run `make install`, "
            "which installs the 'parity' extra and requirements/parity-nodeps.txt",
            pytrace=False,
        )
    if mmseg.__version__ != MMSEG_VERSION:
        pytest.fail(f"parity tests are written against mmsegmentation {MMSEG_VERSION}, found {mmseg.__version__}")
    return module


def load_pair(root: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    """A real sample as (RGB uint8 image, train-id mask with 255 = ignore), as segfpn's dataset reads it."""
    with Image.open(root / "images" / "validation" / f"{stem}.jpg") as im:
        image = np.asarray(im.convert("RGB"))
    with Image.open(root / "annotations" / "validation" / f"{stem}.png") as im:
        mask = reduce_zero_label(np.asarray(im))
    return image, mask


@pytest.fixture(scope="session")
def samples_root() -> Path:
    """The real ADE20K samples; unlike the top-level fixture, a parity test fails without them."""
    from tests.conftest import SAMPLES

    if not (SAMPLES / "images" / "validation").is_dir():
        pytest.fail(f"real ADE20K samples not found at {SAMPLES}", pytrace=False)
    return SAMPLES


@pytest.fixture(scope="session")
def real_pairs(samples_root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The three real ADE20K validation pairs."""
    stems = sorted(p.stem for p in (samples_root / "images" / "validation").glob("*.jpg"))
    assert len(stems) == 3, f"expected 3 real samples in {samples_root}, found {stems}"
    return [load_pair(samples_root, s) for s in stems]


def mmseg_config(name: str = "_base_/datasets/ade20k.py"):
    """A config shipped inside the mmseg package (``mmseg/.mim/configs``), read with mmengine's Config."""
    mmseg = import_reference("mmseg")
    from mmengine.config import Config

    return Config.fromfile(str(Path(mmseg.__file__).parent / ".mim" / "configs" / name))


def build_mmseg_transform(cfg: dict):
    """An mmseg transform from its config dict, built through mmseg's registry (so ``Resize`` is mmseg's)."""
    registry = import_reference("mmseg.registry")
    import_reference("mmseg.datasets")
    from mmengine.registry import init_default_scope

    init_default_scope("mmseg")
    return registry.TRANSFORMS.build(dict(cfg))


class Tape:
    """numpy.random draws recorded while mmseg's transforms run (patched in with ``monkeypatch``): each
    entry is (function name, arguments, value), drawn from a seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.RandomState(seed)
        self.events: list[tuple[str, tuple, object]] = []

    def _record(self, name: str, args: tuple, value):
        self.events.append((name, args, value))
        return value

    def randint(self, low, high=None, size=None):
        assert size is None
        return self._record("randint", (low, high), int(self.rng.randint(low, high)))

    def uniform(self, low=0.0, high=1.0, size=None):
        assert size is None
        return self._record("uniform", (low, high), float(self.rng.uniform(low, high)))

    def random_sample(self, size=None):
        assert size is None
        return self._record("random_sample", (), float(self.rng.random_sample()))

    def choice(self, a, p=None):
        return self._record("choice", (tuple(a), tuple(p)), a[self.rng.choice(len(a), p=p)])

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> Tape:
        for name in ("randint", "uniform", "random_sample", "choice"):
            monkeypatch.setattr(np.random, name, getattr(self, name))
        return self
