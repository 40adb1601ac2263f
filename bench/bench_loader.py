"""Data loading speed, the figures of the README's data section; writes bench/results/loader.json.

    python bench/bench_loader.py            # about 2 minutes on 2 cores
    python bench/bench_loader.py --quick    # smoke run (fewer repeats)

On the digits sample (scikit-learn's 1,797 real handwritten digits written as 32 px PNGs; its 80%
training split, 1,438 images), batch 64, passes of ``make_loader``:

1. 32 px, no augmentation, 0 workers, the whole split: decoding every file (no cache) vs reading the
   uint8 image cache;
2. 224 px with ``light`` augmentation, from the cache, the first 512 images: in-process (0 workers)
   vs 2 worker processes (images/s);
3. the cost of starting 2 workers for a pass: a one-batch pass with 2 workers minus one with 0.

Each figure is the best of a few repeats (robust to other processes on a shared machine); the load
average at the start is recorded beside them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from transferlab.data import ImageDataset, build_transform, data_config, load_data, make_loader
from transferlab.data.sample import write_digits

RESULTS = Path(__file__).resolve().parent / "results" / "loader.json"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BATCH = 64
LARGE_IMAGES = 512  # 224 px images per pass (in-process augmentation at 224 px is slow on a busy machine)


def epoch_seconds(dataset, workers: int, repeats: int, batches: int | None = None) -> float:
    best = float("inf")
    for _ in range(repeats):
        loader = make_loader(dataset, batch_size=BATCH, shuffle=True, seed=0, workers=workers)
        t0 = time.perf_counter()
        for i, (x, _) in enumerate(loader, 1):
            x.sum()  # touch the batch
            if batches and i >= batches:
                break
        best = min(best, time.perf_counter() - t0)
    return round(best, 3)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one repeat each")
    args = p.parse_args(argv)
    repeats = 1 if args.quick else 3
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        digits = write_digits(Path(tmp) / "digits")
        train = load_data(digits, val_ratio=0.2, seed=0, progress=False).train
        cache = Path(tmp) / "cache"

        small = data_config(32, MEAN, STD)
        plain = build_transform(small, train=False)
        uncached = ImageDataset(train, small, plain)
        t0 = time.perf_counter()
        cached = ImageDataset(train, small, plain, cache_dir=cache)
        build_small = time.perf_counter() - t0
        decode = epoch_seconds(uncached, 0, repeats)
        from_cache = epoch_seconds(cached, 0, repeats)
        print(f"32 px epoch: decoding {decode:.3f} s, from the cache {from_cache:.3f} s")

        large = data_config(224, MEAN, STD)
        t0 = time.perf_counter()
        subset = train[:LARGE_IMAGES]
        aug = ImageDataset(subset, large, build_transform(large, train=True, augment="light"), cache_dir=cache)
        build_large = time.perf_counter() - t0
        in_process = round(len(subset) / epoch_seconds(aug, 0, repeats), 1)
        two_workers = round(len(subset) / epoch_seconds(aug, 2, repeats), 1)
        print(f"224 px light-augmented images from the cache: 0 workers {in_process} img/s, 2 workers {two_workers} img/s")
        start_cost = round(epoch_seconds(cached, 2, repeats, batches=1) - epoch_seconds(cached, 0, repeats, batches=1), 3)
        print(f"starting 2 workers for a pass: {start_cost:.3f} s")

    result = {
        "date": date.today().isoformat(),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "load_average_at_start": load_average},
        "data": f"digits sample, 80% training split: {len(train)} images, batch {BATCH}, one pass",
        "repeats": repeats,
        "epoch_32px": {"decoding_s": decode, "from_cache_s": from_cache,
                       "cache_speedup": round(decode / from_cache, 2), "cache_build_s": round(build_small, 2)},
        "light_224px_from_cache": {"images": len(subset), "workers_0_images_per_s": in_process,
                                   "workers_2_images_per_s": two_workers,
                                   "workers_speedup": round(two_workers / in_process, 2),
                                   "cache_build_s": round(build_large, 2)},
        "worker_start_s": start_cost,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
