"""Side by side with the tools people use instead: the seeds' own Keras models, the plain PyTorch
script, fastai -- each next to transferlab on the same machine, data and pretrained weights.

    python bench/bench_peers.py                     # everything (~85 minutes on 2 quiet cores, 2026-12-03)
    python bench/bench_peers.py --group ladder      # one group: ladder, mobilenet, fastai
    python bench/bench_peers.py --quick             # smoke run: small class-balanced subsets, 1-2 epochs

Data: ``../shared/data/cifar10-subset`` (10,000 train / 2,000 test, 32 px), ``../shared/data/cars``
(1,890 / 469 photos), ``../shared/data/fingers`` (960 / 240, 128 px grayscale); weights:
``../shared/weights/mobilenet_v2-b0353104.pth`` (ImageNet MobileNetV2, torchvision keys). Every
figure is accuracy on the dataset's own test split.

Groups (each job runs in its own process: its wall time is process start to result, imports and
data loading included, and its peak memory is that process's peak RSS, VmHWM; DataLoader worker
processes are reported apart):

- ``ladder``: the seeds' Keras models as their notebooks define them, Keras 3 on its PyTorch backend
  (``KERAS_BACKEND=torch``, no TensorFlow), images loaded into NumPy arrays as the notebooks did,
  Adam, batch 32, with their epochs -- CIFAR-10: (1) Conv2D > MaxPooling2D > Flatten > Dense, 20
  epochs; (2) Conv2D > Conv2D > MaxPooling2D > Conv2D > MaxPooling2D > Flatten > Dense, 10 epochs;
  (3) the same with two conv pairs, L2 on weights and biases, Dropout and Dense 512, 10 epochs
  (32/64 filters, as ../shared/data/README.md assumes from the slides); fingers: a three-stage CNN
  at 128 px, 10 epochs (the notebook itself is not in ../shared, so its shape is assumed: 32/64/128
  filters, Dense 128). Next to them transferlab's rungs (``transferlab.train(...)``, recipe
  defaults, same data and epochs): cnn_base, cnn_bn, cnn_dropout; cnn_bn on the fingers.
- ``mobilenet``: the plain script a PyTorch user writes -- timm ``mobilenetv2_100`` with the shared
  weights, frozen base (eval mode), a new linear head, torchvision ``ImageFolder`` + transforms, a
  ``DataLoader`` with 2 workers, Adam 1e-3, batch 32; the base runs on every image every epoch --
  next to ``transferlab.train(model="mobilenet_v2", freeze="frozen", augment="none")`` with the same
  weights, epochs, batch, optimizer, constant learning rate (no warm-up, no label smoothing) and input
  size (CIFAR upscaled to 96 px, cars at 224 px); transferlab holds out 20% of the training files for
  validation (its default), the plain script trains on all of them. The ratio is the plain script's
  time to reach the accuracy both reach, over transferlab's whole time (training + test evaluation).
  Then the same transferlab job with 30 head epochs (on cached features an epoch costs under a
  second) beside the plain script's 3. Also transferlab with its recipe defaults on the cars (only data,
  weights and input size given): what a user gets, compared with fastai below.
- ``fastai``: ``vision_learner(dls, "mobilenetv2_100", ...)`` with the same weights loaded into its
  body, ``fine_tune(1)`` (one frozen epoch, one unfrozen), next to ``transferlab.train(...,
  epochs=1, fine_tune=1)`` (a head epoch on cached features, one unfrozen epoch).

Time is reported as wall time and as CPU time (user + system of the job's process and its finished
children): on a shared machine the second is the steadier one. Every job runs with
``OMP_WAIT_POLICY=PASSIVE``, which transferlab sets for itself (its ``__init__``) and the peers would
not: spinning OpenMP threads made one Keras epoch 9x slower on this busy machine (123.5 s vs 13.8 s),
and the comparison is about the tools, not that setting.

Writes bench/results/peers.json; ``--table`` prints the bench/README.md table from it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

T0 = time.perf_counter()
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "peers.json"
SHARED = Path(os.environ.get("TRANSFERLAB_SHARED", HERE.parent.parent / "shared"))
DATA = SHARED / "data"
MNV2_WEIGHTS = SHARED / "weights" / "mobilenet_v2-b0353104.pth"
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
BATCH = 32
CIFAR_PX, CARS_PX = 96, 224

# job id -> (group, tool, dataset, what, parameters)
JOBS: dict[str, dict] = {
    # the CIFAR-10 ladder and the fingers CNN
    "keras_cnn1": dict(group="ladder", tool="keras", data="cifar10-subset", epochs=20,
                       what="Conv2D > MaxPooling2D > Flatten > Dense"),
    "keras_cnn2": dict(group="ladder", tool="keras", data="cifar10-subset", epochs=10,
                       what="Conv2D > Conv2D > MaxPooling2D > Conv2D > MaxPooling2D > Flatten > Dense"),
    "keras_cnn3": dict(group="ladder", tool="keras", data="cifar10-subset", epochs=10,
                       what="+ L2, bias, Dropout (two conv pairs, Dense 512)"),
    "keras_fingers": dict(group="ladder", tool="keras", data="fingers", epochs=10,
                          what="fingers CNN: 3 x (Conv2D > MaxPooling2D) > Flatten > Dense 128 > Dense, 128 px"),
    "tl_cnn_base": dict(group="ladder", tool="transferlab", data="cifar10-subset", epochs=20, model="cnn_base",
                        input_size=32, what="transferlab train --model cnn_base"),
    "tl_cnn_bn": dict(group="ladder", tool="transferlab", data="cifar10-subset", epochs=10, model="cnn_bn",
                      input_size=32, what="transferlab train --model cnn_bn"),
    "tl_cnn_dropout": dict(group="ladder", tool="transferlab", data="cifar10-subset", epochs=10, model="cnn_dropout",
                           input_size=32, what="transferlab train --model cnn_dropout"),
    "tl_fingers": dict(group="ladder", tool="transferlab", data="fingers", epochs=10, model="cnn_bn", input_size=64,
                       what="transferlab train --model cnn_bn --input-size 64"),
    # MobileNetV2, frozen base + new head
    "plain_cifar": dict(group="mobilenet", tool="plain PyTorch", data="cifar10-subset", epochs=3, input_size=CIFAR_PX,
                        what="timm mobilenetv2_100, frozen base, DataLoader loop"),
    "tl_frozen_cifar": dict(group="mobilenet", tool="transferlab", data="cifar10-subset", epochs=3,
                            input_size=CIFAR_PX, model="mobilenet_v2",
                            what="transferlab train --model mobilenet_v2 --freeze frozen"),
    "plain_cars": dict(group="mobilenet", tool="plain PyTorch", data="cars", epochs=3, input_size=CARS_PX,
                       what="timm mobilenetv2_100, frozen base, DataLoader loop"),
    "tl_frozen_cars": dict(group="mobilenet", tool="transferlab", data="cars", epochs=3, input_size=CARS_PX,
                           model="mobilenet_v2", what="transferlab train --model mobilenet_v2 --freeze frozen"),
    # the same, with the head trained for 30 epochs: on cached features an extra epoch costs well under
    # a second, so transferlab need not stop where the plain script's epochs are expensive
    "tl_frozen30_cifar": dict(group="mobilenet", tool="transferlab", data="cifar10-subset", epochs=30,
                              input_size=CIFAR_PX, model="mobilenet_v2",
                              what="transferlab train --model mobilenet_v2 --freeze frozen --epochs 30"),
    "tl_frozen30_cars": dict(group="mobilenet", tool="transferlab", data="cars", epochs=30, input_size=CARS_PX,
                             model="mobilenet_v2", what="transferlab train --model mobilenet_v2 --freeze frozen --epochs 30"),
    # what a user gets: the recipe's defaults, only the data, weights and input size given (on the
    # cars only: the defaults fine-tune for several epochs, an hour more on CIFAR on this machine)
    "tl_default_cars": dict(group="mobilenet", tool="transferlab", data="cars", epochs=None, input_size=CARS_PX,
                            model="mobilenet_v2", what="transferlab train --model mobilenet_v2 (recipe defaults)"),
    # fine-tuning
    "fastai_cifar": dict(group="fastai", tool="fastai", data="cifar10-subset", epochs=1, input_size=CIFAR_PX,
                         what="vision_learner(mobilenetv2_100).fine_tune(1)"),
    "tl_finetune_cifar": dict(group="fastai", tool="transferlab", data="cifar10-subset", epochs=1,
                              input_size=CIFAR_PX, model="mobilenet_v2",
                              what="transferlab train --model mobilenet_v2 --epochs 1 --fine-tune 1"),
    "fastai_cars": dict(group="fastai", tool="fastai", data="cars", epochs=1, input_size=CARS_PX,
                        what="vision_learner(mobilenetv2_100).fine_tune(1)"),
    "tl_finetune_cars": dict(group="fastai", tool="transferlab", data="cars", epochs=1, input_size=CARS_PX,
                             model="mobilenet_v2", what="transferlab train --model mobilenet_v2 --epochs 1 --fine-tune 1"),
}
# (title, peer job, transferlab job, how time is compared)
PAIRS = [
    ("CIFAR-10 ladder, rung 1 (20 epochs)", "keras_cnn1", "tl_cnn_base", "wall"),
    ("CIFAR-10 ladder, rung 2 (10 epochs)", "keras_cnn2", "tl_cnn_bn", "wall"),
    ("CIFAR-10 ladder, rung 3 (10 epochs)", "keras_cnn3", "tl_cnn_dropout", "wall"),
    ("fingers CNN (10 epochs)", "keras_fingers", "tl_fingers", "wall"),
    (f"MobileNetV2 frozen + new head, CIFAR-10 at {CIFAR_PX} px (3 epochs)", "plain_cifar", "tl_frozen_cifar", "to_accuracy"),
    (f"MobileNetV2 frozen + new head, cars at {CARS_PX} px (3 epochs)", "plain_cars", "tl_frozen_cars", "to_accuracy"),
    # the plain script's 3 epochs beside transferlab's head trained 30 epochs on its cached features
    (f"MobileNetV2 frozen + new head, CIFAR-10 at {CIFAR_PX} px: 3 epochs vs transferlab 30", "plain_cifar",
     "tl_frozen30_cifar", "wall"),
    (f"MobileNetV2 frozen + new head, cars at {CARS_PX} px: 3 epochs vs transferlab 30", "plain_cars",
     "tl_frozen30_cars", "wall"),
    (f"MobileNetV2 fine-tuned, CIFAR-10 at {CIFAR_PX} px (1 + 1 epochs)", "fastai_cifar", "tl_finetune_cifar", "wall"),
    (f"MobileNetV2 fine-tuned, cars at {CARS_PX} px (1 + 1 epochs)", "fastai_cars", "tl_finetune_cars", "wall"),
    # what a user gets: transferlab's recipe defaults beside the fine-tuning peer
    (f"MobileNetV2, cars at {CARS_PX} px: fastai fine_tune(1) vs transferlab's defaults", "fastai_cars",
     "tl_default_cars", "wall"),
]


def cpu() -> float:
    """CPU seconds of this process and its finished children (DataLoader workers included): less
    sensitive than wall time to other processes on a shared machine."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# -- data ------------------------------------------------------------------------------------------
