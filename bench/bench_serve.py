"""Serving benchmark: a real ``transferlab serve`` process on 127.0.0.1 (cold start, memory, no
PyTorch, throughput and latency at concurrency 1, 8 and 32), and ONNX Runtime vs PyTorch eager.

    python bench/bench_serve.py            # ~3 minutes on 2 cores; writes bench/results/serve.json
    python bench/bench_serve.py --quick    # smoke run (fewer requests, shorter engine timing)
    python bench/bench_serve.py --quick --burst 1000 --no-engine   # 1,000 requests at once: errors must be 0

1. Builds a run folder WITHOUT training (MobileNetV2 at 224 px, ``pretrained=False``: weights do not
   change time or memory) and exports it to ONNX, as a user does before serving.
2. Cold start, ``--cold-starts`` times: from ``Popen(["transferlab", "serve", RUN])`` to the first
   answered ``POST /predict`` (the request is retried until the port answers).
3. One server process, measured from outside through ``/proc/PID``: RSS idle (up, no request yet),
   after the first answer, after each load level, after ``--burst`` requests sent at once, and its
   peak (VmHWM); whether a PyTorch library (``libtorch*``, ``libc10``) is mapped into it; the
   event loop and HTTP parser uvicorn picked.
4. Load at concurrency 1, 8 and 32 (httpx AsyncClient, one real photo per request): requests/s,
   p50/p90/p99 latency, errors, and the mean micro-batch the server ran. The client shares the
   server's 2 cores, so these figures understate the server.
5. The model alone: ONNX Runtime vs PyTorch eager, images/s at batch 1, 8 (the server's default
   micro-batch) and 32.

Memory targets (issue 12): idle RSS <= 250 MB, <= 400 MB under load (the peak is held to it).
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

# as transferlab itself does (transferlab/__init__.py), before torch loads libgomp: waiting OpenMP
# threads sleep instead of spinning, which on a busy machine made PyTorch several times slower (and
# here would make the bare loop / eager baseline look worse than it is)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

from transferlab import runfolder

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "serve.json"
SHARED = Path(os.environ.get("TRANSFERLAB_SHARED", HERE.parent.parent / "shared"))
TARGETS_MB = {"idle": 250, "under_load": 400}
LEVELS = {1: 200, 8: 600, 32: 1500}          # concurrency -> requests (full run)
QUICK_LEVELS = {1: 30, 8: 80, 32: 160}


def build_run(root: Path, recipe: str) -> Path:
    import torch

    from transferlab.checkpoint import save_model
    from transferlab.exporter import export
    from transferlab.models import create_model

    torch.manual_seed(0)
    classes = [f"class_{i}" for i in range(10)]
    model = create_model(recipe, num_classes=len(classes), pretrained=False)
    meta = {"recipe": recipe, "classes": classes, "num_classes": len(classes), "head": list(model.head_hidden),
            "dropout": list(model.head_dropout), "data_cfg": model.data_cfg, "epoch": 0, "metrics": {}}
    run = root / recipe
    save_model(run / "best.safetensors", model, meta)
    export(run, format="onnx", verbose=False)
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


# -- the server process, seen from outside -----------------------------------------------------
def proc_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[{"VmRSS": "rss_mb", "VmHWM": "peak_rss_mb"}[key]] = round(int(value.split()[0]) / 1024, 1)
    return out


def torch_libraries(pid: int) -> list[str]:
    """PyTorch shared libraries mapped into the process (empty when PyTorch was never imported)."""
    libs = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        name = line.rsplit(" ", 1)[-1]
        base = os.path.basename(name)
        if base.startswith(("libtorch", "libc10")) or "/torch/lib/" in name:
            libs.add(base)
    return sorted(libs)


class Server:
    """``transferlab serve RUN`` in a subprocess (the installed console script's entry point)."""

    def __init__(self, run: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "transferlab", "serve", str(run), "--host", "127.0.0.1",
                    "--port", str(self.port), *extra]
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait(self, image: tuple[str, bytes] | None, timeout: float = 120) -> float:
        """Seconds from process start until ``/health`` (image None) or ``POST /predict`` answers 200."""
        import httpx

        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read()[-2000:]}")
            try:
                if image is None:
                    r = httpx.get(f"{self.url}/health", timeout=5)
                else:
                    r = httpx.post(f"{self.url}/predict", files={"files": (image[0], image[1], "image/jpeg")}, timeout=30)
                if r.status_code == 200:
                    return time.perf_counter() - self.t0
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"server did not answer within {timeout} s")
            time.sleep(0.02)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class RssSampler(threading.Thread):
    """The largest RSS seen while the load runs (sampled every 20 ms; VmHWM catches what it misses)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.max_mb, self.done = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.max_mb = max(self.max_mb, proc_mb(self.pid)["rss_mb"])
            except (OSError, KeyError):
                return
            time.sleep(0.02)

    def stop(self) -> float:
        self.done.set()
        self.join(timeout=2)
        return self.max_mb


async def load(url: str, image: tuple[str, bytes], requests: int, concurrency: int, warmup: int = 10) -> dict:
    import httpx

    name, data = image
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
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

        await asyncio.gather(*[one() for _ in range(min(warmup, requests))])
        latencies.clear()
        before = (await client.get("/health")).json()
        t0 = time.perf_counter()
        await asyncio.gather(*[one() for _ in range(requests)])
        wall = time.perf_counter() - t0
        after = (await client.get("/health")).json()
    lat = np.array(latencies) * 1000
    calls = (after.get("model_calls") or 0) - (before.get("model_calls") or 0)
    return {"requests": requests, "concurrency": concurrency, "ok": len(latencies),
            "errors": sum(errors.values()), "error_kinds": errors, "seconds": round(wall, 2),
            "requests_per_s": round(len(latencies) / wall, 1),
            "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p90": round(float(np.percentile(lat, 90)), 1),
                           "p99": round(float(np.percentile(lat, 99)), 1), "max": round(float(lat.max()), 1)} if len(lat) else None,
            "server_model_calls": calls,
            "server_mean_batch": round(len(latencies) / calls, 2) if calls else None}


def cold_starts(run: Path, image: tuple[str, bytes], n: int) -> dict:
    times = []
    for _ in range(n):
        server = Server(run)
        try:
            times.append(round(server.wait(image), 2))
        finally:
            server.stop()
    return {"runs": n, "seconds": times, "median_s": round(statistics.median(times), 2)}


def uvicorn_choices() -> dict:
    """What uvicorn's ``loop="auto"`` / ``http="auto"`` pick in this environment."""
    has = lambda m: importlib.util.find_spec(m) is not None  # noqa: E731
    return {"loop": "uvloop" if has("uvloop") else "asyncio", "http": "httptools" if has("httptools") else "h11"}


