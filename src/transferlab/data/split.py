"""The stratified, seeded train/val split.

Each class is shuffled with a generator seeded by ``(seed, crc32(class name))`` and
``round(n * val_ratio)`` of its images (at least 1, at most ``n - 1``) go to val; a class with
only 1 image stays in train. The split of one class does not change when other classes are added.
"""
from __future__ import annotations

import math
import zlib

import numpy as np


def stratified_split(pool: dict[str, list[str]], val_ratio: float, seed: int,
                     notes: list[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Split each class's paths into (train, val) deterministically.

    Each class is shuffled by ``numpy.random.default_rng([seed, crc32(class name)])`` so the split
    of one class does not change when other classes are added. ``round(n * val_ratio)`` images
    (at least 1, at most ``n - 1``) go to val; a class with 1 image stays in train (with a note).

    >>> tr, va = stratified_split({"a": [f"a{i}" for i in range(10)]}, 0.2, seed=0, notes=[])
    >>> len(tr["a"]), len(va["a"])
    (8, 2)
    """
    train: dict[str, list[str]] = {}
    val: dict[str, list[str]] = {}
    for name in sorted(pool):
        paths = sorted(pool[name])
        n = len(paths)
        if val_ratio <= 0 or n == 0:
            n_val = 0
        elif n == 1:
            n_val = 0
            notes.append(f"class '{name}' has only 1 image: it goes to train and val has none of it")
        else:
            n_val = min(n - 1, max(1, math.floor(n * val_ratio + 0.5)))
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])
        order = rng.permutation(n)
        chosen = set(order[:n_val].tolist())
        val[name] = [p for i, p in enumerate(paths) if i in chosen]
        train[name] = [p for i, p in enumerate(paths) if i not in chosen]
    return train, val
