"""The private Lightning members segfpn relies on, each with the reason no public API serves.

``tests/test_lightning_internals.py`` checks every one against the installed Lightning and names the member and
its use when a release drops it; ``pyproject.toml`` keeps Lightning inside the tested minor release for the same
reason."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Internal:
    """``owner`` is a class (``ModelCheckpoint``, ``LightningCLI``) or a path from a Trainer (``Trainer.fit_loop``)."""

    owner: str
    name: str
    used_by: str
    why: str


LIGHTNING_INTERNALS = (
    Internal(
        "ModelCheckpoint",
        "_save_checkpoint",
        "BestAndLastCheckpoint",
        "the one hook that sees each checkpoint written: best.ckpt is linked there",
    ),
    Internal(
        "ModelCheckpoint",
        "_save_last_checkpoint",
        "BestAndLastCheckpoint",
        "Lightning 2.6 writes last.ckpt only with a new top-k; segfpn refreshes it at every scheduled save",
    ),
    Internal(
        "ModelCheckpoint", "_monitor_candidates", "BestAndLastCheckpoint", "the metrics _save_last_checkpoint takes"
    ),
    Internal(
        "ModelCheckpoint",
        "_should_skip_saving_checkpoint",
        "BestAndLastCheckpoint",
        "whether this hook is a scheduled save (the same rule Lightning applies)",
    ),
    Internal(
        "ModelCheckpoint",
        "_should_save_on_train_epoch_end",
        "BestAndLastCheckpoint",
        "whether the scheduled save is at epoch end or after validation",
    ),
    Internal(
        "ModelCheckpoint",
        "_last_global_step_saved",
        "BestAndLastCheckpoint",
        "not writing last.ckpt twice for one step",
    ),
    Internal(
        "LightningCLI",
        "_parse_ckpt_path",
        "SegFPNCLI",
        "replaces Lightning's merge of a checkpoint's hyper-parameters by segfpn's run folders and architecture check",
    ),
    Internal(
        "Trainer",
        "_signal_connector",
        "GracefulStop",
        "clears received_sigterm so that Lightning does not raise after segfpn's own stop on SIGTERM",
    ),
    Internal(
        "Trainer.fit_loop.epoch_loop",
        "_should_accumulate",
        "GracefulStop (stepped)",
        "a stop is taken only after a whole optimiser step",
    ),
    Internal(
        "Trainer.fit_loop.epoch_loop",
        "_should_check_val_fx",
        "GracefulStop (validation_follows)",
        "whether a validation follows the batch, so a stop waits for it",
    ),
    Internal(
        "Trainer.fit_loop",
        "_data_fetcher",
        "GracefulStop (validation_follows)",
        "the argument _should_check_val_fx takes",
    ),
    Internal(
        "Trainer.fit_loop.epoch_loop",
        "_batches_that_stepped",
        "EvaluationFiles",
        "the step Lightning gave the logger for an evaluation's scalars, so TensorBoard figures sit beside them",
    ),
)


def missing_internals() -> list[str]:
    """One line per member the installed Lightning lacks (empty when all are there)."""
    import lightning
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI

    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    owners: dict[str, object] = {
        "ModelCheckpoint": ModelCheckpoint(),
        "LightningCLI": LightningCLI,
        "Trainer": trainer,
        "Trainer.fit_loop": trainer.fit_loop,
        "Trainer.fit_loop.epoch_loop": trainer.fit_loop.epoch_loop,
    }
    return [
        f"Lightning {lightning.__version__} has no {item.owner}.{item.name}, which {item.used_by} uses: {item.why}"
        for item in LIGHTNING_INTERNALS
        if not hasattr(owners[item.owner], item.name)
    ]
