"""Per-image signals the doctor works on, computed once and cached on disk.

:func:`compute_signals` runs a pretrained backbone over every image (pooled features, the same
ones the training feature cache computes for a frozen backbone) and, from the same decoded and
resized pixels, the perceptual hashes and simple pixel statistics of :mod:`.hashing`. Images are
read through :class:`transferlab.data.ImageDataset` with the image cache on (decoded once; a
split's array is shared with training at the same size), and the result is stored as a row file of
features (written a batch at a time) beside an ``.npz`` of the hashes and statistics, under ``$TRANSFERLAB_CACHE/features`` (default ``~/.cache/transferlab/features``), keyed by the
ordered file list with each file's mtime and size, the backbone, the input size and the
precision, written atomically. A second doctor run on unchanged files decodes and embeds nothing.

>>> sig = compute_signals(splits.train + splits.val, backbone="efficientnet_lite0")   # doctest: +SKIP
>>> sig["features"].shape, sig["phash"].dtype                                          # doctest: +SKIP
((2000, 1280), dtype('uint64'))
"""
from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch
from sklearn.decomposition import PCA

from .. import _progress
from .._rows import RowFile, RowWriter
from .._atomic import atomic_write
from ..choices import MIN_INPUT_SIZE
from ..data import ImageDataset, build_transform
from ..data.cache import default_cache_root, evict, files_key, max_cache_bytes, touch
from ..errors import ConfigError, DataError
from ..precision import inference_amp
from ..models import create_model, get_recipe
from .hashing import fingerprints

FEATURES_VERSION = 3  # 3: features in their own row file beside the .npz


def features_cache_dir() -> Path:
    """``$TRANSFERLAB_CACHE/features`` if the variable is set, else ``~/.cache/transferlab/features``."""
    return default_cache_root() / "features"


def resolve_amp(amp: str | None) -> str:
    """``"auto"`` -> ``"bf16"`` where the CPU has native bfloat16 kernels (measured 2.3x faster
    than fp32 for EfficientNet-Lite0 on this project's machine, same neighbours), else ``"none"``."""
    return inference_amp(amp)


def signals_key(paths: Sequence[str], *, backbone: str, input_size: int, amp: str, weights: str | None = None) -> str:
    """Hash of the ordered file list (mtimes, sizes), backbone, input size, precision and weights."""
    return files_key(paths, {"v": FEATURES_VERSION, "backbone": backbone, "size": int(input_size), "amp": amp,
                             "weights": str(weights or os.environ.get("TRANSFERLAB_WEIGHTS") or "")})


def _read(path: Path, n: int) -> dict | None:
    try:
        with np.load(path) as z:
            out = {k: z[k] for k in z.files}
    except Exception:  # noqa: BLE001 - unreadable or half-written by something else: recompute
        return None
    if any(len(v) != n for v in out.values()) or "phash" not in out:
        return None
    return out


