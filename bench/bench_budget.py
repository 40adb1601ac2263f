"""``run --budget`` on sets its defaults were not chosen on, quiet and busy, beside a linear probe.

    python bench/bench_budget.py                          # every shared set, quiet then busy (~90 min)
    python bench/bench_budget.py --sets fingers,cars --modes quiet
    python bench/bench_budget.py --table                  # the bench/README.md table from the results

For each set of ../shared/data (fingers, cars, cifar10-subset, flowers with bench_accuracy's fixed 20%
test split):

1. **the linear probe**, the cheapest honest baseline: logistic regression (scikit-learn, C in 0.05 /
   0.2 / 1.0 chosen on the validation split) on the pooled features of a frozen backbone
   (MobileNetV2 and EfficientNet-Lite0, each at the input size transferlab picks for the data; the
   better one on test is the figure, which favours the baseline), fitted on the same 80% training
   part that transferlab trains on;
2. **``transferlab run DATA --budget 8m --no-doctor``** as a new user runs it (a subprocess: wall time
   and peak RSS), its best model (chosen on validation) then evaluated on the test split;
   once on the machine as it is (*quiet*) and once with one core kept busy by a CPU burner (*busy*);
3. the **full protocol figure** of ``bench_accuracy.py`` (bench/results/accuracy.json), for scale.

The planner's defaults (shares of the budget, head epochs, thread gain) were set before any of these
sets was run through it, so every set is one they were not chosen on (leave-all-out). Targets:
``--budget 8m`` >= the linear probe on every set, and the same choice quiet and busy.
Results: bench/results/budget.json (sets not run keep their rows).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "budget.json"
sys.path.insert(0, str(HERE))

from bench_accuracy import flowers_csv  # noqa: E402  (the fixed flowers test split)
from _common import shared  # noqa: E402 - bench/ is on sys.path when run as a script

SETS = ("fingers", "cars", "cifar10-subset", "flowers")
PROBE_BACKBONES = ("mobilenet_v2", "efficientnet_lite0")
CS = (0.05, 0.2, 1.0)


def data_path(name: str, work: Path) -> Path:
    root = shared() / "data" / name
    return flowers_csv(root, work) if name == "flowers" else root


def features(model, samples, cfg) -> tuple[np.ndarray, np.ndarray]:
    """Pooled backbone features of ``samples``, batch by batch (fp32)."""
    import torch

    from transferlab.data import ImageDataset, build_transform, make_loader
    from transferlab.training.features import extract

    ds = ImageDataset(samples, cfg, transform=build_transform(cfg, train=False))
    loader = make_loader(ds, batch_size=64, shuffle=False, workers=0)
    f, y = extract(model.backbone.to(memory_format=torch.channels_last), loader, device=torch.device("cpu"),
                   channels_last=True, amp="none", progress=False)
    return f.numpy(), y.numpy()


def linear_probe(data: Path, weights: Path) -> dict:
    """Logistic regression on frozen features: the better backbone's test accuracy, C chosen on val."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from transferlab.data import load_data
    from transferlab.models import create_model, get_recipe

    splits = load_data(data, progress=False)
    rows = {}
    for name in PROBE_BACKBONES:
        t0 = time.perf_counter()
        size, crop = get_recipe(name).input_for(splits.typical_side())
        model = create_model(name, len(splits.classes), weights=str(weights), input_size=size, crop_pct=crop).eval()
        cfg = dict(model.data_cfg)
        (xtr, ytr), (xva, yva), (xte, yte) = (features(model, splits.split(s), cfg) for s in ("train", "val", "test"))
        scaler = StandardScaler().fit(xtr)
        xtr, xva, xte = scaler.transform(xtr), scaler.transform(xva), scaler.transform(xte)
        fits = {c: LogisticRegression(C=c, max_iter=2000).fit(xtr, ytr) for c in CS}
        best_c = max(CS, key=lambda c: fits[c].score(xva, yva))
        rows[name] = {"input_size": size, "C": best_c, "val_accuracy": round(fits[best_c].score(xva, yva), 4),
                      "test_accuracy": round(fits[best_c].score(xte, yte), 4),
                      "seconds": round(time.perf_counter() - t0, 1)}
        print(f"  linear probe {name} at {size} px: val {rows[name]['val_accuracy']}, test "
              f"{rows[name]['test_accuracy']} (C={best_c}), {rows[name]['seconds']} s", flush=True)
    best = max(rows, key=lambda n: rows[n]["test_accuracy"])
    return {"backbones": rows, "best": best, "test_accuracy": rows[best]["test_accuracy"]}


