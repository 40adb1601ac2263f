"""Accuracy benchmarks: the seed notebooks' protocols, side by side with their published numbers.

    python bench/bench_accuracy.py                      # every protocol whose data is present
    python bench/bench_accuracy.py --protocol digits    # one protocol
    python bench/bench_accuracy.py --quick              # fewer epochs (smoke run)

Protocols (datasets are looked up under ../shared/data, see ../shared/data/README.md):
- cifar10:  the seeds' CIFAR-10 subset (first 10,000 training and 2,000 test images): the
            from-scratch ladder at 32 px and MobileNetV2 transfer (upscaled). Seeds: 0.580 /
            0.630 / 0.656 scratch, 0.8135 MobileNetV2.
- cartypes: a car-type photo dataset: ResNet-34 from scratch vs transfer models. Seeds: ResNet-34
            scratch 0.88, DenseNet 0.94, Xception 0.98 (DenseNet/Xception ImageNet weights are not
            obtainable offline: run online, or substitute a transfer model that has weights here).
- animals10: Animals-10 with MobileNetV2 transfer. Seed: 0.937.
- digits:   the built-in sample (scikit-learn's handwritten digits), always available: the ladder
            and EfficientNet-Lite0 transfer; no seed number (it is our own baseline).

Each result row states the accuracy on the protocol's test (or validation) split and the
training time on this machine; everything goes to bench/results/accuracy.json.
"""
from __future__ import annotations

import argparse
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
WEIGHTS = SHARED / "weights"

# protocol -> (folder-name hints under shared/data, [(recipe, seed accuracy, train kwargs)])
PROTOCOLS = {
    "cifar10": (
        ("cifar10-subset", "cifar10", "cifar-10", "cifar"),
        [
            ("cnn_base", 0.580, dict(input_size=32, epochs=30)),
            ("cnn_aug", 0.630, dict(input_size=32, epochs=30)),
            ("cnn_bn", 0.656, dict(input_size=32, epochs=30)),
            ("mobilenet_v2", 0.8135, dict(input_size=96, epochs=6, weights=WEIGHTS / "mobilenet_v2-b0353104.pth")),
        ],
    ),
    "cartypes": (
        ("car-types", "cartypes", "car_types", "cars"),
        [
            ("resnet34_scratch", 0.88, dict(epochs=30)),
            ("densenet121", 0.94, dict(epochs=10)),
            ("xception", 0.98, dict(epochs=10)),
            ("mobilenet_v2", None, dict(epochs=10, weights=WEIGHTS / "mobilenet_v2-b0353104.pth")),
            ("efficientnet_lite0", None, dict(epochs=10)),
        ],
    ),
    "animals10": (
        ("animals10", "animals-10", "animals"),
        [("mobilenet_v2", 0.937, dict(epochs=8, weights=WEIGHTS / "mobilenet_v2-b0353104.pth"))],
    ),
    "digits": (
        (),
        [
            ("cnn_base", None, dict(input_size=32, epochs=15)),
            ("cnn_aug", None, dict(input_size=32, epochs=15)),
            ("cnn_bn", None, dict(input_size=32, epochs=15)),
            ("cnn_dropout", None, dict(input_size=32, epochs=15)),
            ("efficientnet_lite0", None, dict(epochs=8)),
        ],
    ),
}


def find_dataset(protocol: str) -> Path | None:
    hints, _ = PROTOCOLS[protocol]
    if protocol == "digits":
        from transferlab.data.sample import sample_dir

        return sample_dir()
    data = SHARED / "data"
    for hint in hints:
        for cand in sorted(data.glob(f"*{hint}*")) if data.is_dir() else []:
            if cand.is_dir():
                return cand
    return None


def run_protocol(protocol: str, quick: bool, work: Path) -> list[dict]:
    import transferlab as tl

    data = find_dataset(protocol)
    _, rows = PROTOCOLS[protocol]
    if data is None:
        print(f"[{protocol}] dataset not present under {SHARED / 'data'}: skipped")
        return [{"protocol": protocol, "model": r, "seed_accuracy": s, "status": "dataset not present"} for r, s, _ in rows]
    out = []
    for recipe, seed_acc, kwargs in rows:
        kwargs = dict(kwargs)
        if quick:
            kwargs["epochs"] = max(1, kwargs["epochs"] // 5)
        weights = kwargs.get("weights")
        if weights is not None and not Path(weights).is_file():
            out.append({"protocol": protocol, "model": recipe, "seed_accuracy": seed_acc, "status": f"weights not present: {weights}"})
            continue
        if weights is not None:
            kwargs["weights"] = str(weights)
        print(f"[{protocol}] {recipe} {kwargs}")
        t0 = time.perf_counter()
        try:
            run = tl.train(data, model=recipe, run_dir=work / protocol, name=recipe, seed=0, progress=False, **kwargs)
            seconds = time.perf_counter() - t0
            split = "test" if (run.config.get("split_counts") or {}).get("test") else "val"
            metrics = tl.evaluate(run, split=split, plots=False)
        except Exception as exc:  # report and go on: one failing model must not lose the others
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"[{protocol}] {recipe}: {msg}")
            out.append({"protocol": protocol, "model": recipe, "seed_accuracy": seed_acc, "status": f"failed: {msg}"})
            continue
        acc = float(metrics["accuracy"])
        row = {
            "protocol": protocol,
            "model": recipe,
            "split": split,
            "accuracy": round(acc, 4),
            "seed_accuracy": seed_acc,
            "beats_seed": None if seed_acc is None else acc >= seed_acc,
            "epochs": len(run.history),
            "train_seconds": round(seconds, 1),
            "status": "ok",
        }
        print(f"[{protocol}] {recipe}: accuracy {acc:.4f} (seed {seed_acc}) in {seconds:.0f} s")
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), action="append", help="default: all")
    p.add_argument("--quick", action="store_true", help="a fifth of the epochs (smoke run)")
    p.add_argument("--work", default=None, help="where runs go (default: a temp folder)")
    args = p.parse_args(argv)
    protocols = args.protocol or list(PROTOCOLS)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tl-bench-acc-"))
    rows = []
    for protocol in protocols:
        rows += [{**r, "date": date.today().isoformat(), "quick": args.quick}
                 for r in run_protocol(protocol, args.quick, work)]
    # the protocols not run this time keep their earlier rows (each row says when it was measured)
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    kept = [{"date": previous.get("date"), "quick": previous.get("quick"), **r}
            for r in previous.get("rows", []) if r.get("protocol") not in protocols]
    order = {name: i for i, name in enumerate(PROTOCOLS)}
    rows = sorted(kept + rows, key=lambda r: order.get(r.get("protocol"), len(order)))  # stable within a protocol
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "date": date.today().isoformat(),
        "quick": args.quick,
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"\n{'protocol':<10} {'model':<20} {'accuracy':>9} {'seed':>7} {'time s':>8}  status")
    for r in rows:
        acc = f"{r['accuracy']:.4f}" if "accuracy" in r else "-"
        seed = f"{r['seed_accuracy']:.4f}" if r.get("seed_accuracy") is not None else "-"
        secs = f"{r['train_seconds']:.0f}" if "train_seconds" in r else "-"
        print(f"{r['protocol']:<10} {r['model']:<20} {acc:>9} {seed:>7} {secs:>8}  {r['status']}")
    print(f"\nwritten to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
