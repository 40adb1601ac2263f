"""The validation scan: open and decode every file once, in parallel, never crashing.

>>> info, broken = scan_files(["a.jpg", "empty.jpg"], workers=2, progress=False)   # doctest: +SKIP
>>> broken                                                                          # doctest: +SKIP
[BrokenFile(path='empty.jpg', reason='zero bytes')]
>>> info["a.jpg"].width, info["a.jpg"].format                                      # doctest: +SKIP
(640, 'JPEG')

Each file is read once: its bytes are hashed (SHA-1, for duplicate detection) and decoded from
memory to RGB with :func:`~transferlab.data.images.open_image_info`. Anything that goes wrong
(zero bytes, truncated, not an image, over Pillow's decompression-bomb limit, unreadable) makes a
:class:`BrokenFile` with a short reason instead of an exception. Decoding runs in a thread pool
(Pillow releases the GIL while decoding), ``workers`` defaulting to ``os.cpu_count()``.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from .._progress import track
from ..errors import ConfigError, DataError
from .images import describe_error, open_image_info, quiet_pil_warnings
from .types import BrokenFile, ImageInfo


def resolve_workers(workers: int | None) -> int:
    """``None`` -> ``os.cpu_count()``; ``0`` (no loader processes, as in ``--workers 0``) -> 1, in this
    process; otherwise the int given (ConfigError if negative).

    >>> resolve_workers(0), resolve_workers(3)
    (1, 3)
    """
    if workers is None:
        return max(1, os.cpu_count() or 1)
    if int(workers) < 0:
        raise ConfigError(f"workers must be >= 0, got {workers}")
    return max(1, int(workers))


def check_file(path: str) -> ImageInfo | BrokenFile:
    """Read, hash and fully decode one file; never raises."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if not data:
            return BrokenFile(path, "zero bytes")
        sha1 = hashlib.sha1(data).hexdigest()
        img, fmt, mode = open_image_info(data, name=path)
        return ImageInfo(width=img.width, height=img.height, format=fmt, mode=mode, bytes=len(data), sha1=sha1)
    except DataError as exc:
        return BrokenFile(path, str(exc).removeprefix(f"{path}: "))
    except BaseException as exc:  # noqa: BLE001 - the scan must survive anything but Ctrl-C
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return BrokenFile(path, describe_error(exc))


@contextlib.contextmanager
def decode_in_parallel(fn: Callable, items: Sequence, *, workers: int | None = None, description: str = "",
                       progress: bool = True, thread_prefix: str = "transferlab-decode") -> Iterator[Iterator]:
    """``with decode_in_parallel(fn, items) as results:`` yields ``fn(item)`` in input order, decoded in
    a thread pool (Pillow releases the GIL) with a progress bar and Pillow's warnings quieted."""
    n = resolve_workers(workers)
    with quiet_pil_warnings():  # a global filter, so set from this (main) thread for the pool threads
        if n == 1 or len(items) < 2:
            yield track(map(fn, items), description, total=len(items), progress=progress)
        else:
            with ThreadPoolExecutor(max_workers=n, thread_name_prefix=thread_prefix) as pool:
                yield track(pool.map(fn, items), description, total=len(items), progress=progress)


def scan_files(paths: Sequence[str], *, workers: int | None = None, progress: bool = True,
               description: str = "Scanning images") -> tuple[dict[str, ImageInfo], list[BrokenFile]]:
    """Scan ``paths`` in parallel; returns ``({path: ImageInfo}, [BrokenFile])`` in input order."""
    info: dict[str, ImageInfo] = {}
    broken: list[BrokenFile] = []
    with decode_in_parallel(check_file, paths, workers=workers, description=description, progress=progress,
                            thread_prefix="transferlab-scan") as results:
        for path, res in zip(paths, results):
            _collect(path, res, info, broken)
    return info, broken


def _collect(path: str, res: ImageInfo | BrokenFile, info: dict, broken: list) -> None:
    if isinstance(res, ImageInfo):
        info[path] = res
    else:
        broken.append(res)


def same_key_groups(keys: Sequence[str]) -> list[list[int]]:
    """Indices sharing a non-empty key (e.g. a content hash), groups of 2+ in first-seen order.

    >>> same_key_groups(["a", "b", "a", "", ""])
    [[0, 2]]
    """
    by: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        if key:
            by[key].append(i)
    return [g for g in by.values() if len(g) > 1]


def duplicate_groups(info: dict[str, ImageInfo], paths: Iterable[str] | None = None) -> list[list[str]]:
    """Groups (sorted, each of 2+ paths) of files with identical content, among ``paths``
    (default: every scanned path).

    >>> a = ImageInfo(1, 1, "PNG", "RGB", 10, "x"); b = ImageInfo(1, 1, "PNG", "RGB", 10, "y")
    >>> duplicate_groups({"p1": a, "p2": a, "p3": b})
    [['p1', 'p2']]
    """
    known = [p for p in (info if paths is None else paths) if p in info]
    return sorted(sorted(known[i] for i in g) for g in same_key_groups([info[p].sha1 for p in known]))
