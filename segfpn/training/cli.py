"""fit/validate/test/predict: segfpn's LightningCLI (run folders, links, callbacks, ``--ckpt_path best|last``).

Imported by :func:`segfpn.cli.main` only for these commands, since it loads Lightning, timm and torch."""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import yaml
from jsonargparse import Namespace
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info

from segfpn.datasets.datamodule import SegmentationDataModule
from segfpn.datasets.info import DatasetInfo
from segfpn.errors import CheckpointError, ConfigError
from segfpn.inference.checkpoint import load_segfpn_checkpoint
from segfpn.models.segmentation_model import ARCHITECTURE_OPTIONS
from segfpn.packaged_configs import resolve_config_args
from segfpn.text_files import bound_jsonargparse, check_expansion, load_yaml_file, read_text
from segfpn.training import runs
from segfpn.training.callbacks import (
    BestAndLastCheckpoint,
    GradientMonitor,
    PredictionWriter,
    ResultsWriter,
    WandbMedia,
)
from segfpn.training.callbacks.evaluation_files import EvaluationFiles
from segfpn.training.callbacks.overlays import OverlayWriter
from segfpn.training.callbacks.preemption import GracefulStop, recording_stop_signals
from segfpn.training.checkpoint_io import AtomicCheckpointIO, newest_good_checkpoint
from segfpn.training.console import quiet_third_party
from segfpn.training.module import SegmentationModule
from segfpn.training.wandb_setup import configure_wandb_mode

# segfpn.cli.main passes argv explicitly (normalised sweep values, resolved config names) on purpose
warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within Python")


class TimestampedSaveConfig(SaveConfigCallback):
    """Saves ``config.yaml`` in the log folder (overwriting), a timestamped copy in the run folder's ``configs/``
    (never replacing one), and the whole config in the logger's hyper-parameters (so W&B shows it)."""

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        folder = Path(trainer.default_root_dir) / "configs"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{getattr(stage, 'value', stage)}-{time.strftime('%Y%m%d-%H%M%S')}"
        for n in itertools.count(1):
            path = folder / (f"{stem}.yaml" if n == 1 else f"{stem}-{n}.yaml")
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # claim the name
                break
            except FileExistsError:
                continue
        self.parser.save(self.config, path, skip_none=False, overwrite=True)
        if trainer.logger is not None:
            trainer.logger.log_hyperparams({"cli_config": self.parser.dump(self.config, skip_none=False)})


class CheckpointMismatchError(ConfigError):
    """Model options given for a run differ from the checkpoint's architecture."""