def dataset(name: str, quick: bool, work: Path) -> Path:
    """The dataset folder (train/ + test/); with ``quick``, a class-balanced subset made of symlinks."""
    root = DATA / name
    if not root.is_dir():
        raise SystemExit(f"{root} is missing (see ../shared/data/README.md)")
    if not quick:
        return root
    out = work / f"{name}-quick"
    if out.is_dir():
        return out
    for split, n in (("train", 40), ("test", 10)):
        for cls in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            (out / split / cls.name).mkdir(parents=True, exist_ok=True)
            for f in sorted(cls.iterdir())[:n]:
                (out / split / cls.name / f.name).symlink_to(f)
    return out


def numpy_images(root: Path, split: str, size: int, gray: bool):
    """All images of ``root/split/CLASS/*`` as float32 arrays in [0, 1] and int labels (as the notebooks did)."""
    import numpy as np
    from PIL import Image

    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    xs, ys = [], []
    for y, cls in enumerate(classes):
        for f in sorted((root / split / cls).iterdir()):
            img = Image.open(f).convert("L" if gray else "RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            xs.append(np.asarray(img, dtype=np.uint8))
            ys.append(y)
    x = np.stack(xs).astype(np.float32) / 255.0
    return (x[..., None] if gray else x), np.array(ys), classes


def load_mnv2_weights(model, path: Path = MNV2_WEIGHTS) -> int:
    """torchvision MobileNetV2 tensors into a timm ``mobilenetv2_100`` by order (shapes checked), the
    1000-class classifier left out: what a user does with a torchvision-keyed file."""
    import torch

    src = [v for k, v in torch.load(path, map_location="cpu").items()
           if not k.endswith("num_batches_tracked") and not k.startswith("classifier")]
    dst = [(k, v) for k, v in model.state_dict().items()
           if not k.endswith("num_batches_tracked") and not k.startswith("classifier")]
    if len(src) != len(dst):
        raise SystemExit(f"{path}: {len(src)} tensors for {len(dst)} in the model")
    state = {}
    for (k, v), w in zip(dst, src):
        if tuple(v.shape) != tuple(w.shape):
            raise SystemExit(f"{path}: shape {tuple(w.shape)} for {k} {tuple(v.shape)}")
        state[k] = w
    model.load_state_dict(state, strict=False)
    return len(state)


# -- the jobs --------------------------------------------------------------------------------------
def keras_job(job: dict, root: Path, epochs: int) -> dict:
    os.environ["KERAS_BACKEND"] = "torch"
    import keras
    from keras import layers, regularizers

    gray = job["data"] == "fingers"
    size = 128 if gray else 32
    t = time.perf_counter()
    x_train, y_train, classes = numpy_images(root, "train", size, gray)
    x_test, y_test, _ = numpy_images(root, "test", size, gray)
    load_s = time.perf_counter() - t
    n = len(classes)
    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, 1 if gray else 3))
    if job["id"] == "keras_cnn1":
        body = [layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(), layers.Flatten()]
    elif job["id"] == "keras_cnn2":
        body = [layers.Conv2D(32, 3, activation="relu"), layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
                layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(), layers.Flatten()]
    elif job["id"] == "keras_cnn3":
        def reg():
            return dict(kernel_regularizer=regularizers.l2(1e-4), bias_regularizer=regularizers.l2(1e-4))
        body = [layers.Conv2D(32, 3, padding="same", activation="relu", **reg()),
                layers.Conv2D(32, 3, activation="relu", **reg()), layers.MaxPooling2D(), layers.Dropout(0.25),
                layers.Conv2D(64, 3, padding="same", activation="relu", **reg()),
                layers.Conv2D(64, 3, activation="relu", **reg()), layers.MaxPooling2D(), layers.Dropout(0.25),
                layers.Flatten(), layers.Dense(512, activation="relu", **reg()), layers.Dropout(0.5)]
    else:  # the fingers CNN
        body = [layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
                layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
                layers.Conv2D(128, 3, activation="relu"), layers.MaxPooling2D(),
                layers.Flatten(), layers.Dense(128, activation="relu")]
    x = inp
    for layer in body:
        x = layer(x)
    model = keras.Model(inp, layers.Dense(n, activation="softmax")(x))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t, c = time.perf_counter(), cpu()
    model.fit(x_train, y_train, batch_size=BATCH, epochs=epochs, verbose=0)
    train_s, train_cpu = time.perf_counter() - t, cpu() - c
    _, acc = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    return {"test_accuracy": round(float(acc), 4), "train_s": round(train_s, 1), "train_cpu_s": round(train_cpu, 1),
            "load_s": round(load_s, 1),
            "params": int(model.count_params()), "train_images": int(len(y_train)), "keras": keras.__version__,
            "backend": keras.backend.backend()}


