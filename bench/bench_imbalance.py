"""Imbalanced classes: macro F1 of plain training, class weights, the balanced sampler and focal loss
on a 20:1 subsample of the built-in digits, evaluated on a balanced test split.

    python bench/bench_imbalance.py                 # 3 seeds x 5 variants (about 6 minutes on 2 cores)
    python bench/bench_imbalance.py --seeds 1 --epochs 5

The data: the scikit-learn digits at 32 px; per digit the last 60 images are the test split (balanced),
and of the rest digits 0-4 keep 6 training images and digits 5-9 their 110-123 (about 20:1, before the
stratified 20% validation split of the training folder). Each variant trains ``cnn_bn`` with the
same options but its own imbalance remedy; the rows give macro F1, balanced accuracy and accuracy on
the test split (mean over the seeds, and each seed's), and the minority classes' mean recall.
Results: bench/results/imbalance.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import transferlab as tl
from transferlab.data.sample import write_digits

RESULTS = Path(__file__).resolve().parent / "results" / "imbalance.json"
VARIANTS = {"plain": {}, "class-weights": {"class_weights": "auto"}, "balanced-sampler": {"sampler": "balanced"},
            "focal": {"loss": "focal"}, "focal+class-weights": {"loss": "focal", "class_weights": "auto"}}
MINORITY = ("0", "1", "2", "3", "4")
TEST_PER_CLASS, MINORITY_TRAIN = 60, 6


def make_data(root: Path) -> Path:
    """``root/data/{train,test}/<digit>``: the 20:1 training folder and the balanced test folder."""
    pool = write_digits(root / "all", size=32)
    data = root / "data"
    for digit_dir in sorted(p for p in pool.iterdir() if p.is_dir()):
        files = sorted(digit_dir.glob("*.png"))
        test, train = files[-TEST_PER_CLASS:], files[:-TEST_PER_CLASS]
        if digit_dir.name in MINORITY:
            train = train[:MINORITY_TRAIN]
        for split, chosen in (("train", train), ("test", test)):
            (data / split / digit_dir.name).mkdir(parents=True, exist_ok=True)
            for f in chosen:
                shutil.copy(f, data / split / digit_dir.name / f.name)
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_data(root)
        counts = {d.name: len(list(d.iterdir())) for d in sorted((data / "train").iterdir())}
        print(f"training images per digit (before the validation split): {counts}")
        for name, options in VARIANTS.items():
            per_seed = []
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                run = tl.train(str(data), "cnn_bn", epochs=args.epochs, seed=seed, input_size=32, progress=False,
                               run_dir=str(root / "runs"), name=f"{name}-{seed}", **options)
                m = tl.evaluate(run.dir, split="test", plots=False, progress=False)
                per_seed.append({"seed": seed, "macro_f1": m["macro_avg"]["f1"],
                                 "balanced_accuracy": m["balanced_accuracy"], "accuracy": m["accuracy"],
                                 "minority_recall": statistics.mean(m["per_class"][c]["recall"] for c in MINORITY),
                                 "seconds": round(time.perf_counter() - t0, 1)})
            row = {"name": name, "options": options,
                   **{k: round(statistics.mean(s[k] for s in per_seed), 4)
                      for k in ("macro_f1", "balanced_accuracy", "accuracy", "minority_recall")},
                   "seeds": per_seed}
            rows.append(row)
            print(f"{name:20s} macro F1 {row['macro_f1']:.4f}  balanced acc {row['balanced_accuracy']:.4f}  "
                  f"accuracy {row['accuracy']:.4f}  minority recall {row['minority_recall']:.4f}")
    RESULTS.write_text(json.dumps({"model": "cnn_bn", "epochs": args.epochs, "seeds": args.seeds,
                                   "train_counts": counts, "test_per_class": TEST_PER_CLASS, "rows": rows},
                                  indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
