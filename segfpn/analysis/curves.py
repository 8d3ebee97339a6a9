"""Training curves of a finished run, read from whichever logger wrote them (CSV, TensorBoard, W&B offline files).

Each reader returns ``{metric: [(step, value), ...]}`` sorted by step, with the step that Lightning gave the
logger (``trainer.global_step`` at logging time), so the three sources agree for the same run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from segfpn.errors import DataError
from segfpn.text_files import read_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Curves = dict[str, list[tuple[int, float]]]

# (file name, figure title, y label, metrics drawn); a panel is drawn when any of its metrics was logged
PANELS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("loss.png", "loss", "loss", ("train/loss", "val/loss")),
    ("lr.png", "learning rate", "learning rate", ("train/lr", "train/lr_backbone")),
    ("val_scores.png", "validation scores", "score", ("val/mIoU", "val/aAcc", "val/mAcc")),
)

_WANDB_BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of (crc, length, type) records
_WANDB_HEADER = 7  # b":W&B", magic 0xBEE1, version


def _merge(curves: Curves, metric: str, step: int, value: float) -> None:
    if math.isfinite(value):
        curves.setdefault(metric, []).append((step, value))


def _finish(curves: Curves) -> Curves:
    """Sort by step; when a step was logged twice (a resumed run), the later value wins."""
    return {k: sorted(dict(points).items()) for k, points in sorted(curves.items())}


def read_csv_logs(files: list[Path]) -> Curves:
    """Lightning CSVLogger ``metrics.csv`` files (one per version of the run, oldest first)."""
    curves: Curves = {}
    for path in files:
        text = read_text(path, "metrics file", DataError)
        for line, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
            if not row.get("step"):
                continue
            try:
                step = int(float(row["step"]))
                for key, value in row.items():
                    if key not in ("step", "epoch") and value not in ("", None):
                        _merge(curves, key, step, float(value))
            except (TypeError, ValueError) as err:
                raise DataError(
                    f"metrics file {str(path)!r}, line {line}: expected numbers, found {dict(row)} ({err})"
                ) from err
    return _finish(curves)


def read_tensorboard_logs(files: list[Path]) -> Curves:
    """TensorBoard event files (scalars), read with TensorBoard's own EventAccumulator."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as error:
        raise DataError(f"reading {files[0]} needs the tensorboard package: pip install tensorboard") from error
    curves: Curves = {}
    for path in files:
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})  # 0: keep every point
        events.Reload()
        for tag in events.Tags()["scalars"]:
            if tag in ("epoch", "hp_metric"):
                continue
            for event in events.Scalars(tag):
                _merge(curves, tag, int(event.step), float(event.value))
    return _finish(curves)


