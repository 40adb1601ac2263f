"""The run folder format: the one owner of its file names, readers and writers.

``train`` writes a run folder, ``evaluate`` and ``export`` add to it, ``compare``, ``predict`` and
``serve`` read it. Every one of them goes through this module::

    runs/NAME/
      config.json          every resolved training option, classes, data_cfg, split counts, versions
      history.csv          epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds
      best.safetensors     the best epoch by --monitor (transferlab.checkpoint: model + metadata)
      last.safetensors     the latest epoch
      last_state.pt        optimizer / scheduler / callbacks / RNG / history: what --resume needs
      train.log            the messages printed during training
      .lock                present while a process trains into the folder
      eval-<split>/        written by evaluate: metrics.json, predictions.csv, *.png
      calibration.json     written by evaluate on the val split: the softmax temperature predict/serve apply
      export/              written by export: model.onnx, model.int8.onnx, model.pt, model.json
      tensorboard/         with --trackers tensorboard: event files (train/, validation/, hparams)
      tracking.json        with --trackers mlflow: the MLflow run this folder logs to (URI, experiment, run id)

>>> from transferlab import runfolder
>>> config = runfolder.read_config("runs/cnn_bn")                     # doctest: +SKIP
>>> runfolder.read_history("runs/cnn_bn")[-1]["val_acc"]              # doctest: +SKIP
>>> metrics, why = runfolder.read_metrics("runs/cnn_bn", "val")       # doctest: +SKIP
>>> preds, why = runfolder.read_predictions("runs/cnn_bn", "val")   # doctest: +SKIP

This module imports no PyTorch at load time: the ONNX predict/serve path reads run folders and
must stay lean (torch costs 3.1 s and ~480 MB of RSS here). Only the resume state, a torch pickle,
imports it, inside :func:`save_state` / :func:`load_state`.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ._atomic import atomic_write, atomic_write_text, write_json
from .data.load import load_data
from .data.types import DataSplits
from .errors import ConfigError, DataError, TransferlabError

CONFIG = "config.json"
HISTORY = "history.csv"
BEST = "best.safetensors"
LAST = "last.safetensors"
STATE = "last_state.pt"
LOG = "train.log"
LOCK = ".lock"
CHECKPOINTS = {"best": BEST, "last": LAST}
RUN_FILES = (CONFIG, HISTORY, BEST, LAST, STATE, LOG)
HISTORY_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]

METRICS = "metrics.json"
PREDICTIONS = "predictions.csv"
EXPORT_DIR = "export"
ONNX_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
TORCHSCRIPT_NAME = "model.pt"
OPENVINO_NAME = "model.xml"          # + model.bin
OPENVINO_INT8_NAME = "model.int8.xml"
COREML_NAME = "model.mlpackage"
EXPORT_META = "model.json"
TENSORBOARD_DIR = "tensorboard"
TRACKING = "tracking.json"
CALIBRATION = "calibration.json"


def run_path(run) -> Path:
    """A run folder given as a path, a string or anything with a ``dir`` (a ``Run``)."""
    return Path(getattr(run, "dir", run))


def existing_run(run) -> Path:
    """:func:`run_path`, which must exist: the one "run not found" check (stages and the CLI)."""
    p = run_path(run)
    if not p.exists():
        raise DataError(f"run not found: {p}")
    return p


# ---------------------------------------------------------------- config.json

def read_config(run, *, required: bool = False) -> dict[str, Any]:
    """A run's ``config.json`` (``{}`` when it has none, unless ``required``)."""
    p = run_path(run) / CONFIG
    if not p.is_file():
        if required:
            raise TransferlabError(f"not a run folder (no {CONFIG}): {run_path(run)}")
        return {}
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{p} is not valid JSON ({exc})") from None


def write_config(run, config: dict[str, Any]) -> None:
    write_json(run_path(run) / CONFIG, config)


# ---------------------------------------------------------------- history.csv

