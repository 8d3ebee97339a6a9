"""How far segfpn's train transforms, losses and Boundary IoU are from the reference code (issue 11's
differences 2, 3, 5 and 6), for the working tree and for an earlier revision of the same files:

    PYTHONPATH=$PWD python -m benchmarks.parity_gaps --before ea0cec0

Needs the parity extra (mmsegmentation 1.2.2 & co.) and the real samples in ``../shared/ade20k_samples``.
The earlier revision's ``segfpn/datasets/transforms.py``, ``segfpn/losses.py`` and ``segfpn/metrics.py`` are
read with ``git show`` and loaded beside the working tree's (they import only segfpn's dataset constants)."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from segfpn.tables import format_table
from tests.conftest import SAMPLES
from tests.parity.conftest import Tape, build_mmseg_transform, import_reference, load_pair, mmseg_config
from tests.parity.test_losses import _batches, _logits
from tests.parity.test_metric import authors_boundary_iou, shifted_relabelled
from tests.parity.test_transforms import photometric_params

REPO = Path(__file__).resolve().parents[1]
# each module's path, newest layout first (losses.py moved to training/ with issue 20)
FILES = {
    "transforms": ("segfpn/datasets/transforms.py",),
    "losses": ("segfpn/training/losses.py", "segfpn/losses.py"),
    "metrics": ("segfpn/metrics.py",),
}


def load_revision(rev: str | None) -> dict[str, types.ModuleType]:
    """segfpn's transforms/losses/metrics modules at git revision ``rev`` (None: the working tree)."""
    modules = {}
    for name, paths in FILES.items():
        path, source = _source(rev, paths)
        module = types.ModuleType(f"segfpn_{rev or 'worktree'}_{name}")
        exec(compile(source, f"{rev or 'worktree'}:{path}", "exec"), module.__dict__)
        modules[name] = module
    return modules


def _source(rev: str | None, paths: tuple[str, ...]) -> tuple[str, str]:
    """The first of ``paths`` that exists at ``rev`` (None: the working tree), with its text."""
    for path in paths:
        if rev is None and (REPO / path).is_file():
            return path, (REPO / path).read_text()
        if rev is not None:
            try:
                return path, _git_show(rev, path)
            except subprocess.CalledProcessError:
                continue
    raise FileNotFoundError(f"none of {paths} exists at {rev or 'the working tree'}")


def _git_show(rev: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=REPO, check=True, capture_output=True, text=True).stdout


class _Patch:
    """A minimal stand-in for pytest's monkeypatch outside a test."""

    def __init__(self) -> None:
        self.saved: list[tuple[object, str, object]] = []

    def setattr(self, target: object, name: str, value: object) -> None:
        self.saved.append((target, name, getattr(target, name)))
        setattr(target, name, value)

    def undo(self) -> None:
        for target, name, value in reversed(self.saved):
            setattr(target, name, value)
        self.saved.clear()


def photometric_gap(mods: dict, pairs: list, draws: int = 60) -> dict[str, float]:
    """Over forced draws on the real images: the fraction of output values differing from mmseg's, among
    all draws and among those applying both saturation and hue; the largest difference; the hue range."""
    reference = build_mmseg_transform(
        next(t for t in mmseg_config().train_pipeline if t.type == "PhotoMetricDistortion")
    )
    ours = mods["transforms"].PhotoMetricDistortion()
    diff_all, diff_both, n_all, n_both, max_diff = 0, 0, 0, 0, 0
    patch = _Patch()
    for k, (image, _) in enumerate(pairs):
        for i in range(draws):
            tape = Tape(10_000 * k + i)
            tape.patch(patch)
            out = reference({"img": image[..., ::-1].copy()})["img"][..., ::-1]
            patch.undo()
            params = photometric_params(tape.events)
            got = ours.apply(image, **params)
            d = np.abs(got.astype(int) - out.astype(int))
            diff_all, n_all, max_diff = diff_all + (d > 0).sum(), n_all + d.size, max(max_diff, int(d.max()))
            if params["saturation"] is not None and params["hue"] is not None:
                diff_both, n_both = diff_both + (d > 0).sum(), n_both + d.size
    ours.set_random_seed(0)
    hues = [p["hue"] for p in (ours.get_params() for _ in range(4000)) if p["hue"] is not None]
    return {
        "values differing, all draws": diff_all / n_all,
        "values differing, draws with saturation and hue": diff_both / n_both,
        "max abs difference (grey levels)": max_diff,
        "hue delta range": f"[{min(hues)}, {max(hues)}] (mmseg [-18, 17])",
    }


def resize_gap(mods: dict, pairs: list) -> dict[str, float]:
    """Sizes from 201 evenly spaced ratio draws on each real image against mmcv's RandomResize."""
    processing = import_reference("mmcv.transforms.processing")
    geometric = import_reference("mmcv.image.geometric")
    ours = mods["transforms"].RandomRescale()
    differing, larger, total, max_px = 0, 0, 0, 0
    for image, _ in pairs:
        h, w = image.shape[:2]
        for u in np.linspace(0.0, 1.0, 201):
            ours.py_random = _FixedRandom(float(u))
            size = ours.get_params_dependent_on_data({"shape": (h, w)}, {})["size"]
            saved, np.random.random_sample = np.random.random_sample, lambda u=u: float(u)
            try:
                new_w, new_h = geometric.rescale_size(
                    (w, h), processing.RandomResize._random_sample_ratio((2048, 512), (0.5, 2.0))
                )
            finally:
                np.random.random_sample = saved
            gap = max(abs(size[0] - new_h), abs(size[1] - new_w))
            differing += gap > 0
            larger += size[0] * size[1] > new_h * new_w
            max_px, total = max(max_px, gap), total + 1
    return {"ratios giving another size": f"{differing} of {total}", "of them larger": larger, "max px": max_px}


