"""Run lifecycle through the real CLI on tiny generated data: one folder per run, concurrent runs, a sweep-like
series, SIGTERM/SIGINT (exit 143/130, resume at that step), checkpoints that survive a kill, the W&B run id kept
across a resume, and the checkpoint-architecture rule."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch

from segfpn.errors import CheckpointError
from segfpn.training import runs
from segfpn.training.checkpoint_io import atomic_save
from segfpn.training.cli import CheckpointMismatchError, run_cli
from tests.test_cli import CSV_LOGGER, _RecordResume, only_run, tiny_args

REPO = Path(__file__).resolve().parents[1]
WANDB_LOGGER = "--trainer.logger=lightning.pytorch.loggers.WandbLogger"


def segfpn_process(args: list[str]) -> subprocess.Popen:
    """``python -m segfpn`` in its own process (the worktree first on the import path)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "WANDB_MODE": "offline"}
    env.pop(runs.RUN_DIR_ENV, None)
    return subprocess.Popen(
        [sys.executable, "-m", "segfpn", *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def wait_for(condition, what: str, process: subprocess.Popen | None = None, timeout: float = 300.0):
    """Poll ``condition()`` until it returns something truthy; fail on timeout or when ``process`` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            output = process.stdout.read().decode()
            raise AssertionError(f"process ended ({process.returncode}) before {what}:\n{output}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def held_by_a_live_process(run_dir: Path) -> Iterator[int]:
    """``run_dir``'s lock names a live process of this host (a sleeping child) while the block runs; its pid."""
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (run_dir / runs.LOCK_FILE).write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename}))
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def logged_train_step(root: Path) -> int:
    """The highest training step logged so far in the CSV metrics of the run below ``root`` (-1 before any)."""
    steps = [-1]
    for metrics in root.glob("*/version_*/metrics.csv"):
        head, *lines = metrics.read_text().splitlines() or [""]
        for line in lines:
            row = dict(zip(head.split(","), line.split(",")))
            if row.get("train/loss") and row.get("step", "").isdigit():  # a row being written is skipped
                steps.append(int(row["step"]))
    return max(steps)


class SignalDuringValidation(L.Callback):
    """Sends ``signal_name`` to this process during the first validation batch of fit (not the sanity check)."""

    def __init__(self, signal_name: str = "SIGINT") -> None:
        self.signum = signal.Signals[signal_name]
        self.sent = False

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)


def _recording_resume(monkeypatch: pytest.MonkeyPatch) -> _RecordResume:
    recorder = _RecordResume()
    import segfpn.training.cli as cli_module

    original = cli_module.SegFPNCLI.instantiate_trainer
    monkeypatch.setattr(
        cli_module.SegFPNCLI, "instantiate_trainer", lambda self, **kw: original(self, callbacks=[recorder], **kw)
    )
    return recorder