def read_history(run_or_file) -> list[dict[str, Any]]:
    """Rows of a run's ``history.csv`` (``epoch`` an int, the rest floats; a blank or unreadable cell
    is None); an empty list when the file is missing. Takes the run folder or the file itself."""
    path = run_path(run_or_file)
    if path.is_dir():
        path = path / HISTORY
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _cell(k, v) for k, v in row.items() if k is not None} for row in csv.DictReader(f)]


def _cell(key: str, value: str | None) -> int | float | None:
    if value is None:  # a row shorter than the header
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if key == "epoch" and number.is_integer() else number


def write_history(run, history: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: _fmt(row.get(k)) for k in HISTORY_FIELDS})
    atomic_write_text(run_path(run) / HISTORY, buf.getvalue())


def _fmt(v):
    if isinstance(v, float):
        return repr(v)
    return "" if v is None else v


def append_log(run, message: str) -> None:
    with open(run_path(run) / LOG, "a", encoding="utf-8") as f:
        f.write(message + "\n")


# ---------------------------------------------------------------- checkpoints and resume state

def checkpoint_path(run, which: str = "best") -> Path:
    """Where checkpoint ``which`` (``best`` or ``last``) of a run lives (whether or not it exists)."""
    if which not in CHECKPOINTS:
        raise TransferlabError(f"unknown checkpoint {which!r}: choose from {', '.join(CHECKPOINTS)}")
    return run_path(run) / CHECKPOINTS[which]


def resolve_checkpoint(run_or_file, which: str = "best") -> Path:
    """The checkpoint file of a run folder (``best`` falls back to ``last``), or a file path as given."""
    p = existing_run(run_or_file)
    if p.is_file():
        return p
    for candidate in (checkpoint_path(p, which), *(p / n for n in CHECKPOINTS.values())):
        if candidate.is_file():
            return candidate
    if (p / EXPORT_DIR / EXPORT_META).is_file() and '"members"' in (p / EXPORT_DIR / EXPORT_META).read_text(
            encoding="utf-8", errors="replace"):  # an ensemble (compare's): only its export exists
        raise TransferlabError(f"{p} is an ensemble: it has no checkpoint, only its ONNX graph ({EXPORT_DIR}/"
                               f"{ONNX_NAME}); predict and serve use it, and compare wrote its evaluation (eval-*/)")
    raise TransferlabError(f"no checkpoint in {p} (expected {BEST} or {LAST}); train it first")


def save_state(run, state: dict[str, Any]) -> None:
    """Write the resume state (``last_state.pt``) atomically."""
    import torch  # lazy: this module is on the torch-free serving path (see the module docstring)

    atomic_write(run_path(run) / STATE, lambda tmp: torch.save(state, tmp))


def load_state(run) -> dict[str, Any]:
    import torch  # lazy: this module is on the torch-free serving path (see the module docstring)

    path = run_path(run) / STATE
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise TransferlabError(f"cannot read {path} to resume: {exc}") from None


def has_state(run) -> bool:
    return (run_path(run) / STATE).is_file()


# ---------------------------------------------------------------- creating, replacing, locking

def check_run_dir(run, *, resume: bool, overwrite: bool) -> str:
    """What training may do with ``run``: ``"new"`` or ``"resume"`` (a state to continue exists);
    a ConfigError when the folder holds something it must not overwrite. Changes nothing."""
    d = run_path(run)
    if d.exists() and not d.is_dir():
        raise ConfigError(f"run folder is a file: {d}")
    exists = d.exists() and any(p.name != LOCK for p in d.iterdir())
    if resume:
        if has_state(d):
            return "resume"
        if exists:
            raise ConfigError(f"cannot resume {d}: no {STATE} in it (the run did not finish an epoch); "
                              f"use --overwrite to start again")
        return "new"
    if not exists:
        return "new"
    is_run = any((d / f).exists() for f in RUN_FILES)
    if not overwrite:
        what = "a run" if is_run else "files"
        raise ConfigError(f"{d} already holds {what}; use --resume to continue it, --overwrite to replace it, "
                          f"or --name to pick another name")
    if not is_run:
        raise ConfigError(f"refusing to overwrite {d}: it is not a transferlab run folder")
    return "new"


