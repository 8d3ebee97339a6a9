"""Computational cost of model variants side by side: parameters, FLOPs, latency, overhead vs the first."""

from __future__ import annotations

import statistics
from typing import Any

import torch

from segfpn.models import SegmentationModel
from segfpn.models.segmentation_model import WEIGHT_OPTIONS
from segfpn.utils.model_summary import measure_latency, summarize

# where the weights come from does not change the cost (and a download is not wanted)


def cost_table(
    variants: dict[str, dict[str, Any]],
    input_size: tuple[int, int] = (512, 512),
    latency: bool = True,
    device: str = "cpu",
    base: dict[str, Any] | None = None,
    rounds: int = 5,
) -> list[dict]:
    """One row per variant (``name -> SegmentationModel kwargs`` on top of ``base``; see
    :meth:`segfpn.training.experiment.Experiment.model_options`), with each one's
    overhead against the first variant in percent. Latencies are medians over ``rounds`` rounds that time
    every variant once, in a rotating order, so slow drifts of a shared machine hit all variants alike;
    ``latency_spread_%`` is half the interquartile range of a variant's rounds: a latency overhead smaller
    than it is noise."""
    models, rows = {}, []
    for name, overrides in variants.items():
        torch.manual_seed(0)
        options = {k: v for k, v in {**(base or {}), **overrides}.items() if k not in WEIGHT_OPTIONS}
        models[name] = SegmentationModel(**options).to(device).eval()
        s = summarize(models[name], input_size, name)
        rows.append({"variant": name, "params_M": s.params_total / 1e6, "GFLOPs": s.gflops, "GMACs": s.gmacs})
    keys = ["params_M", "GFLOPs"]
    if latency:
        times: dict[str, list[float]] = {name: [] for name in models}
        for model in models.values():  # warm-up
            measure_latency(model, input_size, repeats=1, warmup=1)
        names = list(models)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotated: no variant always first
                times[name].append(measure_latency(models[name], input_size, repeats=1, warmup=1))
        for row in rows:
            samples = times[row["variant"]]
            row["latency_ms"] = 1e3 * statistics.median(samples)
            q1, _, q3 = statistics.quantiles(samples, n=4) if len(samples) > 1 else (samples[0],) * 3
            row["latency_spread_%"] = 100 * (q3 - q1) / 2 / statistics.median(samples)
        keys.append("latency_ms")
    first = rows[0]
    for row in rows:
        for key in keys:
            row[f"{key}_overhead_%"] = 100 * (row[key] / first[key] - 1)
    return rows