class SegFPNCLI(LightningCLI):
    """LightningCLI with segfpn's links, callbacks, run folders (:mod:`segfpn.training.runs`) and
    ``--ckpt_path best|last``
    resolution. See the README ("Each run lives in ...") for the rules."""

    run_dir: Path | None = None

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments(
            "data.dataset_info", "model.dataset_info", compute_fn=DatasetInfo.as_dict, apply_on="instantiate"
        )
        parser.add_lightning_class_args(BestAndLastCheckpoint, "checkpoint")
        parser.add_lightning_class_args(GradientMonitor, "grad_monitor")
        parser.add_lightning_class_args(WandbMedia, "wandb_media")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(ResultsWriter, "results")
        parser.add_lightning_class_args(GracefulStop, "graceful_stop")
        parser.add_lightning_class_args(OverlayWriter, "overlays")
        parser.add_lightning_class_args(EvaluationFiles, "evaluation_files")
        parser.add_argument(
            "--run_dir", type=Optional[str], default=None, help="Run folder to use (default: a new one, see README)."
        )
        parser.add_argument(
            "--run_name",
            type=Optional[str],
            default=None,
            help="Run folder name below trainer.default_root_dir (created, or resumed with --ckpt_path last).",
        )

    def _parse_ckpt_path(self) -> None:
        """Choose the run folder, resolve ``best``/``last``, and check the checkpoint's architecture against the
        model options; then Lightning's own merge of the checkpoint's hyper-parameters is not used."""
        if not self.config.get("subcommand"):
            return
        subcommand = self.config.subcommand
        config = self.config[subcommand]
        root = Path(config.trainer.default_root_dir or "runs/default")
        self.run_dir = self._choose_run_dir(subcommand, config, root)
        ckpt = config.get("ckpt_path")
        if ckpt:
            apply_checkpoint_architecture(config, Path(ckpt), given_model_options(self._argv))

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self._argv = [str(a) for a in (sys.argv[1:] if args is None else args if isinstance(args, list) else [])]
        super().parse_arguments(parser, args)

    def _choose_run_dir(self, subcommand: str, config: Namespace, root: Path) -> Path:
        ckpt = config.get("ckpt_path")
        pinned = pinned_run_dir(config, root)
        rank = runs.launch_rank()
        if pinned is not None:
            run_dir = pinned
            if rank == 0:
                runs.init_run_dir(run_dir)
        elif ckpt in ("best", "last"):
            run_dir = newest_run_with(ckpt, root, for_fit=subcommand == "fit")
        else:
            run_dir = None  # a new run; with an explicit checkpoint file too (its run folder stays untouched)
        if run_dir is None:
            if subcommand != "fit" and ckpt in ("best", "last"):
                last = newest_run_with("last", root, for_fit=False) if ckpt == "best" else None
                raise CheckpointError(
                    f"--ckpt_path {ckpt}: no run below {str(root)!r} (trainer.default_root_dir) has a readable "
                    f"{'best.ckpt' if ckpt == 'best' else 'checkpoint'}; run `segfpn fit` with this config first "
                    "or pass a checkpoint file",
                    None
                    if last is None
                    else f"run {str(last)!r} has checkpoints but no best.ckpt: best.ckpt is written when a "
                    "validation runs, and none ran during its fit; evaluate it with --ckpt_path last",
                )
            run_dir = runs.create_run_dir(root)
        if ckpt in ("best", "last"):
            resolved = resolve_checkpoint(ckpt, checkpoint_dir(config, run_dir), run_dir)
            if resolved is None and (ckpt == "best" or subcommand != "fit"):
                raise CheckpointError(
                    f"--ckpt_path {ckpt}: no readable {ckpt} checkpoint in run folder {str(run_dir)!r}; "
                    "run `segfpn fit` with this config first or pass a checkpoint file"
                )
            if resolved is None:
                rank_zero_info(f"--ckpt_path last: no checkpoint in {run_dir} yet, starting a new run there")
            config.ckpt_path = None if resolved is None else str(resolved)
        elif (
            subcommand == "fit"
            and not ckpt
            and pinned is not None
            and resolve_checkpoint("last", checkpoint_dir(config, run_dir), run_dir, warn=False)
        ):
            raise runs.RunFolderError(
                f"run folder {str(run_dir)!r} already holds the checkpoints of another run: pass --ckpt_path last "
                "to resume it, or choose another --run_dir/--run_name (without either, each fit gets a new folder)"
            )
        if subcommand == "fit" and rank == 0:
            runs.acquire_lock(run_dir)
        os.environ[runs.RUN_DIR_ENV] = str(run_dir)  # the DDP ranks Lightning starts use the same folder
        rank_zero_info(f"run folder: {run_dir}")
        return run_dir

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self.run_dir is None:  # no subcommand (instantiation only): a folder like before, nothing chosen
            return
        config.trainer.default_root_dir = str(self.run_dir)
        config.checkpoint.dirpath = str(checkpoint_dir(config, self.run_dir))
        if not config.predictions.output_dir:
            config.predictions.output_dir = str(self.run_dir / "predictions")
        for logger in _logger_configs(config):
            if logger.get("init_args") is None:
                logger.init_args = Namespace()
            init_args = logger.init_args
            # absolute: a W&B service inherited from a parent process (WANDB_SERVICE) resolves a relative folder
            # against the parent's working directory
            init_args["save_dir"] = str(self.run_dir.absolute())
            if logger.class_path.endswith("WandbLogger") and self.subcommand == "fit":
                init_args["id"] = wandb_run_id(self.run_dir)
                init_args["resume"] = "allow"

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer


