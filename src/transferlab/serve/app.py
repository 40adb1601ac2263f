"""The FastAPI app: ``POST /predict``, ``GET /health``, ``GET /model``, the web page at ``/`` and
offline OpenAPI docs at ``/docs``.

The model is loaded once (:class:`transferlab.predict.Predictor`: ONNX Runtime when the run was
exported, else PyTorch); concurrent requests are micro-batched (:mod:`.batching`). With an ONNX
backend the server imports no PyTorch (tests/test_serve_lean.py checks a real server process).

Memory stays bounded under load: at most ``max_in_flight`` ``POST /predict`` requests are read at
once (later ones wait before their body is read), at most ``threads`` images decode at once, and
an image waits for its batch as ``uint8`` pixels (normalised when the batch runs).

A file that cannot be classified gets an error entry in place of its prediction
(``{"filename", "error", "status"}``) while the other files of the request are answered; a request
with no good file gets a 4xx JSON error ``{"detail": "..."}`` (the files' own status when they
agree, else 400):

=====  ==========================================================================================
400    empty file, truncated/corrupt image, decompression bomb, no file field, too many files
413    request body over ``max_upload_mb`` (checked on Content-Length and on the bytes received)
415    not an image (declared non-image content type, or content PIL cannot identify)
=====  ==========================================================================================
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from ..tta import average_mirrors, with_mirrors
from .. import __version__, runfolder
from ..data.images import quiet_pil_warnings
from ..errors import DataError
from ..predict import Predictor, topk_rows
from .batching import MicroBatcher

STATIC_DIR = Path(__file__).parent / "static"
MB = 1024 * 1024
MAX_FILES = 64
ALLOWED_TYPES = ("image/", "application/octet-stream")


class UploadTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"upload too large: the limit is {limit / MB:g} MB per request")


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes``: on the Content-Length header before reading, and
    by counting the bytes actually received (a missing or lying header cannot get past it)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await _send_json(send, 400, "invalid Content-Length header")
            if declared > self.max_bytes:
                return await _send_json(send, 413, UploadTooLarge(self.max_bytes).detail)
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise UploadTooLarge(self.max_bytes)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except UploadTooLarge as exc:  # raised outside the route's exception handling
            if not started:
                await _send_json(send, 413, exc.detail)


class InFlightLimit:
    """At most ``limit`` ``POST /predict`` requests are processed at once; later ones wait here,
    before their body is read (uvicorn stops reading a socket whose request is not consumed), so
    a burst of requests costs memory for ``limit`` uploads, not for all of them."""

    def __init__(self, app, limit: int, path: str = "/predict"):
        self.app = app
        self.limit = max(1, int(limit))
        self.path = path
        self._gates: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    def _gate(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop not in self._gates:  # one per event loop (a test client runs its own)
            self._gates = {loop: asyncio.Semaphore(self.limit)}
        return self._gates[loop]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != self.path:
            return await self.app(scope, receive, send)
        async with self._gate():
            await self.app(scope, receive, send)


async def _send_json(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _make_app(**kwargs) -> FastAPI:
    """FastAPI whose /docs serves Swagger UI from the fastapi-offline package (no CDN)."""
    return FastAPIOffline(**kwargs)


def model_metrics(run: Path, meta: dict) -> tuple[dict | None, str | None]:
    """Evaluation metrics (``RUN/eval-val/metrics.json``) when present, else the checkpoint's."""
    metrics, _ = runfolder.read_metrics(run, "val")
    if metrics is not None:
        return metrics, str(runfolder.metrics_path(run, "val").relative_to(run))
    metrics = meta.get("metrics")
    return (metrics, "checkpoint") if metrics else (None, None)


def val_accuracy(metrics: dict | None, source: str | None) -> float | None:
    """Validation accuracy from evaluation metrics (``accuracy``) or a checkpoint's (``val_acc``)."""
    if not metrics:
        return None
    value = metrics.get("val_acc") if source == "checkpoint" else metrics.get("accuracy", metrics.get("val_acc"))
    return float(value) if isinstance(value, (int, float)) else None


