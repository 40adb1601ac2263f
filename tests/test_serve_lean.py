"""The ONNX serving and predict paths carry no trainer: no PyTorch (nor torchvision / timm) in a real
``transferlab serve`` / ``transferlab predict`` process, from start-up through answered requests, and
a server that stays small. The memory figures for MobileNetV2 at 224 px are in bench/results/serve.json
(``bash bench/run_all serve``)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from test_export_fixtures import digits_run, exported_run, write_images  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
# what the lean server and predict must not import: PyTorch, and the training side's scikit-learn, SciPy and
# pandas (iterative-stratification pulled them in at import once: 85 -> 230 MB of RSS)
TRAINER = ("torch", "torchvision", "timm", "sklearn", "scipy", "pandas")
IDLE_RSS_LIMIT_MB = 250


def _python(code: str, timeout: float = 180) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         cwd=REPO, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _loaded(stdout: str) -> set[str]:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("MODULES "))
    return set(line.split()[1:])


def test_serve_command_answers_requests_without_pytorch(exported_run, tmp_path):
    """``transferlab serve`` as the CLI runs it (parser, create_app, FastAPI, fastapi-offline docs), with
    uvicorn.run swapped for a TestClient that loads the page, the docs, and classifies a good and a bad file."""
    img = write_images(tmp_path, n=1)[0]
    stdout = _python(f"""
        import sys, uvicorn
        from fastapi.testclient import TestClient
        from transferlab.cli import main

        def run(app, **kw):
            with TestClient(app) as c:
                for url in ("/", "/docs", "/openapi.json", "/model", "/health", "/favicon.ico", "/static/app.js"):
                    assert c.get(url).status_code == 200, url
                files = [("files", ("a.png", open({str(img)!r}, "rb").read(), "image/png")),
                         ("files", ("b.txt", b"text", "text/plain"))]
                r = c.post("/predict?tta=true", files=files)
                assert r.status_code == 200 and r.json()["backend"] == "onnx", r.text
                print("PREDICTED", r.json()["predictions"][0]["label"])

        uvicorn.run = run
        assert main(["serve", {str(exported_run)!r}]) == 0
        print("MODULES", " ".join(sys.modules))
    """)
    assert "PREDICTED" in stdout
    mods = _loaded(stdout)
    assert "onnxruntime" in mods and "fastapi" in mods
    assert not [m for m in TRAINER if m in mods], [m for m in mods if m.split(".")[0] in TRAINER][:10]


def test_predict_command_without_pytorch(exported_run, tmp_path):
    imgs = write_images(tmp_path / "imgs", n=3)
    stdout = _python(f"""
        import sys
        from transferlab.cli import main
        assert main(["predict", {str(exported_run)!r}, {str(imgs[0].parent)!r}, "--format", "json", "--no-progress"]) == 0
        print("MODULES", " ".join(sys.modules))
    """)
    assert len(json.loads(stdout[:stdout.index("MODULES ")])) == 3
    mods = _loaded(stdout)
    assert "onnxruntime" in mods and not [m for m in TRAINER if m in mods]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc (Linux)")
def test_real_server_process_maps_no_pytorch_and_stays_small(exported_run, tmp_path):
    """A real ``python -m transferlab serve`` process: after start-up and answered requests, no PyTorch
    library is mapped into it (an import of torch maps libtorch*.so), and its RSS stays small."""
    import httpx

    img = write_images(tmp_path, n=1)[0].read_bytes()
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "transferlab", "serve", str(exported_run), "--port", str(port)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "server did not start"
            time.sleep(0.1)
        idle = _rss_mb(proc.pid)
        for _ in range(5):
            r = httpx.post(f"{url}/predict", files=[("files", ("a.png", img, "image/png")),
                                                    ("files", ("bad.png", b"nope", "image/png"))], timeout=30)
            assert r.status_code == 200 and r.json()["errors"] == 1
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        libs = sorted({ln.rsplit("/", 1)[-1] for ln in maps.splitlines() if "/torch/lib/" in ln or "libtorch" in ln})
        assert not libs, f"PyTorch is loaded in the server: {libs}"
        assert "onnxruntime" in maps
        assert idle <= IDLE_RSS_LIMIT_MB, f"idle RSS {idle:.0f} MB > {IDLE_RSS_LIMIT_MB} MB"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