def _logger_configs(config: Namespace) -> list[Namespace]:
    logger = config.trainer.get("logger")
    items = logger if isinstance(logger, list) else [logger]
    return [lg for lg in items if isinstance(lg, Namespace) and lg.get("class_path")]


def pinned_run_dir(config: Namespace, root: Path) -> Path | None:
    """The run folder named explicitly: ``--run_dir``, then ``SEGFPN_RUN_DIR`` (set for the DDP ranks a run
    starts), then ``--run_name``, then the job launcher's name (Slurm job id, torchrun run id)."""
    if config.get("run_dir"):
        return Path(config.run_dir)
    if os.environ.get(runs.RUN_DIR_ENV):
        return Path(os.environ[runs.RUN_DIR_ENV])
    name = config.get("run_name") or runs.launcher_run_name()
    return root / name if name else None


def checkpoint_dir(config: Namespace, run_dir: Path) -> Path:
    """``checkpoint.dirpath`` when set, else ``<run>/checkpoints``."""
    return Path(config.checkpoint.dirpath) if config.checkpoint.get("dirpath") else run_dir / "checkpoints"


def run_checkpoints(dirpath: Path, run_dir: Path) -> list[Path]:
    """Every checkpoint a run wrote: ``checkpoints/*.ckpt`` (last, best, top-k, stop-step*) and the
    ``hpc_ckpt_*.ckpt`` of Slurm pre-emptions."""
    return sorted(dirpath.glob("*.ckpt")) + sorted(run_dir.glob("hpc_ckpt_*.ckpt"))


def resolve_checkpoint(name: str, dirpath: Path, run_dir: Path, warn: bool = True) -> Path | None:
    """``best`` -> dirpath/best.ckpt if readable; ``last`` -> the readable checkpoint of the run with the highest
    global step (a truncated or corrupt one is named in a warning and skipped). ``None`` when there is none."""
    candidates = [dirpath / "best.ckpt"] if name == "best" else run_checkpoints(dirpath, run_dir)
    existing = [p for p in candidates if p.is_file()]
    if not warn:
        return max(existing, key=lambda p: p.stat().st_mtime) if existing else None
    return newest_good_checkpoint(existing)


def newest_run_with(name: str, root: Path, for_fit: bool) -> Path | None:
    """``last`` for fit: the newest run folder (it may have no checkpoint yet); refused while a live process holds
    it, since resuming an older run instead would silently continue a finished one. Otherwise the newest run
    folder that has a ``name`` checkpoint."""
    for run_dir in runs.runs_newest_first(root):
        if for_fit:
            holder = runs.live_holder(run_dir)
            if holder is not None:
                raise runs.busy_error(
                    run_dir,
                    holder,
                    "--ckpt_path last resumes the newest run and does not fall back to an older one while it is "
                    "in use: wait for it to end, or name the run to resume with --run_dir",
                )
            return run_dir
        if resolve_checkpoint(name, run_dir / "checkpoints", run_dir, warn=False) is not None:
            return run_dir
    return None


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of a run folder: stored in ``run.json`` on first use (a sweep agent's ``WANDB_RUN_ID``, or
    a new one), so that a resumed run continues the same W&B run."""
    info = runs.read_run_info(run_dir)
    if not info.get("wandb_id"):
        info["wandb_id"] = os.environ.get("WANDB_RUN_ID") or secrets.token_hex(4)
        if runs.launch_rank() == 0:
            runs.write_run_info(run_dir, info)
    return info["wandb_id"]


def given_model_options(argv: list[str]) -> set[str]:
    """The ``model.*`` options set on the command line or in a ``--config`` file of ``argv`` (top-level names)."""
    given = {arg[len("--model.") :].split("=", 1)[0].split(".", 1)[0] for arg in argv if arg.startswith("--model.")}
    for path in config_files(argv):
        try:
            model = (load_yaml_file(path, "--config") or {}).get("model") or {}
        except (OSError, yaml.YAMLError, AttributeError):
            continue  # the parser reports unreadable config files itself
        given.update(model.get("init_args", model) if isinstance(model, dict) else {})
    return given


def config_files(argv: list[str]) -> list[Path]:
    """The ``--config``/``-c`` files of ``argv``, in order."""
    files = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv) or arg.startswith("--config="):
            files.append(Path(arg.split("=", 1)[1] if "=" in arg else argv[i + 1]))
    return files


def apply_checkpoint_architecture(config: Namespace, ckpt: Path, given: set[str]) -> None:
    """One rule for ``--ckpt_path FILE`` and ``best``/``last``: the checkpoint's architecture wins. An
    architecture option the user did not set takes the checkpoint's value; one set (config file or command line)
    to another value than the checkpoint's is an error naming each. Other model options (loss, optimiser,
    inference...) are the user's."""
    hparams = load_segfpn_checkpoint(ckpt, "--ckpt_path", mmap=True, lightning=True)["hyper_parameters"]
    differing = []
    for key in ARCHITECTURE_OPTIONS:
        if key not in hparams or key not in config.model:
            continue
        value, saved = config.model[key], hparams[key]
        if value == saved:
            continue
        if key in given:
            differing.append(f"model.{key}: checkpoint {saved!r}, given {value!r}")
        else:
            config.model[key] = saved
    if differing:
        raise CheckpointMismatchError(
            f"--ckpt_path {str(ckpt)!r} was trained with another architecture than the options given: "
            + "; ".join(differing)
            + " (drop these options or pass the checkpoint's values)"
        )


