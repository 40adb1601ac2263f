"""The stratified, seeded train/val split.

Each class is shuffled with a generator seeded by ``(seed, crc32(class name))`` and
``round(n * val_ratio)`` of its images (at least 1, at most ``n - 1``) go to val; a class with
only 1 image stays in train. The split of one class does not change when other classes are added.
"""
from __future__ import annotations

import math
import zlib

import numpy as np

from ..errors import ConfigError


def check_val_ratio(val_ratio, name: str = "val ratio") -> float:
    """The validation share as a float in [0, 1) (a one-line ConfigError naming ``name`` otherwise)."""
    try:
        val_ratio = float(val_ratio)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [0, 1), got {val_ratio!r}") from None
    if not 0.0 <= val_ratio < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {val_ratio}")
    return val_ratio


def val_count(n: int, val_ratio: float) -> int:
    """How many of a class's ``n`` images go to validation: ``round(n * val_ratio)`` (halves up), at
    least 1 and at most ``n - 1``; none for a class of fewer than 2 images or a ratio of 0.

    >>> val_count(10, 0.2), val_count(2, 0.2), val_count(1, 0.5), val_count(7, 0.0)
    (2, 1, 0, 0)
    """
    if val_ratio <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, math.floor(n * val_ratio + 0.5)))


def class_rng(seed: int, name: str) -> np.random.Generator:
    """The generator that shuffles class ``name``: seeded by (seed, crc32(name)), so one class's split
    does not change when other classes are added."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])


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
        if val_ratio > 0 and n == 1:
            notes.append(f"class '{name}' has only 1 image: it goes to train and val has none of it")
        n_val = val_count(n, val_ratio)
        order = class_rng(seed, name).permutation(n)
        chosen = set(order[:n_val].tolist())
        val[name] = [p for i, p in enumerate(paths) if i in chosen]
        train[name] = [p for i, p in enumerate(paths) if i not in chosen]
    return train, val
