"""Class statistics, repeat-factor sampling and class weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from PIL import Image

from segfpn.datasets import ADE20KDataset, RepeatFactorSampler, class_weights, repeat_factors
from segfpn.datasets import class_stats as class_stats_module
from segfpn.datasets.class_stats import compute_class_stats


def test_class_stats_match_the_pngs(samples_root: Path) -> None:
    paths = sorted((samples_root / "annotations" / "validation").iterdir())
    stats = compute_class_stats(ADE20KDataset(samples_root, "validation"), num_workers=2, progress=False)
    raw = [np.asarray(Image.open(p)) for p in paths]
    expected = sum(np.bincount(r.ravel(), minlength=151) for r in raw)
    np.testing.assert_array_equal(stats.pixels, expected[1:])
    assert stats.ignored_pixels == expected[0]
    np.testing.assert_array_equal(stats.images, sum((np.bincount(r.ravel(), minlength=151) > 0)[1:] for r in raw))


def test_class_stats_are_cached(samples_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = ADE20KDataset(samples_root, "validation")
    first = compute_class_stats(dataset, progress=False)

    def fail(*args: object) -> None:
        raise AssertionError("recomputed instead of using the cache")

    monkeypatch.setattr(class_stats_module, "count_labels", fail)
    second = compute_class_stats(dataset, progress=False)
    np.testing.assert_array_equal(first.pixels, second.pixels)
    np.testing.assert_array_equal(first.presence, second.presence)


def test_class_stats_command_writes_csv_and_png(samples_root: Path, tmp_path: Path) -> None:
    from segfpn.cli import main

    main(["class-stats", "--data_root", str(samples_root), "--split", "val", "--out", str(tmp_path), "--workers", "1"])
    lines = (tmp_path / "class_stats_validation.csv").read_text().splitlines()
    assert lines[0] == "train_id,name,pixels,pixel_fraction,images" and len(lines) == 151
    assert lines[1].startswith("0,wall,")
    png = tmp_path / "class_distribution_validation.png"
    assert png.stat().st_size > 10_000 and Image.open(png).size[0] > 500


def test_class_stats_command_reads_the_data_section_of_a_config(
    samples_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from segfpn.cli import main

    config = tmp_path / "fit.yaml"
    config.write_text(f"model:\n  lr: 0.01\ndata:\n  data_root: {samples_root}\n  batch_size: 2\n")
    main(["class-stats", "--config", str(config), "--split", "val", "--out", str(tmp_path / "out"), "--workers", "0"])
    rows = (tmp_path / "out" / "class_stats_validation.csv").read_text().splitlines()
    assert len(rows) == 151 and rows[1].startswith("0,wall,")
    printed = capsys.readouterr().out
    assert printed.startswith("ade20k: 3 annotations") and "class_distribution_validation.png" in printed
    config.write_text("data:\n  data_rot: x\n")
    with pytest.raises(SystemExit) as exit_info:  # a user error: one line on stderr, exit code 2
        main(["class-stats", "--config", str(config)])
    assert exit_info.value.code == 2 and "unknown data options ['data_rot']" in capsys.readouterr().err


def test_repeat_factors_follow_lvis_formula() -> None:
    presence = np.zeros((100, 3), bool)
    presence[:, 0] = True  # in every image: f = 1
    presence[:4, 1] = True  # f = 0.04
    presence[50, 2] = True  # f = 0.01
    r = repeat_factors(presence, threshold=0.16)
    np.testing.assert_allclose(r[:4], 2.0)  # sqrt(0.16 / 0.04)
    np.testing.assert_allclose(r[50], 4.0)  # sqrt(0.16 / 0.01)
    np.testing.assert_allclose(r[10], 1.0)


def test_sampler_draw_frequencies_follow_repeat_factors() -> None:
    factors = np.array([1.0, 2.5, 1.2, 4.0, 1.3])  # sum 10: expected counts are the factors themselves
    sampler = RepeatFactorSampler(factors, seed=0)
    counts = np.zeros(len(factors))
    epochs = 2000
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        drawn = np.bincount(list(sampler), minlength=len(factors))
        assert drawn.sum() == len(sampler) == 10
        assert ((drawn == np.floor(factors)) | (drawn == np.ceil(factors))).all()  # never far from r_i
        counts += drawn
    np.testing.assert_allclose(counts / epochs, factors, rtol=0.03)
    sampler.set_epoch(7)
    assert list(sampler) == (sampler.set_epoch(7) or list(sampler))  # deterministic per epoch


def test_class_weights() -> None:
    pixels = np.array([900, 90, 10, 0])
    w = class_weights(pixels, "inverse_log")
    freq = pixels[:3] / 1000
    raw = 1 / np.log(1.02 + freq)
    np.testing.assert_allclose(w[:3].numpy(), raw / raw.mean(), rtol=1e-5)
    assert w[3] == 0 and w[2] > w[1] > w[0]
    assert torch.isclose(class_weights(pixels, "inverse")[:3].mean(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="class weight method"):
        class_weights(pixels, "median")


def test_repeat_factor_epochs_have_a_fixed_length_and_scaled_expectations() -> None:
    rng = np.random.default_rng(0)
    factors = 1.0 + 3.0 * rng.random(400) ** 4  # fractional sum: epochs of round(sum)
    sampler = RepeatFactorSampler(factors, seed=3)
    counts = np.zeros(len(factors))
    epochs = 300
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        drawn = list(sampler)
        assert len(drawn) == len(sampler) == round(factors.sum())
        counts += np.bincount(drawn, minlength=len(factors))
    expected = factors * len(sampler) / factors.sum()  # within 0.05% of the factors
    np.testing.assert_allclose(counts.sum() / epochs, len(sampler))
    assert abs(counts / epochs - expected).max() < 0.2 and abs((counts / epochs - expected).mean()) < 0.01


@pytest.mark.parametrize("size, world", [(7, 2), (8, 3), (3, 3), (10, 4)])
def test_evaluation_sharding_yields_each_sample_once(size: int, world: int) -> None:
    # the evaluation sampler of ADE20KDataModule under DDP, one instance per rank
    samplers = [UnrepeatedDistributedSampler(range(size), world, r, shuffle=False) for r in range(world)]
    shards = [list(sampler) for sampler in samplers]
    assert sorted(i for shard in shards for i in shard) == list(range(size))  # no sample twice, none left out
    assert all(shard == sorted(shard) for shard in shards)  # evaluation order kept
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [len(sampler) for sampler in samplers] == [len(shard) for shard in shards]


def test_repeat_factor_draws_stay_within_the_per_image_bounds_for_1000_epochs() -> None:
    """floor(r_i) or floor(r_i) + 1 draws in every epoch, whole factors exactly, mean r_i, a fixed length."""
    factors = np.concatenate([np.ones(60), np.full(20, 2.0), 1.0 + 3.0 * np.random.default_rng(1).random(120) ** 2])
    factors[-1] += round(factors.sum()) - factors.sum()  # fractional parts summing to a whole: exact mean
    sampler = RepeatFactorSampler(factors, seed=0)
    counts = np.zeros(len(factors))
    for epoch in range(1000):
        sampler.set_epoch(epoch)
        drawn = np.bincount(list(sampler), minlength=len(factors))
        assert drawn.sum() == len(sampler) == round(factors.sum())
        assert ((drawn == np.floor(factors)) | (drawn == np.floor(factors) + 1)).all(), epoch
        assert (drawn[:80] == factors[:80]).all(), epoch  # whole factors: exactly r_i, every epoch
        counts += drawn
    assert abs(counts / 1000 - factors).max() < 0.06  # binomial noise of 1000 epochs: sd <= 0.016


@pytest.mark.parametrize("world", [1, 2, 3])
def test_train_stream_deals_one_epoch_and_resumes_at_a_position(world: int) -> None:
    from segfpn.datasets.sampling import EpochShuffleSampler
    from segfpn.datasets.stream import TrainStream

    def streams(start: int = 0) -> list[list[tuple[int, int]]]:
        out = []
        for rank in range(world):
            stream = TrainStream(EpochShuffleSampler(10, seed=4), 7, world, rank, start_fn=lambda epoch: start)
            stream.set_epoch(3)
            out.append(list(stream))
            assert len(stream) == -(-10 // world)
        return out

    full = streams()
    order = EpochShuffleSampler(10, seed=4)
    order.set_epoch(3)
    dealt: list[tuple[int, int]] = [(-1, -1)] * (len(full[0]) * world)
    for rank, pairs in enumerate(full):
        dealt[rank::world] = pairs
    assert [i for i, _ in dealt][:10] == list(order)  # the epoch's order, dealt round-robin (then padding)
    assert len({seed for _, seed in dealt}) == len(dealt)  # one augmentation seed per position
    for rank, (whole, resumed) in enumerate(zip(full, streams(start=2))):
        assert resumed == whole[2:], rank  # a resume skips this rank's first two samples, nothing else changes


def test_a_resume_with_another_number_of_processes_warns_and_starts_the_epoch_over(synthetic_root: Path) -> None:
    from segfpn.datasets import ADE20KDataModule

    data = ADE20KDataModule(str(synthetic_root), batch_size=2, num_workers=0, crop_size=32, scale=(64, 32))
    saved = {"epoch": 0, "batches": 3, "batch_size": 2, "world_size": 2, "seed": 5}
    data.load_state_dict({"train_stream": saved})
    data.setup("fit")
    with pytest.warns(UserWarning, match="with 1 processes of batch 2, saved with 2 of batch 2: the epoch starts over"):
        pairs = list(data.train_dataloader().sampler)
    assert len(pairs) == 16 and {seed for _, seed in pairs} != set() and data.stream_seed == 5


def test_a_resume_mid_epoch_loads_no_skipped_sample(synthetic_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from segfpn.datasets import ADE20KDataModule

    data = ADE20KDataModule(str(synthetic_root), batch_size=2, num_workers=0, crop_size=32, scale=(64, 32))
    data.setup("fit")
    whole = [batch[1] for batch in data.train_dataloader()]
    seed = data.state_dict()["train_stream"]["seed"]  # the stream this data module drew at setup
    data.load_state_dict({"train_stream": {"epoch": 0, "batches": 5, "batch_size": 2, "world_size": 1, "seed": seed}})
    loaded = []
    original = type(data.datasets["train"]).load_pair
    monkeypatch.setattr(
        type(data.datasets["train"]), "load_pair", lambda self, i: loaded.append(i) or original(self, i)
    )
    resumed = [batch[1] for batch in data.train_dataloader()]
    assert len(loaded) == 6  # the three remaining batches of 2, not the 10 samples skipped
    assert all(torch.equal(a, b) for a, b in zip(resumed, whole[5:], strict=True))  # the same crops and flips