def run_cli(args: list[str] | None = None, extra_callbacks: list[Any] | None = None) -> SegFPNCLI:
    """Run the LightningCLI on ``args`` (default: ``sys.argv[1:]``); ``extra_callbacks`` join the config's."""
    argv = resolve_config_args(sys.argv[1:] if args is None else args)  # `--config demo`: the packaged one
    if not {"-h", "--help", "--print_config"} & {a.split("=", 1)[0] for a in argv}:
        configure_wandb_mode()  # help and printed configs get no W&B line
    env_before = os.environ.get(runs.RUN_DIR_ENV)
    try:
        bound_jsonargparse()
        quiet_third_party()
        for path in config_files(argv):  # named here; the parser's bound catches option values
            if path.is_file():
                try:
                    check_expansion(read_text(path, "--config"), f"--config {str(path)!r}")
                except yaml.YAMLError as err:
                    raise ConfigError(
                        f"--config {str(path)!r} is not valid YAML: {' '.join(str(err).split())}"
                    ) from err
        with recording_stop_signals() if argv[:1] == ["fit"] else contextlib.nullcontext():
            return SegFPNCLI(
                SegmentationModule,
                SegmentationDataModule,
                args=argv,
                save_config_callback=TimestampedSaveConfig,
                save_config_kwargs={"overwrite": True},
                trainer_defaults={
                    "logger": {
                        "class_path": "lightning.pytorch.loggers.WandbLogger",
                        "init_args": {"project": "segfpn", "save_dir": "runs/default"},
                    },
                    "default_root_dir": "runs/default",
                    **({"callbacks": extra_callbacks} if extra_callbacks else {}),
                },
                parser_kwargs={
                    "description": "segfpn: Semantic FPN training and evaluation (LightningCLI); "
                    "`segfpn --help` lists every command.",
                    # parse errors raise, so that main() prints them as one line
                    "exit_on_error": False,
                    **{name: {"exit_on_error": False} for name in SegFPNCLI.subcommands()},
                },
            )
    finally:
        _finish_wandb_run()
        runs.release_locks_of_this_process()
        runs.remove_unused_run_dirs()
        if env_before is None:
            os.environ.pop(runs.RUN_DIR_ENV, None)
        else:
            os.environ[runs.RUN_DIR_ENV] = env_before


def _finish_wandb_run() -> None:
    """Close a W&B run this command opened, so its files are complete before the next run starts."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