def serve_bench(run: Path, image: tuple[str, bytes], levels: dict[int, int], burst: int) -> dict:
    server = Server(run)
    pid = server.proc.pid
    try:
        startup = server.wait(None)
        time.sleep(1.0)
        idle = proc_mb(pid)["rss_mb"]
        server.wait(image)
        after_first = proc_mb(pid)["rss_mb"]
        out: dict = {"startup_to_health_s": round(startup, 2),
                     "memory_mb": {"idle": idle, "after_first_answer": after_first},
                     "load": {}}
        for concurrency, requests in levels.items():
            sampler = RssSampler(pid)
            sampler.start()
            row = asyncio.run(load(server.url, image, requests, concurrency))
            row["max_rss_mb_sampled"] = sampler.stop()
            row["rss_mb_after"] = proc_mb(pid)["rss_mb"]
            out["load"][f"c{concurrency}"] = row
            lat = row["latency_ms"] or {}
            print(f"  concurrency {concurrency:>2}: {row['requests_per_s']:6.1f} req/s, p50 {lat.get('p50')} ms, "
                  f"p99 {lat.get('p99')} ms, errors {row['errors']}, mean batch {row['server_mean_batch']}, "
                  f"RSS {row['rss_mb_after']} MB", flush=True)
        sampler = RssSampler(pid)
        sampler.start()
        row = asyncio.run(load(server.url, image, burst, burst, warmup=0))
        sampled = sampler.stop()
        mem = proc_mb(pid)
        out["burst"] = {"requests": burst, "concurrency": burst, "ok": row["ok"], "errors": row["errors"],
                        "error_kinds": row["error_kinds"], "seconds": row["seconds"], "latency_ms": row["latency_ms"]}
        out["memory_mb"].update({f"after_{burst}_concurrent": mem["rss_mb"], "max_sampled_under_load": sampled,
                                 "peak_vmhwm": mem["peak_rss_mb"]})
        out["torch_libraries_mapped"] = torch_libraries(pid)
        out["torch_imported"] = bool(out["torch_libraries_mapped"])
        return out
    finally:
        server.stop()


