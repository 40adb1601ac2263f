"""Accuracy benchmarks: every protocol on the real photos of ../shared/data, beside the seeds' numbers.

    python bench/bench_accuracy.py                               # every protocol (about 2.5 hours here)
    python bench/bench_accuracy.py --protocol cifar10-transfer   # one protocol (repeatable)
    python bench/bench_accuracy.py --quick                       # a fifth of the epochs (smoke run)
    python bench/bench_accuracy.py --table                       # the bench/README.md table from the results

Each model is trained with its recipe's defaults through the public API (``transferlab.train``,
input size chosen for the data), then evaluated on the protocol's test split (``tta``: averaged
with the mirrored images, reported beside the plain figure). Rows give test accuracy, macro F1,
training wall time (feature caching included), training images/s, the seed notebook's number and
the target. Where a protocol trains several pretrained models, one more row averages their TTA
probabilities (an ensemble: no extra training, the models' times added). A tenth of the training
files is held out for validation (early stopping, the best checkpoint). Each protocol must finish within 30 minutes on the project's 2-core machine; its
wall time is printed. Results: bench/results/accuracy.json (the protocols not run keep their rows).

Protocols (data under ../shared/data, see its README):
- cifar10-scratch:  the from-scratch ladder on the CIFAR-10 subset (10,000 train / 2,000 test, 32 px).
                    Seeds 0.580 / 0.630 / 0.656; target: every rung above its seed, best >= 0.75.
- cifar10-transfer: pretrained backbones, fine-tuned upper blocks, on the same subset. Seed
                    MobileNetV2 0.8135; target >= 0.90.
- cars:             7 car models (1,890 train / 469 test web photos). Seeds DenseNet 0.94 (Xception
                    0.98 on the full set); target >= 0.95. Also reported without the test files that
                    are byte-identical to a training file (leakage kept in the data on purpose).
- cars-scratch:     a ResNet from scratch on the cars. Seed ResNet-34 0.88.
- fingers:          hand signs 0-5 (960 train / 240 test, 128 px grayscale). Seed 0.991; target >= 0.995.
- flowers:          5 flower classes (4,317 photos, no split): a fixed stratified 20% test split
                    (seed 0), the rest train + validation. No seed; target >= 0.93.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "accuracy.json"
SHARED = Path(os.environ.get("TRANSFERLAB_SHARED", HERE.parent.parent / "shared"))
LIMIT_S = 30 * 60
VAL_RATIO = 0.1  # of the training files, for validation (early stopping, the best checkpoint)

# protocol -> data folder, [(recipe, seed number, train options)], target (text, best accuracy needed)
PROTOCOLS: dict[str, dict] = {
    "cifar10-scratch": {
        "data": "cifar10-subset",
        # 30 epochs each (the recipes' default is 20, sized for the built-in sample's default job):
        # ~3.5 minutes per rung and ~12 for the ResNet here, so the protocol fits its 30 minutes
        "models": [("cnn_base", 0.580, {"epochs": 30}), ("cnn_aug", 0.630, {"epochs": 30}),
                   ("cnn_bn", 0.656, {"epochs": 30}), ("cnn_dropout", 0.656, {"epochs": 30}),
                   ("resnet_scratch", None, {"epochs": 30})],
        "target": ("every rung above its seed number; best scratch >= 0.75", 0.75),
    },
    "cifar10-transfer": {
        "data": "cifar10-subset",
        "models": [("efficientnet_lite0", 0.8135, {}), ("efficientnet_lite2", 0.8135, {})],
        "target": ("MobileNetV2 0.8135 -> >= 0.90", 0.90),
    },
    "cars": {
        "data": "cars",
        "models": [("efficientnet_lite2", 0.94, {})],
        "target": ("DenseNet 0.94 (Xception 0.98 on the full set) -> >= 0.95", 0.95),
    },
    "cars-scratch": {
        "data": "cars",
        # the 128 px ResNet runs ~200-220 img/s on random-resized crops here (~8 s an epoch): 180 epochs
        # fill most of the protocol's 30 minutes
        "models": [("resnet_scratch", 0.88, {"epochs": 180, "augment": "light"})],
        "target": ("ResNet-34 0.88 -> >= 0.88, or the figure reached in 30 minutes", 0.88),
    },
    "fingers": {
        "data": "fingers",
        "models": [("cnn_bn", 0.991, {}), ("efficientnet_lite0", 0.991, {})],
        "target": ("0.991 -> >= 0.995", 0.995),
    },
    "flowers": {
        "data": "flowers",
        # Lite0 (at 224 px for these ~240 px photos): Lite2 at 260 px costs ~2.3x and would not fit 30 minutes
        "models": [("efficientnet_lite0", None, {})],
        "target": ("none -> >= 0.93", 0.93),
    },
}


def flowers_csv(root: Path, work: Path) -> Path:
    """A dataset CSV with a fixed stratified 20% test split (seed 0) of the flowers; the rest is train
    (from which training draws its validation split)."""
    from transferlab.data.split import stratified_split

    pool = {d.name: [str(p) for p in sorted(d.iterdir()) if p.is_file()] for d in sorted(root.iterdir()) if d.is_dir()}
    train, test = stratified_split(pool, 0.2, seed=0, notes=[])
    out = work / "flowers-split.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for split, groups in (("train", train), ("test", test)):
            for label, paths in groups.items():
                w.writerows([p, label, split] for p in paths)
    return out


def _round(v, digits: int = 4):
    return None if v is None else round(float(v), digits)


def accuracy_without_leaks(run_dir: Path, splits) -> tuple[float, int] | None:
    """Test accuracy over the test files that have no byte-identical copy among the training files."""
    train_hashes = {splits.info[p].sha1 for p, _ in splits.train + splits.val if p in splits.info}
    clean = {p for p, _ in splits.test if p in splits.info and splits.info[p].sha1 not in train_hashes}
    with open(run_dir / "eval-test" / "predictions.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["path"] in clean]
    if not rows:
        return None
    return sum(r["true"] == r["predicted"] for r in rows) / len(rows), len(rows)


def ensemble_row(name: str, rows: list[dict], work: Path) -> dict | None:
    """The protocol's pretrained models together: each test image's TTA probabilities averaged over
    the models (no extra training; the models' training times add up)."""
    import numpy as np

    from transferlab.evaluation import compute_metrics

    ok = [r for r in rows if r.get("status") == "ok" and r["model"].startswith(("efficientnet", "mobilenet"))]
    if len(ok) < 2:
        return None
    tables = []
    for r in ok:
        with open(work / name / r["model"] / "eval-test-tta" / "predictions.csv", newline="") as f:
            tables.append({row["path"]: row for row in csv.DictReader(f)})
    paths = sorted(tables[0])
    classes = [k[len("prob_"):] for k in next(iter(tables[0].values())) if k.startswith("prob_")]
    probs = np.mean([[[float(t[p][f"prob_{c}"]) for c in classes] for p in paths] for t in tables], axis=0)
    metrics = compute_metrics([classes.index(tables[0][p]["true"]) for p in paths], probs, classes)
    acc, f1 = metrics["accuracy"], metrics["macro_avg"]["f1"]
    seconds = sum(r["train_seconds"] for r in ok)
    return {"protocol": name, "model": "ensemble(" + "+".join(r["model"] for r in ok) + ")", "status": "ok",
            "split": "test", "test_images": len(paths), "accuracy": round(acc, 4), "accuracy_tta": round(acc, 4),
            "f1_macro": round(f1, 4), "f1_macro_tta": round(f1, 4),
            "seed_accuracy": ok[0]["seed_accuracy"],
            "beats_seed": None if ok[0]["seed_accuracy"] is None else acc > ok[0]["seed_accuracy"],
            "train_seconds": round(seconds, 1), "note": "TTA probabilities of the models above, averaged"}


def run_protocol(name: str, quick: bool, work: Path) -> tuple[list[dict], float]:
    import transferlab as tl
    from transferlab.data import load_data

    spec = PROTOCOLS[name]
    root = SHARED / "data" / spec["data"]
    if not root.is_dir():
        print(f"[{name}] {root} not present: skipped")
        return [{"protocol": name, "model": m, "seed_accuracy": s, "status": "dataset not present"}
                for m, s, _ in spec["models"]], 0.0
    data = flowers_csv(root, work) if name == "flowers" else root
    splits = load_data(data, val_ratio=VAL_RATIO, seed=0, progress=False)
    started = time.perf_counter()
    rows: list[dict] = []
    for recipe, seed_acc, options in spec["models"]:
        options = dict(options)
        if quick:
            options.update(epochs=2, fine_tune=1) if recipe.startswith(("efficientnet", "mobilenet")) else \
                options.update(epochs=3)
        print(f"[{name}] {recipe} {options}", flush=True)
        t0 = time.perf_counter()
        try:
            run = tl.train(splits, model=recipe, run_dir=str(work / name), name=recipe, seed=0, progress=False,
                           overwrite=True, **options)
            train_s = time.perf_counter() - t0
            plain = tl.evaluate(run, data=splits, split="test", plots=False, progress=False)
            tta = tl.evaluate(run, data=splits, split="test", plots=False, progress=False, tta=True,
                              out=run.dir / "eval-test-tta")
        except Exception as exc:  # report and go on: one failing model must not lose the others
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"[{name}] {recipe}: {msg}")
            rows.append({"protocol": name, "model": recipe, "seed_accuracy": seed_acc, "status": f"failed: {msg}"})
            continue
        images = sum(len(splits.train) for _ in run.history)
        row = {
            "protocol": name, "model": recipe, "status": "ok", "split": "test", "test_images": plain["num_samples"],
            "accuracy": round(plain["accuracy"], 4), "accuracy_tta": round(tta["accuracy"], 4),
            "f1_macro": round(plain["macro_avg"]["f1"], 4), "f1_macro_tta": round(tta["macro_avg"]["f1"], 4),
            "seed_accuracy": seed_acc,
            "beats_seed": None if seed_acc is None else max(plain["accuracy"], tta["accuracy"]) > seed_acc,
            "input_size": run.config.get("input_size"), "epochs": len(run.history),
            "train_seconds": round(train_s, 1), "train_images_per_s": round(images / train_s, 1),
            # temperature scaling fitted on the validation files, applied to the test split (plain, no TTA)
            "temperature": _round(plain["calibration"]["temperature"]),
            "ece": _round(plain["calibration"]["ece_before"]), "ece_calibrated": _round(plain["calibration"]["ece_after"]),
        }
        if name == "cars":
            leak_free = accuracy_without_leaks(run.dir, splits)
            if leak_free:
                row["accuracy_without_leaked_files"], row["test_images_without_leaked_files"] = round(leak_free[0], 4), \
                    leak_free[1]
        print(f"[{name}] {recipe}: test accuracy {row['accuracy']:.4f} (TTA {row['accuracy_tta']:.4f}), "
              f"macro F1 {row['f1_macro']:.3f}, ECE {row['ece']} -> {row['ece_calibrated']} (T {row['temperature']}), "
              f"{train_s:.0f} s, {row['train_images_per_s']:.0f} img/s; seed {seed_acc}", flush=True)
        rows.append(row)
    both = ensemble_row(name, rows, work)
    if both is not None:
        print(f"[{name}] {both['model']}: test accuracy {both['accuracy']:.4f}, macro F1 {both['f1_macro']:.3f}",
              flush=True)
        rows.append(both)
    return rows, time.perf_counter() - started