def transferlab_job(job: dict, root: Path, epochs: int, work: Path) -> dict:
    import transferlab as tl

    kwargs = dict(model=job["model"], input_size=job["input_size"], batch_size=BATCH, seed=0, progress=False,
                  run_dir=work / "runs", name=job["id"], overwrite=True)
    if job["model"] == "mobilenet_v2":
        kwargs["weights"] = str(MNV2_WEIGHTS)
    if job["epochs"] is None:          # the recipe's defaults (a quick run: 1 epoch)
        if epochs is not None:
            kwargs.update(epochs=epochs)
    elif job["group"] == "mobilenet":   # like-for-like with the plain script
        # the plain script's constant lr, no warm-up, no label smoothing (the recipe's own are off)
        kwargs.update(freeze="frozen", epochs=epochs, augment="none", optimizer="adam", lr=1e-3, weight_decay=0.0,
                      schedule="constant", warmup=0, label_smoothing=0.0)
    elif job["group"] == "fastai":    # a head epoch, then the whole backbone: fastai's fine_tune(1)
        kwargs.update(epochs=1, fine_tune=epochs)
    else:
        kwargs.update(epochs=epochs)
    t, c = time.perf_counter(), cpu()
    run = tl.train(root, **kwargs)
    train_s, train_cpu = time.perf_counter() - t, cpu() - c
    metrics = tl.evaluate(run, split="test", plots=False, progress=False)
    cfg = run.config
    return {"test_accuracy": round(float(metrics["accuracy"]), 4), "train_s": round(train_s, 1),
            "train_cpu_s": round(train_cpu, 1), "eval_s": round(time.perf_counter() - t - train_s, 1),
            "eval_cpu_s": round(cpu() - c - train_cpu, 1), "epochs_run": len(run.history),
            "history": [{k: r[k] for k in ("epoch", "val_acc", "seconds")} for r in run.history],
            "train_images": (cfg.get("split_counts") or {}).get("train"),
            "options": {k: cfg.get(k) for k in ("lr", "optimizer", "augment", "weight_decay", "freeze", "fine_tune",
                                                "head", "dropout", "input_size", "feature_cache")}}


