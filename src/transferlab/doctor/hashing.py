"""Perceptual hashes and pixel statistics of decoded images (arrays in, arrays out).

A perceptual hash survives re-encoding, resizing and small colour changes, unlike the file's
SHA-1: ``phash`` (DCT of a 32x32 grayscale copy, 64 bits) and ``dhash`` (gradient signs of a 9x8
grayscale copy, 64 bits), both from the ``imagehash`` package, packed into ``uint64``. The
Hamming distance between two hashes (0..64) says how many bits differ.

>>> import numpy as np
>>> imgs = np.zeros((2, 64, 64, 3), np.uint8); imgs[1, :, 32:] = 255
>>> fp = fingerprints(imgs)
>>> fp["phash"].dtype, bool(is_gray(fp["color_spread"]).all()), float(fp["pixel_std"][0])
(dtype('uint64'), True, 0.0)
>>> int(hamming(fp["phash"][:1], fp["phash"][:1])[0, 0])
0
"""
from __future__ import annotations

import imagehash
import numpy as np
from PIL import Image

#: an image counts as grayscale when 99.9% of its pixels have channels within this (0..255) of
#: each other: JPEG chroma noise stays below it, a red tail light on a silver car does not
GRAY_TOLERANCE = 6.0


def _pack(bits: np.ndarray) -> np.uint64:
    return np.uint64(int("".join("1" if b else "0" for b in bits.ravel()), 2))


def fingerprints(images: np.ndarray) -> dict[str, np.ndarray]:
    """Hashes and pixel statistics of ``images`` (``uint8 [N, H, W, 3]``, RGB).

    Returns ``phash``, ``dhash`` (``uint64 [N]``), ``color_spread`` (``float32 [N]``: the 99.9th
    percentile over pixels of the largest channel difference; below :data:`GRAY_TOLERANCE` the
    image is grayscale, see :func:`is_gray`), ``pixel_std`` and ``pixel_mean`` (``float32 [N]``,
    of the grayscale image, 0..255; a blank frame has a std near 0).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images [N, H, W, 3], got shape {images.shape}")
    n = len(images)
    out: dict[str, np.ndarray] = {"phash": np.zeros(n, np.uint64), "dhash": np.zeros(n, np.uint64), "color_spread": np.zeros(n, np.float32),
           "pixel_std": np.zeros(n, np.float32), "pixel_mean": np.zeros(n, np.float32)}
    for i, arr in enumerate(images):
        gray = Image.fromarray(np.ascontiguousarray(arr)).convert("L")
        out["phash"][i] = _pack(imagehash.phash(gray).hash)
        out["dhash"][i] = _pack(imagehash.dhash(gray).hash)
        small = arr[:: max(1, arr.shape[0] // 64), :: max(1, arr.shape[1] // 64)].astype(np.int16)
        spread = small.max(axis=-1) - small.min(axis=-1)
        out["color_spread"][i] = np.percentile(spread, 99.9)
        g = np.asarray(gray, dtype=np.float32)
        out["pixel_std"][i], out["pixel_mean"][i] = g.std(), g.mean()
    return out


def is_gray(color_spread: np.ndarray, tolerance: float = GRAY_TOLERANCE) -> np.ndarray:
    """Which images are grayscale (stored as RGB or not), from :func:`fingerprints`' ``color_spread``."""
    return np.asarray(color_spread) < tolerance


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distances ``uint8 [len(a), len(b)]`` between two arrays of ``uint64`` hashes."""
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    return np.bitwise_count(a[:, None] ^ b[None, :]).astype(np.uint8)
