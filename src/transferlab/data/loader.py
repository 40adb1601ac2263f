"""``make_loader``: DataLoader settings that keep the CPU busy and the order reproducible.

* ``workers=None`` -> ``0`` for a cached dataset of small images (``3 * L * L`` at most torch's
  intra-op grain of 32768 values, i.e. ``L <= 104``): reading a uint8 array and cropping is then
  cheaper than shipping batches between processes. Otherwise ``min(2, os.cpu_count())``: for larger
  images the per-image tensor ops go multi-threaded in the main process, which on a busy 2-core
  machine was 10-30x slower than two single-threaded workers (measured; see the README);
* ``pin_memory`` only when CUDA is available;
* ``persistent=False`` by default: workers start at each pass and stop when it ends. Forking
  them costs ~0.05 s a pass here, while persistent workers that outlive their loop were measured
  to hang ~5 s each at shutdown once the process holds other thread pools (ONNX Runtime, OpenMP):
  a 5-test pipeline run took 46 s with them and 16 s without. Pass ``persistent=True`` for a loader
  you iterate many times and shut down yourself;
* shuffling uses a ``torch.Generator`` seeded with ``seed``, so the order is the same every run
  (worker processes get seeds derived from it too, so their augmentations repeat as well).

>>> loader = make_loader(ds, batch_size=32, shuffle=True, seed=0)    # doctest: +SKIP
"""
from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader

from ..errors import ConfigError


SMALL_IMAGE_VALUES = 32768  # torch's intra-op parallel grain size: smaller tensors stay single-threaded


def default_workers(dataset) -> int:
    """0 for a cached dataset of small images (``3 * L * L <= 32768``), else ``min(2, cpu count)``."""
    load_size = getattr(dataset, "load_size", None)
    if getattr(dataset, "cached", False) and load_size and 3 * int(load_size) ** 2 <= SMALL_IMAGE_VALUES:
        return 0
    return min(2, os.cpu_count() or 1)


def make_loader(dataset, *, batch_size: int, shuffle: bool, seed: int = 0, workers: int | None = None,
                sampler=None, drop_last: bool = False, pin_memory: bool | None = None,
                persistent: bool = False) -> DataLoader:
    """A DataLoader for ``dataset`` with reproducible shuffling and sensible worker settings.

    ``sampler`` (e.g. ``WeightedRandomSampler``) replaces shuffling; give it its own generator
    for reproducibility.
    """
    if int(batch_size) < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    workers = default_workers(dataset) if workers is None else int(workers)
    if workers < 0:
        raise ConfigError(f"workers must be 0 or more, got {workers}")
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=int(batch_size),
        shuffle=bool(shuffle) if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=bool(persistent) and workers > 0,
        drop_last=drop_last,
        generator=generator,
    )
