"""A decoded-and-resized image cache: one ``uint8`` ``.npy`` array ``[N, L, L, 3]`` per file list and size.

The file name is a hash of (the ordered file list with each file's mtime and byte size, ``L``,
the interpolation), so epochs after the first -- and later runs -- never decode an image again,
and any added, removed or modified file gives a new key (a fresh build). The array is built once,
in parallel threads with a progress bar, written in chunks (:class:`~transferlab._rows.RowWriter`)
into a temporary file that is renamed into place only when complete (a killed build never leaves a
bad cache), and read a batch at a time (:class:`~transferlab._rows.RowFile`): the process never
holds the array.

Disk use is bounded: the folder's arrays are kept to ``max_gb`` (argument, else
``$TRANSFERLAB_CACHE_MAX_GB``, else :data:`DEFAULT_MAX_GB`) by removing the least recently used
ones after each build, and an array that alone would exceed the limit is not built
(:class:`CacheLimitError`; :class:`~transferlab.data.ImageDataset` then decodes per item). An
array being read is never removed: a dataset holds a shared lock on it (:class:`CacheHold`, a
``NAME.npy.lock`` beside it: filelock's reader/writer lock, across processes) and eviction or
``transferlab cache --clear`` skips the arrays whose lock it cannot take (a 240,000-photo training run
lost its array to a doctor run's eviction before).
``transferlab cache`` lists, sizes and clears the caches.

Location: ``cache_dir`` argument, else ``$TRANSFERLAB_CACHE/images``, else
``~/.cache/transferlab/images``.

>>> path = build_cache(["a.jpg", "b.png"], load_size=36, interpolation="bilinear")   # doctest: +SKIP
>>> RowFile(path).shape                                                              # doctest: +SKIP
(2, 36, 36, 3)
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import filelock
import numpy as np

from .._rows import RowFile, RowWriter
from ..errors import CacheLimitError, DataError
from .images import load_image, resample_filter
from .scan import decode_in_parallel

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
DEFAULT_MAX_GB = 20.0
CHUNK = 256  # images decoded per write


def max_cache_bytes(max_gb: float | None = None) -> int:
    """The image cache's size limit: ``max_gb``, else ``$TRANSFERLAB_CACHE_MAX_GB``, else 20 GB."""
    if max_gb is None:
        env = os.environ.get("TRANSFERLAB_CACHE_MAX_GB")
        try:
            max_gb = float(env) if env else DEFAULT_MAX_GB
        except ValueError:
            raise DataError(f"TRANSFERLAB_CACHE_MAX_GB must be a number of GB, got {env!r}") from None
    if not max_gb > 0:
        raise DataError(f"the cache size limit must be more than 0 GB, got {max_gb:g}")
    return int(max_gb * 1e9)


def cached_arrays(folder: str | os.PathLike, pattern: str = "*.npy") -> list[Path]:
    """The finished arrays in ``folder``, least recently used first (a use touches the file)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.glob(pattern):
        if p.name.startswith("."):  # a build in progress
            continue
        try:
            found.append((p.stat().st_mtime, p))
        except OSError:  # removed meanwhile
            continue
    return [p for _, p in sorted(found)]


def evict(folder: str | os.PathLike, max_bytes: int, *, keep: Sequence[str | os.PathLike] = (),
          pattern: str = "*.npy") -> list[Path]:
    """Remove the least recently used arrays (``pattern``) of ``folder`` until the rest fit in
    ``max_bytes`` (``keep`` and arrays in use, see :class:`CacheHold`, are never removed); returns
    what was removed."""
    kept = {Path(k).resolve() for k in keep}
    arrays = cached_arrays(folder, pattern)
    sizes = {p: p.stat().st_size for p in arrays if p.exists()}
    total = sum(sizes.values())
    removed = []
    for p in arrays:
        if total <= max_bytes:
            break
        if p.resolve() in kept or p not in sizes or not remove_unused(p):
            continue
        total -= sizes[p]
        removed.append(p)
    return removed


def _lock(path: str | os.PathLike) -> filelock.ReadWriteLock:
    return filelock.ReadWriteLock(f"{path}.lock", is_singleton=False)


class CacheHold:
    """A shared hold on a cache array: while it is held, no eviction or clearing, in any process,
    removes the array. Released by :meth:`release` or when the process ends.

    >>> hold = CacheHold(path)             # doctest: +SKIP
    >>> remove_unused(path)                # doctest: +SKIP
    False
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock: filelock.ReadWriteLock | None = _lock(self.path)
        self._lock.acquire_read()

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock.close()
            self._lock = None


