"""The cost of the exact-resume training stream (segfpn.datasets.stream), side by side in one run:

- loader throughput: the training loader as it was (plain indices, the pipeline seeded once) against the stream
  (each sample's augmentation seeded from its position), on ADE20K-sized generated files;
- a training step with and without the per-step seeding of the global RNGs;
- resuming mid-epoch in a 10,000-sample epoch: time to the first batch when the consumed samples are skipped
  without loading, against loading them (what a loader without a position must do to get there).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import interleaved
from benchmarks.data_pipeline import ade_sized_dataset
from segfpn.datasets import ADE20KDataset, train_transform
from segfpn.datasets.base import seed_transform
from segfpn.datasets.collate import pad_collate
from segfpn.datasets.sampling import EpochShuffleSampler
from segfpn.datasets.stream import TrainStream, seed_step, stream_seed
from segfpn.models import SegmentationModel


class Cycled(Dataset):
    """``length`` samples cycling through a dataset's pairs; counts the samples it loads."""

    def __init__(self, dataset: ADE20KDataset, length: int) -> None:
        self.dataset, self.length, self.loaded = dataset, length, 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index):
        self.loaded += 1
        if isinstance(index, tuple):
            return self.dataset[(index[0] % len(self.dataset), index[1])]
        return self.dataset[index % len(self.dataset)]


def _loader(dataset: Dataset, sampler, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size, sampler=sampler, drop_last=True, collate_fn=pad_collate)


def loader_rates(root: Path, count: int, rounds: int) -> list[dict]:
    """Both loaders on the recipe (their draws differ, and with them the work: rescale ratio, crop re-draws,
    photometric steps) and on a pipeline whose work does not depend on the draws (ratio 1, no crop re-draw, no
    photometric distortion), where the difference is the seeding alone."""
    pipelines = {
        "recipe": train_transform(512),
        "same work": train_transform(512, ratio_range=(1.0, 1.0), cat_max_ratio=1.0, photometric=False),
    }
    rows = []
    for name, transform in pipelines.items():
        dataset = ADE20KDataset(root, "training", transform=transform)
        seed_transform(dataset.transform, 0)  # before: seeded once, one stream for every sample
        epoch = {"n": 0}

        def before() -> None:
            sampler = EpochShuffleSampler(count, seed=0)
            sampler.set_epoch(epoch["n"])
            for _ in _loader(dataset, sampler, 4):
                pass

        def after() -> None:
            stream = TrainStream(EpochShuffleSampler(count, seed=0), seed=0)
            stream.set_epoch(epoch["n"])
            for _ in _loader(dataset, stream, 4):
                pass
            epoch["n"] += 1

        times = interleaved({"before": before, "after": after}, rounds)
        rate = {k: count / v for k, v in times.items()}
        rows.append(
            {
                "measure": f"train loader, images/s ({name}: ADE20K-sized, 512 crop, batch 4, main process)",
                "before": rate["before"],
                "after": rate["after"],
                "after_vs_before": rate["after"] / rate["before"],
            }
        )
    return rows


def seeding_cost(root: Path, repeats: int = 2000) -> list[dict]:
    """Microseconds per sample of what the stream adds: the position's seed and the pipeline's reseeding."""
    transform = train_transform(512)
    start = time.perf_counter()
    for i in range(repeats):
        seed_transform(transform, stream_seed(0, 0, i))
    return [
        {
            "measure": "per-sample seeding (stream_seed + seed_transform), microseconds",
            "before": 0.0,
            "after": 1e6 * (time.perf_counter() - start) / repeats,
            "after_vs_before": float("nan"),
        }
    ]


def step_times(rounds: int) -> list[dict]:
    torch.manual_seed(0)
    model = SegmentationModel(num_classes=150, backbone_name="resnet18", pretrained=False, drop_path_rate=0.1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images, masks = torch.randn(2, 3, 256, 256), torch.randint(0, 150, (2, 256, 256))
    counter = {"step": 0}

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(images)["p0"], masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def seeded_step() -> None:
        seed_step(0, 0, counter["step"], 0)
        counter["step"] += 1
        step()

    times = interleaved({"before": step, "after": seeded_step}, rounds)
    return [
        {
            "measure": "training step, ms (resnet18 FPN, batch 2 at 256x256)",
            "before": 1e3 * times["before"],
            "after": 1e3 * times["after"],
            "after_vs_before": times["after"] / times["before"],
        }
    ]


def resume_times(root: Path, length: int = 10_000, at: int = 5_000) -> list[dict]:
    dataset = ADE20KDataset(root, "training", transform=train_transform(512))
    skipping = Cycled(dataset, length)
    start = time.perf_counter()
    stream = TrainStream(EpochShuffleSampler(length, seed=0), seed=0, start_fn=lambda epoch: at)
    next(iter(_loader(skipping, stream, 2)))
    skip_s = time.perf_counter() - start
    # loading the consumed samples: timed on 100 of them and scaled to all (the same pipeline, the same files)
    loading = Cycled(dataset, length)
    start = time.perf_counter()
    for index in range(100):
        loading[index]
    load_s = (time.perf_counter() - start) * at / 100
    return [
        {
            "measure": f"resume at sample {at:,} of {length:,}: seconds to the first batch",
            "before": load_s,
            "after": skip_s,
            "after_vs_before": skip_s / load_s,
        },
        {
            "measure": f"resume at sample {at:,} of {length:,}: samples loaded for the first batch",
            "before": at + 2,
            "after": skipping.loaded,
            "after_vs_before": skipping.loaded / (at + 2),
        },
    ]


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    count = 8 if quick else 24
    with tempfile.TemporaryDirectory() as tmp:
        root = ade_sized_dataset(Path(tmp) / "ADEChallengeData2016", count)
        rows = loader_rates(root, count, rounds=3 if quick else 15)
        rows += seeding_cost(root)
        rows += step_times(rounds=5 if quick else 30)
        rows += resume_times(root)
    return rows
