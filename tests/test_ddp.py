"""DDP on two CPU processes (gloo): evaluation equals the single-process numbers; training runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.fabric.plugins.environments.lightning import find_free_network_port

from segfpn.training.cli import run_cli
from tests.test_cli import only_run, tiny_args

pytestmark = pytest.mark.slow


def _segfpn(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # one thread in every process (Lightning keeps OMP_NUM_THREADS when set): float32 sums split over another
    # thread count round differently (1e-8 relative on AVX-512 machines), and the comparisons below are exact
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "segfpn", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _scores(root: Path) -> dict:
    files = sorted((root / "results").glob("validate_val_step*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_ddp_validation_equals_single_process(tmp_path: Path, synthetic_root: Path) -> None:
    assert len(list((synthetic_root / "images" / "validation").iterdir())) % 2 == 1  # odd: DDP would pad
    train_root = tmp_path / "train"
    run_cli(["fit", *tiny_args(train_root, synthetic_root, max_steps=4)])
    ckpt = only_run(train_root) / "checkpoints" / "last.ckpt"
    common = [
        a
        for a in tiny_args(tmp_path, synthetic_root)
        if "default_root_dir" not in a and "limit_val" not in a and "save_dir" not in a
    ]
    single, double = tmp_path / "single", tmp_path / "ddp"
    _segfpn(
        "validate",
        *common,
        f"--trainer.default_root_dir={single}",
        f"--trainer.logger.init_args.save_dir={single}",
        f"--ckpt_path={ckpt}",
        cwd=tmp_path,
    )
    _segfpn(
        "validate",
        *common,
        f"--trainer.default_root_dir={double}",
        f"--trainer.logger.init_args.save_dir={double}",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        f"--ckpt_path={ckpt}",
        cwd=tmp_path,
    )
    a, b = _scores(only_run(single)), _scores(only_run(double))  # the DDP ranks shared one run folder
    print(
        f"\n1 process: mIoU {a['mIoU']:.6f} aAcc {a['aAcc']:.6f} mAcc {a['mAcc']:.6f}; "
        f"2 processes: mIoU {b['mIoU']:.6f} aAcc {b['aAcc']:.6f} mAcc {b['mAcc']:.6f}"
    )
    assert a["confmat"] == b["confmat"], "every pixel must be counted exactly once under DDP"
    for key in ("mIoU", "aAcc", "mAcc"):
        assert a[key] == pytest.approx(b[key], abs=1e-9), key
    assert a["IoU"] == b["IoU"]
    # CE summed over labelled pixels / their count: the same with 3 + 2 images per rank as with 5 in one
    print(f"val/loss: 1 process {a['loss']:.9f}, 2 processes {b['loss']:.9f}")
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-9, abs=0)


def test_ddp_training_on_two_processes(tmp_path: Path, synthetic_root: Path) -> None:
    args = tiny_args(tmp_path, synthetic_root, max_steps=4)  # 2 steps per epoch and rank
    # SyncBatchNorm (on in configs/trainer/ddp.yaml) needs GPUs; on CPU the plain BN path runs
    _segfpn("fit", *args, "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp", cwd=tmp_path)
    import torch

    ckpt = torch.load(only_run(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["epoch"] == 1
    assert any("running_mean" in k for k in ckpt["state_dict"])


def test_torchrun_recipe_on_two_cpu_processes(tmp_path: Path, synthetic_root: Path) -> None:
    """experiments/slurm/torchrun.sh starts 2 ranks; Lightning reads torchrun's environment."""
    import yaml

    config = tmp_path / "job.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "trainer": {
                    "accelerator": "cpu",
                    "max_steps": 2,
                    "default_root_dir": str(tmp_path),
                    "enable_progress_bar": False,
                    "logger": False,
                }
            }
        )
    )
    args = [
        a for a in tiny_args(tmp_path, synthetic_root, max_steps=2) if "logger" not in a and "default_root" not in a
    ]
    script = Path(__file__).resolve().parents[1] / "experiments" / "slurm" / "torchrun.sh"
    env = {
        **os.environ,
        "GPUS": "2",
        "MASTER_PORT": str(find_free_network_port()),  # a fixed port fails while another run holds it
        "WANDB_MODE": "offline",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["bash", str(script), str(config), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr + result.stdout
    import torch

    run = tmp_path / "torchrun-job"  # torchrun.sh names the run after the config (RUN_NAME overrides)
    assert only_run(tmp_path) == run
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2


def _repeat_factor_rank(rank: int, init_file: str, epochs: int, out: str) -> None:
    """One DDP rank: iterate a RepeatFactorSampler wrapped as Lightning does under DDP, several epochs."""
    import numpy as np
    import torch
    import torch.distributed as dist
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    from segfpn.datasets.sampling import RepeatFactorSampler

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    factors = 1.0 + 3.0 * np.random.default_rng(0).random(400) ** 4  # fractional: varying draws per image
    wrapper = DistributedSamplerWrapper(RepeatFactorSampler(factors, seed=0), num_replicas=2, rank=rank)
    record = []
    for epoch in range(epochs):
        wrapper.set_epoch(epoch)
        indices = list(wrapper)  # raised IndexError when the sampler's length differed from its epoch
        gathered = [None, None]
        dist.all_gather_object(gathered, indices)
        record.append({"len": len(wrapper), "sizes": [len(g) for g in gathered], "merged": sorted(sum(gathered, []))})
    dist.destroy_process_group()
    if rank == 0:
        torch.save(record, out)


def test_repeat_factor_sampler_under_ddp_gives_every_rank_the_same_length(tmp_path: Path) -> None:
    import numpy as np
    import torch
    import torch.multiprocessing as mp

    from segfpn.datasets.sampling import RepeatFactorSampler

    epochs = 40
    out = tmp_path / "record.pt"
    mp.spawn(_repeat_factor_rank, args=(str(tmp_path / "init"), epochs, str(out)), nprocs=2, join=True)
    record = torch.load(out, weights_only=True)
    factors = 1.0 + 3.0 * np.random.default_rng(0).random(400) ** 4
    single = RepeatFactorSampler(factors, seed=0)
    assert len(record) == epochs and len(single) == round(factors.sum())
    for epoch, r in enumerate(record):
        assert r["sizes"] == [r["len"], r["len"]], (epoch, r["sizes"])  # same number of batches on each rank
        single.set_epoch(epoch)
        # the two ranks together draw the epoch's list (plus one padding sample for an odd length)
        drawn = np.bincount(list(single), minlength=400)
        merged = np.bincount(r["merged"], minlength=400)
        assert (merged - drawn).sum() == 2 * r["len"] - len(single) and ((merged - drawn) >= 0).all()


def test_repeat_factor_training_on_two_processes_for_several_epochs(tmp_path: Path, synthetic_root: Path) -> None:
    """The real CLI, class-balanced sampling, 2 gloo ranks, 3 epochs: every epoch has the same number of steps."""
    import torch

    from segfpn.datasets.ade20k import ADE20KDataset
    from segfpn.datasets.class_stats import compute_class_stats
    from segfpn.datasets.sampling import repeat_factors

    threshold, epochs, batch = 0.5, 3, 2
    presence = compute_class_stats(ADE20KDataset(synthetic_root, "training"), progress=False).presence
    factors = repeat_factors(presence, threshold)
    assert (factors % 1 > 0).any()  # fractional factors: the draws per image vary between epochs
    per_rank = -(-round(factors.sum()) // 2)
    args = [
        a
        for a in tiny_args(tmp_path, synthetic_root, max_steps=-1)
        if "batch_size" not in a and "check_val" not in a and "limit_val" not in a
    ]
    _segfpn(
        "fit",
        *args,
        "--data.sampler=repeat_factor",
        f"--data.repeat_threshold={threshold}",
        f"--data.batch_size={batch}",
        f"--trainer.max_epochs={epochs}",
        f"--trainer.check_val_every_n_epoch={epochs}",
        "--trainer.limit_val_batches=1",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        cwd=tmp_path,
    )
    ckpt = torch.load(only_run(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == epochs * (per_rank // batch), (ckpt["global_step"], per_rank)
