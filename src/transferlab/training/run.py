"""The :class:`Run` handle returned by ``train()``: a trained (or training) run folder.

The folder's format (file names, readers, writers) belongs to :mod:`transferlab.runfolder`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import runfolder
from ..checkpoint import load_model, read_meta


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

    def _repr_html_(self) -> str:
        """How a Jupyter cell shows the run: what it trained, its best epoch and its history."""
        from .._html import render  # (jinja2: only when a notebook asks)

        best = self.best
        cols = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
        rows = [{"best": best is not None and r.get("epoch") == best.get("epoch"),
                 "cells": [_cell(r.get(c)) for c in cols]} for r in self.history]
        return render("nb_run.html", name=self.name, dir=str(self.dir), recipe=self.config.get("model", "?"),
                      classes=len(self.classes), epochs=len(self.history), best=best, columns=cols, rows=rows)

    @property
    def best_checkpoint(self) -> Path:
        return runfolder.checkpoint_path(self.dir, "best")

    @property
    def last_checkpoint(self) -> Path:
        return runfolder.checkpoint_path(self.dir, "last")

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
        return load_model(self.dir, which)

    @classmethod
    def load(cls, directory: str | Path) -> "Run":
        d = Path(directory)
        config = runfolder.read_config(d, required=True)
        return cls(dir=d, config=config, history=runfolder.read_history(d), classes=list(config.get("classes", [])))

    def __fspath__(self) -> str:  # so Run works wherever a path to the run folder does
        return str(self.dir)

    def __str__(self) -> str:
        return str(self.dir)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