class _FixedRandom:
    def __init__(self, u: float) -> None:
        self.u = u

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.u


def loss_gap(mods: dict, pairs: list) -> dict[str, str]:
    """segfpn's loss / mmseg's on the real label batches (mmseg's defaults: avg_non_ignore=False)."""
    losses = import_reference("mmseg.models.losses")
    sampler_module = import_reference("mmseg.structures.sampler.ohem_pixel_sampler")
    ce = losses.CrossEntropyLoss()
    sampler = sampler_module.OHEMPixelSampler(types.SimpleNamespace(ignore_index=255, loss_decode=ce), 0.7, 1500)
    ours_ce, ours_ohem = mods["losses"].CrossEntropyLoss(), mods["losses"].OHEMCrossEntropyLoss(0.7, 1500)
    ce_ratios, ohem_ratios, labelled = [], [], []
    with torch.no_grad():
        for k, target in enumerate(_batches(pairs)):
            logits = _logits(target, k).detach()
            ce_ratios.append(float(ours_ce(logits, target) / ce(logits, target, ignore_index=255)))
            weight = sampler.sample(logits, target.unsqueeze(1))
            ohem_ratios.append(float(ours_ohem(logits, target) / ce(logits, target, weight=weight, ignore_index=255)))
            labelled.append(float((target != 255).float().mean()))
    return {
        "CE ratio per batch": ", ".join(f"{r:.4f}" for r in ce_ratios),
        "1 / labelled fraction": ", ".join(f"{1 / f:.4f}" for f in labelled),
        "OHEM (0.7, min_kept 1500) ratio per batch": ", ".join(f"{r:.4f}" for r in ohem_ratios),
    }


def boundary_gap(mods: dict, pairs: list) -> dict[str, float]:
    """Boundary IoU of a shifted, relabelled prediction of the three real annotations."""
    preds = [(shifted_relabelled(m, k), m) for k, (_, m) in enumerate(pairs)]
    reference, _ = authors_boundary_iou(preds, 150)
    metric = mods["metrics"].BoundaryIoU(150)
    for pred, gt in preds:
        metric.update(torch.as_tensor(pred)[None], torch.as_tensor(gt, dtype=torch.long)[None])
    return {"segfpn": round(float(metric.compute()), 4), "authors' definition": round(reference, 4)}


def measure(rev: str | None) -> dict[str, dict]:
    mods = load_revision(rev)
    pairs = [load_pair(SAMPLES, p.stem) for p in sorted((SAMPLES / "images" / "validation").glob("*.jpg"))]
    return {
        "2 PhotoMetricDistortion": photometric_gap(mods, pairs),
        "3 RandomResize rounding": resize_gap(mods, pairs),
        "5 loss normalisation": loss_gap(mods, pairs),
        "6 Boundary IoU": boundary_gap(mods, pairs),
    }


def train_pipeline_cost(rev: str, rounds: int = 15) -> tuple[float, float]:
    """Median seconds of ``train_transform(512)`` over the real samples and three generated 512x683 pairs,
    for revision ``rev`` and the working tree, interleaved in one process (robust to a loaded machine)."""
    rng = np.random.default_rng(0)
    pairs = [load_pair(SAMPLES, p.stem) for p in sorted((SAMPLES / "images" / "validation").glob("*.jpg"))]
    pairs += [
        (rng.integers(0, 256, (512, 683, 3), np.uint8), rng.integers(0, 150, (512, 683), np.uint8)) for _ in "abc"
    ]
    pipelines = {"before": load_revision(rev)["transforms"].train_transform(512)}
    pipelines["after"] = load_revision(None)["transforms"].train_transform(512)
    times: dict[str, list[float]] = {"before": [], "after": []}
    for r in range(rounds):
        for name in ("before", "after") if r % 2 else ("after", "before"):
            pipelines[name].set_random_seed(r)
            start = time.perf_counter()
            for image, mask in pairs * 4:
                pipelines[name](image=image, mask=mask)
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["before"]), statistics.median(times["after"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="ea0cec0", help="git revision to compare with the working tree")
    args = parser.parse_args(argv)
    try:
        before, after = measure(args.before), measure(None)
    except pytest.fail.Exception as err:  # import_reference's message: how to install the reference code
        raise SystemExit(str(err)) from None
    rows = [
        {
            "difference": section,
            "measure": key,
            f"before ({args.before})": value,
            "after (working tree)": after[section][key],
        }
        for section, values in before.items()
        for key, value in values.items()
    ]
    print(format_table(rows, list(rows[0])))
    old, new = train_pipeline_cost(args.before)
    print(f"train_transform(512), 24 samples, median of 15 interleaved rounds: before {old:.3f} s, after {new:.3f} s")


if __name__ == "__main__":
    main()