def clear_run_dir(run) -> None:
    """Empty a run folder before it is overwritten (its lock, held by the caller, is kept)."""
    d = run_path(run)
    for p in d.iterdir():
        if p.name == LOCK:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


class RunLock:
    """An exclusive lock on a run folder while one process trains into it (``filelock``: an OS file
    lock, released by the operating system when its process dies, so a killed run never leaves a
    lock to clear by hand).

    The lock file also holds ``host pid time`` of its holder, for the message: a second writer gets
    a ConfigError saying who holds the folder. ``created`` says whether the folder was made by this
    lock (so a failed first run can remove it).
    """

    def __init__(self, run):
        self.dir = run_path(run)
        self.path = self.dir / LOCK
        self.created = False
        self.held = False
        self._lock = FileLock(str(self.path))

    def acquire(self) -> "RunLock":
        self.created = not self.dir.exists()
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise ConfigError(f"{self.dir} is being trained by another process ({self._holder()}); "
                              f"wait for it to finish, or use another --name") from None
        self.path.write_text(f"{socket.gethostname()} {os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        self.held = True
        return self

    def _holder(self) -> str:
        try:
            host, pid, when = self.path.read_text().split()[:3]
            return f"pid {pid} on {host}, since {when}"
        except (OSError, ValueError):
            return "unknown process"

    def release(self, *, remove_if_empty: bool = False) -> None:
        """Drop the lock; with ``remove_if_empty``, remove the folder too when this lock created it
        and nothing else was written (a run that failed before its first file)."""
        if self.held:
            self.path.unlink(missing_ok=True)  # while still held: no one else's lock file is removed
            self._lock.release()
            self.held = False
        if remove_if_empty and self.created and self.dir.is_dir() and not any(self.dir.iterdir()):
            self.dir.rmdir()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------- the data a run was trained on

def load_run_splits(run, config: dict | None = None, data=None, progress: bool = False):
    """The data split a run was trained on: ``(DataSplits, source description, is_foreign)``.

    With ``data=None`` the dataset recorded in ``config.json`` is loaded with the run's val ratio and
    seed, scanned as training scanned it (broken files are dropped before the split is drawn), so the
    validation images are exactly training's. ``data`` may be another folder or ready ``DataSplits``.
    """
    d = run_path(run)
    if isinstance(data, DataSplits):
        return data, data.root, False
    config = read_config(d) if config is None else config
    val_ratio = float(config.get("val_ratio", 0.2))
    seed = int(config.get("split_seed", config.get("seed", 0)))  # split_seed: the split as drawn (train records it)
    own = config.get("data")
    if not isinstance(own, str) or not own:
        own = None
    if data is None:
        if own is None:
            raise DataError(f"{d / CONFIG} does not record the training data; pass --data DIR")
        if not Path(own).exists():
            raise DataError(f"the run's data {own} no longer exists; pass --data DIR")
        return load_data(own, val_ratio=val_ratio, seed=seed, progress=progress), own, False
    same = own is not None and Path(own).exists() and Path(own).resolve() == Path(data).resolve()
    # the run's own dataset given explicitly: its split (val by default), not every image
    return load_data(data, val_ratio=val_ratio, seed=seed, progress=progress), str(data), not same


# ---------------------------------------------------------------- evaluation outputs

def eval_dir(run, split: str) -> Path:
    return run_path(run) / f"eval-{split}"


def metrics_path(run, split: str = "val") -> Path:
    return eval_dir(run, split) / METRICS


def read_metrics(run, split: str = "val") -> tuple[dict[str, Any] | None, str | None]:
    """``(metrics, None)`` from ``eval-<split>/metrics.json``, or ``(None, reason)`` when it is
    missing, unreadable or not JSON."""
    path = metrics_path(run, split)
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, f"not evaluated yet (no {path})"
    except (OSError, ValueError) as exc:
        return None, f"cannot read {path}: {exc}"


def predictions_path(run, split: str = "val") -> Path:
    return eval_dir(run, split) / PREDICTIONS


def read_predictions(run, split: str = "val") -> tuple[dict[str, list[str]] | None, str | None]:
    """``(predictions, None)`` from ``eval-<split>/predictions.csv``, or ``(None, reason)`` when it is
    missing or unreadable. ``predictions``: ``{"paths", "true", "predicted", "classes"}``, one entry
    per evaluated image in evaluation order (class names), and the run's classes in order (from the
    ``prob_<class>`` columns)."""
    path = predictions_path(run, split)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or header[:3] != ["path", "true", "predicted"]:
                return None, f"cannot read {path}: expected the columns path,true,predicted"
            rows = [r for r in reader if r]
    except FileNotFoundError:
        return None, f"no {path}"
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return None, f"cannot read {path}: {exc}"
    if any(len(r) < 3 for r in rows):
        return None, f"cannot read {path}: a row is cut short"
    return {"paths": [r[0] for r in rows], "true": [r[1] for r in rows], "predicted": [r[2] for r in rows],
            "classes": [h[len("prob_"):] for h in header[4:] if h.startswith("prob_")]}, None


def read_probabilities(run, split: str = "val") -> dict[str, list[float]] | None:
    """The probabilities of ``eval-<split>/predictions.csv`` by image path (``{path: [p_class, ...]}`` in
    the run's class order), or None when the file is missing or unreadable."""
    try:
        with open(predictions_path(run, split), newline="", encoding="utf-8") as f:
            return {r["path"]: [float(v) for k, v in r.items() if k.startswith("prob_")] for r in csv.DictReader(f)}
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, ValueError):
        return None


