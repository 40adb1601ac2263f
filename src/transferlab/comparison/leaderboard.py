"""Leaderboard rows: one dict per recipe, built from a run's history and its evaluation metrics.

A row is plain JSON (``leaderboard.json``, ``leaderboard.csv``)::

    {"model": "cnn_bn", "status": "ok", "reason": "", "rank": 1, "best": True,
     "accuracy": 0.93, "precision_macro": .., "recall_macro": .., "f1_macro": .., "auc_macro": ..,
     "log_loss": .., "train_val_gap": 0.04, "epochs": 5, "train_seconds": 12.3, "params": 120000,
     "size_mb": 0.5, "ms_per_image": 0.8, "run_dir": "compare/runs/cnn_bn"}

``status`` is ``"ok"``, ``"skipped"`` (e.g. pretrained weights not available offline) or
``"failed"``; ``reason`` says why in one line. Rows that are not ``ok`` sort last and have
``run_dir`` None (only ``ok`` rows have a finished, evaluated run folder).

:func:`add_statistics` adds, from each run's ``predictions.csv`` (:data:`STAT_FIELDS`)::

    "accuracy_ci_low": 0.91, "accuracy_ci_high": 0.95,   # 95% percentile bootstrap over the images
    "f1_macro_ci_low": 0.90, "f1_macro_ci_high": 0.94,
    "mcnemar_b": 12, "mcnemar_c": 3,   # images only the winner got right / only this model got right
    "p_value": 0.035, "verdict": "worse (p=0.035)",      # exact McNemar test against the rank-1 row
    "stats_note": ""                                      # why a row has no statistics ("" when it has)
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from .._atomic import atomic_write_text
from .._stats import bootstrap_interval, mcnemar_exact
from ..errors import ConfigError

# column -> (heading, higher is better, format); SHORT: the console table's headings
SHORT = {"accuracy": "acc", "mAP": "mAP", "precision_macro": "P", "recall_macro": "R", "f1_macro": "F1", "auc_macro": "AUC",
         "log_loss": "loss", "train_val_gap": "gap", "epochs": "ep", "train_seconds": "train s", "params": "params",
         "size_mb": "MB", "ms_per_image": "ms/img"}
COLUMNS: dict[str, tuple[str, bool, str]] = {
    "accuracy": ("accuracy", True, "{:.4f}"),
    "mAP": ("mAP", True, "{:.4f}"),  # multi-label runs (accuracy is then their subset accuracy)
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
# the statistics of :func:`add_statistics` (after the older fields in leaderboard.csv)
STAT_FIELDS = ["accuracy_ci_low", "accuracy_ci_high", "f1_macro_ci_low", "f1_macro_ci_high",
               "mcnemar_b", "mcnemar_c", "p_value", "verdict", "stats_note"]
# (columns added later come last, so that a reader of the older files finds its columns where they were)
CSV_FIELDS = ["rank", "model", "status", "best", *[c for c in COLUMNS if c != "mAP"], "reason", "run_dir",
              *STAT_FIELDS, "mAP"]
#: the tables' statistics columns: (heading, console heading)
STAT_COLUMNS = [("accuracy 95% CI", "acc 95% CI"), ("macro F1 95% CI", "F1 95% CI"),
                ("vs the best (McNemar)", "vs best")]
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
SIGNIFICANCE = 0.05


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
                           "run_dir": str(run) if run and status == "ok" else None,
                           **{k: None for k in STAT_FIELDS}}
    if metrics and metrics.get("task") == "multilabel":  # subset accuracy, and mAP
        row.update({"accuracy": _f(metrics.get("subset_accuracy")), "mAP": _f(metrics.get("mAP")),
                    "f1_macro": _f(metrics.get("f1_macro")),
                    "params": int(metrics["num_params"]) if metrics.get("num_params") is not None else None,
                    "size_mb": _f(metrics.get("model_size_mb")),
                    "ms_per_image": _f(metrics.get("inference_ms_per_image"))})
    elif metrics:
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


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _verdict(b: int, c: int, p: float) -> str:
    """In plain words, a model against the winner (``b``: images only the winner got right)."""
    if p >= SIGNIFICANCE:
        return "not significantly different"
    return f"{'worse' if b > c else 'better'} (p={_p(p)})"


def _labelled(preds: Mapping[str, Any]) -> tuple[Any, Any, int] | str:
    """A run's predictions as class indices ``(y_true, y_pred, classes)``, or why they cannot be."""
    classes = list(preds.get("classes") or [])
    if any(";" in t or not t for t in preds.get("true", [])):
        return "multi-label predictions (the intervals and McNemar's test are for one label per image)"
    index = {c: i for i, c in enumerate(classes)}
    try:
        t = np.array([index[c] for c in preds["true"]], np.int64)
        y = np.array([index[c] for c in preds["predicted"]], np.int64)
    except KeyError as exc:
        return f"predictions.csv names a class {exc} that is not among its prob_ columns"
    if t.size == 0:
        return "predictions.csv lists no images"
    return t, y, len(classes)


