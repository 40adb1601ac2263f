"""Training speed on the CPU: feature caching, trainer overhead, memory format and bf16, and the
fine-tune phase at 224 px on real photos against a bare timm loop.

    python bench/bench_train.py                     # ~10 minutes on 2 cores; writes bench/results/train.json
    python bench/bench_train.py --only finetune     # section 4 alone (the other figures are kept)
    python bench/bench_train.py --quick             # smoke run (fewer images)

1. Frozen-base training (mobilenet_v2 architecture, random init, 96 px digits): seconds per epoch
   with feature caching (the backbone runs once, the head trains on cached features) and without
   (the frozen backbone runs every epoch), and their ratio.
2. A full fine-tuning step (forward + backward + optimizer step, batch 32) through transferlab's
   Trainer against a bare PyTorch loop on the same batch and model: images/s and their ratio.
3. The same bare step in NCHW fp32, channels_last fp32 and bf16 autocast, to justify the defaults
   (channels_last on for CPU, bf16 off unless asked for).

4. The fine-tune phase (backbone unfrozen, forward + backward + step) at 224 px for MobileNetV2
   (the shared ImageNet weights) and EfficientNet-Lite0 (its package's weights) on real photos
   (``../shared/data/cars``, a class-balanced subset): images/s and the share of the training time
   spent waiting for the next batch, through ``transferlab.train(...)`` (measured by a callback that
   times the trainer's loader; with its default loader workers, 2 at this size, and with 0) and
   through a bare timm loop (a torchvision-style dataset decoding
   each JPEG every epoch, standard transforms, ``DataLoader`` with 2 or 0 workers, NCHW, Adam).
   Per run the last of the fine-tune epochs counts (the first includes warm-up).

Sections 1-3 take the best of a few interleaved repeats (robust to other processes on a shared machine).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

# as transferlab itself does (transferlab/__init__.py), before torch loads libgomp: waiting OpenMP
# threads sleep instead of spinning, which on a busy machine made PyTorch several times slower (and
# here would make the bare loop / eager baseline look worse than it is)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
MODEL, SIZE, BATCH = "mobilenet_v2", 96, 32
SHARED = Path(os.environ.get("TRANSFERLAB_SHARED", HERE.parent.parent / "shared"))
FINETUNE = {  # recipe -> (timm architecture of the bare loop, weights file, or None for the recipe's own)
    "mobilenet_v2": ("mobilenetv2_100", SHARED / "weights" / "mobilenet_v2-b0353104.pth"),
    "efficientnet_lite0": ("tf_efficientnet_lite0", None),
}


def caching(data: Path, runs: Path) -> dict:
    from transferlab.training import train

    out = {}
    for cached in (True, False):
        t0 = time.perf_counter()
        run = train(data, model=MODEL, pretrained=False, input_size=SIZE, freeze="frozen", augment="none",
                    epochs=8, batch_size=BATCH, feature_cache=cached, run_dir=runs, name=f"cache-{cached}",
                    progress=False)
        total = time.perf_counter() - t0
        per_epoch = min(r["seconds"] for r in run.history)
        out["cached" if cached else "uncached"] = {"epoch_seconds": per_epoch, "total_seconds": round(total, 2),
                                                   "epochs": [r["seconds"] for r in run.history]}
    out["epoch_speedup"] = out["uncached"]["epoch_seconds"] / out["cached"]["epoch_seconds"]
    return out


def _batch(channels_last: bool):
    torch.manual_seed(0)
    x = torch.randn(BATCH, 3, SIZE, SIZE)
    y = torch.randint(0, 10, (BATCH,))
    return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y


def _model(channels_last: bool):
    from transferlab.models import create_model

    torch.manual_seed(0)
    m = create_model(MODEL, 10, pretrained=False, input_size=SIZE).train()
    return m.to(memory_format=torch.channels_last) if channels_last else m


def bare_step_rate(channels_last: bool, amp: str = "none", steps: int = 6) -> float:
    """Images/s of a hand-written forward + backward + Adam step loop."""
    m, (x, y) = _model(channels_last), _batch(channels_last)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    best = float("inf")
    for i in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
            out = m(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step warms up oneDNN
            best = min(best, time.perf_counter() - t)
    return BATCH / best


def trainer_step_rate(channels_last: bool, steps: int = 6) -> float:
    """Images/s of the same steps through transferlab's Trainer.train_one_epoch (one step per batch)."""
    from torch.utils.data import DataLoader, TensorDataset

    from transferlab.training.loop import Runtime, Trainer
    from transferlab.training.schedule import build_optimizer

    m, (x, y) = _model(channels_last), _batch(False)
    loader = DataLoader(TensorDataset(x.repeat(1, 1, 1, 1), y), batch_size=BATCH, shuffle=False)
    opt = build_optimizer(m, "adam", 1e-3)
    tr = Trainer(m, m, loader, [], optimizer=opt,
                 runtime=Runtime(channels_last=channels_last, progress=False, verbose=False))
    tr.train_one_epoch(1)  # warm-up
    best = float("inf")
    for e in range(steps):
        t = time.perf_counter()
        tr.train_one_epoch(e + 2)
        best = min(best, time.perf_counter() - t)
    return BATCH / best


