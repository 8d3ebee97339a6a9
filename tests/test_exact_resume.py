"""A run stopped anywhere and resumed ends with exactly the weights of the run that was never stopped (CPU).

Tiny real runs (tests/exact_resume_run.py): resnet18 with drop-path, 16 images of batch 2 (8 steps an epoch),
12 steps, random crops, scales, flips and photometric distortion. Each stopped run is resumed from its own stop
(or periodic) checkpoint and compared with an uninterrupted run, parameter by parameter and buffer by buffer.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.exact_resume_run import Run, as_script_args, fit

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def max_weight_difference(a: Path, b: Path) -> float:
    wa, wb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert wa.keys() == wb.keys()
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa if wa[k].numel())


def run_script(run: Run) -> subprocess.CompletedProcess:
    """``run`` in its own process (the DDP launcher starts the second rank from it)."""
    return subprocess.run(as_script_args(run), cwd=REPO, capture_output=True, text=True, timeout=600)


def stop_checkpoint(root: Path) -> Path:
    """The newest stop checkpoint below ``root`` (the highest step)."""
    return max(root.rglob("stop-step*.ckpt"), key=lambda p: p.name)


def resume_until_done(run: Run, stops: list[int]) -> Path:
    """``run`` stopped by SIGTERM at each global batch of ``stops`` and resumed from the stop checkpoint each time,
    in one folder as ``segfpn fit --ckpt_path last`` does; returns the final weights."""
    ckpt = None
    for at in [*stops, None]:
        fit(replace(run, signal_at=at, ckpt_path=ckpt))
        if at is not None:
            ckpt = str(stop_checkpoint(Path(run.root)))
            step = torch.load(ckpt, weights_only=True)["global_step"]
            assert 0 < step < run.max_steps, f"the stop at batch {at} came at step {step}"
    return Path(run.root) / "weights.pt"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path):
    """The weights of the never-stopped run for a variant of the options (computed once per variant)."""
    cache: dict[tuple, Path] = {}

    def weights(**options) -> Path:
        key = tuple(sorted(options.items()))
        if key not in cache:
            run = Run(root=str(tmp_path_factory.mktemp("uninterrupted")), data=str(synthetic_root), **options)
            fit(run)
            cache[key] = Path(run.root) / "weights.pt"
        return cache[key]

    return weights


@pytest.mark.parametrize(
    "stops, options",
    [
        pytest.param([4], {}, id="mid-epoch"),
        pytest.param([7], {}, id="epoch-boundary"),
        pytest.param([2, 9], {}, id="two-stops"),
        pytest.param([4], {"sampler": "repeat_factor"}, id="repeat-factor"),
        # the signal comes in the first micro-batch of step 3: the stop waits for the step's end
        pytest.param([4], {"accumulate": 2}, id="accumulate-2-between-micro-batches"),
    ],
)
def test_stopped_and_resumed_run_has_the_uninterrupted_weights(
    tmp_path: Path, synthetic_root: Path, uninterrupted, stops: list[int], options: dict
) -> None:
    resumed = resume_until_done(Run(root=str(tmp_path), data=str(synthetic_root), **options), stops)
    assert max_weight_difference(resumed, uninterrupted(**options)) == 0.0


def test_loader_workers_change_nothing_stopped_or_not(tmp_path: Path, synthetic_root: Path, uninterrupted) -> None:
    """Two workers, stopped mid-epoch and resumed: the weights of the uninterrupted run without workers."""
    resumed = resume_until_done(Run(root=str(tmp_path), data=str(synthetic_root), num_workers=2), [5])
    assert max_weight_difference(resumed, uninterrupted()) == 0.0


def test_after_a_sigkill_the_run_resumes_exactly_from_the_last_periodic_checkpoint(
    tmp_path: Path, synthetic_root: Path, uninterrupted
) -> None:
    killed = Run(root=str(tmp_path / "killed"), data=str(synthetic_root), every_n_train_steps=3)
    result = run_script(replace(killed, signal_at=10, signal_name="SIGKILL"))
    assert result.returncode == -9, result.stderr[-3000:]
    steps = sorted(torch.load(p, weights_only=True)["global_step"] for p in tmp_path.rglob("*.ckpt"))
    assert steps == [3, 6, 9]
    newest = max(tmp_path.rglob("*.ckpt"), key=lambda p: torch.load(p, weights_only=True)["global_step"])
    resumed = replace(killed, root=str(tmp_path / "resumed"), ckpt_path=str(newest))
    fit(resumed)
    assert max_weight_difference(Path(resumed.root) / "weights.pt", uninterrupted()) == 0.0


def test_a_stop_before_a_validation_waits_for_it_and_resumes_with_the_checkpoint_callback_state(
    tmp_path: Path, synthetic_root: Path
) -> None:
    """Validation every 4 steps, top-2 by mIoU: the stop's checkpoint holds the callback's best and top-k list."""
    options = {"val_check_interval": 4}
    states = {}
    for name, stops in (("uninterrupted", []), ("stopped", [3])):
        run = Run(root=str(tmp_path / name), data=str(synthetic_root), **options)
        resume_until_done(run, stops)
        final = torch.load(Path(run.root) / "checkpoints" / "last.ckpt", weights_only=False)
        (state,) = [v for k, v in final["callbacks"].items() if k.startswith("ModelCheckpoint")]
        states[name] = {
            "best": float(state["best_model_score"]),
            "top_k": sorted((Path(k).name, round(float(v), 12)) for k, v in state["best_k_models"].items()),
        }
    stop = torch.load(stop_checkpoint(tmp_path / "stopped"), weights_only=True)
    assert stop["global_step"] == 4  # after the validation that followed step 4, not before it
    assert states["stopped"] == states["uninterrupted"]
    assert max_weight_difference(*(tmp_path / name / "weights.pt" for name in states)) == 0.0


def test_two_ddp_ranks_stopped_mid_epoch_resume_exactly(tmp_path: Path, synthetic_root: Path) -> None:
    """2 gloo ranks (4 steps an epoch each), SIGTERM to rank 0 at step 3: both stop, both resume their streams."""
    base = Run(root=str(tmp_path / "uninterrupted"), data=str(synthetic_root), devices=2)
    stopped = replace(base, root=str(tmp_path / "stopped"), signal_at=2)
    for run in (base, stopped):
        result = run_script(run)
        assert result.returncode in (0, 143), result.stderr[-3000:]
    resumed = replace(stopped, root=str(tmp_path / "resumed"), signal_at=None)
    resumed.ckpt_path = str(stop_checkpoint(tmp_path / "stopped"))
    assert 0 < torch.load(resumed.ckpt_path, weights_only=True)["global_step"] < base.max_steps
    result = run_script(resumed)
    assert result.returncode == 0, result.stderr[-3000:]
    assert max_weight_difference(tmp_path / "resumed" / "weights.pt", tmp_path / "uninterrupted" / "weights.pt") == 0.0
