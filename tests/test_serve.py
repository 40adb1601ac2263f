"""transferlab.serve: every endpoint, every bad request (4xx JSON, never 500), upload limits,
decompression bombs, micro-batching, offline page and docs."""
from __future__ import annotations

import asyncio
import io
import json
import re

import numpy as np
import pytest

from test_export_fixtures import digits_run, exported_run, write_images  # noqa: F401

from fastapi.testclient import TestClient

from transferlab.serve import MicroBatcher, create_app


@pytest.fixture(scope="module")
def app(exported_run):
    return create_app(exported_run, max_upload_mb=1)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> bytes:
    return write_images(tmp_path_factory.mktemp("serve-img"), n=1, size=(64, 48))[0].read_bytes()


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


MULTIPART_HEAD = (b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
                  b"Content-Type: image/png\r\n\r\n")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A 10000 x 10000 PNG (100 M pixels > Pillow's limit) that is only ~100 kB."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (10000, 10000)).save(buf, "PNG")
    return buf.getvalue()


def test_health_model_page_docs(client, exported_run):
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/model").json()
    assert info["recipe"] == "cnn_bn" and info["classes"] == [str(i) for i in range(10)]
    assert info["backend"] == "onnx" and info["input_size"] == 32
    assert info["metrics"] == {"val_acc": 0.5, "val_loss": 1.0} and info["metrics_source"] == "checkpoint"

    page = client.get("/")
    assert page.status_code == 200 and 'id="file"' in page.text and 'id="results"' in page.text
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', page.text):
        assert client.get(asset).status_code == 200, asset
    assert "http" not in client.get("/static/app.js").text.replace("HTTP ", "")   # no CDN assets

    docs = client.get("/docs")
    assert docs.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets and all(a.startswith("/") for a in assets), assets      # Swagger UI served locally
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_metrics_from_evaluation(exported_run, tmp_path):
    import shutil

    run = shutil.copytree(exported_run, tmp_path / "run")
    (run / "eval-val").mkdir()
    (run / "eval-val" / "metrics.json").write_text(json.dumps({"accuracy": 0.93}))
    with TestClient(create_app(run)) as c:
        info = c.get("/model").json()
    assert info["metrics"] == {"accuracy": 0.93} and info["metrics_source"] == "eval-val/metrics.json"


def test_predict_one_and_many(client, png, jpeg):
    r = client.post("/predict", files={"files": ("a.png", png, "image/png")})
    assert r.status_code == 200
    body = r.json()
    assert body["backend"] == "onnx" and body["time_ms"] > 0
    (pred,) = body["predictions"]
    assert pred["filename"] == "a.png" and len(pred["top"]) == 5 and pred["label"] == pred["top"][0]["class"]

    r = client.post("/predict?topk=2", files=[("files", ("a.png", png, "image/png")),
                                               ("files", ("b.jpg", jpeg, "image/jpeg"))])
    preds = r.json()["predictions"]
    assert [p["filename"] for p in preds] == ["a.png", "b.jpg"] and all(len(p["top"]) == 2 for p in preds)

    single = client.post("/predict", files={"file": ("c.jpg", jpeg, "application/octet-stream")}).json()
    assert single["predictions"][0]["top"][:2] == preds[1]["top"]

    tta = client.post("/predict?tta=true", files={"files": ("a.png", png, "image/png")})
    assert tta.status_code == 200


def test_matches_predictor(client, app, png):
    from PIL import Image

    probs = app.state.predictor.predict_images([Image.open(io.BytesIO(png))])[0]
    top = client.post("/predict?topk=10", files={"files": ("a.png", png, "image/png")}).json()["predictions"][0]["top"]
    assert np.allclose([t["prob"] for t in top], np.sort(probs)[::-1], atol=1e-6)
    tta = app.state.predictor.predict_images([Image.open(io.BytesIO(png))], tta=True)[0]
    top = client.post("/predict?topk=10&tta=true", files={"files": ("a.png", png, "image/png")}).json()
    assert np.allclose([t["prob"] for t in top["predictions"][0]["top"]], np.sort(tta)[::-1], atol=1e-6)


@pytest.mark.parametrize("kwargs, status, message", [
    ({"files": {"files": ("a.png", b"", "image/png")}}, 400, "a.png: empty file"),
    ({"files": {"files": ("notes.txt", b"hello world", "text/plain")}}, 415, "notes.txt: not an image"),
    ({"files": {"files": ("fake.png", b"hello world", "image/png")}}, 415, "fake.png: not an image"),
    ({"files": {"image": ("a.png", b"x", "image/png")}}, 400, "field 'files' (or 'file'); got field(s): image"),
    ({"data": {"files": "just text"}}, 400, "bad request"),
    ({}, 400, "no image uploaded"),
    ({"content": b"{}", "headers": {"content-type": "application/json"}}, 400, "no image uploaded"),
])
def test_bad_requests(client, kwargs, status, message, png):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert client.post("/predict", files={"files": ("ok.png", png, "image/png")}).status_code == 200


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_truncated_jpeg_and_bomb(client, jpeg, bomb, png):
    r = client.post("/predict", files={"files": ("cut.jpg", jpeg[: len(jpeg) // 2], "image/jpeg")})
    assert r.status_code == 400 and r.json()["detail"] == "cut.jpg: truncated image"
    assert len(bomb) < 1024 * 1024
    r = client.post("/predict", files={"files": ("bomb.png", bomb, "image/png")})
    assert r.status_code == 400 and "bomb.png: decompression bomb" in r.json()["detail"]
    assert client.post("/predict", files={"files": ("ok.png", png, "image/png")}).status_code == 200


def test_good_and_bad_files_are_answered_per_file(client, png, jpeg):
    """One bad file does not sink the request: the good ones get predictions, each bad one an error entry."""
    r = client.post("/predict?topk=3", files=[("files", ("ok.png", png, "image/png")),
                                              ("files", ("cut.jpg", jpeg[:100], "image/jpeg")),
                                              ("files", ("notes.txt", b"hello", "text/plain")),
                                              ("files", ("empty.png", b"", "image/png")),
                                              ("files", ("b.jpg", jpeg, "image/jpeg"))])
    assert r.status_code == 200, r.text
    body = r.json()
    preds = body["predictions"]
    assert [p["filename"] for p in preds] == ["ok.png", "cut.jpg", "notes.txt", "empty.png", "b.jpg"]
    assert body["errors"] == 3
    assert preds[1] == {"filename": "cut.jpg", "error": "truncated image", "status": 400}
    assert preds[2]["status"] == 415 and preds[2]["error"].startswith("not an image (content type text/plain)")
    assert preds[3] == {"filename": "empty.png", "error": "empty file (zero bytes)", "status": 400}
    alone = {name: client.post("/predict?topk=3", files={"files": (name, data, ctype)}).json()["predictions"][0]
             for name, data, ctype in (("ok.png", png, "image/png"), ("b.jpg", jpeg, "image/jpeg"))}
    for p in (preds[0], preds[4]):             # the same answer as when sent alone
        assert "error" not in p and len(p["top"]) == 3
        assert p["label"] == alone[p["filename"]]["label"]
        assert np.allclose([t["prob"] for t in p["top"]], [t["prob"] for t in alone[p["filename"]]["top"]], atol=1e-6)

    # with tta too, and the good file's answer does not depend on its bad neighbour
    r = client.post("/predict?tta=true", files=[("files", ("cut.jpg", jpeg[:100], "image/jpeg")),
                                                ("files", ("ok.png", png, "image/png"))])
    assert r.status_code == 200 and r.json()["predictions"][0]["status"] == 400 and "top" in r.json()["predictions"][1]


@pytest.mark.parametrize("files, status, detail", [
    ([("cut.jpg", "cut", "image/jpeg"), ("empty.png", b"", "image/png")], 400,
     "cut.jpg: truncated image; empty.png: empty file (zero bytes)"),
    ([("a.txt", b"hello", "text/plain"), ("b.png", b"hello", "image/png")], 415, "a.txt: not an image"),
    ([("a.txt", b"hello", "text/plain"), ("empty.png", b"", "image/png")], 400, "empty.png: empty file"),
])
def test_a_request_with_no_good_file_is_a_4xx(client, jpeg, files, status, detail):
    files = [("files", (n, jpeg[:100] if d == "cut" else d, t)) for n, d, t in files]
    r = client.post("/predict", files=files)
    assert r.status_code == status, r.text
    assert detail in r.json()["detail"]


def test_oversize_uploads(client, png):
    big = b"\xff" * (1024 * 1024 + 10)
    r = client.post("/predict", files={"files": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "limit is 1 MB" in r.json()["detail"]

    def chunks():  # no Content-Length header (chunked): counted while reading
        yield MULTIPART_HEAD
        for _ in range(40):
            yield b"x" * 65536

    r = client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 413 and "limit is 1 MB" in r.json()["detail"]
    assert client.post("/predict", files={"files": ("ok.png", png, "image/png")}).status_code == 200


def test_lying_content_length_is_caught_while_reading(app):
    """An ASGI-level request that claims 100 bytes but sends 2 MB gets a 413, not a 500."""
    sent = []

    async def go():
        body = [{"type": "http.request", "body": MULTIPART_HEAD, "more_body": True}]
        body += [{"type": "http.request", "body": b"y" * 65536, "more_body": True}] * 32
        body.append({"type": "http.request", "body": b"", "more_body": False})
        msgs = iter(body)

        async def receive():
            return next(msgs)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
                 "root_path": "", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
                 "headers": [(b"content-type", b"multipart/form-data; boundary=xyz"), (b"content-length", b"100")]}
        await app(scope, receive, send)

    asyncio.run(go())
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 413
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert "upload too large" in json.loads(body)["detail"]


def test_favicon(client):
    from PIL import Image

    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"] == "image/x-icon"
    assert Image.open(io.BytesIO(r.content)).format == "ICO"
    assert 'rel="icon" href="/favicon.ico"' in client.get("/").text


def test_model_reports_validation_accuracy(client, exported_run, tmp_path):
    assert client.get("/model").json()["val_accuracy"] == 0.5          # the checkpoint's val_acc
    import shutil

    run = shutil.copytree(exported_run, tmp_path / "run")
    (run / "eval-val").mkdir()
    (run / "eval-val" / "metrics.json").write_text(json.dumps({"accuracy": 0.93, "val_acc": 0.1}))
    with TestClient(create_app(run)) as c:
        assert c.get("/model").json()["val_accuracy"] == 0.93       # evaluation's accuracy wins


def test_in_flight_limit_queues_requests_before_reading_them(exported_run, png):
    """With max_in_flight=2, no more than 2 requests reach the model together, however many arrive."""
    import httpx

    app = create_app(exported_run, max_batch=8, max_wait_ms=150, max_in_flight=2)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*[c.post("/predict", files={"files": (f"{i}.png", png, "image/png")})
                                          for i in range(8)])

    assert all(r.status_code == 200 for r in asyncio.run(go()))
    sizes = list(app.state.batcher.batch_sizes)
    assert sum(sizes) == 8 and max(sizes) <= 2, sizes
    assert create_app(exported_run).state.batcher.max_batch == 8       # the default batch


def test_bad_query_and_methods(client):
    r = client.post("/predict?topk=0")
    assert r.status_code == 400 and "topk" in r.json()["detail"]
    assert client.get("/predict").status_code == 405
    assert client.get("/nothing").status_code == 404


def test_concurrent_requests_are_micro_batched(exported_run, png):
    import httpx

    app = create_app(exported_run, max_wait_ms=100, max_batch=64)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            rs = await asyncio.gather(*[c.post("/predict", files={"files": (f"{i}.png", png, "image/png")})
                                        for i in range(12)])
        return rs

    rs = asyncio.run(go())
    assert all(r.status_code == 200 for r in rs)
    labels = {r.json()["predictions"][0]["label"] for r in rs}
    assert len(labels) == 1                       # same image -> same answer, whatever the batch
    sizes = list(app.state.batcher.batch_sizes)
    assert sum(sizes) == 12 and max(sizes) > 1 and len(sizes) < 12, sizes


def test_micro_batcher_unit():
    seen = []

    def fn(x):
        seen.append(len(x))
        return x * 2

    async def go():
        b = MicroBatcher(fn, max_batch=8, max_wait_ms=50)
        outs = await asyncio.gather(*[b.submit(np.full((1, 2), i, np.float32)) for i in range(20)])
        big = await b.submit(np.ones((11, 2), np.float32))        # a request larger than max_batch still runs
        await b.stop()
        b.close()
        return outs, big

    outs, big = asyncio.run(go())
    assert [float(o[0, 0]) for o in outs] == [2.0 * i for i in range(20)]   # each caller gets its own rows
    assert seen[:3] == [8, 8, 4] and seen[3] == 11 and big.shape == (11, 2)


def test_errors_in_inference_reach_every_request():
    def fn(x):
        raise RuntimeError("boom")

    async def go():
        b = MicroBatcher(fn, max_wait_ms=20)
        return await asyncio.gather(*[b.submit(np.ones((1, 1))) for _ in range(3)], return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(go()))


def test_cli_serve_builds_the_app_and_runs_uvicorn(exported_run, monkeypatch, capsys):
    import uvicorn

    from transferlab.cli import main

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    assert main(["serve", str(exported_run), "--port", "8123", "--max-upload-mb", "2", "--backend", "torch"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    assert seen["app"].state.max_upload_bytes == 2 * 1024 * 1024
    assert seen["app"].state.predictor.backend == "torch"
    assert "http://127.0.0.1:8123/" in capsys.readouterr().out
    assert main(["serve", str(exported_run), "--max-upload-mb", "0"]) == 2


def test_routes_share_one_serving_state_and_document_their_json(app, client):
    """The routes get the model and settings from ``app.state.serving`` (through Depends); the JSON
    answers are response models, so /openapi.json documents them."""
    from transferlab.serve.state import Serving

    serving = app.state.serving
    assert isinstance(serving, Serving) and serving.topk == 5
    assert serving.predictor is app.state.predictor and serving.batcher is app.state.batcher
    assert serving.max_upload_bytes == app.state.max_upload_bytes == 1024 * 1024
    schema = client.get("/openapi.json").json()
    answers = {path: schema["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
               for path, method in (("/health", "get"), ("/model", "get"), ("/predict", "post"))}
    assert answers == {"/health": {"$ref": "#/components/schemas/Health"},
                       "/model": {"$ref": "#/components/schemas/ModelInfo"},
                       "/predict": {"$ref": "#/components/schemas/PredictResponse"}}
    assert list(schema["components"]["schemas"]["TopClass"]["properties"]) == ["class", "index", "prob"]


def test_the_servers_topk_is_the_default(exported_run, png):
    with TestClient(create_app(exported_run, topk=3)) as c:
        assert c.get("/model").json()["topk"] == 3
        one = {"files": ("a.png", png, "image/png")}
        assert len(c.post("/predict", files=one).json()["predictions"][0]["top"]) == 3
        assert len(c.post("/predict?topk=7", files=one).json()["predictions"][0]["top"]) == 7