def torch_loaders(root: Path, size: int, workers: int = 2):
    import torch
    from torchvision import datasets, transforms as T

    # as ImageNet evaluation (and transferlab) does: shorter side to size / 0.875, centre crop
    tf = T.Compose([T.Resize(round(size / 0.875)), T.CenterCrop(size), T.ToTensor(), T.Normalize(*IMAGENET)])
    train = datasets.ImageFolder(root / "train", tf)
    test = datasets.ImageFolder(root / "test", tf)
    g = torch.Generator().manual_seed(0)
    return (torch.utils.data.DataLoader(train, batch_size=BATCH, shuffle=True, num_workers=workers, generator=g),
            torch.utils.data.DataLoader(test, batch_size=64, num_workers=workers), len(train.classes))


def plain_job(job: dict, root: Path, epochs: int) -> dict:
    """What a PyTorch user writes for 'frozen MobileNetV2 + new head'."""
    import timm
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    size = job["input_size"]
    train_dl, test_dl, n = torch_loaders(root, size)
    model = timm.create_model("mobilenetv2_100", pretrained=False)
    loaded = load_mnv2_weights(model)
    model.reset_classifier(n)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("classifier")
    opt = torch.optim.Adam(model.classifier.parameters(), lr=1e-3)

    def test_accuracy() -> float:
        model.eval()
        correct = seen = 0
        with torch.no_grad():
            for x, y in test_dl:
                correct += int((model(x).argmax(1) == y).sum())
                seen += len(y)
        return correct / seen

    curve, train_s, train_cpu = [], 0.0, 0.0
    for epoch in range(1, epochs + 1):
        t, c = time.perf_counter(), cpu()
        model.eval()                      # frozen base: BatchNorm keeps its ImageNet statistics
        for x, y in train_dl:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        train_s += time.perf_counter() - t
        train_cpu += cpu() - c
        curve.append({"epoch": epoch, "train_s": round(train_s, 1), "train_cpu_s": round(train_cpu, 1),
                      "test_accuracy": round(test_accuracy(), 4)})
        print(f"  epoch {epoch}: {curve[-1]}", flush=True)
    return {"test_accuracy": curve[-1]["test_accuracy"], "train_s": round(train_s, 1),
            "train_cpu_s": round(train_cpu, 1), "curve": curve,
            "weights_loaded": loaded, "train_images": len(train_dl.dataset)}


