"""The ``segfpn`` command: LightningCLI (fit/validate/test/predict) plus analysis commands."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info

from segfpn.callbacks import BestAndLastCheckpoint, GradientMonitor, PredictionWriter, ResultsWriter, WandbMedia
from segfpn.checkpoint_file import check_checkpoint_file
from segfpn.datasets.datamodule import ADE20KDataModule
from segfpn.errors import debug_requested, handle_errors
from segfpn.module import SegmentationModule
from segfpn.preemption import SlurmRequeue
from segfpn.wandb_setup import configure_wandb_mode

# Commands that are not LightningCLI subcommands: name -> "module:function" taking argv.
TOOLS = {
    "summary": "segfpn.commands.summary:main",
    "class-stats": "segfpn.commands.class_stats:main",
    "feature-maps": "segfpn.commands.feature_maps:main",
    "cost": "segfpn.commands.cost:main",
    "experiment": "segfpn.commands.experiment:main",
    "analyze": "segfpn.commands.analyze:main",
    "report": "segfpn.commands.report:main",
    "convert": "segfpn.commands.convert:main",
}


class TimestampedSaveConfig(SaveConfigCallback):
    """Saves ``config.yaml`` in the run folder (overwriting), a timestamped copy beside the checkpoints, and
    the whole config in the logger's hyper-parameters (so W&B shows it)."""

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        folder = Path(trainer.default_root_dir) / "configs"
        folder.mkdir(parents=True, exist_ok=True)
        self.parser.save(
            self.config,
            folder / f"{getattr(stage, 'value', stage)}-{time.strftime('%Y%m%d-%H%M%S')}.yaml",
            skip_none=False,
            overwrite=True,
        )
        if trainer.logger is not None:
            trainer.logger.log_hyperparams({"cli_config": self.parser.dump(self.config, skip_none=False)})


class SegFPNCLI(LightningCLI):
    """LightningCLI with segfpn's links, checkpoint callback and ``--ckpt_path best|last`` resolution."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_lightning_class_args(BestAndLastCheckpoint, "checkpoint")
        parser.add_lightning_class_args(GradientMonitor, "grad_monitor")
        parser.add_lightning_class_args(WandbMedia, "wandb_media")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(ResultsWriter, "results")
        parser.add_lightning_class_args(SlurmRequeue, "slurm_requeue")

    def _parse_ckpt_path(self) -> None:
        """An explicit ``--ckpt_path FILE`` is checked (named error) before Lightning reads its hparams."""
        ckpt = self.config.get(self.config.get("subcommand") or "", {}).get("ckpt_path")
        if ckpt and ckpt not in ("best", "last"):
            check_checkpoint_file(ckpt, "--ckpt_path")
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        root = Path(config.trainer.default_root_dir or "runs/default")
        config.trainer.default_root_dir = str(root)
        if not config.checkpoint.dirpath:
            config.checkpoint.dirpath = str(root / "checkpoints")
        if not config.predictions.output_dir:
            config.predictions.output_dir = str(root / "predictions")
        ckpt = config.get("ckpt_path")
        if ckpt in ("best", "last"):
            resolved = resolve_checkpoint(ckpt, Path(config.checkpoint.dirpath), root)
            if resolved is not None:
                config.ckpt_path = str(resolved)
            elif ckpt == "best" or self.subcommand != "fit":
                raise FileNotFoundError(
                    f"--ckpt_path {ckpt}: no {ckpt}.ckpt in {config.checkpoint.dirpath!r} (checkpoint.dirpath); "
                    "run `segfpn fit` with this config first or pass a checkpoint file"
                )
            else:
                config.ckpt_path = None  # nothing to resume yet: start from scratch
                rank_zero_info(f"--ckpt_path last: no checkpoint in {root} yet, starting a new run")


def resolve_checkpoint(name: str, dirpath: Path, root: Path) -> Path | None:
    """``best`` -> dirpath/best.ckpt; ``last`` -> the newest of dirpath/last.ckpt and the hpc_ckpt_*.ckpt
    that Lightning writes in the run folder when Slurm pre-empts a job. ``None`` when there is none."""
    if name == "best":
        candidates = [dirpath / "best.ckpt"]
    else:
        candidates = [dirpath / "last.ckpt", *root.glob("hpc_ckpt_*.ckpt")]
    existing = [p for p in candidates if p.is_file()]
    return max(existing, key=lambda p: p.stat().st_mtime) if existing else None


def normalize_sweep_args(args: list[str]) -> list[str]:
    """W&B sweep agents write a null parameter as ``--key=None``; LightningCLI's Optional types want ``null``."""
    return [a.split("=", 1)[0] + "=null" if a.startswith("--") and a.endswith("=None") else a for a in args]


def run_cli(args: list[str] | None = None) -> SegFPNCLI:
    """Run the LightningCLI on ``args`` (default: ``sys.argv[1:]``)."""
    configure_wandb_mode()
    try:
        return SegFPNCLI(
            SegmentationModule,
            ADE20KDataModule,
            args=args,
            save_config_callback=TimestampedSaveConfig,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={
                "logger": {
                    "class_path": "lightning.pytorch.loggers.WandbLogger",
                    "init_args": {"project": "segfpn", "save_dir": "runs/default"},
                },
                "default_root_dir": "runs/default",
            },
            parser_kwargs={
                "description": "segfpn: Semantic FPN training and evaluation (LightningCLI). Other commands: "
                + ", ".join(TOOLS),
                # parse errors raise, so that main() prints them as one line
                "exit_on_error": False,
                **{name: {"exit_on_error": False} for name in SegFPNCLI.subcommands()},
            },
        )
    finally:
        _finish_wandb_run()


def _finish_wandb_run() -> None:
    """Close a W&B run this command opened, so its files are complete before the next run starts."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``segfpn`` and ``python -m segfpn``: user errors exit 2 with one line (see segfpn.errors)."""
    debug, args = debug_requested(list(sys.argv[1:] if argv is None else argv))
    with handle_errors(debug):
        if args and args[0] in TOOLS:
            module, function = TOOLS[args[0]].split(":")
            getattr(importlib.import_module(module), function)(args[1:])
            return
        if argv is None and not debug and normalize_sweep_args(args) == args:
            run_cli(None)
        else:
            run_cli(normalize_sweep_args(args))