def torch_backend_memory(run: Path, image: tuple[str, bytes], burst: int) -> dict:
    """For contrast: the same server with ``--backend torch`` (the trainer's stack): RSS idle and after the burst."""
    server = Server(run, "--backend", "torch")
    pid = server.proc.pid
    try:
        server.wait(None)
        time.sleep(1.0)
        idle = proc_mb(pid)["rss_mb"]
        asyncio.run(load(server.url, image, burst, burst, warmup=0))
        mem = proc_mb(pid)
        return {"idle": idle, f"after_{burst}_concurrent": mem["rss_mb"], "peak_vmhwm": mem["peak_rss_mb"],
                "torch_libraries_mapped": len(torch_libraries(pid))}
    finally:
        server.stop()


def engine_bench(run: Path, seconds: float) -> dict:
    """images/s of the model alone, ONNX Runtime vs PyTorch eager, at 1 thread and at all cores."""
    import torch

    from transferlab.predictor import Predictor, default_threads

    out: dict = {}
    torch_threads = torch.get_num_threads()
    eager = Predictor(run, backend="torch")
    size = eager.preprocess.input_size
    for threads in sorted({1, default_threads()}):
        torch.set_num_threads(threads)
        preds = {"onnxruntime": Predictor(run, backend="onnx", threads=threads), "pytorch_eager": eager}
        for batch in (1, 8, 32):
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
    ap.add_argument("--quick", action="store_true", help="fewer requests, shorter engine timing")
    ap.add_argument("--burst", type=int, default=200, help="requests sent at once for the memory figure (default 200)")
    ap.add_argument("--cold-starts", type=int, default=3)
    ap.add_argument("--no-engine", action="store_true", help="skip the ONNX Runtime vs PyTorch timing")
    ap.add_argument("--run", default=None, metavar="RUN",
                    help="serve this exported run instead of building one (e.g. a compare's OUT/runs/ensemble)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    levels = QUICK_LEVELS if args.quick else LEVELS

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        run = Path(args.run) if args.run else build_run(Path(tmp), args.model)
        served_model = (runfolder.read_export_meta(run) or {}).get("recipe", args.model) if args.run else args.model
        has_checkpoint = not args.run or any(runfolder.checkpoint_path(run, w).is_file() for w in ("best", "last"))
        name, data, desc = test_image()
        image = (name, data)
        print(f"{served_model} exported; request image: {desc} ({len(data) / 1e3:.0f} kB)", flush=True)
        cold = cold_starts(run, image, 1 if args.quick else args.cold_starts)
        print(f"  cold start (process start -> first /predict answer): {cold['seconds']} s", flush=True)
        served = serve_bench(run, image, levels, args.burst)
        mem = served["memory_mb"]
        print(f"  RSS: idle {mem['idle']} MB, after first answer {mem['after_first_answer']} MB, after {args.burst} "
              f"concurrent {mem[f'after_{args.burst}_concurrent']} MB, peak {mem['peak_vmhwm']} MB; "
              f"PyTorch in the server: {served['torch_libraries_mapped'] or 'no'}", flush=True)
        burst = served["burst"]
        print(f"  {args.burst} requests at once: {burst['ok']} answered, {burst['errors']} errors {burst['error_kinds']} "
              f"in {burst['seconds']} s", flush=True)
        torch_mem = torch_backend_memory(run, image, args.burst) if has_checkpoint else None  # an ensemble has none
        if torch_mem:
            print(f"  for contrast, --backend torch: RSS idle {torch_mem['idle']} MB, after {args.burst} concurrent "
                  f"{torch_mem[f'after_{args.burst}_concurrent']} MB", flush=True)
        engines = {} if args.no_engine or not has_checkpoint else engine_bench(run, 1.0 if args.quick else 3.0)
        for t, rows in engines.items():
            for b, e in rows.items():
                print(f"  {t} {b}: ONNX Runtime {e['onnxruntime']} img/s, PyTorch eager {e['pytorch_eager']} img/s "
                      f"(x{e['ratio_onnxruntime_over_pytorch']})")

    import onnxruntime

    mem = served["memory_mb"]
    result = {
        "date": date.today().isoformat(),
        "quick": args.quick,
        "model": served_model, "pretrained": bool(args.run), "image": desc,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "onnxruntime": onnxruntime.__version__, "uvicorn": uvicorn_choices(),
                    # other processes on the machine skew every figure: the 1-minute load average
                    "loadavg_1m_before": round(load_before[0], 2), "loadavg_1m_after": round(os.getloadavg()[0], 2)},
        "cold_start": cold,
        "serve": served,
        "torch_backend_memory_mb": torch_mem,
        "targets_mb": TARGETS_MB,
        "targets_met": {"idle": mem["idle"] <= TARGETS_MB["idle"],
                        "under_load": mem["peak_vmhwm"] <= TARGETS_MB["under_load"]},
        "engine_images_per_s": engines,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
