"""Distillation: an ensemble teacher, a small student trained on its soft labels, on the CIFAR-10 subset.

    python bench/bench_distill.py                     # the CIFAR-10 subset (about 60 min on 2 cores)
    python bench/bench_distill.py --work /tmp/distill  # keep (and resume) the compare and the student

1. ``transferlab.compare(DATA, [TEACHERS], split="test", val_ratio=0.1)``: the teacher models with their
   recipe defaults (the cifar10-transfer protocol of bench_accuracy) and, when the greedy selection on
   validation keeps more than one, their ensemble (one ONNX graph), all scored on the test split.
2. ``transferlab.distill(OUT/runs/ensemble, student=STUDENT, teacher_tta=True)``: the teacher's
   probabilities for the training images computed once (with mirrored images), the student trained
   with its recipe defaults on them (temperature and alpha: the command's defaults), then evaluated on
   the test split and exported to ONNX.
3. Speed: images/s of the teacher and of the student through ONNX Runtime (as ``predict`` runs them),
   on the same 256 preprocessed test images, batch 32, the machine's threads, teacher with the TTA its
   soft labels had and without.

Target (issue 22): the student within one point of the ensemble's test accuracy at >= 3x its images/s.
The student's own recipe trained on the hard labels is the compare's row of the same name: the
distillation gain is the difference. Results: bench/results/distill.json.
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
from transferlab.data import load_data
from transferlab.choices import DISTILL_ALPHA, DISTILL_TEMPERATURE
from transferlab.predictor import Predictor

RESULTS = Path(__file__).resolve().parent / "results" / "distill.json"


def images_per_s(run: Path, paths: list[str], tta: bool, repeats: int = 2) -> float:
    """Images/s of ``run``'s ONNX graph on ``paths`` (preprocessed first, not timed), batch 32."""
    p = Predictor(run, backend="onnx", batch_size=32, reject=False)
    batch = np.stack([p.preprocess.load(f) for f in paths])
    p.predict_arrays(batch[:32], tta=tta)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        p.predict_arrays(batch, tta=tta)
        best = min(best, time.perf_counter() - t0)
    return len(paths) / best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="cifar10-subset")
    ap.add_argument("--teachers", default="efficientnet_lite0,efficientnet_lite2")
    ap.add_argument("--student", default="efficientnet_lite0")
    ap.add_argument("--temperature", type=float, default=DISTILL_TEMPERATURE)
    ap.add_argument("--alpha", type=float, default=DISTILL_ALPHA)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--epochs", type=int, default=None, help="epochs per model (default: each recipe's)")
    ap.add_argument("--work", default=None, help="the compare and student folder (default: a temporary one)")
    args = ap.parse_args(argv)
    data = args.data if Path(args.data).is_dir() else str(shared() / "data" / args.data)  # a folder, or a shared set
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        t0 = time.perf_counter()
        rows = tl.compare(data, models=args.teachers.split(","), split="test", val_ratio=0.1, out=work / "compare",
                          epochs=args.epochs, progress=False)
        compare_s = time.perf_counter() - t0
        by = {r["model"]: r for r in rows}
        teacher_name = "ensemble" if by.get("ensemble", {}).get("status") == "ok" else rows[0]["model"]
        teacher = work / "compare" / "runs" / teacher_name
        t0 = time.perf_counter()
        student = tl.distill(teacher, student=args.student, teacher_tta=True, temperature=args.temperature,
                             alpha=args.alpha, run_dir=work / "students", progress=False, resume=True,
                             **({"epochs": args.epochs} if args.epochs else {}))
        distill_s = time.perf_counter() - t0
        metrics = tl.evaluate(student, split="test", progress=False, gradcam=0, mistakes=0)
        tl.export(student)
        test = load_data(data, val_ratio=0.1, seed=0, progress=False).test
        paths = [p for p, _ in test[:256]]
        speed = {"teacher_tta": images_per_s(teacher, paths, tta=True),
                 "teacher": images_per_s(teacher, paths, tta=False),
                 "student": images_per_s(student.dir, paths, tta=False)}
        record = student.config["distillation"]
    teacher_acc = by[teacher_name]["accuracy"]
    hard = by.get(args.student, {}).get("accuracy")
    out = {
        "date": time.strftime("%Y-%m-%d"), "data": args.data, "teacher": teacher_name,
        "members": (json.loads(json.dumps(runfolder.read_export_meta(teacher) or {})).get("members")
                    if teacher_name == "ensemble" else None),
        "protocol": "compare --split test --val-ratio 0.1 of the teachers (recipe defaults); distill the ensemble "
                    "(teacher TTA) into the student (recipe defaults); every accuracy on the untouched test split",
        "rows": [{k: r.get(k) for k in ("model", "status", "accuracy", "f1_macro", "log_loss", "ms_per_image")}
                 for r in rows],
        "teacher_test_accuracy": teacher_acc, "student": args.student,
        "student_test_accuracy": metrics["accuracy"], "student_f1_macro": metrics["macro_avg"]["f1"],
        "same_recipe_hard_labels_accuracy": hard,
        "temperature": record["temperature"], "alpha": record["alpha"],
        "teacher_agreement_with_train_labels": record["agreement"],
        "images_per_s": {k: round(v, 1) for k, v in speed.items()},
        "speedup_vs_teacher_with_tta": round(speed["student"] / speed["teacher_tta"], 2),
        "speedup_vs_teacher": round(speed["student"] / speed["teacher"], 2),
        "gap_points": round(100 * (teacher_acc - metrics["accuracy"]), 2),
        "target": "student within 1 point of the ensemble at >= 3x its images/s",
        "compare_seconds": round(compare_s), "distill_seconds": round(distill_s),
    }
    out["target_met"] = out["gap_points"] <= 1.0 and out["speedup_vs_teacher"] >= 3.0
    for r in out["rows"]:
        print(f"{r['model']:20s} test accuracy {r['accuracy']}  macro F1 {r['f1_macro']}  {r['ms_per_image']} ms/image")
    print(f"student {args.student} (distilled): test accuracy {metrics['accuracy']:.4f} (same recipe on the hard "
          f"labels: {hard}); teacher {teacher_name} {teacher_acc:.4f}; gap {out['gap_points']} points")
    print(f"images/s: {out['images_per_s']}; speed-up {out['speedup_vs_teacher']}x "
          f"({out['speedup_vs_teacher_with_tta']}x against the teacher with TTA); target met: {out['target_met']}")
    Path(args.out).write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
