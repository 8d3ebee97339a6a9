"""``segfpn benchmark``: where a fit's time goes, on the device the config trains on.

Four measurements of one config, in one process, after ``warmup`` untimed steps each:

- ``data``: the training loader alone (the config's workers, pin_memory and batch size), images/s;
- ``model``: forward + backward + optimiser step on one batch already on the device (no loader), with the config's
  precision, channels_last and compile; images/s and peak memory;
- ``fit``: the real Trainer loop (``segfpn fit`` with validation, logging and checkpoints off), images/s;
- ``inference``: mmsegmentation's fps protocol (``tools/analysis_tools/benchmark.py``): whole-image inference of
  validation images held in memory (loading excluded), one at a time, synchronised timers.

The verdict says which of data and model bounds the fit, and what the loop costs over that bound.
"""

from __future__ import annotations

import json
import math
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from segfpn.inference.protocols import predict_logits
from segfpn.tables import format_table, markdown_table

PHASES = ("data", "model", "fit", "inference")


@dataclass
class Throughput:
    """Images per second over ``steps`` timed batches (``rate``: all images / all time), with the spread of the
    per-batch rates (10th and 90th percentiles) and the peak memory of the phase where measured."""

    phase: str
    rate: float
    p10: float
    p90: float
    steps: int
    images: int
    seconds: float
    peak_memory_mb: float | None = None
    memory: str = ""

    @classmethod
    def from_batches(cls, phase: str, sizes: list[int], seconds: list[float], **memory: Any) -> Throughput:
        rates = sorted(n / max(s, 1e-12) for n, s in zip(sizes, seconds))
        quantile = (lambda q: statistics.quantiles(rates, n=10)[q]) if len(rates) > 1 else (lambda q: rates[0])
        total = sum(seconds)
        return cls(
            phase, sum(sizes) / max(total, 1e-12), quantile(0), quantile(8), len(sizes), sum(sizes), total, **memory
        )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(device: torch.device) -> dict[str, Any]:
    """The phase's peak memory: allocated CUDA memory, or this process's peak RSS on the CPU (never reset)."""
    if device.type == "cuda":
        return {"peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20, "memory": "cuda max allocated"}
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"peak_memory_mb": rss_kb / 1024, "memory": "process peak RSS"}


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _progress(phase: str, done: int, total: int) -> None:
    print(f"\rbenchmark {phase}: {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)


class StepTimes(L.Callback):
    """Records the wall time between consecutive training batch ends (loading + step + the loop's own work)."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.sizes: list[int] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        _sync(pl_module.device)
        self.ends.append(time.perf_counter())
        self.sizes.append(len(args[1][0]))  # (outputs, batch, batch_idx): the batch's images

    def throughput(self, warmup: int) -> Throughput:
        seconds = [b - a for a, b in zip(self.ends[warmup:], self.ends[warmup + 1 :])]
        return Throughput.from_batches("fit", self.sizes[warmup + 1 :], seconds)


def measure_data(loader: Any, warmup: int, steps: int) -> Throughput:
    """The training loader alone: images/s of ``steps`` batches after ``warmup`` (workers started, prefetch warm)."""
    sizes, seconds = [], []
    batches: Iterator = iter(loader)
    for i in range(warmup + steps):
        start = time.perf_counter()
        try:
            images, _ = next(batches)
        except StopIteration:
            batches = iter(loader)
            images, _ = next(batches)
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
            sizes.append(len(images))
            _progress("data", i + 1 - warmup, steps)
    return Throughput.from_batches("data", sizes, seconds)


def measure_model(
    module: Any, batch: tuple[torch.Tensor, torch.Tensor], trainer: L.Trainer, warmup: int, steps: int
) -> Throughput:
    """Forward + backward + optimiser step on one batch on the trainer's device, in its precision (autocast and the
    gradient scaler of ``16-mixed``), the module's channels_last and compile settings; no loader."""
    device = trainer.strategy.root_device
    module.to(device).train()
    precision = trainer.precision_plugin
    images, masks = (t.to(device, non_blocking=True) for t in batch)
    images = precision.convert_input(images)  # bf16-true & co. take inputs in their dtype
    optimizer = module.configure_optimizers()["optimizer"]
    scaler = getattr(precision, "scaler", None)
    sizes, seconds = [], []
    _reset_peak_memory(device)
    for i in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with precision.forward_context():
            loss, _ = module.training_loss(images, masks)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        _sync(device)
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
            sizes.append(len(images))
            _progress("model", i + 1 - warmup, steps)
    return Throughput.from_batches("model", sizes, seconds, **_peak_memory(device))


@torch.no_grad()
def measure_inference(module: Any, images: list[torch.Tensor], trainer: L.Trainer, warmup: int) -> Throughput:
    """mmseg's fps protocol: each image alone through the module's whole-image inference (its protocol and test
    scale, in the trainer's precision as ``segfpn validate`` runs it), loading excluded, the device synchronised
    around each timed image; the first ``warmup`` untimed."""
    device, precision = trainer.strategy.root_device, trainer.precision_plugin
    module.to(device).eval()
    module.zero_grad(set_to_none=True)  # the model phase's gradients are not part of inference memory
    info = module.dataset_info
    sizes, seconds = [], []
    _reset_peak_memory(device)
    for i, image in enumerate(images):
        x = precision.convert_input(image.to(device))
        _sync(device)
        start = time.perf_counter()
        with precision.forward_context():
            predict_logits(module, x, module.inference, info.num_classes, info.mean, info.std)
        _sync(device)
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
            sizes.append(1)
            _progress("inference", i + 1 - warmup, len(images) - warmup)
    return Throughput.from_batches("inference", sizes, seconds, **_peak_memory(device))