def fastai_job(job: dict, root: Path, epochs: int) -> dict:
    import fastai
    from fastai.vision.all import (ImageDataLoaders, Normalize, Resize, accuracy, imagenet_stats, set_seed,
                                   vision_learner)

    set_seed(0)
    size = job["input_size"]
    dls = ImageDataLoaders.from_folder(root, train="train", valid="test", item_tfms=Resize(size),
                                       batch_tfms=[Normalize.from_stats(*imagenet_stats)], bs=BATCH, num_workers=2)
    # pretrained=False: timm would download; the shared weights go into the body instead
    learn = vision_learner(dls, "mobilenetv2_100", pretrained=False, metrics=accuracy)
    body = learn.model[0].model
    loaded = load_mnv2_weights(body)
    t, c = time.perf_counter(), cpu()
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(epochs, freeze_epochs=1)
    train_s, train_cpu = time.perf_counter() - t, cpu() - c
    acc = float(learn.validate()[1])
    return {"test_accuracy": round(acc, 4), "train_s": round(train_s, 1), "train_cpu_s": round(train_cpu, 1),
            "weights_loaded": loaded,
            "train_images": len(dls.train_ds), "fastai": fastai.__version__}


def worker(job_id: str, quick: bool, work: Path) -> dict:
    job = {**JOBS[job_id], "id": job_id}
    epochs = 1 if quick else job["epochs"]     # None: the recipe's own
    if quick and job["group"] == "ladder":
        epochs = 2
    root = dataset(job["data"], quick, work)
    if job["tool"] == "keras":
        out = keras_job(job, root, epochs)
    elif job["tool"] == "transferlab":
        out = transferlab_job(job, root, epochs, work)
    elif job["tool"] == "plain PyTorch":
        out = plain_job(job, root, epochs)
    else:
        out = fastai_job(job, root, epochs)
    status = Path("/proc/self/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return {**out, "epochs": epochs, "peak_rss_mb": round(hwm / 1024), "in_process_s": round(time.perf_counter() - T0, 1),
            "cpu_s": round(cpu(), 1)}