def _assert_resumes_at(checkpoint: Path, root: Path, data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    recorder = _recording_resume(monkeypatch)
    cli = run_cli(["fit", *tiny_args(root, data, max_steps=saved["global_step"] + 2), "--ckpt_path=last"])
    assert recorder.start_step == saved["global_step"] and cli.trainer.global_step == saved["global_step"] + 2
    assert Path(cli.trainer.default_root_dir) == checkpoint.parent.parent  # the same run folder
    for key, state in saved["optimizer_states"][0]["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(recorder.optimizer_state["state"][key][name], value)


@pytest.mark.slow
def test_each_fit_gets_its_own_folder_and_evaluation_uses_the_newest(tmp_path: Path, synthetic_root: Path) -> None:
    """A sweep-like series: 3 fits with different options in one root give 3 run folders, each with its own
    best.ckpt (its own lr), results and config snapshots; validate --ckpt_path best evaluates the newest run."""
    lrs = ["0.001", "0.002", "0.003"]
    for lr in lrs:
        run_cli(["fit", *tiny_args(tmp_path, synthetic_root, max_steps=4), f"--model.lr={lr}"])
    folders = runs.runs_newest_first(tmp_path)
    assert len(folders) == 3 and len({f.name for f in folders}) == 3
    for folder, lr in zip(folders, reversed(lrs)):
        best = torch.load(folder / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
        assert best["hyper_parameters"]["lr"] == float(lr)
        assert [p.name for p in (folder / "results").glob("fit_val_step*.json")] == ["fit_val_step0000004.json"]
        assert len(list((folder / "configs").glob("fit-*.yaml"))) == 1
        assert not (folder / runs.LOCK_FILE).exists()  # released at the end
    cli = run_cli(["validate", *tiny_args(tmp_path, synthetic_root), "--ckpt_path=best"])
    assert Path(cli.trainer.default_root_dir) == folders[0]
    assert list((folders[0] / "results").glob("validate_val_step*.json"))


@pytest.mark.slow
def test_two_concurrent_runs_in_one_root_get_two_folders(tmp_path: Path, synthetic_root: Path) -> None:
    args = ["fit", *tiny_args(tmp_path, synthetic_root, max_steps=2), "--trainer.limit_val_batches=1"]
    first, second = segfpn_process(args), segfpn_process([*args, "--model.lr=0.002"])
    outputs = [p.communicate(timeout=600)[0].decode() for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    folders = runs.runs_newest_first(tmp_path)
    assert len(folders) == 2
    lrs = sorted(
        torch.load(f / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["hyper_parameters"]["lr"]
        for f in folders
    )
    assert lrs == [0.001, 0.002]


@pytest.mark.slow
def test_a_folder_held_by_a_live_process_is_refused_and_a_stale_lock_taken_over(
    tmp_path: Path, synthetic_root: Path
) -> None:
    args = ["fit", *tiny_args(tmp_path, synthetic_root, max_steps=1), "--trainer.limit_val_batches=0"]
    folder = tmp_path / "shared"
    runs.init_run_dir(folder)
    with held_by_a_live_process(folder) as pid:
        with pytest.raises(runs.RunFolderBusyError, match=f"run folder '{folder}' is in use by process {pid}"):
            run_cli([*args, "--run_name=shared"])
    # the holder is gone: its lock is stale and the run takes the folder over
    cli = run_cli([*args, "--run_name=shared"])
    assert Path(cli.trainer.default_root_dir) == folder and (folder / "checkpoints" / "last.ckpt").is_file()
    assert not (folder / runs.LOCK_FILE).exists()
    with pytest.raises(runs.RunFolderError, match="already holds the checkpoints of another run"):
        run_cli([*args, "--run_name=shared"])  # a fresh fit never writes into another run's folder


@pytest.mark.slow
def test_ckpt_path_last_refuses_while_the_newest_run_is_held_instead_of_resuming_an_older_one(
    tmp_path: Path, synthetic_root: Path
) -> None:
    """Two `fit --ckpt_path last` started together: the one that finds the newest run held by the other must not
    continue an older, finished run."""
    args = ["fit", *tiny_args(tmp_path, synthetic_root, max_steps=2), "--trainer.limit_val_batches=0"]
    run_cli(args)
    finished = only_run(tmp_path)
    before = (finished / "checkpoints" / "last.ckpt").read_bytes()
    newest = tmp_path / "newest"
    runs.init_run_dir(newest)
    resume = ["fit", *tiny_args(tmp_path, synthetic_root, max_steps=4), "--trainer.limit_val_batches=0"]
    with held_by_a_live_process(newest) as pid:
        with pytest.raises(runs.RunFolderBusyError, match=f"run folder '{newest}' is in use by process {pid}"):
            run_cli([*resume, "--ckpt_path=last"])
    assert (finished / "checkpoints" / "last.ckpt").read_bytes() == before
    assert runs.runs_newest_first(tmp_path) == [newest, finished]


@pytest.mark.slow
def test_sigterm_at_a_random_step_saves_exits_143_and_resumes_there(
    tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = random.Random().randint(1, 5)
    args = tiny_args(tmp_path, synthetic_root, max_steps=200)
    args.append("--trainer.logger.init_args.flush_logs_every_n_steps=1")
    process = segfpn_process(["fit", *args])
    wait_for(lambda: logged_train_step(tmp_path) >= step, f"training step {step}", process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 143, output
    stops = list(only_run(tmp_path).glob("checkpoints/stop-step*.ckpt"))
    assert len(stops) == 1, output
    stopped_at = torch.load(stops[0], map_location="cpu", weights_only=True)["global_step"]
    assert step <= stopped_at < 200
    _assert_resumes_at(stops[0], tmp_path, synthetic_root, monkeypatch)


@pytest.mark.slow
def test_sigint_during_validation_saves_after_it_exits_130_and_resumes_there(
    tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = tiny_args(tmp_path, synthetic_root, max_steps=200)
    callback = "--trainer.callbacks+=tests.test_lifecycle.SignalDuringValidation"
    process = segfpn_process(["fit", *args, callback, "--trainer.limit_val_batches=3"])
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 130, output
    run = only_run(tmp_path)
    stops = list(run.glob("checkpoints/stop-step*.ckpt"))
    # 16 images, batch 4: the first validation follows step 4; the stop comes when it ends, with its results
    assert [p.name for p in stops] == ["stop-step0000004.ckpt"], output
    assert [p.name for p in (run / "results").glob("fit_val_*.json")] == ["fit_val_step0000004.json"]
    _assert_resumes_at(stops[0], tmp_path, synthetic_root, monkeypatch)


@pytest.mark.slow
def test_resume_skips_a_truncated_checkpoint_with_a_warning(
    tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_cli(["fit", *tiny_args(tmp_path, synthetic_root, max_steps=8), "--checkpoint.save_top_k=-1"])
    folder = only_run(tmp_path) / "checkpoints"
    newest = [p for p in folder.glob("*.ckpt") if torch.load(p, weights_only=True)["global_step"] == 8]
    assert folder / "last.ckpt" in newest
    for path in newest:  # as a SIGKILL in the middle of a plain write would leave them
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint .*last.ckpt"):
        _assert_resumes_at(next(folder.glob("step0000004-*.ckpt")), tmp_path, synthetic_root, monkeypatch)


def test_a_kill_during_a_checkpoint_write_leaves_the_old_file_complete(tmp_path: Path) -> None:
    """A real SIGKILL at whatever moment it lands: the checkpoint is the old one or the new one, never a part."""
    target = tmp_path / "last.ckpt"
    atomic_save({"global_step": 0, "weights": torch.zeros(1)}, target)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, torch; from segfpn.training.checkpoint_io import atomic_save\n"
            "for step in range(1, 10**6):\n"
            "    state = {'global_step': step, 'weights': torch.full((4_000_000,), float(step))}\n"
            f"    atomic_save(state, {str(target)!r})\n"
            "    print(step, flush=True)\n",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
    )
    writer.stdout.readline()  # the first new file is in place; later writes are under way
    writer.stdout.readline()
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    state = torch.load(target, weights_only=True)
    assert state["global_step"] >= 2 and torch.all(state["weights"] == state["global_step"])
    assert [p.name for p in tmp_path.glob("*.ckpt")] == ["last.ckpt"]
    # the killed writer's part file, if the kill left one, goes with the next save; a live writer's stays
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (tmp_path / f".last.ckpt.{live.pid}.tmp").write_bytes(b"being written")
        atomic_save({"global_step": 0}, target)
        assert sorted(p.name for p in tmp_path.iterdir()) == [f".last.ckpt.{live.pid}.tmp", "last.ckpt"]
    finally:
        live.kill()
        live.wait()


@pytest.mark.slow
def test_resume_continues_the_same_wandb_run_offline(tmp_path: Path, synthetic_root: Path) -> None:
    args = tiny_args(tmp_path, synthetic_root, max_steps=2, logger=WANDB_LOGGER) + ["--trainer.limit_val_batches=1"]
    run_cli(["fit", *args])
    run_cli(["fit", *tiny_args(tmp_path, synthetic_root, max_steps=4, logger=WANDB_LOGGER), "--ckpt_path=last"])
    run = only_run(tmp_path)
    wandb_id = runs.read_run_info(run)["wandb_id"]
    offline = sorted(p.name for p in (run / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(name.endswith(f"-{wandb_id}") for name in offline), offline
    run_cli(["fit", *args])  # a new fit: a new folder and a new W&B run
    other = runs.runs_newest_first(tmp_path)[0]
    assert other != run and runs.read_run_info(other)["wandb_id"] != wandb_id


@pytest.mark.slow
def test_checkpoint_architecture_wins_and_a_differing_given_option_is_an_error(
    tmp_path: Path, synthetic_root: Path
) -> None:
    args = tiny_args(tmp_path, synthetic_root, max_steps=1) + ["--trainer.limit_val_batches=1"]
    run_cli(["fit", *args])
    last = only_run(tmp_path) / "checkpoints" / "last.ckpt"
    for ckpt in (str(last), "last"):  # one rule for an explicit file and best/last
        with pytest.raises(
            CheckpointMismatchError, match="model.backbone_name: checkpoint 'pvt_v2_b0', given 'convnext_tiny'"
        ):
            run_cli(["validate", *args, f"--ckpt_path={ckpt}", "--model.backbone_name=convnext_tiny"])
    # architecture options not given take the checkpoint's values; inference options are the user's
    architecture = ("--model.fpn_channels", "--model.head_channels", "--model.backbone")
    minimal = [a for a in args if not a.startswith(architecture)]
    cli = run_cli(["validate", *minimal, f"--ckpt_path={last}", "--model.inference.mode=slide"])
    assert (cli.model.hparams.fpn_channels, cli.model.hparams.backbone_name) == (32, "pvt_v2_b0")
    assert cli.model.inference.mode == "slide"
    assert CSV_LOGGER in args


@pytest.mark.slow
def test_sigterm_during_start_up_is_acted_on_at_the_first_step(tmp_path: Path, synthetic_root: Path) -> None:
    process = segfpn_process(["fit", *tiny_args(tmp_path, synthetic_root, max_steps=200)])
    # the run folder is chosen (signals are recorded from here on); the model is not built yet
    wait_for(lambda: b"run folder:" in process.stdout.readline(), "the run folder to be chosen", process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 143, output
    stops = list(only_run(tmp_path).glob("checkpoints/stop-step*.ckpt"))
    assert len(stops) == 1 and torch.load(stops[0], weights_only=True)["global_step"] >= 1, output


@pytest.mark.parametrize("content", [b"not a checkpoint\n", b"PK\x03\x04" + b"\x00" * 64], ids=["text", "broken_zip"])
def test_an_unreadable_checkpoint_file_is_named(tmp_path: Path, synthetic_root: Path, content: bytes) -> None:
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"--ckpt_path '{bad}' is (not a checkpoint|truncated or damaged)"):
        run_cli(["validate", *tiny_args(tmp_path / "runs", synthetic_root), f"--ckpt_path={bad}"])
    with pytest.raises(CheckpointError, match="--ckpt_path '.*missing.ckpt' does not exist"):
        run_cli(["validate", *tiny_args(tmp_path / "runs", synthetic_root), f"--ckpt_path={tmp_path}/missing.ckpt"])
    assert not runs.runs_newest_first(tmp_path / "runs")


@pytest.mark.slow
def test_sigterm_to_rank_0_stops_both_ddp_ranks_together(tmp_path: Path, synthetic_root: Path) -> None:
    args = tiny_args(tmp_path, synthetic_root, max_steps=200) + [
        "--trainer.logger.init_args.flush_logs_every_n_steps=1",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
    ]
    process = segfpn_process(["fit", *args])
    wait_for(lambda: logged_train_step(tmp_path) >= 1, "training step 1", process)
    process.send_signal(signal.SIGTERM)  # only the launching rank: the other learns it at the step's all-reduce
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 143, output
    stops = list(only_run(tmp_path).glob("checkpoints/stop-step*.ckpt"))
    assert len(stops) == 1, output
    assert 1 <= torch.load(stops[0], weights_only=True)["global_step"] < 200


@pytest.mark.slow
def test_a_requeued_slurm_job_finds_its_run_folder_and_takes_its_lock_over(
    tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job id names the run folder; the lock left by the job's previous start (another node, a pid there) is
    the job's own, so the requeued start takes it over and resumes. The real Slurm run is tests/test_slurm.py."""
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "segfpn", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0"}
    slurm |= {"SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost", "SLURM_NTASKS_PER_NODE": "1"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    args = tiny_args(tmp_path, synthetic_root, max_steps=2) + ["--trainer.limit_val_batches=0", "--ckpt_path=last"]
    run_cli(["fit", *args])
    run = tmp_path / "slurm-4242"
    assert only_run(tmp_path) == run and (run / "checkpoints" / "last.ckpt").is_file()
    (run / runs.LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "node-before-requeue", "slurm_job": "4242"}))
    recorder = _recording_resume(monkeypatch)
    cli = run_cli(
        ["fit", *tiny_args(tmp_path, synthetic_root, max_steps=4), "--trainer.limit_val_batches=0", "--ckpt_path=last"]
    )
    assert recorder.start_step == 2 and cli.trainer.global_step == 4 and only_run(tmp_path) == run
    monkeypatch.setenv("SLURM_JOB_ID", "4243")  # another job: the same folder name is not its own
    (run / runs.LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "node-of-job-4242", "slurm_job": "4242"}))
    with pytest.raises(runs.RunFolderBusyError, match="in use by process 1 on 'node-of-job-4242'"):
        run_cli(["fit", *args, "--run_name=slurm-4242"])


@pytest.mark.slow
def test_a_stopped_experiment_variant_is_not_recorded_as_done(tmp_path: Path, synthetic_root: Path) -> None:
    """SIGTERM during `segfpn experiment`: the variant is saved and left unfinished (no validation, no final.json),
    the command exits 143 instead of going on to the next variant."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(f"name: tiny\nbase: {REPO / 'configs' / 'demo.yaml'}\nvariants:\n  a: {{}}\n  b: {{}}\n")
    extra = [a for a in tiny_args(tmp_path, synthetic_root, max_steps=200) if "default_root_dir" not in a]
    extra.append("--data.embedded=false")  # the generated data_root of tiny_args, not the demo's embedded data
    process = segfpn_process(["experiment", str(spec), "--out", str(tmp_path / "out"), "--no_cost", *extra])
    wait_for(lambda: b"run folder:" in process.stdout.readline(), "variant a's run folder", process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 143, output
    variant = tmp_path / "out" / "tiny" / "a"
    assert list(variant.glob("checkpoints/stop-step*.ckpt")), output
    assert not (variant / "results" / "final.json").exists() and not (tmp_path / "out" / "tiny" / "b").exists()


def _race_for_stale_locks(root: str, rounds: int, barrier, wins) -> None:
    """One racer: at each round, together with the other one, try to take over that round's stale lock."""
    for i in range(rounds):
        barrier.wait()
        try:
            runs.acquire_lock(Path(root) / str(i))
            wins.put((i, os.getpid()))
        except runs.RunFolderBusyError:
            pass


def test_two_processes_taking_over_one_stale_lock_leave_exactly_one_winner(tmp_path: Path) -> None:
    import multiprocessing

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a holder that has ended: its locks are stale
    rounds = 200
    for i in range(rounds):
        runs.init_run_dir(tmp_path / str(i))
        (tmp_path / str(i) / runs.LOCK_FILE).write_text(json.dumps({"pid": gone.pid, "host": os.uname().nodename}))
    context = multiprocessing.get_context("fork")
    barrier, wins = context.Barrier(2), context.Queue()
    racers = [context.Process(target=_race_for_stale_locks, args=(str(tmp_path), rounds, barrier, wins)) for _ in "ab"]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=120)
        assert racer.exitcode == 0
    winners: dict[int, list[int]] = {}
    while not wins.empty():
        i, pid = wins.get()
        winners.setdefault(i, []).append(pid)
    assert sorted(winners) == list(range(rounds)) and all(len(w) == 1 for w in winners.values()), {
        i: w for i, w in winners.items() if len(w) != 1
    }
    for i, (pid,) in winners.items():
        assert runs.lock_holder(tmp_path / str(i))["pid"] == pid  # the lock names the one winner


def test_best_of_a_run_that_never_validated_points_to_last(tmp_path: Path, synthetic_root: Path) -> None:
    run_cli(["fit", *tiny_args(tmp_path, synthetic_root, max_steps=1), "--trainer.limit_val_batches=0"])
    run = only_run(tmp_path)
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "checkpoints" / "best.ckpt").exists()
    with pytest.raises(CheckpointError) as error:
        run_cli(["validate", *tiny_args(tmp_path, synthetic_root), "--ckpt_path=best"])
    assert "has a readable best.ckpt" in str(error.value)
    assert error.value.hint.startswith(f"run '{run}' has checkpoints but no best.ckpt") and "--ckpt_path last" in (
        error.value.hint
    )


def test_a_fit_prints_no_third_party_tip_or_internal_deprecation(tmp_path: Path, synthetic_root: Path) -> None:
    """Lightning's LitLogger tip, its own `_pytree` deprecation and W&B's image-size warning (segfpn logs one overlay
    per validation image, of different sizes) are messages a user cannot act on."""
    from segfpn.training.console import LOG_MESSAGES

    args = ["fit", *tiny_args(tmp_path, synthetic_root, max_steps=2, logger=WANDB_LOGGER)]
    process = segfpn_process([*args, "--trainer.limit_val_batches=2", "--trainer.val_check_interval=2"])
    output = process.communicate(timeout=600)[0].decode()
    assert process.returncode == 0, output[-3000:]
    assert "val/mIoU" in output or list(tmp_path.rglob("fit_val_step*.json")), output[-3000:]  # it validated
    for _, start in LOG_MESSAGES:
        assert start not in output, output[-3000:]
    assert "LeafSpec" not in output, output[-3000:]
