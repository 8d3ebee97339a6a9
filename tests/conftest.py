"""Shared fixtures: the real ADE20K sample pairs, a generated dataset, tiny models."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network in tests: hub look-ups fail at once
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "ade20k_samples" / "ADEChallengeData2016"
# what running the suite may change in the clone: caches and the venv (the install)
_CACHES = (".venv/", "__pycache__/", ".pytest_cache/", ".ruff_cache/", ".egg-info/")
_CLONE_BEFORE = pytest.StashKey[set[str] | None]()


def clone_state() -> set[str] | None:
    """The clone's modified, untracked and ignored files as ``git status`` lists them, each with its size and
    modification time (a rewrite of an already listed file shows), caches left out; ``None`` outside a git
    checkout."""
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if status.returncode != 0:
        return None
    state = set()
    for line in status.stdout.splitlines():
        if any(cache in line for cache in _CACHES):
            continue
        path = REPO / line[3:].split(" -> ")[-1].strip('"')
        stat = path.stat() if path.is_file() else None
        state.add(line if stat is None else f"{line} ({stat.st_size} bytes, mtime {stat.st_mtime_ns})")
    return state


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_CLONE_BEFORE] = clone_state()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when the tests wrote into the clone (every test writes below its own temporary folder)."""
    before = session.config.stash.get(_CLONE_BEFORE, None)
    after = clone_state() if before is not None else None
    if before is None or after is None or after == before:
        return
    changes = sorted(after - before) + [f"(gone) {line}" for line in sorted(before - after)]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "the test suite changed the clone", red=True)
        for line in changes[:50]:
            reporter.write_line(line)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
