"""Micro-batching: concurrent requests share one batched model call.

Requests append their preprocessed images to a pending list; a single worker task takes the first
waiting request, keeps collecting for up to ``max_wait_ms`` (or until ``max_batch`` images are
waiting), runs one batched inference in a one-thread executor (so the event loop keeps accepting
requests meanwhile) and hands each request its slice of the results.

>>> batcher = MicroBatcher(lambda x: x.sum(axis=(1, 2, 3))[:, None], max_batch=32, max_wait_ms=5)
>>> # in a coroutine: probs = await batcher.submit(images)   # images: [n, 3, S, S] -> [n, C]
"""
from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class MicroBatcher:
    """Collect concurrent ``submit`` calls into batched calls of ``fn([N, ...]) -> [N, ...]``."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], *, max_batch: int = 32, max_wait_ms: float = 5.0,
                 history: int = 1000):
        self.fn = fn
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=history)  # images per model call
        self.calls = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transferlab-infer")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task | None = None
        self._pending: list[tuple[np.ndarray, asyncio.Future]] = []
        self._arrived = asyncio.Event()

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            # first call, or a new event loop (e.g. a test client without lifespan): start afresh
            self._loop = loop
            self._pending = []
            self._arrived = asyncio.Event()
            self._worker = loop.create_task(self._run(), name="transferlab-microbatcher")

    async def start(self) -> None:
        self._ensure_worker()

    async def stop(self) -> None:
        if self._worker is not None and self._loop is asyncio.get_running_loop():
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._worker = None
        for _, f in self._pending:
            if not f.done():
                f.set_exception(RuntimeError("the server is shutting down"))
        self._pending = []

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, images: np.ndarray) -> np.ndarray:
        """Results for ``images`` ``[n, ...]`` (n >= 1), computed in a batch with other requests."""
        self._ensure_worker()
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((images, fut))
        self._arrived.set()
        return await fut

    def _waiting(self) -> int:
        return sum(len(x) for x, _ in self._pending)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            # the first request is here: let others join for up to max_wait, or until the batch is full
            deadline = time.monotonic() + self.max_wait
            while self._waiting() < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            items: list[tuple[np.ndarray, asyncio.Future]] = []
            count = 0
            while self._pending and (not items or count + len(self._pending[0][0]) <= self.max_batch):
                x, f = self._pending.pop(0)
                if not f.done():  # skip requests whose client went away
                    items.append((x, f))
                    count += len(x)
            if not items:
                continue
            batch = np.concatenate([x for x, _ in items]) if len(items) > 1 else items[0][0]
            self.batch_sizes.append(len(batch))
            self.calls += 1
            try:
                out = await loop.run_in_executor(self._executor, self.fn, batch)
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
                for _, f in items:
                    if not f.done():
                        f.set_exception(exc)
                continue
            start = 0
            for x, f in items:
                if not f.done():
                    f.set_result(out[start:start + len(x)])
                start += len(x)
