"""The FastAPI app: ``POST /predict``, ``GET /health``, ``GET /model``, the web page at ``/`` and
offline OpenAPI docs at ``/docs``.

The model is loaded once (:class:`transferlab.predict.Predictor`: ONNX Runtime when the run was
exported, else PyTorch); concurrent requests are micro-batched (:mod:`.batching`). Every bad
request gets a 4xx JSON error ``{"detail": "..."}``:

=====  ==========================================================================================
400    empty file, truncated/corrupt image, decompression bomb, no file field, too many files
413    request body over ``max_upload_mb`` (checked on Content-Length and on the bytes received)
415    not an image (declared non-image content type, or content PIL cannot identify)
=====  ==========================================================================================
"""
from __future__ import annotations

import json
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


def create_app(run: str | Path, max_upload_mb: float = 10, *, backend: str = "auto",
               predictor: Predictor | None = None, topk: int = 5, max_batch: int = 32,
               max_wait_ms: float = 5.0, threads: int | None = None) -> FastAPI:
    """The web app for a run. The model is loaded here, once."""
    run = Path(run)
    predictor = predictor or Predictor(run, backend=backend, threads=threads, batch_size=max_batch)
    max_bytes = int(float(max_upload_mb) * MB)
    metrics, metrics_source = model_metrics(run, predictor.meta)
    batcher = MicroBatcher(predictor.predict_arrays, max_batch=max_batch, max_wait_ms=max_wait_ms)
    started_at = time.time()

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
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes)

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
                "max_upload_mb": max_bytes / MB, "topk": topk}

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
        arrays = []
        for i, up in enumerate(uploads):
            name = up.filename or f"file {i + 1}"
            ctype = (up.content_type or "").lower()
            if ctype and not ctype.startswith(ALLOWED_TYPES):
                raise HTTPException(415, f"{name}: not an image (content type {ctype}); send JPEG, PNG, BMP, GIF, WebP or TIFF")
            data = await up.read()
            if not data:
                raise HTTPException(400, f"{name}: empty file (zero bytes)")
            try:
                arrays.append(await run_in_threadpool(predictor.preprocess.load, data))
            except DataError as exc:
                reason = str(exc).split(": ", 1)[-1]
                status = 415 if reason.startswith("not an image") else 400
                raise HTTPException(status, f"{name}: {reason}") from None
        batch = np.stack(arrays)
        if tta:  # the image and its mirror in one submission: one batching window, one model call
            n = len(batch)
            both = await batcher.submit(np.concatenate([batch, batch[..., ::-1]]))
            probs = (both[:n] + both[n:]) / 2
        else:
            probs = await batcher.submit(batch)
        rows = topk_rows(probs, predictor.classes, topk)
        predictions = [{"filename": up.filename, "label": top[0]["class"], "prob": top[0]["prob"], "top": top}
                       for up, top in zip(uploads, rows)]
        return {"predictions": predictions, "backend": predictor.backend,
                "time_ms": round((time.perf_counter() - t0) * 1000, 2)}

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