# -- 4. the fine-tune phase at 224 px ------------------------------------------------------------
def photo_subset(out: Path, train_per_class: int, val_per_class: int) -> tuple[Path, list[tuple[str, int, str]]]:
    """A class-balanced subset of ../shared/data/cars/train as a transferlab CSV (path,label,split)."""
    root = SHARED / "data" / "cars" / "train"
    if not root.is_dir():
        raise SystemExit(f"section 4 needs {root} (see ../shared/data/README.md)")
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    rows = []
    for label, name in enumerate(names):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        rows += [(str(f), label, "train") for f in files[:train_per_class]]
        rows += [(str(f), label, "val") for f in files[train_per_class:train_per_class + val_per_class]]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        w.writerows((p, names[y], s) for p, y, s in rows)
    return out, rows


class TimedLoader:
    """Wraps a loader: seconds spent waiting for each next batch, and for the whole pass."""

    def __init__(self, loader):
        self.loader, self.wait, self.total, self.images = loader, 0.0, 0.0, 0

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):  # sampler, num_workers, ...
        return getattr(self.loader, name)

    def __iter__(self):
        self.wait, self.images = 0.0, 0
        start = time.perf_counter()
        it = iter(self.loader)
        while True:
            t = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                break
            self.wait += time.perf_counter() - t
            self.images += len(y)
            yield x, y
        self.total = time.perf_counter() - start

    def rate(self) -> dict:
        return {"images": self.images, "seconds": round(self.total, 2),
                "images_per_s": round(self.images / self.total, 1),
                "data_wait_share": round(self.wait / self.total, 3), "workers": self.loader.num_workers}


def transferlab_finetune(recipe: str, data: Path, runs: Path, epochs: int, workers: int | None = None) -> dict:
    """The fine-tune phase of ``transferlab.train``: a head epoch on cached features, then the whole
    backbone unfrozen for ``epochs``; a callback times the trainer's loader in that phase."""
    from transferlab.training import train
    from transferlab.training.callbacks import Callback

    class DataWait(Callback):
        def __init__(self):
            self.epochs: list[dict] = []

        def on_epoch_begin(self, trainer, epoch):
            if trainer.phase == 1 and not isinstance(trainer.train_loader, TimedLoader):
                trainer.train_loader = TimedLoader(trainer.train_loader)

        def on_epoch_end(self, trainer, epoch, logs):
            if isinstance(trainer.train_loader, TimedLoader):
                self.epochs.append(trainer.train_loader.rate())

    meter = DataWait()
    weights = FINETUNE[recipe][1]
    run = train(data, model=recipe, input_size=224, batch_size=BATCH, epochs=1, fine_tune=epochs, augment="light",
                weights=str(weights) if weights else None, run_dir=runs, name=f"ft-{recipe}", overwrite=True,
                progress=False, callbacks=[meter], workers=workers)
    return {**meter.epochs[-1], "epochs": meter.epochs, "val_acc": round(run.history[-1]["val_acc"], 4)}


