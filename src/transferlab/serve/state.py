"""What the routes share, built once per app: :class:`Serving` (the loaded model, its micro-batcher
and the server's settings and limits), kept on ``app.state.serving`` and handed to a route by
``Depends(get_serving)`` (:data:`ServingDep`)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import Depends, Request

from .. import runfolder
from ..predictor import Predictor
from .batching import MicroBatcher
from .monitoring import Monitor

MB = 1024 * 1024


def model_metrics(run: Path, meta: dict) -> tuple[dict | None, str | None]:
    """Evaluation metrics (``RUN/eval-val/metrics.json``) when present, else the checkpoint's."""
    metrics, _ = runfolder.read_metrics(run, "val")
    if metrics is not None:
        return metrics, str(runfolder.metrics_path(run, "val").relative_to(run))
    metrics = meta.get("metrics")
    return (metrics, "checkpoint") if metrics else (None, None)


@dataclass
class Serving:
    """The model a server answers with and its settings: ``topk`` (classes per image unless a request
    asks otherwise), ``max_upload_bytes`` (per request), the run's ``metrics`` (for ``GET /model``), the
    ``api_key`` routes require (None: none), the ``rate_limit`` per client on ``POST /predict`` (requests
    per minute, None: none), the ``cors_origins`` and the Prometheus ``monitor`` (``GET /metrics``).
    At most ``predictor.threads`` uploads decode at once (``decode_slots``: a decoded photo can be large)."""

    predictor: Predictor
    batcher: MicroBatcher
    max_upload_bytes: int
    topk: int = 5
    metrics: dict | None = None
    metrics_source: str | None = None
    started_at: float = field(default_factory=time.time)
    api_key: str | None = field(default=None, repr=False)
    rate_limit: int | None = None
    cors_origins: list[str] = field(default_factory=list)
    monitor: Monitor = field(default_factory=Monitor)
    decode_slots: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self):
        self.decode_slots = threading.BoundedSemaphore(self.predictor.threads)

    @classmethod
    def load(cls, run: Path, predictor: Predictor, *, max_upload_mb: float, topk: int, max_batch: int,
             max_wait_ms: float, **network) -> Serving:
        """Serving for ``run``'s loaded ``predictor``: its batcher normalises each batch of ``uint8``
        pixels when the batch runs (an image waits for its batch as pixels, 4x smaller than floats).
        ``network``: ``api_key``, ``rate_limit``, ``cors_origins``, already checked."""
        pre = predictor.preprocess
        batcher = MicroBatcher(lambda pixels: predictor.predict_arrays(pre.normalize(pixels)),
                               max_batch=max_batch, max_wait_ms=max_wait_ms)
        metrics, source = model_metrics(run, predictor.meta)
        return cls(predictor, batcher, int(float(max_upload_mb) * MB), topk, metrics, source, **network)

    def decode(self, data: bytes) -> np.ndarray:
        """An uploaded file's ``uint8`` pixels (:class:`transferlab.errors.DataError` when it is no good image)."""
        with self.decode_slots:
            return self.predictor.preprocess.pixels(data)


def get_serving(request: Request) -> Serving:
    """The app's :class:`Serving` (a FastAPI dependency)."""
    return request.app.state.serving


ServingDep = Annotated[Serving, Depends(get_serving)]
