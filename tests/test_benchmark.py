"""segfpn benchmark on the CPU: the table and JSON of a real (tiny) run, and the verdict's logic, checked with a
loader slowed on purpose."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from segfpn.training.benchmark import PHASES, Throughput, bound_verdict, run_benchmark
from tests.test_cli import tiny_args


def _rate(phase: str, rate: float) -> Throughput:
    return Throughput.from_batches(phase, [4, 4], [4 / rate, 4 / rate])


def test_the_verdict_names_the_bound_and_the_workers_it_needs() -> None:
    data, model = _rate("data", 140.0), _rate("model", 320.0)
    assert bound_verdict(data, model, workers=2) == (
        "data-bound: the loader gives 140.0 img/s, the model takes 320.0 img/s: raise data.num_workers to ~5"
    )
    assert "use data.num_workers ~3 (now 0)" in bound_verdict(data, model, workers=0)
    assert bound_verdict(model, data, workers=2).startswith("model-bound: the model takes 140.0 img/s")
    with_fit = bound_verdict(data, model, workers=2, fit=_rate("fit", 112.0))
    assert with_fit.endswith("the fit loop runs at 112.0 img/s, 0.80x the bound's rate (loop overhead 20%)")
    assert bound_verdict(None, model, workers=2).startswith("no verdict")


def test_throughput_spread_comes_from_the_batches() -> None:
    result = Throughput.from_batches("data", [4, 4, 4, 4], [1.0, 0.5, 0.25, 2.0])
    assert result.rate == pytest.approx(16 / 3.75)
    assert result.p10 < 4 < result.p90 and result.images == 16 and result.steps == 4


def test_benchmark_command_writes_its_table_and_json(
    tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture
) -> None:
    from segfpn.cli import main

    args = [a for a in tiny_args(tmp_path, synthetic_root) if "max_steps" not in a and "limit_val" not in a]
    main(["benchmark", "--steps", "2", "--warmup", "1", *args])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["phase", "img/s"] and [line.split()[0] for line in lines[2:6]] == list(PHASES)
    assert lines[6].startswith(("data-bound", "model-bound"))
    (report_file,) = tmp_path.rglob("benchmark/benchmark.json")
    report = json.loads(report_file.read_text())
    assert set(report["results"]) == set(PHASES)
    for phase, result in report["results"].items():
        assert result["rate"] > 0 and result["steps"] == 2, phase
    assert report["results"]["model"]["peak_memory_mb"] > 0 and report["batch_size"] == 4
    assert (report_file.parent / "benchmark.md").read_text().count("\n| ") == 1 + len(PHASES)  # header + phases
    assert not list(tmp_path.rglob("*.ckpt"))  # a benchmark writes no checkpoint


def test_a_slowed_loader_is_called_data_bound(
    tmp_path: Path, synthetic_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segfpn.datasets.base import SegmentationDataset

    original = SegmentationDataset.__getitem__

    def slow(self, key):  # noqa: ANN001, ANN202
        time.sleep(0.4)  # 10 img/s at most: a tiny model at 64 px steps far faster on any CPU
        return original(self, key)

    monkeypatch.setattr(SegmentationDataset, "__getitem__", slow)
    args = [a for a in tiny_args(tmp_path, synthetic_root) if "max_steps" not in a and "limit_val" not in a]
    report = run_benchmark(args, {"data", "model"}, steps=2, warmup=0)
    assert report["results"]["data"]["rate"] < 2.6
    assert report["verdict"].startswith("data-bound") and "use data.num_workers ~" in report["verdict"]
