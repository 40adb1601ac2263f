"""A decoded-and-resized image cache: one ``uint8`` ``.npy`` array ``[N, L, L, 3]`` per file list and size.

The file name is a hash of (the ordered file list with each file's mtime and byte size, ``L``,
the interpolation), so epochs after the first -- and later runs -- never decode an image again,
and any added, removed or modified file gives a new key (a fresh build). The array is built once,
in parallel threads with a progress bar, into a temporary file that is renamed into place only
when complete (a killed build never leaves a bad cache), then read back as a memory map.

Location: ``cache_dir`` argument, else ``$TRANSFERLAB_CACHE/images``, else
``~/.cache/transferlab/images``. Old arrays are never used again once their files change; delete
the folder to reclaim the space.

>>> path = build_cache(["a.jpg", "b.png"], load_size=36, interpolation="bilinear")   # doctest: +SKIP
>>> np.load(path, mmap_mode="r").shape                                               # doctest: +SKIP
(2, 36, 36, 3)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from .images import load_image, resample_filter
from .scan import decode_in_parallel

CACHE_VERSION = 1


def default_cache_root() -> Path:
    """``$TRANSFERLAB_CACHE`` if set, else ``~/.cache/transferlab`` (images, features, samples live under it)."""
    env = os.environ.get("TRANSFERLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "transferlab"


def default_cache_dir() -> Path:
    """``$TRANSFERLAB_CACHE/images`` if the variable is set, else ``~/.cache/transferlab/images``."""
    return default_cache_root() / "images"


def resolve_cache_dir(cache_dir: str | os.PathLike | bool | None) -> Path | None:
    """``None``/``False`` -> no cache; ``True`` or ``"default"`` -> :func:`default_cache_dir`; else the path."""
    if cache_dir is None or cache_dir is False:
        return None
    if cache_dir is True or str(cache_dir) == "default":
        return default_cache_dir()
    return Path(cache_dir).expanduser()


def cache_key(paths: Sequence[str], load_size: int, interpolation: str) -> str:
    """Hash of the ordered file list (with mtimes and sizes), ``load_size`` and interpolation."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "L": int(load_size), "interp": str(interpolation)}).encode())
    for p in paths:
        try:
            st = os.stat(p)
            stamp = f"{st.st_mtime_ns}:{st.st_size}"
        except OSError:
            stamp = "missing"
        h.update(f"\n{p}\0{stamp}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:24]


def cache_path(paths: Sequence[str], load_size: int, interpolation: str, cache_dir: str | os.PathLike) -> Path:
    """Where the array for this file list / size lives (whether or not it is built yet)."""
    key = cache_key(paths, load_size, interpolation)
    return Path(cache_dir) / f"{key}-{len(paths)}x{int(load_size)}.npy"


def _valid(path: Path, shape: tuple[int, ...]) -> bool:
    try:
        arr = np.load(path, mmap_mode="r")
        return arr.shape == shape and arr.dtype == np.uint8
    except Exception:  # unreadable / wrong header: rebuild
        return False


def build_cache(paths: Sequence[str], load_size: int, interpolation: str = "bilinear", *,
                cache_dir: str | os.PathLike | bool | None = True, workers: int | None = None,
                progress: bool = True) -> Path:
    """Return the cache array for ``paths``, building it (atomically, in parallel) if needed.

    Raises :class:`~transferlab.errors.DataError` naming the file if an image cannot be decoded
    (scan the data with :func:`~transferlab.data.load_data` first to skip broken files), or when
    the disk has no room for the array.
    """
    resample_filter(interpolation)  # validate early
    if not paths:
        raise DataError("no images to cache (empty file list)")
    folder = resolve_cache_dir(cache_dir) or default_cache_dir()
    L = int(load_size)
    final = cache_path(paths, L, interpolation, folder)
    shape = (len(paths), L, L, 3)
    if final.exists() and _valid(final, shape):
        return final
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create image cache folder {folder}: {exc.strerror or exc}") from None
    need = int(np.prod(shape)) + 4096
    free = shutil.disk_usage(folder).free
    if need > free:
        raise DataError(f"not enough disk space for the image cache in {folder}: need {need / 1e9:.2f} GB, "
                        f"{free / 1e9:.2f} GB free (set TRANSFERLAB_CACHE or turn the cache off)")
    tmp = folder / f".{final.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npy"
    try:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)

        def one(p: str) -> np.ndarray:
            return load_image(p, L, interpolation)

        with decode_in_parallel(one, paths, workers=workers, description="Caching images", progress=progress,
                                thread_prefix="transferlab-cache") as results:
            for i, img in enumerate(results):
                arr[i] = img
        arr.flush()
        del arr
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final
