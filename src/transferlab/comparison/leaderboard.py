"""Leaderboard rows: one dict per recipe, built from a run's history and its evaluation metrics.

A row is plain JSON (``leaderboard.json``, ``leaderboard.csv``)::

    {"model": "cnn_bn", "status": "ok", "reason": "", "rank": 1, "best": True,
     "accuracy": 0.93, "precision_macro": .., "recall_macro": .., "f1_macro": .., "auc_macro": ..,
     "log_loss": .., "train_val_gap": 0.04, "epochs": 5, "train_seconds": 12.3, "params": 120000,
     "size_mb": 0.5, "ms_per_image": 0.8, "run_dir": "compare/runs/cnn_bn"}

``status`` is ``"ok"``, ``"skipped"`` (e.g. pretrained weights not available offline) or
``"failed"``; ``reason`` says why in one line. Rows that are not ``ok`` sort last and have
``run_dir`` None (only ``ok`` rows have a finished, evaluated run folder).
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .._atomic import atomic_write_text
from ..errors import ConfigError

# column -> (heading, higher is better, format); SHORT: the console table's headings
SHORT = {"accuracy": "acc", "precision_macro": "P", "recall_macro": "R", "f1_macro": "F1", "auc_macro": "AUC",
         "log_loss": "loss", "train_val_gap": "gap", "epochs": "ep", "train_seconds": "train s", "params": "params",
         "size_mb": "MB", "ms_per_image": "ms/img"}
COLUMNS: dict[str, tuple[str, bool, str]] = {
    "accuracy": ("accuracy", True, "{:.4f}"),
    "precision_macro": ("macro precision", True, "{:.3f}"),
    "recall_macro": ("macro recall", True, "{:.3f}"),
    "f1_macro": ("macro F1", True, "{:.3f}"),
    "auc_macro": ("macro AUC", True, "{:.3f}"),
    "log_loss": ("log loss", False, "{:.3f}"),
    "train_val_gap": ("train-val gap", False, "{:+.3f}"),
    "epochs": ("epochs", True, "{:d}"),
    "train_seconds": ("train time (s)", False, "{:.1f}"),
    "params": ("params", False, "{:,d}"),
    "size_mb": ("size (MB)", False, "{:.2f}"),
    "ms_per_image": ("ms/image", False, "{:.2f}"),
}
METRICS = tuple(k for k in COLUMNS if k not in ("epochs",))
CSV_FIELDS = ["rank", "model", "status", "best", *COLUMNS, "reason", "run_dir"]


def _f(v) -> float | None:
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) or math.isinf(v) else v


def history_summary(history: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Epochs run, total per-epoch training seconds and the final train-val accuracy gap from ``history.csv`` rows."""
    if not history:
        return {"epochs": 0, "train_seconds": None, "train_val_gap": None}
    last = history[-1]
    secs = [_f(r.get("seconds")) for r in history]
    tr, va = _f(last.get("train_acc")), _f(last.get("val_acc"))
    return {
        "epochs": len(history),
        "train_seconds": sum(s for s in secs if s is not None) if any(s is not None for s in secs) else None,
        "train_val_gap": (tr - va) if tr is not None and va is not None else None,
    }


def make_row(model: str, metrics: Mapping[str, Any] | None, history: Sequence[Mapping[str, float]] = (),
             *, run: str | Path | None = None, train_seconds: float | None = None,
             status: str = "ok", reason: str = "") -> dict[str, Any]:
    """One leaderboard row from a run's evaluation ``metrics`` (``metrics.json``) and history rows."""
    row: dict[str, Any] = {"model": model, "status": status, "reason": reason, "rank": None, "best": False,
                           **{k: None for k in COLUMNS},
                           "run_dir": str(run) if run and status == "ok" else None}
    if metrics:
        macro = metrics.get("macro_avg") or {}
        row.update({
            "accuracy": _f(metrics.get("accuracy")),
            "precision_macro": _f(macro.get("precision")),
            "recall_macro": _f(macro.get("recall")),
            "f1_macro": _f(macro.get("f1")),
            "auc_macro": _f((metrics.get("roc_auc") or {}).get("macro")),
            "log_loss": _f(metrics.get("log_loss")),
            "params": int(metrics["num_params"]) if metrics.get("num_params") is not None else None,
            "size_mb": _f(metrics.get("model_size_mb")),
            "ms_per_image": _f(metrics.get("inference_ms_per_image")),
        })
    hs = history_summary(history)
    row["epochs"] = hs["epochs"] if history else None
    row["train_val_gap"] = hs["train_val_gap"]
    # wall time of the train() call when known (it includes feature caching, which the per-epoch
    # seconds of history.csv do not); a resumed run's wall time covers only its last part
    times = [t for t in (hs["train_seconds"], _f(train_seconds)) if t is not None]
    row["train_seconds"] = max(times) if times else None
    return row