# ---------------------------------------------------------------- export outputs

def file_sha256(path: str | Path) -> str:
    """The sha256 of a file (checkpoints and weight files are recorded by it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_dir(run) -> Path:
    return run_path(run) / EXPORT_DIR


def read_export_meta(run) -> dict | None:
    """``RUN/export/model.json`` as a dict, or None when the run was never exported."""
    p = export_dir(run) / EXPORT_META
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TransferlabError(f"cannot read {p}: {exc}") from None


def write_export_meta(run, info: dict) -> Path:
    path = export_dir(run) / EXPORT_META
    write_json(path, info)
    return path


# ---------------------------------------------------------------- calibration (temperature scaling)

def calibration_path(run) -> Path:
    return run_path(run) / CALIBRATION


def read_calibration(run) -> dict | None:
    """``RUN/calibration.json`` (``temperature``, ``fitted_on``, ``checkpoint``, ``sha256``, ECE before and
    after), or None when absent, unreadable or fitted on another checkpoint than the run's current one
    (a folder shipped without its checkpoint is trusted, as for the export)."""
    try:
        info = json.loads(calibration_path(run).read_text(encoding="utf-8"))
        temperature = float(info["temperature"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not temperature > 0:
        return None
    ckpt = run_path(run) / str(info.get("checkpoint", BEST))
    if info.get("sha256") and ckpt.is_file() and file_sha256(ckpt) != info["sha256"]:
        return None
    return info


def write_calibration(run, info: dict) -> Path:
    """Write ``RUN/calibration.json`` (atomically); ``info`` holds at least ``temperature``."""
    path = calibration_path(run)
    write_json(path, info)
    return path


# ---------------------------------------------------------------- experiment tracking (--trackers)

def tensorboard_dir(run) -> Path:
    return run_path(run) / TENSORBOARD_DIR


def read_tracking(run) -> dict | None:
    """``RUN/tracking.json`` (the MLflow run of a run trained with ``--trackers mlflow``), or None."""
    p = run_path(run) / TRACKING
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_tracking(run, info: dict) -> None:
    write_json(run_path(run) / TRACKING, info)
