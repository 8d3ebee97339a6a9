"""The logger's files follow the run folder whatever logger replaces demo.yaml's W&B logger (and its
``save_dir: runs/demo``): metrics.csv and TensorBoard events land inside the run folder, beside its checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from segfpn.training.cli import run_cli
from segfpn.training.runs import runs_newest_first


@pytest.mark.parametrize(
    ("logger", "pattern"), [("CSVLogger", "metrics.csv"), ("TensorBoardLogger", "events.out.tfevents.*")]
)
def test_switched_logger_writes_into_the_run_folder(
    logger: str, pattern: str, tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # demo.yaml's save_dir runs/demo would be relative to here
    root = tmp_path / "elsewhere"
    cli = run_cli(
        [
            "fit",
            "--config",
            "demo",
            f"--trainer.logger=lightning.pytorch.loggers.{logger}",
            f"--trainer.default_root_dir={root}",
            "--trainer.max_steps=2",
            "--trainer.log_every_n_steps=1",
            "--trainer.limit_val_batches=1",
            "--trainer.check_val_every_n_epoch=1",
            "--trainer.enable_progress_bar=false",
            "--data.embedded=false",
            f"--data.data_root={synthetic_root}",
            "--data.batch_size=2",
            "--data.num_workers=0",
            "--data.crop_size=64",
            "--data.scale=[128, 64]",
            "--model.fpn_channels=32",
            "--model.head_channels=32",
            "--model.inference.test_scale=null",
        ]
    )
    (run,) = runs_newest_first(root)
    assert type(cli.trainer.logger).__name__ == logger
    assert (run / "checkpoints" / "last.ckpt").is_file()
    written = list(run.rglob(pattern))
    assert written and all(p.stat().st_size > 0 for p in written), sorted(run.rglob("*"))
    assert Path(cli.trainer.logger.log_dir).resolve().is_relative_to(run.resolve())
    assert not (tmp_path / "runs").exists()  # nothing under demo.yaml's runs/demo
