"""Imbalanced classes: macro F1 of plain training, class weights, the balanced sampler and focal loss
on a 20:1 subsample, evaluated on a balanced test split.

    python bench/bench_imbalance.py                       # the digits, cnn_bn (about 6 minutes on 2 cores)
    python bench/bench_imbalance.py --data flowers        # real photos, frozen EfficientNet-Lite0 (about 15 min)
    python bench/bench_imbalance.py --seeds 1 --epochs 5

``--data digits``: the scikit-learn digits at 32 px; per digit the last 60 images are the test split
(balanced), and of the rest digits 0-4 keep 6 training images and digits 5-9 their 110-123 (about 20:1,
before the stratified 20% validation split of the training folder); the model is ``cnn_bn``.

``--data NAME`` (a class-folder set under ../shared/data, e.g. flowers): per class the last
``--test-per-class`` files (sorted by name) are the balanced test split; the first half of the classes
(sorted) keep 1/20 of the median training count of the others, the rest keep all their files; the model
is a frozen ImageNet EfficientNet-Lite0 with a new linear head (``--model``, ``--freeze frozen``).

Each variant trains with the same options but its own imbalance remedy; the rows give macro F1,
balanced accuracy and accuracy on the test split (mean over the seeds, and each seed's), and the
minority classes' mean recall. Results: bench/results/imbalance.json (one entry per data set).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import shared

import transferlab as tl
from transferlab.data.sample import write_digits

RESULTS = Path(__file__).resolve().parent / "results" / "imbalance.json"
VARIANTS = {"plain": {}, "class-weights": {"class_weights": "auto"}, "balanced-sampler": {"sampler": "balanced"},
            "focal": {"loss": "focal"}, "focal+class-weights": {"loss": "focal", "class_weights": "auto"}}
MINORITY = ("0", "1", "2", "3", "4")
TEST_PER_CLASS, MINORITY_TRAIN = 60, 6


def make_data(root: Path, source: str = "digits", test_per_class: int = TEST_PER_CLASS) -> tuple[Path, list[str]]:
    """``root/data/{train,test}/<class>``: the 20:1 training folder and the balanced test folder, and
    the minority classes."""
    pool = write_digits(root / "all", size=32) if source == "digits" else shared() / "data" / source
    dirs = sorted(p for p in pool.iterdir() if p.is_dir())
    files = {d.name: sorted(f for f in d.iterdir() if f.is_file() and not f.name.startswith(".")) for d in dirs}
    minority = list(MINORITY) if source == "digits" else [d.name for d in dirs[:len(dirs) // 2]]
    majority_train = statistics.median(len(f) - test_per_class for c, f in files.items() if c not in minority)
    keep = MINORITY_TRAIN if source == "digits" else max(2, round(majority_train / 20))
    data = root / "data"
    for name, fs in files.items():
        test, train = fs[-test_per_class:], fs[:-test_per_class]
        if name in minority:
            train = train[:keep]
        for split, chosen in (("train", train), ("test", test)):
            (data / split / name).mkdir(parents=True, exist_ok=True)
            for f in chosen:
                shutil.copy(f, data / split / name / f.name)
    return data, minority


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--data", default="digits", help="digits, or a class-folder set under ../shared/data")
    ap.add_argument("--test-per-class", type=int, default=None, help="test images per class (digits 60, else 100)")
    ap.add_argument("--model", default=None, help="recipe (digits: cnn_bn, else efficientnet_lite0 frozen)")
    ap.add_argument("--input-size", type=int, default=None,
                    help="input size (digits: 32; else the recipe's choice for the data, e.g. 224 px for 128 px photos)")
    args = ap.parse_args()
    digits = args.data == "digits"
    model = args.model or ("cnn_bn" if digits else "efficientnet_lite0")
    common: dict = {"input_size": 32} if digits else {"freeze": "frozen", "fine_tune": 0}
    if args.input_size:
        common["input_size"] = args.input_size
    test_per_class = args.test_per_class or (TEST_PER_CLASS if digits else 100)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data, minority = make_data(root, args.data, test_per_class)
        counts = {d.name: len(list(d.iterdir())) for d in sorted((data / "train").iterdir())}
        print(f"training images per class (before the validation split): {counts}")
        for name, options in VARIANTS.items():
            per_seed = []
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                run = tl.train(str(data), model, epochs=args.epochs, seed=seed, progress=False,
                               run_dir=str(root / "runs"), name=f"{name}-{seed}", **common, **options)
                m = tl.evaluate(run.dir, split="test", plots=False, progress=False)
                per_seed.append({"seed": seed, "macro_f1": m["macro_avg"]["f1"],
                                 "balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"],
                                 "minority_recall": statistics.mean(m["per_class"][c]["recall"] for c in minority),
                                 "seconds": round(time.perf_counter() - t0, 1)})
            row = {"name": name, "options": options,
                   **{k: round(statistics.mean(s[k] for s in per_seed), 4)
                      for k in ("macro_f1", "balanced_accuracy", "accuracy", "minority_recall")},
                   "seeds": per_seed}
            rows.append(row)
            print(f"{name:20s} macro F1 {row['macro_f1']:.4f}  balanced acc {row['balanced_accuracy']:.4f}  "
                  f"accuracy {row['accuracy']:.4f}  minority recall {row['minority_recall']:.4f}")
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if "rows" in results:  # the file of one data set (before --data): the digits'
        results = {"digits": results}
    results[args.data] = {"date": time.strftime("%Y-%m-%d"), "model": model, "options": common,
                          "epochs": args.epochs, "seeds": args.seeds, "train_counts": counts,
                          "minority": minority, "test_per_class": test_per_class, "rows": rows}
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
