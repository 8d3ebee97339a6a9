"""Class-balanced sampling (repeat factors, as in LVIS) and class-weight vectors for losses."""

from __future__ import annotations

from collections.abc import Iterator
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
    """An order drawn from (seed, epoch), as DistributedSampler's is: the same epoch, the same order."""

    seed: int
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + self.epoch)


class EpochShuffleSampler(_EpochSeeded, Sampler[int]):
    """A random permutation drawn from (seed, epoch)."""

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples = num_samples
        self.seed = seed

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.num_samples, generator=self.generator()).tolist())

    def __len__(self) -> int:
        return self.num_samples


def _inclusion_probabilities(weights: torch.Tensor, draws: int) -> torch.Tensor:
    """Probabilities proportional to ``weights`` that sum to ``draws``, none above 1 (the excess of capped ones
    is spread over the others in proportion)."""
    p = torch.zeros_like(weights)
    free = weights > 0
    while draws > 0 and bool(free.any()):
        share = weights * free * ((draws - float(p[~free].sum())) / float(weights[free].sum()))
        over = free & (share >= 1)
        if not bool(over.any()):
            return torch.where(free, share, p)
        p[over], free = 1.0, free & ~over
    return p


class RepeatFactorSampler(_EpochSeeded, Sampler[int]):
    """Class-balanced sampling with a fixed epoch length n = round(sum of r_i) (at least 1), so DDP ranks agree.

    Image i is drawn floor(r_i) times, plus once more for n - sum(floor(r)) images picked by systematic sampling
    with probabilities proportional to the fractional parts: floor(r_i) or floor(r_i) + 1 draws, whole factors
    exactly, r_i on average when the fractional parts sum to a whole number (LVIS / detectron2 draw each extra
    independently, so their epoch length varies). Deterministic per (seed, epoch), in a shuffled order.
    """

    def __init__(self, factors: np.ndarray, seed: int = 0) -> None:
        self.factors = torch.as_tensor(factors, dtype=torch.float64)
        if len(self.factors) == 0 or not bool((self.factors > 0).all()):
            raise ConfigError(f"repeat factors must be positive and at least one, got {self.factors.tolist()[:10]}")
        self.seed = seed
        self.num_samples = max(1, round(float(self.factors.sum())))
        self.whole = torch.floor(self.factors)
        extra = self.num_samples - int(self.whole.sum())
        fractions = self.factors - self.whole
        # a rounding up of the length with no fractional part to carry it (e.g. factors all below 1/2)
        self.extra_p = _inclusion_probabilities(fractions if fractions.sum() > 0 else self.factors, extra)

    def _indices(self) -> torch.Tensor:
        g = self.generator()
        extra = round(float(self.extra_p.sum()))
        counts = self.whole.clone()
        if extra:
            # systematic sampling: points u, u+1, ... on the probabilities laid end to end in a random order
            order = torch.randperm(len(self.factors), generator=g)
            ends = torch.cumsum(self.extra_p[order], 0)
            ends[-1] = extra  # no rounding error at the end
            points = torch.rand(1, generator=g, dtype=torch.float64) + torch.arange(extra, dtype=torch.float64)
            counts[order[torch.searchsorted(ends, points, right=True)]] += 1
        indices = torch.repeat_interleave(torch.arange(len(self.factors)), counts.long())
        return indices[torch.randperm(len(indices), generator=g)]

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