def create_app(run: str | Path, max_upload_mb: float = 10, *, backend: str = "auto",
               predictor: Predictor | None = None, topk: int = 5, max_batch: int = 8,
               max_wait_ms: float = 5.0, threads: int | None = None,
               max_in_flight: int | None = None) -> FastAPI:
    """The web app for a run. The model is loaded here, once.

    ``max_batch``: images per model call (8: on a CPU larger batches are no faster, and ONNX
    Runtime's working memory grows with the batch, see bench/README.md). ``max_in_flight``:
    ``POST /predict`` requests processed at once (default ``2 * max_batch``; the rest queue).
    """
    run = Path(run)
    predictor = predictor or Predictor(run, backend=backend, threads=threads, batch_size=max_batch)
    pre = predictor.preprocess
    max_bytes = int(float(max_upload_mb) * MB)
    metrics, metrics_source = model_metrics(run, predictor.meta)
    batcher = MicroBatcher(lambda pixels: predictor.predict_arrays(pre.normalize(pixels)),
                           max_batch=max_batch, max_wait_ms=max_wait_ms)
    decode_slots = threading.BoundedSemaphore(predictor.threads)  # a decoded photo can be large
    started_at = time.time()

    def decode(data: bytes) -> np.ndarray:
        with decode_slots:
            return pre.pixels(data)

    async def read_upload(up: UploadFile) -> tuple[np.ndarray | None, int, str]:
        """(pixels, 200, "") for a good image, else (None, status, reason)."""
        ctype = (up.content_type or "").lower()
        if ctype and not ctype.startswith(ALLOWED_TYPES):
            return None, 415, f"not an image (content type {ctype}); send JPEG, PNG, BMP, GIF, WebP or TIFF"
        data = await up.read()
        await up.close()
        if not data:
            return None, 400, "empty file (zero bytes)"
        try:
            return await run_in_threadpool(decode, data), 200, ""
        except DataError as exc:
            reason = str(exc).split(": ", 1)[-1]
            return None, (415 if reason.startswith("not an image") else 400), reason

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            batcher.close()

    app = _make_app(
        title="transferlab",
        version=__version__,
        description=f"Image classifier `{predictor.meta.get('recipe')}` "
                    f"({len(predictor.classes)} classes, {predictor.backend} backend).",
        lifespan=lifespan,
    )
    app.state.predictor = predictor
    app.state.batcher = batcher
    app.state.max_upload_bytes = max_bytes
    app.add_middleware(InFlightLimit, limit=max_in_flight or 2 * max(1, int(max_batch)))
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes)  # outermost: refuses before queueing

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query"))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return JSONResponse({"detail": "bad request: " + "; ".join(parts)}, status_code=400)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # pragma: no cover - a bug, but answer in JSON
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    @app.get("/health", summary="liveness and serving statistics")
    async def health() -> dict[str, Any]:
        sizes = list(batcher.batch_sizes)
        return {"status": "ok", "backend": predictor.backend, "uptime_s": round(time.time() - started_at, 1),
                "model_calls": batcher.calls, "mean_batch": round(float(np.mean(sizes)), 2) if sizes else None}

    @app.get("/model", summary="the model: recipe, classes, input size, backend, metrics")
    async def model_info() -> dict[str, Any]:
        return {**predictor.info, "metrics": metrics, "metrics_source": metrics_source,
                "val_accuracy": val_accuracy(metrics, metrics_source), "max_upload_mb": max_bytes / MB, "topk": topk}

    @app.post("/predict", summary="classify one or more images (multipart field 'files' or 'file')")
    async def predict(
        request: Request,
        files: list[UploadFile] | None = File(None, description="one or more images"),
        file: UploadFile | None = File(None, description="a single image (alternative to 'files')"),
        topk: int = Query(topk, ge=1, le=1000, description="classes returned per image"),
        tta: bool = Query(False, description="average with the horizontally flipped image"),
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        uploads = (files or []) + ([file] if file is not None else [])
        if not uploads:
            form = await request.form() if "multipart/form-data" in request.headers.get("content-type", "") else None
            got = ", ".join(sorted({k for k in form.keys()})) if form else ""
            raise HTTPException(400, "no image uploaded: send it as multipart/form-data field 'files' (or 'file')"
                                + (f"; got field(s): {got}" if got else ""))
        if len(uploads) > MAX_FILES:
            raise HTTPException(400, f"too many files: at most {MAX_FILES} per request")
        names = [up.filename or f"file {i + 1}" for i, up in enumerate(uploads)]
        loaded = await asyncio.gather(*[read_upload(up) for up in uploads])
        good = [px for px, _, _ in loaded if px is not None]
        if not good:  # nothing to classify: the request itself is bad
            statuses = {status for _, status, _ in loaded}
            raise HTTPException(statuses.pop() if len(statuses) == 1 else 400,
                                "; ".join(f"{name}: {reason}" for name, (_, _, reason) in zip(names, loaded)))
        batch = np.stack(good)
        if tta:  # the image and its mirror in one submission: one batching window, one model call
            probs = average_mirrors(await batcher.submit(with_mirrors(batch, width_axis=2)))
        else:
            probs = await batcher.submit(batch)
        rows = iter(topk_rows(probs, predictor.classes, topk))
        predictions = []
        for up, (px, status, reason) in zip(uploads, loaded):
            if px is None:
                predictions.append({"filename": up.filename, "error": reason, "status": status})
            else:
                top = next(rows)
                predictions.append({"filename": up.filename, "label": top[0]["class"], "prob": top[0]["prob"], "top": top})
        return {"predictions": predictions, "backend": predictor.backend, "errors": len(uploads) - len(good),
                "time_ms": round((time.perf_counter() - t0) * 1000, 2)}

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return FileResponse(STATIC_DIR / "favicon.ico", media_type="image/x-icon")

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 8000, max_upload_mb: float = 10, *,
          backend: str = "auto", log_level: str = "info", **kwargs) -> None:
    """Serve ``run`` with uvicorn until interrupted."""
    app = create_app(run, max_upload_mb, backend=backend, **kwargs)
    p = app.state.predictor
    print(f"serving {p.meta.get('recipe')} ({len(p.classes)} classes, {p.backend} backend) "
          f"on http://{host}:{port}/  (API docs: /docs)")
    for note in p.notes:
        print(f"note: {note}")
    # uploads decode in worker threads; over-limit images are refused explicitly (DataError), so
    # Pillow's warnings for them are noise in the server log
    with quiet_pil_warnings():
        uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
