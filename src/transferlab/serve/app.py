"""The FastAPI app: ``POST /predict``, ``GET /health``, ``GET /model``, the web page at ``/`` and
offline OpenAPI docs at ``/docs``.

:func:`create_app` loads the model once (:class:`transferlab.predictor.Predictor`: ONNX Runtime when the
run was exported, else PyTorch) into a :class:`.state.Serving` on ``app.state.serving``, which the
routes (:mod:`.routers`) get through ``Depends``; their JSON answers are the models of :mod:`.schemas`.
Concurrent requests are micro-batched (:mod:`.batching`). With an ONNX backend the server imports no
PyTorch (tests/test_serve_lean.py checks a real server process).

Memory stays bounded under load: at most ``max_in_flight`` ``POST /predict`` requests are read at
once (later ones wait before their body is read), at most ``threads`` images decode at once, and
an image waits for its batch as ``uint8`` pixels (normalised when the batch runs).

On a network (:mod:`.access`, :mod:`.monitoring`): with ``api_key`` every route but ``/health``, the page
at ``/``, its assets and the API docs answers 401 without the key (``X-API-Key`` or ``Authorization:
Bearer``); ``rate_limit`` refuses a client's ``POST /predict`` over N per minute with 429 and
``Retry-After``; ``cors_origins`` lets pages of those origins call the API; ``GET /metrics`` is the
Prometheus text format.

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
import logging
from contextlib import asynccontextmanager
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from .. import __version__
from ..data.images import quiet_pil_warnings
from ..predictor import Predictor
from .access import RateLimiter, RateLimitMiddleware, check_api_key, check_cors_origins, check_rate_limit
from .monitoring import MetricsMiddleware
from .routers import info, metrics, pages, predict
from .routers.pages import STATIC_DIR
from .state import MB, Serving

logger = logging.getLogger(__name__)


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


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Run the micro-batcher while the server runs; on shutdown, requests still waiting get an error."""
    batcher = app.state.serving.batcher
    await batcher.start()
    try:
        yield
    finally:
        await batcher.stop()
        batcher.close()


async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A request FastAPI cannot parse: 400 ``{"detail": "bad request: <field>: <why>; ..."}`` (not 422)."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query"))
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return JSONResponse({"detail": "bad request: " + "; ".join(parts)}, status_code=400)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - a bug, but JSON
    return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)


def create_app(run: str | Path, max_upload_mb: float = 10, *, backend: str = "auto",
               predictor: Predictor | None = None, topk: int = 5, max_batch: int = 8,
               max_wait_ms: float = 5.0, threads: int | None = None,
               max_in_flight: int | None = None, api_key: str | None = None, rate_limit: int | None = None,
               cors_origins: str | Sequence[str] | None = None, reject: bool = True) -> FastAPI:
    """The web app for a run. The model is loaded here, once.

    ``max_batch``: images per model call (8: on a CPU larger batches are no faster, and ONNX
    Runtime's working memory grows with the batch, see bench/README.md). ``max_in_flight``:
    ``POST /predict`` requests processed at once (default ``2 * max_batch``; the rest queue).
    ``api_key``: the key the routes require (default none). ``rate_limit``: ``POST /predict`` requests
    per minute per client IP (default no limit). ``cors_origins``: origins allowed to call the API
    from a browser (``"A,B"`` or a list; default none: no CORS headers). ``reject``: answer "unknown"
    below the run's threshold (see :class:`transferlab.predictor.Predictor`). A bad value is a ConfigError.
    """
    run = Path(run)
    network = {"api_key": check_api_key(api_key), "rate_limit": check_rate_limit(rate_limit),
               "cors_origins": check_cors_origins(cors_origins)}       # checked before the model loads
    predictor = predictor or Predictor(run, backend=backend, threads=threads, batch_size=max_batch, reject=reject)
    serving = Serving.load(run, predictor, max_upload_mb=max_upload_mb, topk=topk, max_batch=max_batch,
                           max_wait_ms=max_wait_ms, **network)
    app = _make_app(
        title="transferlab",
        version=__version__,
        description=f"Image classifier `{predictor.meta.get('recipe')}` "
                    f"({len(predictor.classes)} classes, {predictor.backend} backend).",
        lifespan=lifespan,
        exception_handlers={RequestValidationError: bad_request, Exception: internal_error},
    )
    app.state.serving = serving
    app.state.predictor, app.state.batcher = predictor, serving.batcher  # also here, for callers of create_app
    app.state.max_upload_bytes = serving.max_upload_bytes
    # the last added is the outermost: CORS, metrics, rate limit, body limit, in-flight limit, the routes
    app.add_middleware(InFlightLimit, limit=max_in_flight or 2 * max(1, int(max_batch)))
    app.add_middleware(BodyLimitMiddleware, max_bytes=serving.max_upload_bytes)  # refuses before queueing
    if serving.rate_limit:
        app.add_middleware(RateLimitMiddleware, limiter=RateLimiter(serving.rate_limit))
    app.add_middleware(MetricsMiddleware, monitor=serving.monitor, routes=app.router.routes)
    if serving.cors_origins:  # outermost: answers preflights (which carry no key) and marks refusals too
        app.add_middleware(CORSMiddleware, allow_origins=serving.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "Authorization", "Content-Type"], max_age=600)
    for router in (info.router, predict.router, metrics.router, pages.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 8000, max_upload_mb: float = 10, *,
          backend: str = "auto", log_level: str = "info", **kwargs) -> None:
    """Serve ``run`` with uvicorn until interrupted."""
    app = create_app(run, max_upload_mb, backend=backend, **kwargs)
    p, serving = app.state.predictor, app.state.serving
    access = "an API key is required (X-API-Key or Authorization: Bearer)" if serving.api_key else "no API key"
    if serving.rate_limit:
        access += f", at most {serving.rate_limit} predictions per minute per client"
    if serving.cors_origins:
        access += f", CORS for {', '.join(serving.cors_origins)}"
    calibrated = f", temperature {p.temperature:.3f}" if p.temperature != 1.0 else ""
    if p.rejection:
        calibrated += f", 'unknown' below a top probability of {p.rejection['threshold']:.3f}"
    logger.info(f"serving {p.meta.get('recipe')} ({len(p.classes)} classes, {p.backend} backend{calibrated}) "
                f"on http://{host}:{port}/  (API docs: /docs; metrics: /metrics; {access})")
    if not serving.api_key and host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning(f"listening on {host} without --api-key: anyone who can reach port {port} can use the model")
    for note in p.notes:
        logger.info(f"note: {note}")
    # uploads decode in worker threads; over-limit images are refused explicitly (DataError), so
    # Pillow's warnings for them are noise in the server log
    with quiet_pil_warnings():
        uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
