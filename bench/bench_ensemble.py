"""Ensembles: the models of a compare, their greedy ensemble (chosen on validation), scored on the test split.

    python bench/bench_ensemble.py                    # the cars, 3 transfer models, heads only (about 25 min)
    python bench/bench_ensemble.py --data cifar10-subset --models cnn_bn,cnn_dropout,resnet_scratch --epochs 20

Runs ``transferlab.compare(DATA, models, split="test")``: every model is trained on the training
folder (20% held out for validation, seed 0), the ensemble's members and weights are chosen on the
validation split and its row is scored on the untouched test split through its ONNX graph, like
every row. Rows: test accuracy, macro F1, log loss, ms/image (batch 32 for the ensemble, the
evaluation batch for the models) and size. Results: bench/results/ensemble.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import shared

import transferlab as tl
from transferlab import runfolder

RESULTS = Path(__file__).resolve().parent / "results" / "ensemble.json"
TRANSFER = ("efficientnet_lite0", "mobilenet_v2", "mobilenet_v1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="cars")
    ap.add_argument("--models", default=",".join(TRANSFER))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--work", default=None, help="compare's folder (default: a temporary one)")
    args = ap.parse_args(argv)
    models = args.models.split(",")
    frozen = {"freeze": "frozen", "fine_tune": 0}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        t0 = time.perf_counter()
        rows = tl.compare(str(shared() / "data" / args.data), models=models, epochs=args.epochs, split="test",
                          out=work, progress=False,
                          overrides={m: frozen for m in models if m in TRANSFER})
        seconds = time.perf_counter() - t0
        state = json.loads((work / "state.json").read_text())
        ens = state["models"].get("ensemble")
        meta = runfolder.read_export_meta(work / "runs" / "ensemble") if ens else None
    keep = ("model", "status", "accuracy", "f1_macro", "log_loss", "ms_per_image", "size_mb", "params",
            "accuracy_ci_low", "accuracy_ci_high", "verdict", "reason")
    out = {"date": time.strftime("%Y-%m-%d"), "data": args.data, "epochs": args.epochs,
           "protocol": "compare --split test: transfer models with the backbone frozen (head only); members chosen on "
                       "the validation split (greedy, log loss), every row scored on the test split",
           "seconds": round(seconds), "rows": [{k: r.get(k) for k in keep} for r in rows],
           "members": (ens or {}).get("members"), "selection": (meta or {}).get("selection")}
    for r in out["rows"]:
        print(f"{r['model']:20s} {r['status']:8s} test accuracy {r['accuracy']}  macro F1 {r['f1_macro']}  "
              f"log loss {r['log_loss']}  {r['ms_per_image']} ms/image  {r['verdict']}")
    print(f"members: {out['members']}")
    Path(args.out).write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