# -- the run ---------------------------------------------------------------------------------------
def run_job(job_id: str, quick: bool, work: Path) -> dict:
    out = work / f"{job_id}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", job_id, "--work", str(work),
           "--json", str(out)] + (["--quick"] if quick else [])
    # OMP_WAIT_POLICY=PASSIVE: OpenMP threads that wait sleep instead of spinning, so CPU time counts
    # work, not waiting (spinning inflated it several-fold on a shared machine); the same for every tool
    env = {**os.environ, "KERAS_BACKEND": "torch", "TRANSFERLAB_WEIGHTS": str(SHARED / "weights"),
           "TRANSFERLAB_CACHE": str(work / "cache"), "PYTHONWARNINGS": "ignore", "OMP_WAIT_POLICY": "PASSIVE"}
    print(f"[{job_id}] {JOBS[job_id]['what']} on {JOBS[job_id]['data']} ...", flush=True)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    base = {"id": job_id, **{k: v for k, v in JOBS[job_id].items()}}
    if proc.returncode != 0 or not out.is_file():
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        print(f"[{job_id}] failed: {reason}", flush=True)
        return {**base, "status": f"failed: {reason}"}
    res = {**base, **json.loads(out.read_text()), "wall_s": round(wall, 1), "status": "ok"}
    print(f"[{job_id}] test accuracy {res['test_accuracy']:.4f}, wall {wall:.0f} s, peak RSS {res['peak_rss_mb']} MB",
          flush=True)
    return res


