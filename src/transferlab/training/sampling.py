"""Reproducible sample order and augmentation, independent of workers, resume and process count.

The training loader's sampler yields ``(epoch, index)`` keys: :class:`EpochSampler` shuffles with a
generator seeded from ``(seed, epoch)`` (like ``DistributedSampler.set_epoch``); under DDP each
rank shuffles its own shard of the data (:func:`shard`, :func:`train_loader`). :class:`SeededItems` fetches
``dataset[index]`` with torch's RNG seeded from ``(seed, epoch, index)`` in a forked RNG, so a
sample's random augmentation is a function of those three numbers alone: the same with 0 or N
loader workers (persistent or not) and after ``--resume``. The main process's RNG
stream (dropout) is untouched by data loading. :func:`train_loader` and :func:`val_loader` build
the training loop's loaders from them. ``--sampler balanced`` swaps the permutation for
:class:`BalancedSampler`: draws with replacement, each image weighted by 1 / its class's count
(torch's ``WeightedRandomSampler``), as many per epoch as there are images, seeded the same way.
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset, Sampler, WeightedRandomSampler

from ..data.batches import BATCHED_AUGMENTS, CachedBatches, mix_seeds
from ..data.loader import make_loader
from .distributed import DistInfo

def mix_seed(*parts: int) -> int:
    """A well-spread 63-bit seed from a few integers (splitmix64 style; see data.batches.mix_seeds)."""
    return int(mix_seeds(*parts)) & 0x7FFFFFFFFFFFFFFF


class EpochSampler(Sampler):
    """Yields ``(epoch, index)``: a permutation seeded by ``(seed, epoch)`` (or ``0..n-1`` in order);
    with ``num_replicas > 1`` this rank's strided share, padded to equal length (as DistributedSampler)."""

    def __init__(self, n: int, *, seed: int = 0, shuffle: bool = True, num_replicas: int = 1, rank: int = 0,
                 pad_to: int | None = None):
        self.n, self.seed, self.shuffle = int(n), int(seed), bool(shuffle)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.epoch = 1
        self.per_rank = math.ceil(self.n / self.num_replicas) if self.n else 0
        self.pad_to = None if pad_to is None else int(pad_to)
        if self.pad_to is not None:  # a rank's own shard, padded by repeating its first items
            if self.num_replicas > 1 or self.pad_to < self.n:
                raise ValueError("pad_to is for one rank's own shard: at least n, with num_replicas 1")
            self.per_rank = self.pad_to if self.n else 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.num_replicas > 1:
            total = self.per_rank * self.num_replicas
            order = (order + order[: total - len(order)])[self.rank:total:self.num_replicas]
        elif self.pad_to is not None and order:
            order = (order * math.ceil(self.pad_to / len(order)))[: self.pad_to]
        return iter([(self.epoch, i) for i in order])

    def __len__(self) -> int:
        return self.per_rank


class BalancedSampler(Sampler):
    """Yields ``(epoch, index)``: ``num_samples`` draws (default: one per image) with replacement,
    image ``i`` weighted by ``1 / count(labels[i])``, so that every class is drawn about equally
    often; torch's ``WeightedRandomSampler`` under a generator seeded by ``(seed, epoch)``, so an
    epoch's draws depend on those two numbers alone (as :class:`EpochSampler`'s order does)."""

    def __init__(self, labels, *, seed: int = 0, num_samples: int | None = None):
        y = torch.as_tensor(list(labels) if not isinstance(labels, torch.Tensor) else labels, dtype=torch.int64)
        self.seed = int(seed)
        self.epoch = 1
        self.num_samples = len(y) if num_samples is None else int(num_samples)
        counts = torch.bincount(y) if len(y) else torch.zeros(0, dtype=torch.int64)
        self.weights = (1.0 / counts.double())[y] if len(y) else torch.zeros(0, dtype=torch.float64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        if not self.num_samples or not len(self.weights):
            return iter([])
        g = torch.Generator()
        g.manual_seed(mix_seed(self.seed, self.epoch, 0xBA1A))  # a stream of its own, not the shuffle's
        draws = WeightedRandomSampler(self.weights, self.num_samples, replacement=True, generator=g)
        return iter([(self.epoch, int(i)) for i in draws])

    def __len__(self) -> int:
        return self.num_samples


def dataset_labels(dataset) -> list[int]:
    """The labels of a training dataset in order: an ImageDataset's ``targets``, cached features' ``labels``."""
    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = getattr(dataset, "labels", None)
    if labels is None:
        raise ValueError("--sampler balanced needs a dataset with targets or labels")
    return [int(y) for y in labels]


class SeededItems(Dataset):
    """``dataset`` indexed by ``(epoch, index)`` keys, each item drawn under its own RNG seed."""

    def __init__(self, dataset, seed: int = 0):
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, epoch, index))
            return self.dataset[index]