def higher_is_better(metric: str) -> bool:
    return COLUMNS[metric][1]


def rank_rows(rows: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> list[dict[str, Any]]:
    """Rows sorted by ``metric`` (best first; rows without a value and non-ok rows last),
    with ``rank`` (1-based, ok rows only) and ``best`` set on the winner."""
    if metric not in METRICS:
        raise ConfigError(f"unknown --metric {metric!r}: choose from {', '.join(METRICS)}")
    sign = -1.0 if higher_is_better(metric) else 1.0

    def key(r):
        v = _f(r.get(metric)) if r.get("status") == "ok" else None
        return (r.get("status") != "ok", v is None, sign * v if v is not None else 0.0, str(r.get("model")))

    ranked = [dict(r) for r in sorted(rows, key=key)]
    n = 0
    for r in ranked:
        r["best"] = False
        if r.get("status") == "ok":
            n += 1
            r["rank"] = n
        else:
            r["rank"] = None
    if ranked and ranked[0].get("status") == "ok" and _f(ranked[0].get(metric)) is not None:
        ranked[0]["best"] = True
    return ranked


def fmt(column: str, value) -> str:
    """A cell as text: '-' for missing values."""
    if value is None or value == "":
        return "-"
    if column in COLUMNS:
        spec = COLUMNS[column][2]
        try:
            return spec.format(int(value) if spec.endswith("d}") else float(value))
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS})
    return buf.getvalue()


def write_leaderboard(rows: Sequence[Mapping[str, Any]], out: str | Path, metric: str = "accuracy") -> tuple[Path, Path]:
    """Write ``OUT/leaderboard.csv`` and ``OUT/leaderboard.json`` (atomically)."""
    out = Path(out)
    atomic_write_text(out / "leaderboard.csv", to_csv(rows))
    atomic_write_text(out / "leaderboard.json", json.dumps({"metric": metric, "rows": list(rows)}, indent=2))
    return out / "leaderboard.csv", out / "leaderboard.json"


def print_leaderboard(rows: Sequence[Mapping[str, Any]], metric: str = "accuracy", console=None, title: str | None = None) -> None:
    """The leaderboard as a rich table; the best row is marked with a star."""
    console = console or Console()
    table = Table(title=title or f"Leaderboard (sorted by {COLUMNS[metric][0]}, the column marked *; P/R/F1/AUC "
                                 f"macro, gap = train-val acc)",
                  padding=(0, 1), collapse_padding=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("model", no_wrap=True)
    for col in COLUMNS:
        table.add_column(SHORT[col] + ("*" if col == metric else ""), justify="right", no_wrap=True)
    notes = []
    for r in rows:
        if r.get("status") != "ok":
            notes.append(f"{r['model']}: {r.get('status')} - {r.get('reason')}")
            table.add_row("", f"[dim]{r['model']}[/]", *[f"[dim]{r.get('status')}[/]" if i == 0 else "" for i in range(len(COLUMNS))])
            continue
        name = ("★ " if r.get("best") else "") + str(r["model"])
        table.add_row(str(r.get("rank") or ""), name, *[fmt(c, r.get(c)) for c in COLUMNS],
                      style="bold green" if r.get("best") else None)
    console.print(table)
    for n in notes:
        console.print(f"[yellow]{n}[/]")


class Leaderboard(list):
    """The comparison's rows (a list of dicts, best first) that a Jupyter cell shows as a table."""

    def __init__(self, rows=(), metric: str = "accuracy"):
        super().__init__(rows)
        self.metric = metric

    def _repr_html_(self) -> str:
        from .._html import render  # (jinja2: only when a notebook asks)

        cols = list(COLUMNS)
        heads = [SHORT[c] + ("*" if c == self.metric else "") for c in cols]
        rows = [{"rank": r.get("rank") or "", "model": r.get("model"), "status": r.get("status"),
                 "reason": r.get("reason") or "", "best": bool(r.get("best")),
                 "cells": [fmt(c, r.get(c)) for c in cols]} for r in self]
        return render("nb_leaderboard.html", metric=COLUMNS[self.metric][0], columns=heads, rows=rows)