def time_to(curve: list[dict], accuracy: float, key: str) -> float | None:
    """Training seconds (``key``: wall or CPU) at the first epoch whose test accuracy reaches ``accuracy``."""
    return next((c[key] for c in curve if c["test_accuracy"] >= accuracy), None)


def compare(jobs: dict[str, dict]) -> list[dict]:
    rows = []
    for title, peer_id, tl_id, how in PAIRS:
        peer, tl = jobs.get(peer_id), jobs.get(tl_id)
        if not peer or not tl or peer.get("status") != "ok" or tl.get("status") != "ok":
            rows.append({"comparison": title, "peer": peer_id, "transferlab": tl_id,
                         "status": "not run" if not peer or not tl else f"{peer.get('status')} / {tl.get('status')}"})
            continue
        row = {"comparison": title, "peer": peer_id, "peer_tool": peer["tool"], "transferlab": tl_id,
               "peer_accuracy": peer["test_accuracy"], "transferlab_accuracy": tl["test_accuracy"],
               "accuracy_gain": round(tl["test_accuracy"] - peer["test_accuracy"], 4),
               "peer_wall_s": peer["wall_s"], "transferlab_wall_s": tl["wall_s"],
               "peer_peak_rss_mb": peer["peak_rss_mb"], "transferlab_peak_rss_mb": tl["peak_rss_mb"],
               "wall_time_ratio_peer_over_transferlab": round(peer["wall_s"] / tl["wall_s"], 2),
               "peer_cpu_s": peer["cpu_s"], "transferlab_cpu_s": tl["cpu_s"],
               "cpu_time_ratio_peer_over_transferlab": round(peer["cpu_s"] / tl["cpu_s"], 2)}
        if how == "to_accuracy":
            # the accuracy both reach; the plain script's training time to it (its curve), over
            # transferlab's whole time (it reaches its accuracy only at its end, as far as we know)
            target = min(peer["test_accuracy"], tl["test_accuracy"])
            peer_s, peer_cpu = time_to(peer["curve"], target, "train_s"), time_to(peer["curve"], target, "train_cpu_s")
            tl_s, tl_cpu = tl["train_s"] + tl["eval_s"], tl["train_cpu_s"] + tl["eval_cpu_s"]
            row.update(target_accuracy=target, peer_time_to_target_s=peer_s, transferlab_time_to_target_s=round(tl_s, 1),
                       time_to_accuracy_ratio=round(peer_s / tl_s, 2) if peer_s else None,
                       peer_cpu_to_target_s=peer_cpu, transferlab_cpu_to_target_s=round(tl_cpu, 1),
                       cpu_to_accuracy_ratio=round(peer_cpu / tl_cpu, 2) if peer_cpu else None)
        row["transferlab_ahead"] = bool(row["accuracy_gain"] >= 0 and tl["wall_s"] <= peer["wall_s"])
        rows.append(row)
    return rows


