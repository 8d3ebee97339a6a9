"""Gather the runs of an experiment folder into a Markdown and an HTML report with tables and figures."""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from segfpn.errors import DataError
from segfpn.training.experiment import final_results
from segfpn.utils.visualize import plot_confusion_matrix, plot_per_class_iou, top_confusions


@dataclass
class Block:
    """One piece of a report: a heading, a paragraph, a table or an image."""

    kind: str  # "h1" | "h2" | "p" | "table" | "image"
    content: object


def _markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2"):
            out.append(("# " if b.kind == "h1" else "## ") + str(b.content))
        elif b.kind == "p":
            out.append(str(b.content))
        elif b.kind == "image":
            out.append(f"![{Path(b.content).stem}]({Path(b.content).name})")
        elif b.kind == "table":
            header, *rows = b.content
            out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


def _html(blocks: list[Block], title: str) -> str:
    body = []
    for b in blocks:
        if b.kind in ("h1", "h2"):
            body.append(f"<{b.kind}>{html.escape(str(b.content))}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{html.escape(str(b.content))}</p>")
        elif b.kind == "image":
            body.append(f'<img src="{html.escape(Path(b.content).name)}" style="max-width:100%">')
        elif b.kind == "table":
            header, *rows = b.content
            cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
            body.append(f"<table><tr>{cells}</tr>{trs}</table>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def collect_runs(folder: Path) -> dict[str, dict]:
    """variant name -> its final validation results, for every run below ``folder``."""
    runs = {}
    for run in sorted(p for p in folder.iterdir() if p.is_dir()):
        result = (
            json.loads((run / "results" / "final.json").read_text())
            if (run / "results" / "final.json").is_file()
            else final_results(run) or final_results(run, "fit_val")
        )
        if result is not None:
            runs[run.name] = result
    return runs


def run_class_names(result: dict) -> list[str]:
    """The class names of the dataset a run was trained on (``hparams.dataset_info`` of its results);
    ``class_i`` for results written without one."""
    info = (result.get("hparams") or {}).get("dataset_info")
    if info and info.get("classes"):
        return list(info["classes"])
    return [f"class_{i}" for i in range(len(result["IoU"]))]


CURVE_PANELS = (("mIoU", "val mIoU"), ("aAcc", "val aAcc"), ("mAcc", "val mAcc"), ("loss", "loss"))


def _training_curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Per metric, the (step, value) pairs of the validations during training (``results/fit_val_step*.json``),
    and ``train/loss`` from the run's own logs (CSV, TensorBoard or W&B offline files) when it has some."""
    from segfpn.analysis.curves import find_logs, read_curves

    curves: dict[str, list[tuple[int, float]]] = {}
    for f in sorted((run / "results").glob("fit_val_step*.json")):
        scores = json.loads(f.read_text())
        for key, _ in CURVE_PANELS:
            if scores.get(key) is not None:
                curves.setdefault(key, []).append((int(f.stem.rsplit("step", 1)[1]), scores[key]))
    if run.is_dir() and find_logs(run):
        train_loss = read_curves(run)[1].get("train/loss")
        if train_loss:
            curves["train/loss"] = train_loss
    return curves


def _plot_training_curves(curves: dict[str, dict], path: Path) -> Path:
    """Val mIoU, aAcc, mAcc and loss (val, and train where logged) vs step, one line per run."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), squeeze=False)
    for ax, (key, label) in zip(axes.flat, CURVE_PANELS):
        for n, run_curves in curves.items():
            if run_curves.get(key):
                (line,) = ax.plot(
                    *zip(*run_curves[key]), marker="o", markersize=3, label=f"{n} (val)" if key == "loss" else n
                )
                if key == "loss" and run_curves.get("train/loss"):
                    ax.plot(*zip(*run_curves["train/loss"]), color=line.get_color(), alpha=0.5, label=f"{n} (train)")
        ax.set_title(f"{label} during training")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle("Training curves")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def per_class_figure(
    iou: np.ndarray,
    class_names: tuple[str, ...],
    title: str,
    other: np.ndarray | None = None,
    labels: tuple[str, str] = ("run", "baseline"),
) -> Figure:
    """Per-class IoU bars sorted by ``iou`` (highest first; classes without a score left out), beside
    ``other``'s when given, titled."""
    order = np.argsort(-np.nan_to_num(iou, nan=-1.0), kind="stable")
    names = tuple(class_names[i] for i in order)
    fig = plot_per_class_iou(iou[order], names, other=None if other is None else other[order], labels=labels)
    fig.axes[0].set_title(title)
    fig.axes[0].set_xlabel("class (sorted by IoU)" if other is None else f"class (sorted by {labels[0]}'s IoU)")
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_report(
    folder: Path,
    title: str | None = None,
    cost: dict[str, dict] | None = None,
    class_names: Sequence[str] | None = None,
    order: list[str] | None = None,
) -> dict[str, Path]:
    """``report.md``, ``report.html``, ``results.csv`` and figures in ``folder`` from its runs. The first run
    of ``order`` (default: ``baseline`` if present, then alphabetical) is the reference of the comparisons.
    ``class_names`` default to those of the dataset the runs were trained on (see :func:`run_class_names`)."""
    if not folder.is_dir():
        raise DataError(f"report folder {str(folder)!r} is not a folder; expected the output of `segfpn experiment`")
    runs = collect_runs(folder)
    if not runs:
        raise DataError(f"no runs with results/*.json below {str(folder)!r}; run `segfpn experiment` first")
    title = title or f"Report: {folder.name}"
    names = [n for n in order if n in runs] if order else sorted(runs, key=lambda n: (n != "baseline", n))
    baseline = names[0]
    class_names = list(class_names) if class_names is not None else run_class_names(runs[baseline])
    best = max(names, key=lambda n: runs[n]["mIoU"] or 0)
    header = ["variant", "mIoU", "aAcc", "mAcc", "ΔmIoU vs " + baseline]
    if cost:
        header += ["params (M)", "GFLOPs", "latency (ms)"]
    rows = []
    for n in names:
        r = runs[n]
        row = [
            n,
            f"{r['mIoU']:.4f}",
            f"{r['aAcc']:.4f}",
            f"{r['mAcc']:.4f}",
            f"{r['mIoU'] - runs[baseline]['mIoU']:+.4f}",
        ]
        if cost:
            c = cost.get(n, {})
            row += [
                f"{c.get('params_M', float('nan')):.2f}",
                f"{c.get('GFLOPs', float('nan')):.1f}",
                f"{c.get('latency_ms', float('nan')):.0f}",
            ]
        rows.append(row)
    with (folder / "results.csv").open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])

    blocks = [
        Block("h1", title),
        Block(
            "p",
            f"{len(names)} runs; best: {best} (mIoU {runs[best]['mIoU']:.4f}). One seed per run: on short "
            "runs, differences of a few mIoU points can be seed noise; repeat with --seed_everything to be sure.",
        ),
        Block("h2", "Results (validation, dataset-level)"),
        Block("table", [header, *rows]),
    ]
    figures = {}
    curves = {n: _training_curves(folder / n) for n in names}
    if any(curves.values()):
        figures["curves"] = _plot_training_curves(curves, folder / "training_curves.png")
        blocks += [Block("h2", "Validation scores and loss during training"), Block("image", figures["curves"])]
    iou = {n: np.array([np.nan if v is None else v for v in runs[n]["IoU"]]) for n in names}
    path = folder / f"per_class_iou_{best}.png"
    figures["iou_best"] = _save(
        per_class_figure(iou[best], class_names, f"Per-class IoU of the best run ({best})"), path
    )
    blocks += [Block("h2", f"Per-class IoU of the best run ({best})"), Block("image", path)]
    for n in names[1:]:
        path = folder / f"per_class_iou_{n}_vs_{baseline}.png"
        title = f"Per-class IoU: {n} vs {baseline}"
        figures[f"iou_{n}"] = _save(per_class_figure(iou[n], class_names, title, iou[baseline], (n, baseline)), path)
        diff = iou[n] - iou[baseline]
        ranked = [i for i in np.argsort(diff) if not np.isnan(diff[i])]
        gains = ", ".join(f"{class_names[i]} {diff[i]:+.3f}" for i in ranked[::-1][:5] if diff[i] > 0) or "none"
        losses = ", ".join(f"{class_names[i]} {diff[i]:+.3f}" for i in ranked[:5] if diff[i] < 0) or "none"
        blocks += [
            Block("h2", f"Per-class IoU: {n} vs {baseline}"),
            Block("p", f"largest gains: {gains}; largest drops: {losses}"),
            Block("image", path),
        ]
    confmat = np.array(runs[best]["confmat"])
    path = folder / f"confusion_matrix_{best}.png"
    plt.close(plot_confusion_matrix(confmat, class_names, top_k=30, save_path=path))
    figures["confusion"] = path
    pairs = top_confusions(confmat, class_names, 10)
    blocks += [
        Block("h2", f"Confusions of the best run ({best})"),
        Block("image", path),
        Block("table", [["ground truth", "predicted as", "fraction"], *[[g, p, f"{r:.3f}"] for g, p, r in pairs]]),
    ]
    md, page = folder / "report.md", folder / "report.html"
    md.write_text(_markdown(blocks))
    page.write_text(_html(blocks, title))
    return {"markdown": md, "html": page, "csv": folder / "results.csv", **figures}
