"""Serving benchmark: a bounded load test of ``transferlab serve`` on 127.0.0.1, and ONNX Runtime
vs PyTorch eager throughput.

    python bench/bench_serve.py                          # 2,000 requests at concurrency 32
    python bench/bench_serve.py --requests 300 --quick   # smoke run

1. Builds a run folder WITHOUT training (a realistic architecture, ``pretrained=False``: weights
   do not change the timing), exports it to ONNX, starts ``transferlab serve`` in a subprocess on
   a free 127.0.0.1 port, and sends ``--requests`` POST /predict requests (one real photo each,
   httpx AsyncClient, ``--concurrency`` in flight): requests/s, p50/p99 latency, errors, and the
   mean micro-batch size the server saw. The client runs on the same machine (shares the cores).
2. Times the model alone: ONNX Runtime vs PyTorch eager, images/s at batch 1 and 32.

Writes bench/results/serve.json.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "serve.json"
SHARED = Path(os.environ.get("TRANSFERLAB_SHARED", HERE.parent.parent / "shared"))


def build_run(root: Path, recipe: str) -> Path:
    import torch

    from transferlab.checkpoint import save_model
    from transferlab.export import export
    from transferlab.models import create_model

    torch.manual_seed(0)
    classes = [f"class_{i}" for i in range(10)]
    model = create_model(recipe, num_classes=len(classes), pretrained=False)
    meta = {"recipe": recipe, "classes": classes, "num_classes": len(classes), "head": list(model.head_hidden),
            "dropout": list(model.head_dropout), "data_cfg": model.data_cfg, "epoch": 0, "metrics": {}}
    run = root / recipe
    save_model(run / "best.safetensors", model, meta)
    export(run, format="onnx", verbose=True)
    return run


def test_image() -> tuple[str, bytes, str]:
    photo = SHARED / "data" / "photos" / "parrot.jpg"
    if photo.is_file():
        return photo.name, photo.read_bytes(), "real photo " + photo.name
    from PIL import Image

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return "generated.jpg", buf.getvalue(), "generated 640x480 JPEG"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load_test(url: str, image: tuple[str, bytes], requests: int, concurrency: int) -> dict:
    import httpx

    name, data = image
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def one() -> None:
            async with sem:
                t0 = time.perf_counter()
                try:
                    r = await client.post("/predict", files={"files": (name, data, "image/jpeg")})
                    if r.status_code != 200:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                        return
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    return
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*[one() for _ in range(min(20, requests))])       # warm-up
        latencies.clear()
        t0 = time.perf_counter()
        await asyncio.gather(*[one() for _ in range(requests)])
        wall = time.perf_counter() - t0
        health = (await client.get("/health")).json()
    lat = np.array(latencies) * 1000
    return {"requests": requests, "concurrency": concurrency, "ok": len(latencies),
            "errors": sum(errors.values()), "error_kinds": errors, "seconds": round(wall, 2),
            "requests_per_s": round(len(latencies) / wall, 1),
            "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p90": round(float(np.percentile(lat, 90)), 1),
                           "p99": round(float(np.percentile(lat, 99)), 1), "max": round(float(lat.max()), 1)} if len(lat) else None,
            "server_mean_batch": health.get("mean_batch"), "server_model_calls": health.get("model_calls")}


def serve_bench(run: Path, image, requests: int, concurrency: int) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "transferlab", "serve", str(run), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        import httpx

        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError("server did not start within 120 s")
            time.sleep(0.2)
        backend = httpx.get(f"{url}/model").json()["backend"]
        result = asyncio.run(load_test(url, image, requests, concurrency))
        result["backend"] = backend
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def engine_bench(run: Path, seconds: float) -> dict:
    """images/s of the model alone, ONNX Runtime vs PyTorch eager, at 1 thread and at all cores.

    Both at 1 thread is the like-for-like figure on a busy machine: PyTorch's OpenMP threads
    degrade badly when the cores are oversubscribed (see loadavg in the results)."""
    import torch

    from transferlab.predict import Predictor, default_threads

    out: dict = {}
    torch_threads = torch.get_num_threads()
    eager = Predictor(run, backend="torch")
    size = eager.preprocess.input_size
    for threads in sorted({1, default_threads()}):
        torch.set_num_threads(threads)
        preds = {"onnxruntime": Predictor(run, backend="onnx", threads=threads), "pytorch_eager": eager}
        for batch in (1, 32):
            x = np.random.default_rng(0).normal(size=(batch, 3, size, size)).astype(np.float32)
            row = out.setdefault(f"threads_{threads}", {}).setdefault(f"batch_{batch}", {})
            for name, p in preds.items():
                p.logits(x)  # warm-up
                n, t0 = 0, time.perf_counter()
                while n == 0 or time.perf_counter() - t0 < seconds:
                    p.logits(x)
                    n += 1
                row[name] = round(n * batch / (time.perf_counter() - t0), 1)
            row["ratio_onnxruntime_over_pytorch"] = round(row["onnxruntime"] / row["pytorch_eager"], 2)
    torch.set_num_threads(torch_threads)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v2", help="recipe (default mobilenet_v2)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="shorter engine timing")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        run = build_run(Path(tmp), args.model)
        name, data, desc = test_image()
        print(f"load test: {args.requests} requests, concurrency {args.concurrency}, {desc} ({len(data) / 1e3:.0f} kB)")
        served = serve_bench(run, (name, data), args.requests, args.concurrency)
        lat = served["latency_ms"] or {}
        print(f"  {served['requests_per_s']} req/s, p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, "
              f"errors {served['errors']}, mean server batch {served['server_mean_batch']} ({served['backend']})")
        engines = engine_bench(run, 1.0 if args.quick else 3.0)
        for t, rows in engines.items():
            for b, e in rows.items():
                print(f"  {t} {b}: ONNX Runtime {e['onnxruntime']} img/s, PyTorch eager {e['pytorch_eager']} img/s "
                      f"(x{e['ratio_onnxruntime_over_pytorch']})")

    import onnxruntime
    import torch

    result = {
        "date": date.today().isoformat(),
        "model": args.model, "pretrained": False, "image": desc,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                    # other processes on the machine skew every figure: the 1-minute load average
                    "loadavg_1m_before": round(load_before[0], 2), "loadavg_1m_after": round(os.getloadavg()[0], 2)},
        "serve": served,
        "engine_images_per_s": engines,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
