"""Arrays of rows on disk (``.npy`` files), written in chunks and read a batch at a time.

The one owner of the row files behind the image cache, the training feature cache and the doctor's
embeddings. Nothing here holds a whole array in memory:

* :class:`RowWriter` appends chunks of rows to a ``.npy`` file with plain file writes (the pages go
  to the operating system's file cache, not to this process), into a temporary name renamed into
  place when complete;
* :class:`RowFile` reads any rows with a memory map opened for that read and closed after it, so a
  process that has read every row of a 40 GB cache holds none of it (a map kept open counts every
  page it ever touched in the process's resident memory until it is closed).

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
>>> with RowWriter(path, n=5, row_shape=(2,), dtype=np.float32) as w:
...     w.write(np.zeros((3, 2), np.float32)); w.write(np.ones((2, 2), np.float32))
>>> RowFile(path).take([4, 0]).tolist()
[[1.0, 1.0], [0.0, 0.0]]
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class RowWriter:
    """Writes ``n`` rows of ``row_shape`` / ``dtype`` to ``path`` in chunks; the file appears (renamed
    from a temporary name) only when all ``n`` rows are written and :meth:`close` is called."""

    def __init__(self, path: str | os.PathLike, *, n: int, row_shape: Sequence[int], dtype=np.float32):
        self.path = Path(path)
        self.shape = (int(n), *[int(s) for s in row_shape])
        self.dtype = np.dtype(dtype)
        self.written = 0
        self.tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npy")
        self._f = open(self.tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self._f, header)

    def write(self, rows) -> None:
        """Append rows (an array or tensor of shape ``[k, *row_shape]``)."""
        arr = np.ascontiguousarray(np.asarray(rows), dtype=self.dtype)
        if arr.shape[1:] != self.shape[1:] or self.written + len(arr) > self.shape[0]:
            raise ValueError(f"rows of shape {arr.shape} do not fit {self.shape} after {self.written} rows")
        if arr.size == 0:  # nothing to write (e.g. the last, empty chunk of a list whose length is a multiple)
            return
        self._f.write(arr.data.cast("B"))  # the array's own buffer (a memoryview), not a copy
        self.written += len(arr)

    def close(self) -> Path:
        if self._f.closed:
            return self.path
        self._f.close()
        if self.written != self.shape[0]:
            self.tmp.unlink(missing_ok=True)
            raise ValueError(f"{self.written} of {self.shape[0]} rows written to {self.path}")
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class RowFile:
    """Rows of a ``.npy`` file, read on demand (see the module doc): ``len``, ``shape``, ``dtype``,
    ``take(index)`` and ``rows(start, stop)`` return in-memory copies."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        with open(self.path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran:
            raise ValueError(f"{self.path}: Fortran-ordered arrays are not row files")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def _map(self) -> np.memmap:
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape)

    def take(self, index) -> np.ndarray:
        """Rows ``index`` (any order, repeats allowed), read in file order."""
        index = np.asarray(index, dtype=np.int64)
        if len(index) == 0:
            return np.empty((0, *self.shape[1:]), self.dtype)
        order = np.argsort(index, kind="stable")
        m = self._map()
        try:
            out = np.empty((len(index), *self.shape[1:]), self.dtype)
            out[order] = m[index[order]]
        finally:
            del m  # unmapped: the pages read leave this process's resident memory
        return out

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as one copy."""
        m = self._map()
        try:
            return np.array(m[start:stop])
        finally:
            del m

    def chunks(self, size: int = 4096):
        """``(start, rows)`` over the whole file, ``size`` rows at a time."""
        for start in range(0, len(self), size):
            yield start, self.rows(start, min(start + size, len(self)))