def bound_verdict(
    data: Throughput | None, model: Throughput | None, workers: int, fit: Throughput | None = None
) -> str:
    """Which of the loader and the model bounds the fit, what to change when the loader does, and the loop's
    overhead over the bound."""
    if data is None or model is None:
        return "no verdict: it needs both the data and the model measurements (--what all)"
    if data.rate < model.rate:
        per_worker = data.rate / max(workers, 1)
        needed = math.ceil(model.rate / per_worker) if workers else math.ceil(model.rate / data.rate)
        advice = f"raise data.num_workers to ~{needed}" if workers else f"use data.num_workers ~{needed} (now 0)"
        verdict = (
            f"data-bound: the loader gives {data.rate:.1f} img/s, the model takes {model.rate:.1f} img/s: {advice}"
        )
    else:
        verdict = f"model-bound: the model takes {model.rate:.1f} img/s, the loader gives {data.rate:.1f} img/s"
    if fit is not None:
        bound = min(data.rate, model.rate)
        verdict += (
            f"; the fit loop runs at {fit.rate:.1f} img/s, {fit.rate / bound:.2f}x the bound's rate "
            f"(loop overhead {100 * max(0.0, 1 - fit.rate / bound):.0f}%)"
        )
    return verdict


def run_benchmark(config_args: list[str], what: set[str], steps: int, warmup: int) -> dict[str, Any]:
    """Build the config's run (``segfpn fit`` with validation, loggers and checkpoints off; ``warmup + steps`` steps
    when ``fit`` is measured, none otherwise) and measure ``what`` on its model, data and Trainer."""
    from segfpn.training.cli import run_cli

    timer = StepTimes()
    fit_steps = warmup + steps + 1 if "fit" in what else 0  # +1: the first timed interval starts at a batch end
    cli = run_cli(
        [
            "fit",
            *config_args,
            f"--trainer.max_steps={fit_steps}",
            "--trainer.limit_val_batches=0",
            "--trainer.logger=false",
            "--trainer.enable_model_summary=false",
            "--checkpoint.save_last=false",
            "--checkpoint.save_top_k=0",
            "--checkpoint.monitor=null",
        ],
        extra_callbacks=[timer],
    )
    trainer, module, data = cli.trainer, cli.model, cli.datamodule
    device = trainer.strategy.root_device
    results: dict[str, Throughput] = {}
    if "fit" in what:
        results["fit"] = timer.throughput(warmup)
    if "data" in what or "model" in what:
        loader = data.train_dataloader()
        if "data" in what:
            results["data"] = measure_data(loader, warmup, steps)
        if "model" in what:
            results["model"] = measure_model(module, next(iter(loader)), trainer, warmup, steps)
    if "inference" in what:
        data.setup("validate")
        images = []
        for batch in data.val_dataloader():
            images += [image[None] for image in batch[0]]
            if len(images) >= warmup + steps:
                break
        results["inference"] = measure_inference(
            module, images[: warmup + steps], trainer, min(warmup, len(images) - 1)
        )
    module.zero_grad(set_to_none=True)
    module.cpu()  # the next benchmark in this process measures its own memory, not this model's
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "config": config_args,
        "run_dir": str(trainer.default_root_dir),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "precision": str(trainer.precision),
        "channels_last": bool(module.hparams.channels_last),
        "compile": bool(module.hparams.compile),
        "batch_size": data.hparams.batch_size,
        "num_workers": data.hparams.num_workers,
        "steps": steps,
        "warmup": warmup,
        "results": {phase: asdict(result) for phase, result in results.items()},
        "verdict": bound_verdict(
            results.get("data"), results.get("model"), data.hparams.num_workers, results.get("fit")
        ),
    }


def table_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per measured phase, in PHASES order."""
    rows = []
    for phase in PHASES:
        r = report["results"].get(phase)
        if r is not None:
            memory = "" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.0f} MB ({r['memory']})"
            rows.append(
                {
                    "phase": phase,
                    "img/s": round(r["rate"], 2),
                    "p10-p90 img/s": f"{r['p10']:.2f}-{r['p90']:.2f}",
                    "steps": r["steps"],
                    "seconds": round(r["seconds"], 3),
                    "peak memory": memory,
                }
            )
    return rows


COLUMNS = ["phase", "img/s", "p10-p90 img/s", "steps", "seconds", "peak memory"]


def write_report(report: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """``benchmark.json`` and ``benchmark.md`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "benchmark.json", folder / "benchmark.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    header = (
        f"# segfpn benchmark\n\n{report['device']}, torch {report['torch']}, precision {report['precision']}, "
        f"channels_last {report['channels_last']}, compile {report['compile']}, batch {report['batch_size']}, "
        f"{report['num_workers']} workers, {report['steps']} steps after {report['warmup']} warm-up\n\n"
    )
    md_path.write_text(header + markdown_table(table_rows(report), COLUMNS) + f"\n\n{report['verdict']}\n")
    return json_path, md_path


def print_report(report: dict[str, Any]) -> None:
    print(format_table(table_rows(report), COLUMNS))
    print(report["verdict"])
