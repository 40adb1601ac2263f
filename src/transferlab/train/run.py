"""The run folder (``runs/NAME/``) and the :class:`Run` handle returned by ``train()``.

Files (see docs/ARCHITECTURE.md)::

    config.json        resolved options + classes, data_cfg, split counts, environment
    history.csv        epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds
    best.safetensors   best epoch by --monitor (model + metadata, transferlab.checkpoint)
    last.safetensors   latest epoch
    last_state.pt      optimizer / scheduler / callbacks / RNG / history for --resume
    train.log          the epoch summaries and messages printed during training

An existing run folder is never overwritten silently: ``train()`` refuses with a ConfigError
unless ``overwrite=True`` (the folder is emptied first) or ``resume=True`` (continue it).
"""
from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint import _json_default, atomic_write, atomic_write_text, read_meta
from ..errors import ConfigError, TransferlabError

HISTORY_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
STATE_FILE = "last_state.pt"
RUN_FILES = ("config.json", "history.csv", "best.safetensors", "last.safetensors", STATE_FILE, "train.log")


@dataclass
class Run:
    """A trained (or training) run folder.

    >>> run = Run.load("runs/mobilenet_v2")          # doctest: +SKIP
    >>> run.history[-1]["val_acc"], run.classes[:3]  # doctest: +SKIP
    """

    dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    @property
    def best_checkpoint(self) -> Path:
        return self.dir / "best.safetensors"

    @property
    def last_checkpoint(self) -> Path:
        return self.dir / "last.safetensors"

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def best(self) -> dict[str, Any] | None:
        """The history row of the epoch saved as ``best.safetensors`` (None before there is one).

        Read from the checkpoint itself, so it names the weights ModelCheckpoint kept (its
        ``min_delta`` and mode), not a re-guess from the history.
        """
        if not self.best_checkpoint.is_file():
            return None
        epoch = read_meta(self.best_checkpoint).get("epoch")
        return next((r for r in self.history if r.get("epoch") == epoch), None)

    def load_model(self, which: str = "best"):
        """``(model, meta)`` from the run's checkpoint (eval mode, CPU)."""
        from ..checkpoint import load_model

        return load_model(self.dir, which)

    @classmethod
    def load(cls, directory: str | Path) -> "Run":
        d = Path(directory)
        cfg_path = d / "config.json"
        if not cfg_path.is_file():
            raise TransferlabError(f"not a run folder (no config.json): {d}")
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        return cls(dir=d, config=config, history=read_history(d / "history.csv"),
                   classes=list(config.get("classes", [])))

    def __fspath__(self) -> str:  # so Run works wherever a path to the run folder does
        return str(self.dir)

    def __str__(self) -> str:
        return str(self.dir)


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: _fmt(row.get(k)) for k in HISTORY_FIELDS})
    atomic_write_text(path, buf.getvalue())


def _fmt(v):
    if isinstance(v, float):
        return repr(v)
    return "" if v is None else v


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a run's ``history.csv`` (``epoch`` an int, the rest floats; a blank or unreadable
    cell is None); an empty list when the file is missing."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.append({k: _cell(k, v) for k, v in row.items() if k is not None})
    return rows


def _cell(key: str, value: str | None) -> int | float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if key == "epoch" and number.is_integer() else number


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def save_state(path: Path, state: dict[str, Any]) -> None:
    import torch

    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict[str, Any]:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise TransferlabError(f"cannot read {path} to resume: {exc}") from None


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, write: bool = True) -> str:
    """Decide what to do with ``run_dir``: ``"new"``, ``"resume"`` (a state to continue exists)
    or raise ConfigError. With ``overwrite`` an existing run folder is emptied (rank 0 only,
    ``write=True``)."""
    exists = run_dir.exists() and any(run_dir.iterdir())
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run folder is a file: {run_dir}")
    if resume:
        if (run_dir / STATE_FILE).is_file():
            return "resume"
        if exists:
            raise ConfigError(f"cannot resume {run_dir}: no {STATE_FILE} in it (the run did not finish an epoch); "
                              f"use --overwrite to start again")
        return "new"
    if not exists:
        return "new"
    is_run = any((run_dir / f).exists() for f in RUN_FILES)
    if not overwrite:
        what = "a run" if is_run else "files"
        raise ConfigError(f"{run_dir} already holds {what}; use --resume to continue it, --overwrite to replace it, "
                          f"or --name to pick another name")
    if not is_run:
        raise ConfigError(f"refusing to overwrite {run_dir}: it is not a transferlab run folder")
    if write:
        shutil.rmtree(run_dir)
    return "new"