def image_batches(dataset, keys, *, batch_size: int, seed: int, augment: str | None, workers: int | None = None):
    """Batches of ``dataset`` over ``(epoch, index)`` keys: whole-array batches from the image cache
    (:class:`~transferlab.data.batches.CachedBatches`) when the images are cached and ``augment`` has
    a batched form, else a DataLoader of per-image transforms under per-sample seeds."""
    if getattr(dataset, "cached", False) and (augment or "none") in BATCHED_AUGMENTS:
        return CachedBatches(dataset, keys, batch_size=batch_size, seed=seed, augment=augment or "none")
    return make_loader(SeededItems(dataset, seed=seed), batch_size=batch_size, shuffle=False, seed=seed,
                       workers=workers, sampler=keys)


def shard(items: list, dist: DistInfo) -> list:
    """This rank's share of ``items`` (every ``world_size``-th from ``rank``): under torchrun each rank
    decodes, caches and trains on its shard alone, so no rank holds the whole dataset."""
    return items[dist.rank::dist.world_size] if dist.enabled else items


def train_loader(dataset, *, batch_size: int, seed: int, dist: DistInfo, seeded: bool, workers: int | None = None,
                 augment: str | None = None, sampler: str = "shuffle"):
    """Shuffled batches of ``(epoch, index)`` keys: the order and each image's augmentation depend
    only on (seed, epoch, index) -- not on workers or resume. ``seeded=False`` for datasets with no
    randomness of their own (cached features).

    Under DDP ``dataset`` is this rank's shard (:func:`shard`; its ``shard_total`` is the number of
    images of all ranks): each rank shuffles its own shard under a seed of its own and pads it by
    repeating images to ``ceil(shard_total / world_size)``, so every rank takes the same number of
    steps.

    ``sampler="balanced"``: a :class:`BalancedSampler` instead (under DDP over this rank's shard,
    with its own class counts, ``ceil(shard_total / world_size)`` draws per rank)."""
    keys: EpochSampler | BalancedSampler
    if dist.enabled:
        total = getattr(dataset, "shard_total", None) or len(dataset) * dist.world_size
        seed = mix_seed(seed, dist.rank, dist.world_size)
        per_rank = math.ceil(total / dist.world_size)
        keys = (BalancedSampler(dataset_labels(dataset), seed=seed, num_samples=per_rank) if sampler == "balanced"
                else EpochSampler(len(dataset), seed=seed, shuffle=True, pad_to=per_rank))
    elif sampler == "balanced":
        keys = BalancedSampler(dataset_labels(dataset), seed=seed)
    else:
        keys = EpochSampler(len(dataset), seed=seed, shuffle=True)
    if seeded:
        return image_batches(dataset, keys, batch_size=batch_size, seed=seed, augment=augment, workers=workers)
    return make_loader(dataset, batch_size=batch_size, shuffle=False, seed=seed, workers=workers, sampler=keys)


def val_loader(dataset, *, batch_size: int, seed: int, dist: DistInfo, workers: int | None = None):
    """Validation batches in order (under DDP ``dataset`` is this rank's shard: the metrics are
    summed over ranks, so every image counts once)."""
    if getattr(dataset, "cached", False):
        keys = [(0, i) for i in range(len(dataset))]
        return CachedBatches(dataset, keys, batch_size=batch_size, seed=seed, augment="none")
    return make_loader(dataset, batch_size=batch_size, shuffle=False, seed=seed, workers=workers)