def _write(path: Path, arrays: dict) -> None:
    def save(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    try:
        atomic_write(path, save)
    except OSError as exc:  # a read-only or full cache folder costs speed, not the diagnosis
        warnings.warn(f"could not write the feature cache {path}: {exc}", stacklevel=3)


#: above this many images the doctor works on the features projected to REDUCED_DIMS principal
#: components (fitted on a sample, applied a chunk at a time): its memory then grows by ~1 KB an
#: image instead of ~5 KB for each copy of the full features (several copies exist during a run)
REDUCE_ABOVE = 20_000
REDUCED_DIMS = 256
PCA_SAMPLE = 20_000


def compute_signals(samples: Sequence[tuple[str, int]] | Sequence[Sequence[tuple[str, int]]], *,
                    backbone: str = "efficientnet_lite0", input_size: int | None = None, amp: str = "auto",
                    weights: str | None = None, batch_size: int = 64, cache: bool | str | os.PathLike = True,
                    workers: int | None = None, progress: bool = True) -> dict:
    """Features and hashes of every image, in order; cached on disk.

    ``samples``: one list of ``(path, label)`` or several (e.g. ``[train, val, test]``: each becomes
    its own image-cache array, as training builds them). Returns ``{"features": float32 [N, F],
    "phash", "dhash": uint64 [N], "color_spread", "pixel_std", "pixel_mean": float32 [N],
    "cached": bool, "seconds": float, "images_per_s": float, "input_size": int, "amp": str,
    "reduced_from": None or F}``. The features are written to disk a batch at a time; above
    :data:`REDUCE_ABOVE` images they come back projected to :data:`REDUCED_DIMS` principal
    components (``reduced_from`` says from how many), never whole in memory.
    """
    groups: list[list[tuple[str, int]]]
    if samples and isinstance(samples[0], tuple):  # one list of (path, label)
        groups = [list(cast(Sequence[tuple[str, int]], samples))]
    else:
        groups = [list(g) for g in cast(Sequence[Sequence[tuple[str, int]]], samples)]
    paths = [p for g in groups for p, _ in g]
    if not paths:
        raise DataError("no images to diagnose")
    amp = resolve_amp(amp)
    size = _input_size(backbone, input_size)
    scratch = None
    if cache is not False and cache is not None:
        folder = features_cache_dir() if cache is True else Path(cache).expanduser()
    else:  # no cache: the features still go to disk, in a folder removed at the end
        scratch = tempfile.TemporaryDirectory(prefix="transferlab-doctor-")
        folder = Path(scratch.name)
    key = signals_key(paths, backbone=backbone, input_size=size, amp=amp, weights=weights)
    file = folder / f"{key}-{len(paths)}.npz"
    rows_file = file.with_suffix(".features.npy")
    t0 = time.perf_counter()
    try:
        hit = _read(file, len(paths)) if scratch is None and file.exists() and rows_file.exists() else None
        if hit is not None:
            touch(file)  # recently used: evicted last
            touch(rows_file)
            arrays, cached = hit, True
        else:
            folder.mkdir(parents=True, exist_ok=True)
            arrays = _compute(groups, rows_file, backbone=backbone, size=size, amp=amp, weights=weights,
                              batch_size=batch_size, workers=workers, progress=progress)
            _write(file, arrays)
            cached = False
            if scratch is None:  # the same limit as the image cache
                evict(folder, max_cache_bytes(), keep=[file, rows_file], pattern="*.np[yz]")
        features, reduced_from = _features(RowFile(rows_file))
    finally:
        if scratch is not None:
            scratch.cleanup()
    seconds = time.perf_counter() - t0
    return {**arrays, "features": features, "reduced_from": reduced_from, "cached": cached, "seconds": seconds,
            "images_per_s": len(paths) / max(seconds, 1e-9), "input_size": size, "amp": amp,
            "file": None if scratch is not None else str(file)}


def _features(rows: RowFile) -> tuple[np.ndarray, int | None]:
    """All features in memory up to REDUCE_ABOVE images; above, their projection on the first
    REDUCED_DIMS principal components of a sample, computed a chunk at a time."""
    n, dims = rows.shape[0], int(np.prod(rows.shape[1:]))
    if n <= REDUCE_ABOVE or dims <= REDUCED_DIMS:
        return rows.rows(0, n).reshape(n, -1).astype(np.float32, copy=False), None
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, PCA_SAMPLE), replace=False))
    pca = PCA(n_components=REDUCED_DIMS, svd_solver="randomized", random_state=0)
    pca.fit(rows.take(sample).reshape(len(sample), -1))
    out = np.empty((n, REDUCED_DIMS), np.float32)
    for start, chunk in rows.chunks(8192):
        out[start:start + len(chunk)] = pca.transform(chunk.reshape(len(chunk), -1))
    return out, dims


def _input_size(backbone: str, input_size: int | None) -> int:
    recipe = get_recipe(backbone)  # ConfigError listing the recipes for an unknown name
    if not recipe.pretrained:
        raise ConfigError(f"the doctor needs a pretrained backbone; '{recipe.name}' trains from scratch "
                          f"(try efficientnet_lite0)")
    if input_size is None:
        return int(recipe.input_size)
    try:
        size = int(input_size)
    except (TypeError, ValueError):
        raise ConfigError(f"input size must be an integer, got {input_size!r}") from None
    if size < MIN_INPUT_SIZE:
        raise ConfigError(f"input size must be at least {MIN_INPUT_SIZE} pixels, got {size}")
    return size


def _compute(groups, rows_file: Path, *, backbone, size, amp, weights, batch_size, workers, progress) -> dict:
    """Writes the features to ``rows_file`` a batch at a time; returns the per-image hashes and
    pixel statistics."""
    model = create_model(backbone, num_classes=1, input_size=size, weights=weights)
    net = model.backbone.eval().to(memory_format=torch.channels_last)
    cfg = model.data_cfg
    transform = build_transform(cfg, train=False)
    # every split's image cache first (each shows its own bar), then one bar for the embedding pass
    datasets = [ImageDataset(g, cfg, transform=None, cache_dir=True, workers=workers, progress=progress)
                for g in groups if g]
    batches = [(ds, start) for ds in datasets for start in range(0, len(ds), batch_size)]
    n = sum(len(ds) for ds in datasets)
    out: dict | None = None
    writer: RowWriter | None = None
    done = 0
    try:
        for ds, start in _progress.track(batches, "Embedding images", progress=progress):
            stop = min(start + batch_size, len(ds))
            raw = torch.from_numpy(ds.cached_images(np.arange(start, stop))).permute(0, 3, 1, 2) if ds.cached else \
                torch.stack([ds.load(i) for i in range(start, stop)])
            prints = fingerprints(raw.permute(0, 2, 3, 1).numpy())
            x = transform(raw).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
                f = net(x).float().reshape(len(raw), -1).numpy()
            if out is None or writer is None:
                # outputs allocated once and filled in place, features written to disk: small arrays kept per
                # batch would pin glibc's heap above each batch's freed buffers (see train.features)
                out = {k: np.empty(n, v.dtype) for k, v in prints.items()}
                writer = RowWriter(rows_file, n=n, row_shape=(f.shape[1],), dtype=np.float32)
            writer.write(f)
            for k, v in prints.items():
                out[k][done:done + len(f)] = v
            done += len(f)
            del raw, x, f, prints
        assert out is not None and writer is not None  # compute_signals checked that there are images
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return out
