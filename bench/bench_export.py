"""Export formats side by side: file size, images/s at batch 1 and 32, and top-1 agreement with PyTorch
on real test photos, per format (PyTorch, ONNX Runtime fp32 and int8, OpenVINO fp32 and int8, Core ML).

    python bench/bench_export.py                       # trains a small cars model first (about 6 min)
    python bench/bench_export.py --run RUN --data-split test

The run: ``efficientnet_lite0`` on the cars, backbone frozen, head 3 epochs (or ``--run`` any run
folder). Every format is exported by ``transferlab export`` (with its own parity check), then run by
the backend ``predict`` uses, with ``--threads`` threads (default 2, this machine's cores), on the
run's test split: preprocessing is done once, outside the timing; images/s counts the model call
only (a warm-up call first). Core ML does not run on Linux: size only. Results: bench/results/export.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import shared

import transferlab as tl
from transferlab import runfolder
from transferlab.exporter import run_splits
from transferlab.predictor import Predictor

RESULTS = Path(__file__).resolve().parent / "results" / "export.json"
BACKENDS = {"torch": None, "onnx": ("onnx", None), "int8": ("onnx", "int8"), "openvino": ("openvino", None),
            "openvino-int8": ("openvino", "int8")}


def file_size(run: Path, backend: str) -> int:
    out = runfolder.export_dir(run)
    if backend == "torch":
        return runfolder.resolve_checkpoint(run).stat().st_size
    name = {"onnx": runfolder.ONNX_NAME, "int8": runfolder.INT8_NAME, "openvino": runfolder.OPENVINO_NAME,
            "openvino-int8": runfolder.OPENVINO_INT8_NAME}[backend]
    size = (out / name).stat().st_size
    if backend.startswith("openvino"):
        size += (out / name).with_suffix(".bin").stat().st_size
    return size


def images_per_second(p: Predictor, batch: np.ndarray, size: int, repeats: int) -> float:
    x = np.ascontiguousarray(batch[:size])
    p.logits(x)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        p.logits(x)
    return repeats * len(x) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="a run folder (default: train one on the cars)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            run = Path(args.run)
        else:
            t0 = time.perf_counter()
            run = tl.train(str(shared() / "data" / "cars"), model="efficientnet_lite0", freeze="frozen", epochs=3,
                           fine_tune=0, run_dir=tmp, progress=False).dir
            print(f"trained {run} in {time.perf_counter() - t0:.0f} s")
        for fmt, quantize in [v for v in BACKENDS.values() if v] + [("coreml", None)]:
            tl.export(run, format=fmt, quantize=quantize, verbose=False)
        splits = run_splits(run)
        samples = (splits.test or splits.val) if splits is not None else []
        torch_p = Predictor(run, backend="torch", threads=args.threads, batch_size=32)
        images = np.stack([torch_p.preprocess.load(path) for path, _ in samples])
        reference = torch_p.predict_arrays(images).argmax(1)
        rows = []
        for backend in BACKENDS:
            p = torch_p if backend == "torch" else Predictor(run, backend=backend, threads=args.threads, batch_size=32)
            top1 = p.predict_arrays(images).argmax(1)
            row = {"format": backend, "size_mb": round(file_size(run, backend) / 1e6, 2),
                   "images_per_s_batch1": round(images_per_second(p, images, 1, 40), 1),
                   "images_per_s_batch32": round(images_per_second(p, images, 32, 4), 1),
                   "top1_agreement": round(float((top1 == reference).mean()), 4),
                   "accuracy": round(float((top1 == np.array([y for _, y in samples])).mean()), 4)}
            rows.append(row)
            print(f"{backend:14s} {row['size_mb']:7.2f} MB  batch 1 {row['images_per_s_batch1']:7.1f} img/s  "
                  f"batch 32 {row['images_per_s_batch32']:7.1f} img/s  top-1 agreement {row['top1_agreement']:.2%}  "
                  f"accuracy {row['accuracy']:.4f}", flush=True)
        meta = runfolder.read_export_meta(run) or {}
        coreml = meta.get("exports", {}).get("coreml", {})
        rows.append({"format": "coreml", "size_mb": round(coreml.get("size_bytes", 0) / 1e6, 2),
                     "images_per_s_batch1": None, "images_per_s_batch32": None, "top1_agreement": None,
                     "accuracy": None, "note": coreml.get("validated")})
        print(f"coreml         {rows[-1]['size_mb']:7.2f} MB  {coreml.get('validated')}")
        recipe = meta.get("recipe")
    out = Path(args.out)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "recipe": recipe, "threads": args.threads,
                               "images": len(samples), "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
