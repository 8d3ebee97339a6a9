"""The GPU check script's dry run: benchmarks/gpu_check.sh --cpu runs its device tests and its benchmarks on this CPU
with tiny sizes, through the same code the GPU machine runs, so the script cannot rot unseen."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_the_gpu_check_script_runs_on_the_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("SEGFPN_CHECK_DEVICE", None)
    start = time.perf_counter()
    result = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--cpu", str(tmp_path / "out")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    print(f"\ngpu_check.sh --cpu: {time.perf_counter() - start:.0f} s")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "passed" in result.stdout and " failed" not in result.stdout  # the device tests ran
    report = (tmp_path / "out" / "gpu_check-cpu.md").read_text()
    for config in ("convnext_tiny_fpn_ade20k", "pvt_v2_b0_fpn_ade20k", "swin_tiny_fpn_ade20k"):
        assert f"| {config} | False |" in report, config
    for encoder in ("convnext_tiny", "pvt_v2_b0", "swin_tiny_patch4_window7_224"):
        assert f"| {encoder} | fp32 |" in report, encoder
    assert (tmp_path / "out" / "gpu_check-cpu.json").is_file()