def remove_unused(path: str | os.PathLike) -> bool:
    """Remove the cache array ``path`` (and its lock) unless a :class:`CacheHold` holds it; True
    when removed (or already gone)."""
    path = Path(path)
    lock = _lock(path)
    try:
        lock.acquire_write(blocking=False)
    except filelock.Timeout:
        lock.close()
        return False
    try:
        path.unlink(missing_ok=True)
    finally:
        lock.release()
        lock.close()
    Path(f"{path}.lock").unlink(missing_ok=True)
    return True


def use_cache(paths: Sequence[str], load_size: int, interpolation: str = "bilinear",
              **options) -> tuple[Path, CacheHold]:
    """:func:`build_cache` (same ``options``), then a :class:`CacheHold` on the array so that no
    other process evicts it while it is read; built again if it was evicted in between."""
    for _ in range(3):
        path = build_cache(paths, load_size, interpolation, **options)
        hold = CacheHold(path)
        if path.exists():
            return path, hold
        hold.release()
    raise DataError(f"the image cache array {path.name} keeps being removed while it is built: is another "
                    f"process clearing {path.parent}?")


def disk_size(n: int) -> str:
    """Bytes for people: ``disk_size(1_234_567)`` is ``'1.2 MB'``.

    >>> disk_size(999), disk_size(1_234_567), disk_size(20e9)
    ('999 B', '1.2 MB', '20.00 GB')
    """
    if n < 1e3:
        return f"{int(n)} B"
    if n < 1e6:
        return f"{n / 1e3:.1f} kB"
    if n < 1e9:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e9:.2f} GB"


def touch(path: Path) -> None:
    """Mark a cache file as just used (least-recently-used eviction goes by modification time)."""
    try:
        os.utime(path)
    except OSError:
        pass


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


