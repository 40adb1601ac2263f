"""Training speed on the CPU: feature caching, trainer overhead, memory format and bf16.

    python bench/bench_train.py            # a few minutes on 2 cores; writes bench/results/train.json

1. Frozen-base training (mobilenet_v2 architecture, random init, 96 px digits): seconds per epoch
   with feature caching (the backbone runs once, the head trains on cached features) and without
   (the frozen backbone runs every epoch), and their ratio.
2. A full fine-tuning step (forward + backward + optimizer step, batch 32) through transferlab's
   Trainer against a bare PyTorch loop on the same batch and model: images/s and their ratio.
3. The same bare step in NCHW fp32, channels_last fp32 and bf16 autocast, to justify the defaults
   (channels_last on for CPU, bf16 off unless asked for).

Timings are the best of a few interleaved repeats (robust to other processes on a shared machine).
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
MODEL, SIZE, BATCH = "mobilenet_v2", 96, 32


def caching(data: Path, runs: Path) -> dict:
    from transferlab.train import train

    out = {}
    for cached in (True, False):
        t0 = time.perf_counter()
        run = train(data, model=MODEL, pretrained=False, input_size=SIZE, freeze="frozen", augment="none",
                    epochs=8, batch_size=BATCH, feature_cache=cached, run_dir=runs, name=f"cache-{cached}",
                    progress=False)
        total = time.perf_counter() - t0
        per_epoch = min(r["seconds"] for r in run.history)
        out["cached" if cached else "uncached"] = {"epoch_seconds": per_epoch, "total_seconds": round(total, 2),
                                                   "epochs": [r["seconds"] for r in run.history]}
    out["epoch_speedup"] = out["uncached"]["epoch_seconds"] / out["cached"]["epoch_seconds"]
    return out


def _batch(channels_last: bool):
    torch.manual_seed(0)
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    y = torch.randint(0, 10, (BATCH,))
    return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y


def _model(channels_last: bool):
    from transferlab.models import create_model

    torch.manual_seed(0)
    m = create_model(MODEL, 10, pretrained=False, input_size=SIZE).train()
    return m.to(memory_format=torch.channels_last) if channels_last else m


def bare_step_rate(channels_last: bool, amp: str = "none", steps: int = 6) -> float:
    """Images/s of a hand-written forward + backward + Adam step loop."""
    m, (x, y) = _model(channels_last), _batch(channels_last)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    best = float("inf")
    for i in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
            out = m(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step warms up oneDNN
            best = min(best, time.perf_counter() - t)
    return BATCH / best


def trainer_step_rate(channels_last: bool, steps: int = 6) -> float:
    """Images/s of the same steps through transferlab's Trainer.train_one_epoch (one step per batch)."""
    from torch.utils.data import DataLoader, TensorDataset

    from transferlab.train.loop import Trainer
    from transferlab.train.schedule import build_optimizer

    m, (x, y) = _model(channels_last), _batch(False)
    loader = DataLoader(TensorDataset(x.repeat(1, 1, 1, 1), y), batch_size=BATCH, shuffle=False)
    opt = build_optimizer(m, "adam", 1e-3)
    tr = Trainer(m, m, loader, [], optimizer=opt, channels_last=channels_last, progress=False, log=lambda s: None)
    tr.train_one_epoch(1)  # warm-up
    best = float("inf")
    for e in range(steps):
        t = time.perf_counter()
        tr.train_one_epoch(e + 2)
        best = min(best, time.perf_counter() - t)
    return BATCH / best


def main() -> int:
    from transferlab.data.sample import write_digits

    threads = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(threads)
    results: dict = {"machine": {"cpu_count": os.cpu_count(), "threads": threads, "processor": platform.processor(),
                                 "torch": torch.__version__},
                     "model": MODEL, "input_size": SIZE, "batch_size": BATCH}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("TRANSFERLAB_CACHE", str(Path(tmp) / "cache"))
        data = write_digits(Path(tmp) / "digits", per_class=30, size=32)
        print(f"1. frozen {MODEL} at {SIZE}px, 240 train + 60 val images, 8 epochs ...", flush=True)
        c = caching(data, Path(tmp) / "runs")
    results["feature_caching"] = c
    print(f"   per epoch: cached {c['cached']['epoch_seconds']:.2f}s, uncached {c['uncached']['epoch_seconds']:.2f}s "
          f"-> {c['epoch_speedup']:.1f}x faster; whole run incl. caching {c['cached']['total_seconds']:.1f}s vs "
          f"{c['uncached']['total_seconds']:.1f}s", flush=True)

    print(f"2. full fine-tune step, batch {BATCH}: Trainer vs bare PyTorch ...", flush=True)
    rates: dict[str, list[float]] = {}
    for _ in range(2):  # interleaved repeats
        for key, fn in (("bare_nchw_fp32", lambda: bare_step_rate(False)),
                        ("bare_channels_last_fp32", lambda: bare_step_rate(True)),
                        ("trainer_channels_last_fp32", lambda: trainer_step_rate(True)),
                        ("trainer_nchw_fp32", lambda: trainer_step_rate(False)),
                        ("bare_nchw_bf16", lambda: bare_step_rate(False, "bf16")),
                        ("bare_channels_last_bf16", lambda: bare_step_rate(True, "bf16"))):
            rates.setdefault(key, []).append(fn())
    best = {k: max(v) for k, v in rates.items()}
    results["step_images_per_s"] = {k: round(v, 1) for k, v in best.items()}
    results["trainer_vs_bare_same_format"] = best["trainer_channels_last_fp32"] / best["bare_channels_last_fp32"]
    results["trainer_default_vs_bare_default"] = best["trainer_channels_last_fp32"] / best["bare_nchw_fp32"]
    results["channels_last_vs_nchw"] = best["bare_channels_last_fp32"] / best["bare_nchw_fp32"]
    results["bf16_vs_fp32_channels_last"] = best["bare_channels_last_bf16"] / best["bare_channels_last_fp32"]
    for k, v in best.items():
        print(f"   {k:28s} {v:7.1f} img/s", flush=True)
    print(f"   trainer / bare (same channels_last batch): {results['trainer_vs_bare_same_format']:.2f}x; "
          f"trainer (defaults) / bare NCHW: {results['trainer_default_vs_bare_default']:.2f}x", flush=True)
    print(f"3. channels_last / NCHW: {results['channels_last_vs_nchw']:.2f}x; "
          f"bf16 / fp32 (channels_last): {results['bf16_vs_fp32_channels_last']:.2f}x", flush=True)
    out = HERE / "results" / "train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
