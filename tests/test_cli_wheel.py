"""The built wheel works without the repository: installed into a fresh venv (torch & co. from the shared
environment), ``segfpn --help`` runs and ``segfpn fit --config demo`` trains from a folder with no clone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("segfpn", "configs", "experiments", "pyproject.toml", "setup.py", "setup.cfg", "README.md")


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_wheel_in_a_fresh_venv_runs_the_packaged_demo(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["WANDB_MODE"] = "offline"
    # build from a copy of the sources, so the clone gets no build/ or *.egg-info
    source = tmp_path / "source"
    for name in SOURCES:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, source / name)
    shutil.rmtree(source / "segfpn" / "__pycache__", ignore_errors=True)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(wheels), str(source)],
        tmp_path,
        env,
    )
    (wheel,) = wheels.glob("segfpn-*.whl")

    # a fresh venv that sees the shared site-packages through a path line only: their .pth files (the editable
    # segfpn of the clone) are not run, so `segfpn` can only come from the wheel
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    site = Path(
        run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env
        ).stdout.strip()
    )
    (site / "shared_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp_path, env)

    work = tmp_path / "elsewhere"  # no configs/, no repository
    work.mkdir()
    where = run([str(python), "-c", "import segfpn; print(segfpn.__file__)"], work, env).stdout.strip()
    assert Path(where).is_relative_to(site), where
    packaged = Path(where).parent / "configs"
    for name in ("demo.yaml", "trainer/ddp.yaml", "sweeps/fpn_ablation.yaml", "experiments/attention.yaml"):
        assert (packaged / name).is_file(), name
    helped = run([str(target / "bin" / "segfpn"), "--help"], work, env)
    assert "fit" in helped.stdout and "convert" in helped.stdout
    fit = [
        str(target / "bin" / "segfpn"),
        "fit",
        "--config",
        "demo",
        "--trainer.max_steps=2",
        "--trainer.limit_val_batches=1",
        "--trainer.check_val_every_n_epoch=1",
        "--trainer.enable_progress_bar=false",
        "--data.batch_size=2",
        "--data.num_workers=0",
        "--data.crop_size=64",
        "--data.scale=[128, 64]",
        "--model.inference.test_scale=[128, 64]",
    ]
    run(fit, work, env)
    (run_dir,) = (work / "runs" / "demo").iterdir()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    saved = next((run_dir / "configs").glob("fit-*.yaml")).read_text()
    assert "max_steps: 2" in saved and "backbone_name: pvt_v2_b0" in saved  # demo.yaml's model, our override