def files_key(paths: Sequence[str], settings: dict) -> str:
    """A 24-hex-digit key of ``settings`` and the ordered file list with each file's mtime and byte
    size: any added, removed or modified file gives a new key (the caches' fingerprint)."""
    h = hashlib.sha256()
    h.update(json.dumps(settings, sort_keys=False).encode())
    for p in paths:
        try:
            st = os.stat(p)
            stamp = f"{st.st_mtime_ns}:{st.st_size}"
        except OSError:
            stamp = "missing"
        h.update(f"\n{p}\0{stamp}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:24]


def cache_key(paths: Sequence[str], load_size: int, interpolation: str, resize: str = "crop") -> str:
    """Hash of the ordered file list (with mtimes and sizes), ``load_size``, interpolation and resize mode."""
    spec = {"v": CACHE_VERSION, "L": int(load_size), "interp": str(interpolation)}
    if resize != "crop":  # the centre crop's arrays keep the keys they had before there was a choice
        spec["resize"] = str(resize)
    return files_key(paths, spec)


def cache_path(paths: Sequence[str], load_size: int, interpolation: str, cache_dir: str | os.PathLike,
               resize: str = "crop") -> Path:
    """Where the array for this file list / size lives (whether or not it is built yet)."""
    key = cache_key(paths, load_size, interpolation, resize)
    return Path(cache_dir) / f"{key}-{len(paths)}x{int(load_size)}.npy"


def _valid(path: Path, shape: tuple[int, ...]) -> bool:
    try:
        rows = RowFile(path)
        return rows.shape == shape and rows.dtype == np.uint8 and path.stat().st_size >= rows.offset + int(np.prod(shape))
    except Exception:  # unreadable / wrong header: rebuild
        return False


def build_cache(paths: Sequence[str], load_size: int, interpolation: str = "bilinear", *,
                cache_dir: str | os.PathLike | bool | None = True, workers: int | None = None,
                progress: bool = True, max_gb: float | None = None, resize: str = "crop") -> Path:
    """Return the cache array for ``paths``, building it (atomically, in parallel) if needed.

    A new array's disk use is logged (``transferlab.data.cache``, INFO). Raises
    :class:`CacheLimitError` when the array alone exceeds the size limit (see the module doc), and
    :class:`~transferlab.errors.DataError` naming the file if an image cannot be decoded (scan the
    data with :func:`~transferlab.data.load_data` first to skip broken files), or when the disk has
    no room for the array.
    """
    resample_filter(interpolation)  # validate early
    if not paths:
        raise DataError("no images to cache (empty file list)")
    folder = resolve_cache_dir(cache_dir) or default_cache_dir()
    L = int(load_size)
    final = cache_path(paths, L, interpolation, folder, resize)
    shape = (len(paths), L, L, 3)
    if final.exists() and _valid(final, shape):
        touch(final)  # recently used: evicted last
        return final
    need = int(np.prod(shape)) + 4096
    limit = max_cache_bytes(max_gb)
    if need > limit:
        raise CacheLimitError(f"the image cache of {len(paths):,} images at {L} px would take {need / 1e9:.2f} GB, "
                              f"more than its limit of {limit / 1e9:.2f} GB (--cache-max-gb / TRANSFERLAB_CACHE_MAX_GB)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create image cache folder {folder}: {exc.strerror or exc}") from None
    removed = evict(folder, limit - need)
    free = shutil.disk_usage(folder).free
    if need > free:
        raise DataError(f"not enough disk space for the image cache in {folder}: need {need / 1e9:.2f} GB, "
                        f"{free / 1e9:.2f} GB free (set TRANSFERLAB_CACHE or turn the cache off)")
    t0 = time.perf_counter()
    with RowWriter(final, n=len(paths), row_shape=(L, L, 3), dtype=np.uint8) as out:

        def one(p: str) -> np.ndarray:
            return load_image(p, L, interpolation, resize)

        chunk = np.empty((CHUNK, L, L, 3), np.uint8)  # one reused buffer: written a chunk at a time
        filled = 0
        with decode_in_parallel(one, paths, workers=workers, description="Caching images", progress=progress,
                                thread_prefix="transferlab-cache") as results:
            for img in results:
                chunk[filled] = img
                filled += 1
                if filled == CHUNK:
                    out.write(chunk)
                    filled = 0
        out.write(chunk[:filled])
    total = sum(p.stat().st_size for p in cached_arrays(folder))
    logger.info(f"image cache: {len(paths):,} images at {L} px, {disk_size(final.stat().st_size)} in {folder} "
                f"({time.perf_counter() - t0:.1f}s; the folder holds {disk_size(total)} of at most {disk_size(limit)}"
                + (f", {len(removed)} least recently used array(s) removed" if removed else "") + ")")
    return final


# ---- every cache under the root: what ``transferlab cache`` lists and clears -------------------------
CACHE_KINDS = {
    "images": "decoded, resized images",
    "features": "the doctor's embeddings",
    "train-features": "features of training phases running",
    "samples": "the built-in samples",
}


def _kind_paths(kind: str, root: Path) -> list[Path]:
    if kind == "samples":
        return sorted(root.glob("sample-*"))
    folder = root / kind
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _orphan(path: Path) -> bool:
    """A training-feature folder (``phase-PID-...``) whose process is gone."""
    try:
        pid = int(path.name.split("-")[1])
        os.kill(pid, 0)
    except (IndexError, ValueError):
        return True
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def cache_usage(root: str | os.PathLike | None = None) -> list[dict]:
    """One row per cache kind under ``root`` (default :func:`default_cache_root`): ``kind``, ``path``,
    ``entries``, ``bytes``, ``last_used`` (ISO time or None) and ``what``."""
    root = Path(root) if root is not None else default_cache_root()
    rows = []
    for kind, what in CACHE_KINDS.items():
        paths = [p for p in _kind_paths(kind, root) if not p.name.endswith(".lock")]  # builds in progress count
        sizes = [_size(p) for p in paths]
        stamps = [p.stat().st_mtime for p in paths]
        rows.append({"kind": kind, "path": str(root / kind) if kind != "samples" else str(root / "sample-*"),
                     "entries": len(paths), "bytes": int(sum(sizes)),
                     "last_used": time.strftime("%Y-%m-%d %H:%M", time.localtime(max(stamps))) if stamps else None,
                     "what": what})
    return rows


def clear_caches(kinds: Sequence[str], root: str | os.PathLike | None = None) -> int:
    """Remove the caches of ``kinds`` (names of :data:`CACHE_KINDS`, or ``"all"``); training-feature
    folders of running processes and arrays in use (:class:`CacheHold`) are left alone. Returns
    the bytes freed."""
    root = Path(root) if root is not None else default_cache_root()
    kinds = list(CACHE_KINDS) if "all" in kinds else list(kinds)
    unknown = [k for k in kinds if k not in CACHE_KINDS]
    if unknown:
        raise DataError(f"unknown cache {unknown[0]!r}: choose from {', '.join(CACHE_KINDS)} or all")
    freed = 0
    for kind in kinds:
        for p in _kind_paths(kind, root):
            if kind == "train-features" and not _orphan(p):
                continue
            if p.name.endswith(".lock"):  # removed with its array
                continue
            size = _size(p)
            if p.suffix == ".npy" and p.is_file():
                if remove_unused(p):  # an array a dataset is reading stays
                    freed += size
                continue
            freed += size
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
    return freed