def markdown(result: dict) -> str:
    """The bench/README.md table, from a peers.json result."""
    jobs = result["jobs"]

    def cells(j: dict | None) -> list[str]:
        if not j or j.get("status") != "ok":
            return ["-"] * 4
        return [f"{j['test_accuracy']:.4f}", f"{j['wall_s']:.0f} s", f"{j['cpu_s']:.0f} s", f"{j['peak_rss_mb']:,} MB"]

    lines = ["| comparison | peer | accuracy | wall | CPU | peak RSS | transferlab | accuracy | wall | CPU | peak RSS "
             "| peer / transferlab: wall | CPU |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["comparisons"]:
        peer, tl = jobs.get(r["peer"]), jobs.get(r["transferlab"])
        if "peer_accuracy" not in r:
            ratios = [r["status"], ""]
        elif "target_accuracy" in r:   # time to the accuracy both reach
            ratios = [f"**{r['time_to_accuracy_ratio']}x** to {r['target_accuracy']:.4f}",
                      f"**{r['cpu_to_accuracy_ratio']}x**"]
        else:
            ratios = [f"**{r['wall_time_ratio_peer_over_transferlab']}x**",
                      f"**{r['cpu_time_ratio_peer_over_transferlab']}x**"]
        peer_what = f"{peer['tool']}: {peer['what']}" if peer else r["peer"]
        tl_what = f"`{tl['what'].replace('transferlab train ', '')}`" if tl else r["transferlab"]
        lines.append("| " + " | ".join([r["comparison"], peer_what, *cells(peer), tl_what, *cells(tl), *ratios]) + " |")
    return "\n".join(lines)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    repo = HERE.parent
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, capture_output=True, text=True).stdout.strip()  # noqa: E731
    out = {"transferlab_commit": git("rev-parse", "--short", "HEAD"),
           "transferlab_uncommitted": git("status", "--porcelain", "--", "src").splitlines()}
    for pkg in ("torch", "torchvision", "timm", "keras", "fastai", "transferlab"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--group", action="append", choices=("ladder", "mobilenet", "fastai"), help="default: all")
    ap.add_argument("--job", action="append", choices=sorted(JOBS), help="run only these jobs")
    ap.add_argument("--quick", action="store_true", help="small subsets, 1-2 epochs (smoke run)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp folder)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--table", action="store_true", help="print the markdown tables from --out and exit")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.table:
        print(markdown(json.loads(Path(args.out).read_text())))
        return 0
    work = Path(args.work or tempfile.mkdtemp(prefix="tl-bench-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.worker:
        Path(args.json).write_text(json.dumps(worker(args.worker, args.quick, work)))
        return 0

    fastai_reason = None
    try:
        import fastai  # noqa: F401
    except ImportError as exc:
        fastai_reason = f"fastai is not installed ({exc}); pip install -e '.[bench]'"
    ids = [j for j in JOBS if (not args.group or JOBS[j]["group"] in args.group) and (not args.job or j in args.job)]
    load_before = os.getloadavg()[0]
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    jobs = dict(previous.get("jobs", {})) if not args.quick else {}
    for job_id in ids:
        if JOBS[job_id]["tool"] == "fastai" and fastai_reason:
            jobs[job_id] = {"id": job_id, **JOBS[job_id], "status": f"skipped: {fastai_reason}"}
            continue
        jobs[job_id] = run_job(job_id, args.quick, work)
    result = {
        "date": date.today().isoformat(), "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_1m_before": round(load_before, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2)},
        "versions": versions(), "batch_size": BATCH,
        "jobs": jobs,
        "comparisons": compare(jobs),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'comparison':<62} {'peer':>8} {'tl':>8} {'peer s':>7} {'tl s':>7} {'ratio':>6}")
    for r in result["comparisons"]:
        if "peer_accuracy" not in r:
            print(f"{r['comparison']:<62} {r['status']}")
            continue
        ratio = r.get("time_to_accuracy_ratio") or r["wall_time_ratio_peer_over_transferlab"]
        print(f"{r['comparison']:<62} {r['peer_accuracy']:>8.4f} {r['transferlab_accuracy']:>8.4f} "
              f"{r['peer_wall_s']:>7.0f} {r['transferlab_wall_s']:>7.0f} {ratio:>6}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