def add_statistics(rows: Sequence[dict[str, Any]], predictions: Mapping[str, tuple[Mapping | None, str | None]],
                   *, n: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Sequence[dict[str, Any]]:
    """Fill :data:`STAT_FIELDS` of ranked ``rows`` (in place; returned): 95% bootstrap intervals of
    accuracy and macro F1 over the evaluated images (``n`` resamples, ``seed``: the same interval on
    every rerun) and the exact McNemar test of each row against the rank-1 row, with a verdict.

    ``predictions`` maps a model to :func:`transferlab.runfolder.read_predictions`'s ``(predictions,
    reason)``. A row gets no statistics, with ``stats_note`` saying why, when it is not ``ok``, has no
    readable predictions, or was evaluated on other images than the winner (the comparison would not
    be paired).
    """
    for r in rows:
        r.update({k: None for k in STAT_FIELDS})
        r["stats_note"] = ""
    winner = next((r for r in rows if r.get("rank") == 1 and r.get("status") == "ok"), None)
    ref, ref_why = predictions.get(winner["model"], (None, "no predictions.csv")) if winner else (None, None)
    for r in rows:
        if r.get("status") != "ok":
            r["stats_note"] = f"no statistics: {r.get('status')}"
            continue
        got, why = predictions.get(r["model"], (None, "no predictions.csv"))
        labelled = _labelled(got) if got is not None else str(why)
        if got is None or isinstance(labelled, str):
            r["stats_note"] = f"no statistics: {labelled}"
            continue
        if r is not winner and ref is not None and list(got["paths"]) != list(ref["paths"]):
            r["stats_note"] = (f"no statistics: evaluated on other images than the winner "
                               f"({len(got['paths'])} vs {len(ref['paths'])})")
            continue
        y_true, y_pred, k = labelled
        for metric in ("accuracy", "f1_macro"):
            low, high = bootstrap_interval(y_true, y_pred, metric, n=n, seed=seed, labels=np.arange(k))
            r[f"{metric}_ci_low"], r[f"{metric}_ci_high"] = low, high
        if r is winner:
            r["verdict"] = "the reference"
        elif ref is None:
            r["stats_note"] = f"no test: the winner has no predictions ({ref_why})"
        elif list(got["true"]) != list(ref["true"]):
            r["stats_note"] = "no test: its true labels differ from the winner's on the same images"
        else:
            test = mcnemar_exact(np.asarray(ref["true"]), np.asarray(ref["predicted"]), np.asarray(got["predicted"]))
            r.update({"mcnemar_b": test["b"], "mcnemar_c": test["c"], "p_value": test["p_value"],
                      "verdict": _verdict(int(test["b"]), int(test["c"]), float(test["p_value"]))})
    return rows


def stat_cells(row: Mapping[str, Any]) -> list[str]:
    """The statistics columns of a row as text (:data:`STAT_COLUMNS`); '-' where there are none."""
    def ci(metric: str) -> str:
        low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
        return "-" if low is None or high is None else f"{float(low):.3f}-{float(high):.3f}"

    note = str(row.get("stats_note") or "")
    return [ci("accuracy"), ci("f1_macro"), str(row.get("verdict") or (note.split(":")[0] if note else "-"))]


def stats_notes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """``model: note`` for the ok rows whose statistics are missing (why)."""
    return [f"{r['model']}: {r['stats_note']}" for r in rows if r.get("status") == "ok" and r.get("stats_note")]


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


def write_leaderboard(rows: Sequence[Mapping[str, Any]], out: str | Path, metric: str = "accuracy",
                      statistics: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``OUT/leaderboard.csv`` and ``OUT/leaderboard.json`` (atomically); ``statistics`` (how
    the intervals and tests were computed) goes into the JSON when given."""
    out = Path(out)
    atomic_write_text(out / "leaderboard.csv", to_csv(rows))
    board: dict[str, Any] = {"metric": metric, "rows": list(rows)}
    if statistics:
        board["statistics"] = dict(statistics)
    atomic_write_text(out / "leaderboard.json", json.dumps(board, indent=2))
    return out / "leaderboard.csv", out / "leaderboard.json"


def shown_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The tables' columns: :data:`COLUMNS`, without ``mAP`` unless a row has one (multi-label runs)."""
    return [c for c in COLUMNS if c != "mAP" or any(r.get("mAP") is not None for r in rows)]


def print_leaderboard(rows: Sequence[Mapping[str, Any]], metric: str = "accuracy", console=None, title: str | None = None) -> None:
    """The leaderboard as a rich table; the best row is marked with a star."""
    console = console or Console()
    table = Table(title=title or f"Leaderboard (sorted by {COLUMNS[metric][0]}, the column marked *; P/R/F1/AUC "
                                 f"macro, gap = train-val acc)",
                  padding=(0, 1), collapse_padding=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("model", no_wrap=True)
    columns = shown_columns(rows)
    for col in columns:
        table.add_column(SHORT[col] + ("*" if col == metric else ""), justify="right", no_wrap=True)
    with_stats = any(r.get("verdict") or r.get("stats_note") for r in rows)
    for _, short in STAT_COLUMNS if with_stats else ():
        table.add_column(short, justify="right", no_wrap=True)
    width = len(columns) + (len(STAT_COLUMNS) if with_stats else 0)
    notes = []
    for r in rows:
        if r.get("status") != "ok":
            notes.append(f"{r['model']}: {r.get('status')} - {r.get('reason')}")
            table.add_row("", f"[dim]{r['model']}[/]", *[f"[dim]{r.get('status')}[/]" if i == 0 else "" for i in range(width)])
            continue
        name = ("★ " if r.get("best") else "") + str(r["model"])
        table.add_row(str(r.get("rank") or ""), name, *[fmt(c, r.get(c)) for c in columns],
                      *(stat_cells(r) if with_stats else ()), style="bold green" if r.get("best") else None)
    console.print(table)
    if with_stats:
        console.print("95% bootstrap intervals over the evaluated images; vs best: McNemar's exact test of the "
                      "images each model got right against the best's")
    for n in notes + stats_notes(rows):
        console.print(f"[yellow]{n}[/]")


class Leaderboard(list):
    """The comparison's rows (a list of dicts, best first) that a Jupyter cell shows as a table."""

    def __init__(self, rows=(), metric: str = "accuracy"):
        super().__init__(rows)
        self.metric = metric

    def _repr_html_(self) -> str:
        from .._html import render  # (jinja2: only when a notebook asks)

        cols = shown_columns(self)
        with_stats = any(r.get("verdict") or r.get("stats_note") for r in self)
        heads = [SHORT[c] + ("*" if c == self.metric else "") for c in cols] + \
            ([short for _, short in STAT_COLUMNS] if with_stats else [])
        rows = [{"rank": r.get("rank") or "", "model": r.get("model"), "status": r.get("status"),
                 "reason": r.get("reason") or "", "best": bool(r.get("best")),
                 "cells": [fmt(c, r.get(c)) for c in cols] + (stat_cells(r) if with_stats else [])} for r in self]
        return render("nb_leaderboard.html", metric=COLUMNS[self.metric][0], columns=heads, rows=rows)
