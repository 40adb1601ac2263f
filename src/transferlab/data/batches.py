"""Batches straight from the image cache, cropped, augmented and normalised as whole arrays.

Per-image torchvision transforms cost 0.4-1.2 ms of Python per image on this project's 2-core
machine (measured for 32 px photos), more than a small CNN needs for the image itself. When the
images sit in the image cache (``ImageDataset(..., cache_dir=...)``) and the augmentation is one of
:data:`BATCHED_AUGMENTS`, :class:`CachedBatches` instead reads a batch with one fancy index into
the ``uint8`` cache, crops and augments it with array indexing, and normalises it in one
expression; the numbers equal the per-image eval transform's (``augment="none"``) bit for bit.

Randomness is per sample and a function of ``(seed, epoch, index)`` alone (:func:`sample_uniforms`),
as for :class:`~transferlab.training.sampling.SeededItems`: the same with any batch size, after a
resume, and on every DDP rank.

>>> loader = CachedBatches(dataset, keys, batch_size=128, seed=0, augment="shift")   # doctest: +SKIP
>>> x, y = next(iter(loader))                                                        # doctest: +SKIP
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch

from .preprocess import center_crop_box

BATCHED_AUGMENTS = ("none", "shift")
_MIX = np.uint64(0x9E3779B97F4A7C15)  # the 64-bit golden-ratio constant of splitmix64


def mix_seeds(*parts) -> np.ndarray:
    """Vectorised ``mix_seed``: one well-spread 64-bit value per element of the (broadcast) parts."""
    arrays = np.broadcast_arrays(*[np.asarray(p, dtype=np.int64).astype(np.uint64) for p in parts])
    h = np.zeros(arrays[0].shape, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for a in arrays:
            h = (h ^ a) * _MIX
            h ^= h >> np.uint64(31)
    return h


def sample_uniforms(seed: int, epochs: np.ndarray, indices: np.ndarray, n: int) -> np.ndarray:
    """``[len(indices), n]`` uniforms in [0, 1), a function of ``(seed, epoch, index)`` per row."""
    base = mix_seeds(seed, epochs, indices)
    cols = [mix_seeds(base, np.full(base.shape, k + 1)) for k in range(n)]
    return np.stack([(c >> np.uint64(11)).astype(np.float64) / float(1 << 53) for c in cols], axis=1)


class BatchKeys(Protocol):
    """The ``(epoch, index)`` keys :class:`CachedBatches` draws from, counted and iterated anew each
    epoch: an :class:`~transferlab.training.sampling.EpochSampler` or a list."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[int, int]]: ...


class CachedBatches:
    """An iterable of ``(images, labels)`` batches over ``keys`` (``(epoch, index)`` pairs, e.g. an
    :class:`~transferlab.training.sampling.EpochSampler`, which is kept as ``.sampler`` so a training
    loop can call ``set_epoch``) of a cached :class:`~transferlab.data.ImageDataset`.

    ``augment``: ``none`` (centre crop, as evaluation) or ``shift`` (centre crop, then per image a
    horizontal flip with probability 1/2 and a shift of up to 1/8 of the side, reflect-padded).
    """

    def __init__(self, dataset, keys: BatchKeys, *, batch_size: int, seed: int = 0, augment: str = "none"):
        if augment not in BATCHED_AUGMENTS:
            raise ValueError(f"augment {augment!r} has no batched form; use one of {BATCHED_AUGMENTS}")
        if not getattr(dataset, "cached", False):
            raise ValueError("CachedBatches needs an ImageDataset built with cache_dir")
        self.dataset, self.sampler = dataset, keys
        self.batch_size, self.seed, self.augment = int(batch_size), int(seed), augment
        cfg = dataset.cfg
        self.size = int(cfg["input_size"])
        std = np.asarray(cfg["std"], dtype=np.float32)
        self.mean = torch.from_numpy(np.asarray(cfg["mean"], dtype=np.float32)).view(1, 3, 1, 1)
        self.std = torch.from_numpy(std).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self):
        keys = list(self.sampler)
        for start in range(0, len(keys), self.batch_size):
            chunk = keys[start:start + self.batch_size]
            epochs = np.asarray([e for e, _ in chunk], dtype=np.int64)
            index = np.asarray([i for _, i in chunk], dtype=np.int64)
            yield self.images(epochs, index), self.dataset.batch_targets(index)

    def images(self, epochs: np.ndarray, index: np.ndarray) -> torch.Tensor:
        """The normalised float32 ``[B, 3, S, S]`` batch of images ``index`` (augmented as in ``epochs``)."""
        hwc = self.dataset.cached_images(index)  # read in file order, in the batch's order
        hwc = self._crop(hwc, epochs, index)
        x = torch.from_numpy(np.ascontiguousarray(hwc)).permute(0, 3, 1, 2).to(torch.float32)
        x = x * (1.0 / 255.0)  # as torchvision's ToDtype(scale=True), then Normalize
        return ((x - self.mean) / self.std).contiguous()

    def _crop(self, hwc: np.ndarray, epochs: np.ndarray, index: np.ndarray) -> np.ndarray:
        n, side = hwc.shape[0], hwc.shape[1]
        s = self.size
        top, left = center_crop_box(side, s), center_crop_box(hwc.shape[2], s)
        hwc = hwc[:, top:top + s, left:left + s]
        if self.augment == "none":
            return hwc
        pad = max(1, s // 8)
        u = sample_uniforms(self.seed, epochs, index, 3)
        flip = u[:, 0] < 0.5
        dy = np.floor(u[:, 1] * (2 * pad + 1)).astype(np.int64)
        dx = np.floor(u[:, 2] * (2 * pad + 1)).astype(np.int64)
        padded = np.pad(hwc, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
        steps = np.arange(s)
        rows = dy[:, None] + steps[None, :]
        cols = np.where(flip[:, None], dx[:, None] + steps[::-1][None, :], dx[:, None] + steps[None, :])
        return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
