"""Class-balanced sampling (repeat factors, as in LVIS) and class-weight vectors for losses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Sampler

from segfpn.errors import ConfigError


def repeat_factors(presence: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Per-image repeat factor r_i = max over its classes c of max(1, sqrt(t / f_c)), where f_c is the
    fraction of images containing c (Gupta et al., LVIS, 2019)."""
    if threshold <= 0:
        raise ConfigError(f"repeat threshold must be positive, got {threshold}")
    freq = presence.mean(0)
    class_factor = np.where(freq > 0, np.maximum(1.0, np.sqrt(threshold / np.maximum(freq, 1e-12))), 1.0)
    per_image = np.where(presence, class_factor[None, :], 1.0)
    return per_image.max(1) if presence.shape[1] else np.ones(len(presence))


class _EpochSeeded:
    """Epoch bookkeeping shared by segfpn's samplers.

    ``epoch_fn`` (e.g. ``lambda: trainer.current_epoch``) wins over ``set_epoch``: after a resume from an
    end-of-epoch checkpoint Lightning calls ``set_epoch`` with one more than the epoch it trains, which
    would skip an epoch's order.
    """

    seed: int
    epoch: int = 0
    epoch_fn: Callable[[], int | None] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def current_epoch(self) -> int:
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        return self.epoch if epoch is None else epoch

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + self.current_epoch())


class EpochShuffleSampler(_EpochSeeded, Sampler[int]):
    """A random permutation drawn from (seed, epoch): the same order for an epoch after a resume."""

    def __init__(self, num_samples: int, seed: int = 0, epoch_fn: Callable[[], int | None] | None = None) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch_fn = epoch_fn

    def __iter__(self) -> Iterator[int]:
        g = self.generator()
        return iter(torch.randperm(self.num_samples, generator=g).tolist())

    def __len__(self) -> int:
        return self.num_samples


class RepeatFactorSampler(_EpochSeeded, Sampler[int]):
    """Each epoch has the same length n = round(sum of r_i) (at least 1); image i is drawn floor or ceil of
    n r_i / sum(r) times, that value on average (r_i when the sum is whole), in a shuffled order.

    Deterministic per (seed, epoch), so every DDP rank sees the same list and Lightning's
    DistributedSamplerWrapper gives each the same number of samples every epoch.
    """

    def __init__(self, factors: np.ndarray, seed: int = 0, epoch_fn: Callable[[], int | None] | None = None) -> None:
        self.factors = torch.as_tensor(factors, dtype=torch.float64)
        if len(self.factors) == 0 or not bool((self.factors > 0).all()):
            raise ConfigError(f"repeat factors must be positive and at least one, got {self.factors.tolist()[:10]}")
        self.seed = seed
        self.epoch_fn = epoch_fn
        self.num_samples = max(1, round(float(self.factors.sum())))

    def _indices(self) -> torch.Tensor:
        # systematic sampling: n points u, u+1, ..., u+n-1 on the images' expected counts laid end to end, in
        # a random image order; image i gets floor or ceil of its expected count and exactly it on average
        g = self.generator()
        order = torch.randperm(len(self.factors), generator=g)
        expected = self.factors[order] * (self.num_samples / float(self.factors.sum()))
        ends = torch.cumsum(expected, 0)
        ends[-1] = self.num_samples  # no rounding error at the end
        points = torch.rand(1, generator=g, dtype=torch.float64) + torch.arange(self.num_samples, dtype=torch.float64)
        indices = order[torch.searchsorted(ends, points, right=True)]
        return indices[torch.randperm(self.num_samples, generator=g)]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices().tolist())

    def __len__(self) -> int:
        return self.num_samples


def class_weights(
    pixels: np.ndarray, method: Literal["inverse_log", "inverse_sqrt", "inverse"] = "inverse_log", eps: float = 1.02
) -> torch.Tensor:
    """Per-class loss weights from pixel counts, normalised to mean 1 over present classes.

    ``inverse_log``: 1 / ln(eps + f_c) (ENet, Paszke et al. 2016); ``inverse_sqrt``: 1/sqrt(f_c);
    ``inverse``: 1/f_c. Absent classes get weight 0 (they have no pixels to weigh).
    """
    freq = pixels / max(float(pixels.sum()), 1.0)
    present = freq > 0
    if method == "inverse_log":
        w = 1.0 / np.log(eps + freq)
    elif method == "inverse_sqrt":
        w = 1.0 / np.sqrt(np.maximum(freq, 1e-12))
    elif method == "inverse":
        w = 1.0 / np.maximum(freq, 1e-12)
    else:
        raise ConfigError(f"class weight method must be inverse_log, inverse_sqrt or inverse, got {method!r}")
    w = np.where(present, w, 0.0)
    w = w / w[present].mean() if present.any() else w
    return torch.as_tensor(w, dtype=torch.float32)
