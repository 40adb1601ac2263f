"""Serving limits: the request body limit (BodyLimitMiddleware, 10 MB by default), the files-per-request
limit, and a real ``transferlab serve`` process (uvicorn on a socket, no browser needed)."""
from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from test_export_fixtures import digits_run, exported_run  # noqa: F401

from transferlab.serve.app import MB, BodyLimitMiddleware, UploadTooLarge
from transferlab.serve.uploads import MAX_FILES

DEFAULT_LIMIT = 10 * 1024 * 1024  # README: --max-upload-mb defaults to 10


def _png(color=(10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------- the middleware
class _Echo:
    """An ASGI app that reads the whole body and answers 200 with its length."""

    def __init__(self, respond_first=False):
        self.respond_first = respond_first
        self.calls = 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        if self.respond_first:  # a response already started when the limit is hit
            await send({"type": "http.response.start", "status": 200, "headers": []})
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        if not self.respond_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})


def _call(app, chunks, content_length=None, scope_type="http"):
    """Run one request through ``app``; returns (status or None, body, messages sent)."""
    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    scope = {"type": scope_type, "method": "POST", "path": "/predict", "headers": headers}
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent = []

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, sent


def test_body_limit_on_content_length_exactly_at_the_limit():
    inner = _Echo()
    app = BodyLimitMiddleware(inner, max_bytes=10)
    assert _call(app, [b"x" * 10], content_length=10)[:2] == (200, b"10")  # the limit itself is allowed
    status, body, sent = _call(app, [b"x" * 11], content_length=11)
    assert status == 413 and json.loads(body) == {"detail": f"upload too large: the limit is {10 / MB:g} MB per request"}
    assert inner.calls == 1  # refused on the header, before the app read anything
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"] == b"application/json" and int(headers[b"content-length"]) == len(body)
    assert headers[b"connection"] == b"close"  # the unread rest of the body is not waited for


def test_body_limit_counts_the_bytes_received_when_the_header_is_missing_or_lies():
    app = BodyLimitMiddleware(_Echo(), max_bytes=10)
    assert _call(app, [b"x" * 5, b"x" * 5])[:2] == (200, b"10")  # no header, exactly the limit in two chunks
    status, body, sent = _call(app, [b"x" * 6, b"x" * 5])        # no header, one byte over
    assert status == 413 and json.loads(body) == {"detail": f"upload too large: the limit is {10 / MB:g} MB per request"}
    assert dict(sent[0]["headers"])[b"connection"] == b"close"
    exc = UploadTooLarge(10 * MB)  # the same answer when raised inside a route (FastAPI's handler)
    assert (exc.status_code, exc.detail) == (413, "upload too large: the limit is 10 MB per request")
    assert _call(app, [b"x" * 6, b"x" * 6], content_length=4)[0] == 413  # the header claims less
    status, body, _ = _call(app, [b"x"], content_length="ten")
    assert status == 400 and json.loads(body)["detail"] == "invalid Content-Length header"


def test_body_limit_never_sends_a_second_response_and_ignores_other_scopes():
    status, _, sent = _call(BodyLimitMiddleware(_Echo(respond_first=True), max_bytes=3), [b"xx", b"xx"])
    assert status == 200 and [m["type"] for m in sent] == ["http.response.start"]  # no 413 after a 200 started
    calls = []

    async def lifespan_app(scope, receive, send):
        calls.append(scope["type"])

    app = BodyLimitMiddleware(lifespan_app, max_bytes=0)
    status, _, sent = _call(app, [b"x" * 50], content_length=50, scope_type="lifespan")
    assert calls == ["lifespan"] and status is None and sent == []  # passed through, no 413


# -------------------------------------------------------------------------------- the app defaults
@pytest.fixture(scope="module")
def default_client(exported_run):
    from fastapi.testclient import TestClient

    from transferlab.serve import create_app

    with TestClient(create_app(exported_run)) as client:  # every limit at its default
        yield client


def test_default_upload_limit_is_10_mb(default_client):
    assert MB == 1024 * 1024 and default_client.app.state.max_upload_bytes == DEFAULT_LIMIT
    assert default_client.get("/model").json()["max_upload_mb"] == 10
    png = _png()
    # a body of exactly 10 MB (a PNG padded after its end) is read and answered; one byte more is not
    boundary = "limit-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png
    tail = f"\r\n--{boundary}--\r\n".encode()
    ctype = {"content-type": f"multipart/form-data; boundary={boundary}"}
    for size, status in ((DEFAULT_LIMIT, 200), (DEFAULT_LIMIT + 1, 413)):
        body = head + b"\0" * (size - len(head) - len(tail)) + tail
        assert len(body) == size
        r = default_client.post("/predict", content=body, headers=ctype)
        assert r.status_code == status, r.text[:200]
        if status == 413:
            assert r.json()["detail"] == "upload too large: the limit is 10 MB per request"
        else:
            assert [p["filename"] for p in r.json()["predictions"]] == ["a.png"]


def test_files_per_request_limit(default_client):
    png = _png()
    r = default_client.post("/predict", files=[("files", (f"{i}.png", png, "image/png")) for i in range(MAX_FILES)])
    assert r.status_code == 200 and len(r.json()["predictions"]) == MAX_FILES == 64
    r = default_client.post("/predict", files=[("files", (f"{i}.png", png, "image/png")) for i in range(MAX_FILES + 1)])
    assert r.status_code == 400 and r.json()["detail"] == "too many files: at most 64 per request"


# --------------------------------------------------------------------------- a real server process
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_transferlab_serve_process_answers_on_a_socket(exported_run, digits_dir, tmp_path):
    """`transferlab serve RUN` as a user starts it: uvicorn on a real port, default limits, ONNX backend."""
    import httpx

    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "transferlab", "serve", str(exported_run), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /health within 120 s"
            time.sleep(0.2)
        info = httpx.get(f"{url}/model", timeout=10).json()
        assert info["backend"] == "onnx" and info["max_upload_mb"] == 10 and len(info["classes"]) == 10
        image = sorted(Path(digits_dir).glob("7/*.png"))[0]
        r = httpx.post(f"{url}/predict?topk=3", files={"files": (image.name, image.read_bytes(), "image/png")},
                       timeout=30)
        assert r.status_code == 200
        (pred,) = r.json()["predictions"]
        assert pred["filename"] == image.name and len(pred["top"]) == 3 and pred["label"] == pred["top"][0]["class"]
        r = httpx.post(f"{url}/predict", content=b"x" * (DEFAULT_LIMIT + 1),
                       headers={"content-type": "application/octet-stream"}, timeout=30)
        assert r.status_code == 413 and "limit is 10 MB" in r.json()["detail"]
        assert httpx.get(url + "/", timeout=10).status_code == 200  # the web page
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        finally:
            log.close()
    assert f"on http://127.0.0.1:{port}/" in (tmp_path / "server.log").read_text()