def budget_run(data: Path, out: Path, budget: str, weights: Path, busy: bool) -> dict:
    """``transferlab run DATA --budget B`` in a subprocess (with a CPU burner beside it when ``busy``);
    its best model evaluated on the test split."""
    import transferlab as tl

    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    load_before = os.getloadavg()[0]
    try:
        cmd = [sys.executable, "-m", "transferlab", "run", str(data), "--budget", budget, "--no-doctor",
               "--out", str(out), "--weights", str(weights), "--no-progress"]
        out.mkdir(parents=True, exist_ok=True)
        log = out / "bench-run.log"
        t0 = time.perf_counter()
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        wall = time.perf_counter() - t0
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    peak_mb = usage.ru_maxrss / 1024
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        return {"status": "failed", "returncode": code, "tail": log.read_text()[-2000:]}
    summary = json.loads((out / "summary.json").read_text())
    best = summary["best"]
    metrics = tl.evaluate(best["run_dir"], split="test", plots=False, progress=False)
    plan = [{k: p[k] for k in ("model", "kind", "seconds", "real_seconds")} | {"options": {
        k: p["options"].get(k) for k in ("input_size", "epochs", "fine_tune", "threads", "time_limit")}}
        for p in summary["plan"]]
    board = [{"model": r["model"], "val_accuracy": r.get("accuracy"), "status": r["status"]}
             for r in summary["leaderboard"]]
    return {"status": "ok", "wall_seconds": round(wall, 1), "peak_rss_mb": round(peak_mb),
            "load_average_before": round(load_before, 2), "choice": best["model"],
            "val_accuracy": best.get("accuracy"), "test_accuracy": round(metrics["accuracy"], 4),
            "plan": plan, "leaderboard": board}


def protocol_figure(name: str) -> float | None:
    path = HERE / "results" / "accuracy.json"
    if not path.is_file():
        return None
    protocols = json.loads(path.read_text()).get("protocols", {})
    key = {"cifar10-subset": "cifar10-transfer"}.get(name, name)
    return (protocols.get(key) or {}).get("best_accuracy")


def table(results: dict) -> str:
    lines = ["| set | linear probe (test) | --budget quiet: choice, test | busy: choice, test | same choice | "
             ">= probe | full protocol |", "|---|---|---|---|---|---|---|"]
    for name, r in results.get("sets", {}).items():
        probe = r.get("linear_probe", {})
        cells = []
        for mode in ("quiet", "busy"):
            m = r.get(mode) or {}
            cells.append(f"{m.get('choice')}, {m.get('test_accuracy')} ({m.get('wall_seconds')} s, "
                         f"{m.get('peak_rss_mb')} MB)" if m.get("status") == "ok" else (m.get("status") or "-"))
        lines.append(f"| {name} | {probe.get('best')} {probe.get('test_accuracy')} | {cells[0]} | {cells[1]} | "
                     f"{r.get('same_choice')} | {r.get('beats_probe')} | {r.get('protocol_best')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, from {', '.join(SETS)}")
    p.add_argument("--modes", default="quiet,busy", help="quiet and/or busy (one core kept busy by a CPU burner)")
    p.add_argument("--budget", default="8m", help="the --budget of each run (default 8m)")
    p.add_argument("--work", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "transferlab-bench-budget"),
                   help="working folder (runs, caches)")
    p.add_argument("--no-probe", action="store_true", help="keep the linear probe figures already in the results")
    p.add_argument("--table", action="store_true", help="print the table from the results; run nothing")
    args = p.parse_args(argv)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"sets": {}}
    if args.table:
        print(table(results))
        return 0
    import torch

    weights = shared() / "weights"
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TRANSFERLAB_CACHE", str(work / "cache"))
    results.update({"date": date.today().isoformat(), "budget": args.budget,
                    "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                                "python": platform.python_version()}})
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        if name not in SETS:
            sys.exit(f"unknown set {name!r}: choose from {', '.join(SETS)}")
        print(f"=== {name}", flush=True)
        row = results["sets"].setdefault(name, {})
        data = data_path(name, work)
        if not args.no_probe or "linear_probe" not in row:
            row["linear_probe"] = linear_probe(data, weights)
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            print(f"  --budget {args.budget}, {mode} ...", flush=True)
            row[mode] = budget_run(data, work / f"{name}-{mode}", args.budget, weights, busy=mode == "busy")
            m = row[mode]
            print(f"  {mode}: {m.get('choice')} test {m.get('test_accuracy')} in {m.get('wall_seconds')} s "
                  f"(peak RSS {m.get('peak_rss_mb')} MB)" if m["status"] == "ok" else f"  {mode}: failed",
                  flush=True)
        row["protocol_best"] = protocol_figure(name)
        ok = [row[m] for m in ("quiet", "busy") if (row.get(m) or {}).get("status") == "ok"]
        row["same_choice"] = (row["quiet"]["choice"] == row["busy"]["choice"]) if len(ok) == 2 else None
        probe = row["linear_probe"]["test_accuracy"]
        row["beats_probe"] = all(m["test_accuracy"] >= probe for m in ok) if ok else None
        row["date"] = date.today().isoformat()
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
