"""Confidence you can trust: temperature scaling (test ECE before/after) and "none of these" (photos of
another data set rejected, in-distribution test photos accepted), per protocol.

    python bench/bench_confidence.py                       # trains what is missing (about 30 min on 2 cores)
    python bench/bench_confidence.py --only cars --runs DIR

Each protocol trains a recipe on a ../shared set (seed 0, 10% of the training folder held out for
validation), or reuses a run folder of ``--runs`` trained with the same options and split. Then
``evaluate`` on the validation split fits the temperature and chooses the "unknown" threshold (the
calibrated top probability accepting 95% of the validation photos), and ``evaluate --split test --ood
OTHER`` reports on the untouched test split: accuracy, ECE before/after, the share of test photos
accepted, and for the photos of ``OTHER`` (classes the model never saw) the AUROC of each score and
the share rejected. Targets (issue 22): ECE <= 0.03 after scaling; a cars model rejects >= 80% of the
flower photos while accepting >= 95% of the cars test photos. Results: bench/results/confidence.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

from _common import shared

import transferlab as tl
from transferlab import runfolder
from transferlab.data import load_data

RESULTS = Path(__file__).resolve().parent / "results" / "confidence.json"
VAL_RATIO, SEED = 0.1, 0
PROTOCOLS = {
    "cars": {"data": "cars", "model": "efficientnet_lite0", "options": {}, "ood": "flowers",
             "targets": {"ece_after": 0.03, "ood_rejected": 0.80, "test_accepted": 0.95}},
    "cifar10-subset": {"data": "cifar10-subset", "model": "cnn_bn", "options": {"epochs": 30}, "ood": "flowers",
                       "targets": {"ece_after": 0.03}},
}


def reusable(run: Path, data: Path, proto: dict) -> bool:
    """True when ``run`` was trained on ``data`` with the protocol's recipe, options and split."""
    c = runfolder.read_config(run)
    if not (run / runfolder.BEST).is_file() or not c:
        return False
    same = (c.get("model") == proto["model"] and Path(str(c.get("data"))) == data
            and float(c.get("val_ratio", -1)) == VAL_RATIO and int(c.get("split_seed", c.get("seed", -1))) == SEED)
    return same and all(c.get(k) == v for k, v in proto["options"].items())


def measure(name: str, proto: dict, data_root: Path, runs: Path) -> dict:
    data = data_root / proto["data"]
    run = runs / f"{name}-{proto['model']}"
    row: dict = {"name": name, "data": proto["data"], "model": proto["model"], "options": proto["options"],
                 "ood_data": proto["ood"], "val_ratio": VAL_RATIO, "seed": SEED, "targets": proto["targets"]}
    if reusable(run, data, proto):
        row["trained"] = f"reused {run} (same recipe, options and split)"
    else:
        t0 = time.perf_counter()
        splits = load_data(data, val_ratio=VAL_RATIO, seed=SEED, progress=False)
        tl.train(splits, model=proto["model"], seed=SEED, run_dir=str(runs), name=run.name, progress=False,
                 overwrite=True, **proto["options"])
        row["trained"] = f"trained in {time.perf_counter() - t0:.0f} s"
    t0 = time.perf_counter()
    val = tl.evaluate(run, split="val", plots=False, progress=False)
    test = tl.evaluate(run, split="test", plots=False, progress=False, ood=data_root / proto["ood"])
    cal, rej, o = test["calibration"], test["rejection"], test["ood"]
    row.update({
        "eval_seconds": round(time.perf_counter() - t0, 1),
        "test_images": test["num_samples"], "test_accuracy": round(test["accuracy"], 4),
        "temperature": round(cal["temperature"], 4), "val_images": val["num_samples"],
        "test_ece_before": round(cal["ece_before"], 4), "test_ece_after": round(cal["ece_after"], 4),
        "score": rej["score"], "accept_rate": rej["accept_rate"], "threshold": round(rej["threshold"], 4),
        "val_accepted": round(val["rejection"]["accepted"], 4),
        "test_accepted": round(rej["accepted"], 4), "test_accuracy_accepted": round(rej["accuracy_accepted"], 4),
        "ood_images": o["images"], "ood_rejected": round(o["rejected"], 4),
        "ood_auroc": {k: round(v, 4) for k, v in o["auroc"].items()},
    })
    t = proto["targets"]
    row["met"] = {"ece_after": row["test_ece_after"] <= t["ece_after"],
                  **({"ood_rejected": row["ood_rejected"] >= t["ood_rejected"]} if "ood_rejected" in t else {}),
                  **({"test_accepted": row["test_accepted"] >= t["test_accepted"]} if "test_accepted" in t else {})}
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=sorted(PROTOCOLS), default=None, help="protocols to run (default all)")
    ap.add_argument("--runs", default="/tmp/transferlab-bench-confidence/runs",
                    help="run folders: reused when trained with the protocol's options and split, else written")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    data_root = shared() / "data"
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    rows = {r["name"]: r for r in results.get("rows", [])}
    for name in args.only or list(PROTOCOLS):
        t0 = time.perf_counter()
        row = measure(name, PROTOCOLS[name], data_root, Path(args.runs))
        row["date"] = time.strftime("%Y-%m-%d")
        row["wall_seconds"] = round(time.perf_counter() - t0, 1)
        rows[name] = row
        print(f"{name} ({row['model']}, {row['trained']}): test accuracy {row['test_accuracy']:.4f}; "
              f"T {row['temperature']:.3f}, test ECE {row['test_ece_before']:.4f} -> {row['test_ece_after']:.4f}; "
              f"'unknown' below {row['threshold']:.3f}: test accepted {row['test_accepted']:.1%} "
              f"(accuracy on those {row['test_accuracy_accepted']:.4f}); {row['ood_data']} rejected "
              f"{row['ood_rejected']:.1%} of {row['ood_images']}, AUROC "
              + ", ".join(f"{k} {v:.3f}" for k, v in row["ood_auroc"].items())
              + "; targets " + ", ".join(f"{k} {'met' if ok else 'MISSED'}" for k, ok in row["met"].items()), flush=True)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    results = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
               "peak_rss_gb_last_invocation": round(peak_gb, 2), "rows": [rows[k] for k in PROTOCOLS if k in rows]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"peak RSS {peak_gb:.2f} GB; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