def bare_timm_finetune(recipe: str, rows: list[tuple[str, int, str]], epochs: int, workers: int) -> dict:
    """What a PyTorch user writes: a timm model, PIL + torchvision transforms every epoch, a DataLoader, Adam."""
    import timm
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    arch = FINETUNE[recipe][0]
    mean, std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if recipe == "mobilenet_v2" else ((0.5,) * 3, (0.5,) * 3)
    tf = T.Compose([T.Resize(256), T.RandomCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    train_rows = [(p, y) for p, y, s in rows if s == "train"]

    class Files(Dataset):
        def __len__(self):
            return len(train_rows)

        def __getitem__(self, i):
            p, y = train_rows[i]
            return tf(Image.open(p).convert("RGB")), y

    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=len({y for _, y in train_rows})).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    timed = TimedLoader(DataLoader(Files(), batch_size=BATCH, shuffle=True, num_workers=workers))
    per_epoch = []
    for _ in range(epochs):
        for x, y in timed:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        per_epoch.append(timed.rate())
    return {**per_epoch[-1], "epochs": per_epoch}


def finetune_section(tmp: Path, quick: bool) -> dict:
    data, rows = photo_subset(tmp / "cars-subset.csv", 16 if quick else 48, 4 if quick else 8)
    epochs = 1 if quick else 2
    os.environ.setdefault("TRANSFERLAB_CACHE", str(tmp / "cache"))
    out: dict = {"data": f"../shared/data/cars/train, {sum(s == 'train' for *_, s in rows)} train + "
                         f"{sum(s == 'val' for *_, s in rows)} val photos (class-balanced)",
                 "input_size": 224, "batch_size": BATCH, "fine_tune_epochs": epochs, "models": {}}
    for recipe in FINETUNE:
        print(f"4. fine-tune phase, {recipe} at 224 px ...", flush=True)
        row = {"transferlab": transferlab_finetune(recipe, data, tmp / "runs", epochs),
               "transferlab_0_workers": transferlab_finetune(recipe, data, tmp / "runs", epochs, workers=0),
               "bare_timm_2_workers": bare_timm_finetune(recipe, rows, epochs, workers=2),
               "bare_timm_0_workers": bare_timm_finetune(recipe, rows, epochs, workers=0)}
        bare = max(row["bare_timm_2_workers"]["images_per_s"], row["bare_timm_0_workers"]["images_per_s"])
        row["transferlab_vs_best_bare"] = round(row["transferlab"]["images_per_s"] / bare, 2)
        out["models"][recipe] = row
        for name in ("transferlab", "transferlab_0_workers", "bare_timm_2_workers", "bare_timm_0_workers"):
            r = row[name]
            print(f"   {name:22s} {r['images_per_s']:6.1f} img/s, waiting for data {r['data_wait_share']:.0%} "
                  f"of the time ({r['workers']} loader workers)", flush=True)
        print(f"   transferlab / best bare loop: {row['transferlab_vs_best_bare']:.2f}x", flush=True)
    return out


def main() -> int:
    from transferlab.data.sample import write_digits

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("speed", "finetune"), default=None,
                    help="speed: sections 1-3; finetune: section 4 (the other figures in train.json are kept)")
    ap.add_argument("--quick", action="store_true", help="section 4 on fewer images, one epoch (smoke run)")
    args = ap.parse_args()
    out = HERE / "results" / "train.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    threads = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(threads)
    machine = {"cpu_count": os.cpu_count(), "threads": threads, "processor": platform.processor(),
               "torch": torch.__version__, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    results: dict = dict(previous)
    if args.only != "speed":   # section 4 carries its own date and machine state
        load = round(os.getloadavg()[0], 2)
        with tempfile.TemporaryDirectory() as tmp:
            section = finetune_section(Path(tmp), args.quick)
        results["finetune_224"] = {"date": date.today().isoformat(), "quick": args.quick,
                                   "machine": {**machine, "loadavg_1m_before": load,
                                               "loadavg_1m_after": round(os.getloadavg()[0], 2)}, **section}
    if args.only == "finetune":
        return write(results, out)
    results.update({"date": date.today().isoformat(), "machine": {**machine, "loadavg_1m_before": round(os.getloadavg()[0], 2)},
                    "model": MODEL, "input_size": SIZE, "batch_size": BATCH})
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("TRANSFERLAB_CACHE", str(Path(tmp) / "cache"))
        data = write_digits(Path(tmp) / "digits", per_class=30, size=32)
        print(f"1. frozen {MODEL} at {SIZE}px, 240 train + 60 val images, 8 epochs ...", flush=True)
        c = caching(data, Path(tmp) / "runs")
    results["feature_caching"] = c
    print(f"   per epoch: cached {c['cached']['epoch_seconds']:.2f}s, uncached {c['uncached']['epoch_seconds']:.2f}s "
          f"-> {c['epoch_speedup']:.1f}x faster; whole run incl. caching {c['cached']['total_seconds']:.1f}s vs "
          f"{c['uncached']['total_seconds']:.1f}s", flush=True)

    print(f"2. full fine-tune step, batch {BATCH}: Trainer vs bare PyTorch ...", flush=True)
    rates: dict[str, list[float]] = {}
    for _ in range(2):  # interleaved repeats
        for key, fn in (("bare_nchw_fp32", lambda: bare_step_rate(False)),
                        ("bare_channels_last_fp32", lambda: bare_step_rate(True)),
                        ("trainer_channels_last_fp32", lambda: trainer_step_rate(True)),
                        ("trainer_nchw_fp32", lambda: trainer_step_rate(False)),
                        ("bare_nchw_bf16", lambda: bare_step_rate(False, "bf16")),
                        ("bare_channels_last_bf16", lambda: bare_step_rate(True, "bf16"))):
            rates.setdefault(key, []).append(fn())
    best = {k: max(v) for k, v in rates.items()}
    results["step_images_per_s"] = {k: round(v, 1) for k, v in best.items()}
    results["trainer_vs_bare_same_format"] = best["trainer_channels_last_fp32"] / best["bare_channels_last_fp32"]
    results["trainer_default_vs_bare_default"] = best["trainer_channels_last_fp32"] / best["bare_nchw_fp32"]
    results["channels_last_vs_nchw"] = best["bare_channels_last_fp32"] / best["bare_nchw_fp32"]
    results["bf16_vs_fp32_channels_last"] = best["bare_channels_last_bf16"] / best["bare_channels_last_fp32"]
    for k, v in best.items():
        print(f"   {k:28s} {v:7.1f} img/s", flush=True)
    print(f"   trainer / bare (same channels_last batch): {results['trainer_vs_bare_same_format']:.2f}x; "
          f"trainer (defaults) / bare NCHW: {results['trainer_default_vs_bare_default']:.2f}x", flush=True)
    print(f"3. channels_last / NCHW: {results['channels_last_vs_nchw']:.2f}x; "
          f"bf16 / fp32 (channels_last): {results['bf16_vs_fp32_channels_last']:.2f}x", flush=True)
    results["machine"]["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    return write(results, out)


def write(results: dict, out: Path) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
