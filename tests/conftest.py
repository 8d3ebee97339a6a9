"""Shared fixtures: the real ADE20K sample pairs, a generated dataset, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network in tests: hub look-ups fail at once
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "ade20k_samples" / "ADEChallengeData2016"


@pytest.fixture(scope="session")
def samples_root() -> Path:
    """The three real ADE20K validation pairs (skips when ../shared is absent)."""
    if not (SAMPLES / "images" / "validation").is_dir():
        pytest.skip(f"real ADE20K samples not found at {SAMPLES}")
    return SAMPLES


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated dataset in the ADEChallengeData2016 layout (16 train, 5 val images)."""
    from segfpn.datasets.synthetic import generate_dataset

    return generate_dataset(
        tmp_path_factory.mktemp("data") / "ADEChallengeData2016",
        num_train=16,
        num_val=5,
        size_range=(96, 160),
        progress=False,
    )


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGFPN_CACHE", str(tmp_path / "cache"))
    # a W&B service started by an earlier test in this process is not handed to the processes this test starts
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
