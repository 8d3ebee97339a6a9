"""A resumable training stream: what each training step sees is a function of (seed, epoch, position) alone.

The order of an epoch comes from an order sampler seeded by (seed, epoch), as DistributedSampler's is; each sample's
augmentation RNG is seeded from (seed, epoch, position in the epoch) and each step's global RNGs (dropout,
drop-path) from (seed, epoch, batch, rank). The draws then depend neither on the number of workers, nor on which
worker got a sample, nor on prefetching, nor on how often the run was stopped, and the loader's whole state is a
:class:`StreamPosition`: "epoch, batches consumed". A resume skips the consumed positions without loading them.

Why not torchdata's ``StatefulDataLoader``: it snapshots each worker's iterator and RNG, so its state depends on
the number of workers and on what was prefetched, and the worker RNG streams it restores are the ones that make
augmentation depend on which worker got a sample. Here there is nothing to snapshot.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sized
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.utils.data import DistributedSampler, Sampler


def stream_seed(*keys: int) -> int:
    """A 32-bit seed drawn from the keys (numpy's SeedSequence: nearby keys give unrelated seeds)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def seed_step(*keys: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's global RNGs from the keys: a step's dropout and drop-path
    draws then depend on which step it is, not on what ran before it."""
    seed = stream_seed(*keys)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


@dataclass(frozen=True)
class StreamPosition:
    """How far a rank got in the training stream: ``batches`` of epoch ``epoch``, and the stream it was in."""

    epoch: int = 0
    batches: int = 0
    batch_size: int = 1
    world_size: int = 1
    seed: int = 0

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict[str, int]) -> StreamPosition:
        return cls(**{k: int(v) for k, v in state.items() if k in cls.__dataclass_fields__})


class TrainStream(DistributedSampler):
    """This rank's share of an epoch as ``(index, seed)`` pairs; the dataset seeds its augmentation with ``seed``.

    The epoch's order is ``order`` after ``set_epoch(epoch)``, padded to a multiple of ``num_replicas`` and dealt
    round-robin, as DistributedSampler does (a subclass, so Lightning does not wrap it again under DDP).
    ``start_fn(epoch)`` gives the number of this rank's samples of that epoch already trained on: they are skipped
    without being loaded. ``epoch_fn`` (e.g. the trainer's epoch) wins over ``set_epoch``: Lightning creates the
    first iterator of a run before it calls ``set_epoch``. The length is always the whole epoch's.
    """

    def __init__(
        self,
        order: Sampler[int],
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
        epoch_fn: Callable[[], int | None] | None = None,
        start_fn: Callable[[int], int] | None = None,
    ) -> None:
        if not isinstance(order, Sized):
            raise TypeError(f"the order sampler must have a length, got {type(order).__name__}")
        super().__init__(range(len(order)), num_replicas=num_replicas, rank=rank, shuffle=False, seed=seed)
        self.order = order
        self.epoch_fn = epoch_fn
        self.start_fn = start_fn

    def current_epoch(self) -> int:
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        return self.epoch if epoch is None else epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.current_epoch()
        start = self.start_fn(epoch) if self.start_fn is not None else 0
        if hasattr(self.order, "set_epoch"):
            self.order.set_epoch(epoch)
        indices = list(self.order)
        padded = math.ceil(len(indices) / self.num_replicas) * self.num_replicas
        indices += (indices * math.ceil(padded / max(len(indices), 1)))[: padded - len(indices)]
        for position in range(self.rank + start * self.num_replicas, padded, self.num_replicas):
            yield indices[position], stream_seed(self.seed, epoch, position)

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.num_replicas)
