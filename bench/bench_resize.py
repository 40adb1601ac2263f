"""Any aspect ratio: test accuracy of ``--resize crop`` (the default centre crop) against ``pad``
(letterbox: the whole photo, aspect kept) and ``stretch`` on a set of wide photos.

    python bench/bench_resize.py                  # the cars, 3 modes (about 15 min on 2 cores)
    python bench/bench_resize.py --data flowers --model mobilenet_v2

Each mode trains the same recipe with the same options and seed (``efficientnet_lite0``, the backbone
frozen, the head trained for ``--epochs`` epochs on cached features: the resize mode changes every
pixel the backbone sees, in training and evaluation alike), then evaluates the untouched test split.
Rows: accuracy, macro F1, training seconds. ``inspect`` reports the photos' aspect ratios and the
share of each photo a centre crop cuts away. Results: bench/results/resize.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from _common import shared

import transferlab as tl
from transferlab.choices import RESIZE_MODES
from transferlab.data.report import inspect_data

RESULTS = Path(__file__).resolve().parent / "results" / "resize.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="cars", help="a ../shared/data set with train/ and test/ (default cars)")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--modes", nargs="+", choices=RESIZE_MODES, default=list(RESIZE_MODES))
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    data = shared() / "data" / args.data
    report = inspect_data(data, progress=False)
    aspect = (report.get("image_size") or {}).get("aspect")
    print(f"{args.data}: aspect ratios {aspect}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            per_seed = []
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                run = tl.train(str(data), model=args.model, freeze="frozen", epochs=args.epochs, fine_tune=0,
                               resize=mode, seed=seed, run_dir=tmp, name=f"{mode}-{seed}", progress=False)
                seconds = time.perf_counter() - t0
                m = tl.evaluate(run.dir, split="test", plots=False, progress=False)
                per_seed.append({"seed": seed, "accuracy": m["accuracy"], "macro_f1": m["macro_avg"]["f1"],
                                 "train_seconds": round(seconds, 1)})
            row = {"resize": mode, **{k: round(statistics.mean(s[k] for s in per_seed), 4)
                                      for k in ("accuracy", "macro_f1", "train_seconds")}, "seeds": per_seed}
            rows.append(row)
            print(f"--resize {mode:8s} test accuracy {row['accuracy']:.4f}  macro F1 {row['macro_f1']:.4f}  "
                  f"({row['train_seconds']:.0f} s)", flush=True)
    base = next((r for r in rows if r["resize"] == "crop"), None)
    if base:
        for r in rows:
            r["accuracy_vs_crop"] = round(r["accuracy"] - base["accuracy"], 4)
    out = Path(args.out)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "data": args.data, "model": args.model,
                               "protocol": f"backbone frozen, head {args.epochs} epochs on cached features, "
                                           f"val 20% of train/, seeds 0..{args.seeds - 1}, test split",
                               "aspect": aspect, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