def wandb_records(path: Path) -> list[bytes]:
    """The serialised protobuf records of a W&B ``run-*.wandb`` file (wandb 0.31 ships no reader for it)."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise DataError(f"{path} is not a W&B run file: expected it to start with b':W&B', found {data[:4]!r}")
    records, pending, pos = [], b"", _WANDB_HEADER
    while pos + 7 <= len(data):
        left = _WANDB_BLOCK - pos % _WANDB_BLOCK
        if left < 7:  # block trailer: padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zero padding up to the end of the block
            pos += left
            continue
        if pos + 7 + length > len(data):
            break  # a record being written when the file was read (a live or killed run)
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:  # full record
            records.append(chunk)
        elif kind == 2:  # first piece
            pending = chunk
        elif kind == 3:  # middle piece
            pending += chunk
        elif kind == 4:  # last piece
            records.append(pending + chunk)
            pending = b""
    return records


def read_wandb_offline(files: list[Path]) -> Curves:
    """History rows of W&B offline run files, stepped by ``trainer/global_step`` (what Lightning logs)."""
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    curves: Curves = {}
    for path in files:
        for index, raw in enumerate(wandb_records(path)):
            record = wandb_internal_pb2.Record()
            try:
                record.ParseFromString(raw)
            except DecodeError as err:
                raise DataError(
                    f"W&B run file {str(path)!r} is damaged: record {index} ({len(raw)} bytes) is not a W&B record "
                    f"({err})"
                ) from err
            if record.WhichOneof("record_type") != "history":
                continue
            row = {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
            if "trainer/global_step" not in row:
                continue
            step = int(float(row["trainer/global_step"]))
            for key, value in row.items():
                if key.startswith("_") or key in ("trainer/global_step", "epoch"):
                    continue
                try:
                    number = json.loads(value)
                except json.JSONDecodeError:
                    continue
                if isinstance(number, (int, float)) and not isinstance(number, bool):
                    _merge(curves, key, step, float(number))
    return _finish(curves)


def _version_key(path: Path) -> tuple[float, str]:
    return (path.stat().st_mtime, str(path))


def find_logs(run_dir: Path) -> dict[str, list[Path]]:
    """The log files of each logger below ``run_dir``: ``csv``, ``tensorboard`` (event files) and ``wandb``."""
    found = {
        "csv": sorted(run_dir.rglob("metrics.csv"), key=_version_key),
        "tensorboard": sorted(run_dir.rglob("events.out.tfevents.*"), key=_version_key),
        "wandb": sorted(run_dir.rglob("offline-run-*/run-*.wandb"), key=_version_key),
    }
    return {source: files for source, files in found.items() if files}


READERS: dict[str, Callable[[list[Path]], Curves]] = {
    "csv": read_csv_logs,
    "tensorboard": read_tensorboard_logs,
    "wandb": read_wandb_offline,
}


def read_curves(run_dir: Path, source: str = "auto") -> tuple[str, Curves]:
    """(source used, curves) of a run folder; ``auto`` takes the first of csv, tensorboard, wandb found."""
    if not run_dir.is_dir():
        raise DataError(f"run folder {str(run_dir)!r} does not exist; expected a folder written by `segfpn fit`")
    logs = find_logs(run_dir)
    if source == "auto":
        if not logs:
            raise DataError(
                f"no logs below {str(run_dir)!r}: expected metrics.csv (CSVLogger), events.out.tfevents.* "
                "(TensorBoardLogger) or wandb/offline-run-*/run-*.wandb (WandbLogger offline)"
            )
        source = next(iter(logs))
    if source not in READERS:
        raise DataError(f"--source {source!r}: expected one of auto, {', '.join(READERS)}")
    if source not in logs:
        found = ", ".join(logs) or "none"
        raise DataError(f"--source {source}: no {source} logs below {str(run_dir)!r}; found: {found}")
    return source, training_curves(logs[source], READERS[source])


def training_curves(files: list[Path], reader: Callable[[list[Path]], Curves]) -> Curves:
    """The curves of the log files that hold training metrics (``train/*``): a ``segfpn validate`` or ``test``
    in the same run folder writes logs of its own, stepped from 0, that are not part of the training curves.
    All files when none holds training metrics."""
    per_file = [reader([path]) for path in files]
    training = [c for c in per_file if any(k.startswith("train/") for k in c)] or per_file
    merged: Curves = {}
    for curves in training:
        for metric, points in curves.items():
            merged.setdefault(metric, []).extend(points)
    return _finish(merged)


def curve_figures(curves: Curves, run_name: str, source: str) -> dict[str, Figure]:
    """File name -> figure, one per panel of :data:`PANELS` that has data (loss, learning rate, val scores)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figures = {}
    for filename, title, ylabel, metrics in PANELS:
        present = [m for m in metrics if curves.get(m)]
        if not present:
            continue
        fig, ax = plt.subplots(figsize=(8, 4))
        for metric in present:
            steps, values = zip(*curves[metric])
            # sparse series (validations) get markers so that a single point is visible
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=4, label=metric)
        ax.set_title(f"{title}: {run_name} ({source} logs)")
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        if filename == "lr.png":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        figures[filename] = fig
    if not figures:
        wanted = ", ".join(m for panel in PANELS for m in panel[3])
        raise DataError(f"the {source} logs hold none of the plotted metrics ({wanted}); found: {', '.join(curves)}")
    return figures


def plot_curves(curves: Curves, out_dir: Path, run_name: str, source: str) -> list[Path]:
    """The figures of :func:`curve_figures` as PNGs in ``out_dir``; returns their paths."""
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, fig in curve_figures(curves, run_name, source).items():
        fig.savefig(out_dir / filename, dpi=110)
        plt.close(fig)
        written.append(out_dir / filename)
    return written