def _cell(value, spec: str) -> str:
    width = int(spec[1:].split(".")[0])
    return f"{value:{spec}}" if isinstance(value, (int, float)) else f"{'-':>{width}}"


def markdown_table(result: dict) -> str:
    """The bench/README.md table, from bench/results/accuracy.json."""
    lines = ["| protocol (date) | model | input | epochs | test accuracy | with TTA | macro F1 | seed notebook "
             "| training time | images/s | target |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, proto in result.get("protocols", {}).items():
        met = "**met**" if proto.get("target_met") else "**missed**"
        wall = proto.get("wall_seconds") or 0.0
        first = f"{name} ({proto.get('date')}, {wall / 60:.1f} min{'' if proto.get('quick') is False else ', quick'})"
        for i, r in enumerate(proto["rows"]):
            label = first if i == 0 else ""
            target = f"{proto.get('target')}: {met}" if i == 0 else ""
            if r.get("status") != "ok":
                lines.append(f"| {label} | {r['model']} | | | {r.get('status')} | | | {r.get('seed_accuracy') or '-'} | | | {target} |")
                continue
            extra = ""
            if "accuracy_without_leaked_files" in r:
                extra = (f" ({r['accuracy_without_leaked_files']:.4f} on the {r['test_images_without_leaked_files']} "
                         f"test files without a copy in train)")
            speed = f"{r['train_images_per_s']:.0f}" if r.get("train_images_per_s") else "-"
            lines.append(f"| {label} | {r['model']} | {r.get('input_size') or '-'} | {r.get('epochs') or '-'} "
                         f"| {r['accuracy']:.4f}{extra} | {r['accuracy_tta']:.4f} | {r['f1_macro']:.3f} "
                         f"| {r.get('seed_accuracy') or '-'} | {r['train_seconds']:.0f} s | {speed} | {target} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocol", choices=list(PROTOCOLS), action="append", help="default: all")
    p.add_argument("--quick", action="store_true", help="a fifth of the epochs (smoke run)")
    p.add_argument("--work", default=None, help="where runs go (default: a temp folder)")
    p.add_argument("--table", action="store_true", help="print the bench/README.md table from the results; run nothing")
    args = p.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}))
        return 0
    names = args.protocol or list(PROTOCOLS)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tl-bench-acc-"))
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    protocols = {k: v for k, v in (previous.get("protocols") or {}).items() if k in PROTOCOLS}
    for name in names:
        rows, seconds = run_protocol(name, args.quick, work)
        text, needed = PROTOCOLS[name]["target"]
        ok = [r for r in rows if r.get("status") == "ok"]
        best = max((max(r["accuracy"], r["accuracy_tta"]) for r in ok), default=None)
        protocols[name] = {
            "date": date.today().isoformat(), "quick": args.quick, "wall_seconds": round(seconds, 1),
            "within_30_min": seconds <= LIMIT_S, "target": text, "best_accuracy": best,
            "target_met": best is not None and best >= needed and all(r.get("beats_seed") is not False for r in ok),
            "rows": rows,
        }
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "protocols": {k: protocols[k] for k in PROTOCOLS if k in protocols},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'protocol':<17} {'model':<19} {'acc':>7} {'TTA':>7} {'F1':>6} {'seed':>6} {'train s':>8} {'img/s':>6}")
    for name, proto in result["protocols"].items():
        for r in proto["rows"]:
            if r.get("status") != "ok":
                print(f"{name:<17} {r['model']:<19} {r.get('status')}")
                continue
            cells = [_cell(r.get(k), spec) for k, spec in (("accuracy", ">7.4f"), ("accuracy_tta", ">7.4f"),
                     ("f1_macro", ">6.3f"), ("seed_accuracy", ">6.3f"), ("train_seconds", ">8.0f"),
                     ("train_images_per_s", ">6.0f"))]
            print(f"{name:<17} {r['model']:<19} " + " ".join(cells))
        met = "met" if proto.get("target_met") else "MISSED"
        wall = proto.get("wall_seconds") or 0.0
        print(f"{'':<17} target {proto.get('target')}: {met}; protocol wall time {wall / 60:.1f} min"
              f" ({'within' if wall <= LIMIT_S else 'OVER'} 30 min)")
    print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
