"""The comparison report: ``OUT/report.html`` (one self-contained file) and ``OUT/report.md``.

The HTML report has inline CSS and every plot embedded as a base64 ``data:`` URI, so the single
file opens offline, can be mailed or attached to a CI job. The Markdown report links the same
plots as files under ``OUT/plots/``.
"""
from __future__ import annotations

import base64
import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_text
from .._html import render
from .leaderboard import (BOOTSTRAP_RESAMPLES, COLUMNS, SIGNIFICANCE, STAT_COLUMNS, fmt, shown_columns, stat_cells,
                          stats_notes)

#: each model's plots (``RUN/eval-<split>/<key>.png``, written by evaluate) in the order the report shows them
MODEL_PLOTS = {"history": "Training history", "confusion_matrix": "Confusion matrix",
               "mistakes": "Most confident mistakes", "roc": "ROC curves (one-vs-rest)", "f1": "Per-class F1",
               "gradcam": "Grad-CAM"}


def data_uri(path: str | Path) -> str:
    """A PNG file as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _src(path: Path | None) -> str | None:
    """The plot's data URI; None when it was not drawn (no file, or an empty one)."""
    if path is None or not Path(path).is_file() or Path(path).stat().st_size == 0:
        return None
    return data_uri(path)


def write_html(out: str | Path, rows: Sequence[Mapping[str, Any]], metric: str, plots: Mapping[str, Path],
               model_plots: Mapping[str, Mapping[str, Path]], info: Mapping[str, Any],
               sections: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Write ``OUT/report.html`` (templates/compare.html); ``sections`` (``{"title", "lines", "link"}``)
    come before the leaderboard."""
    best = next((r for r in rows if r.get("best")), None)
    table = []
    for r in rows:
        status, reason = r.get("status", "ok"), str(r.get("reason", ""))
        table.append({"model": str(r["model"]), "best": bool(r.get("best")), "status": status,
                      "cls": "best" if r.get("best") else (status if status != "ok" else ""),
                      "rank": r.get("rank") or "", "cells": [fmt(c, r.get(c)) for c in shown_columns(rows)],
                      "stat_cells": stat_cells(r), "stats_note": str(r.get("stats_note") or ""),
                      "short_reason": reason if len(reason) <= 90 else reason[:87] + "..."})
    titles = {"val_curves": "Validation curves", "accuracy_vs_time": "Accuracy vs training time",
              "f1_heatmap": "Per-class F1 by model"}
    models = []
    for r in rows:
        if r.get("status") == "ok":
            shown = [(MODEL_PLOTS.get(k, k), _src(p)) for k, p in _ordered(model_plots.get(r["model"], {}))]
            models.append({"model": str(r["model"]), "best": bool(r.get("best")), "run_dir": str(r.get("run_dir") or ""),
                           "accuracy": fmt("accuracy", r.get("accuracy")),
                           "plots": [{"title": title, "src": src} for title, src in shown if src]})
    page = render(
        "compare.html", info=info, sections=sections, rows=table, ok=models, plots=[
            {"title": titles.get(key, key), "src": _src(p)} for key, p in plots.items()],
        best=best and {"model": str(best["model"]), "value": fmt(metric, best.get(metric))},
        metric_name=COLUMNS[metric][0],
        columns=[{"head": COLUMNS[col][0], "higher": COLUMNS[col][1], "sorted": col == metric}
                 for col in shown_columns(rows)],
        stat_columns=[head for head, _ in STAT_COLUMNS] if _with_stats(rows) else [], stats_notes=stats_notes(rows),
        stats_note=STATS_NOTE if _with_stats(rows) else "",
        not_ok=[{"model": str(r["model"]), "status": str(r.get("status")), "reason": str(r.get("reason", ""))}
                for r in rows if r.get("status") != "ok"],
        generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
    path = Path(out) / "report.html"
    atomic_write_text(path, page)
    return path


def _with_stats(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the rows went through ``add_statistics`` (older or hand-made rows did not)."""
    return any(r.get("verdict") or r.get("stats_note") for r in rows)


STATS_NOTE = (f"Intervals: 95% percentile bootstrap over the evaluated images ({BOOTSTRAP_RESAMPLES:,} resamples, "
              f"fixed seed). vs the best: McNemar's exact test on the images exactly one of the two models got "
              f"right (significant below p={SIGNIFICANCE}).")


def _ordered(model_plots: Mapping[str, Path]) -> list[tuple[str, Path]]:
    """A model's plots in :data:`MODEL_PLOTS` order, unknown keys last."""
    order = list(MODEL_PLOTS)
    return sorted(model_plots.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))


def _rel(path: Path, out: Path) -> str:
    try:
        return Path(path).relative_to(out).as_posix()
    except ValueError:
        return Path(path).as_posix()


def write_markdown(out: str | Path, rows: Sequence[Mapping[str, Any]], metric: str, plots: Mapping[str, Path],
                   info: Mapping[str, Any], sections: Sequence[Mapping[str, Any]] = (),
                   model_plots: Mapping[str, Mapping[str, Path]] | None = None) -> Path:
    """Write ``OUT/report.md`` (plots linked as relative files; each model's under its own heading)."""
    out = Path(out)
    lines = ["# Model comparison", ""]
    lines += [f"- **{k}**: {v}" for k, v in info.items() if v not in (None, "")]
    for sec in sections:
        lines += ["", f"## {sec.get('title', '')}", ""] + [f"- {line}" for line in sec.get("lines", [])]
        if sec.get("link"):
            lines.append(f"- [the full report]({sec['link']})")
    lines += ["", f"## Leaderboard (sorted by {COLUMNS[metric][0]})", ""]
    with_stats = _with_stats(rows)
    stat_heads = [h for h, _ in STAT_COLUMNS] if with_stats else []
    columns = shown_columns(rows)
    heads = ["#", "model", *[COLUMNS[c][0] for c in columns], *stat_heads]
    lines.append("| " + " | ".join(heads) + " |")
    lines.append("|" + "|".join(["---:", ":---", *["---:"] * (len(columns) + len(stat_heads))]) + "|")
    for r in rows:
        if r.get("status") != "ok":
            continue
        name = f"**{r['model']}** (best)" if r.get("best") else str(r["model"])
        lines.append("| " + " | ".join([str(r.get("rank") or ""), name, *[fmt(c, r.get(c)) for c in columns],
                                        *(stat_cells(r) if with_stats else [])]) + " |")
    if with_stats:
        lines += ["", STATS_NOTE]
        lines += [f"- {note}" for note in stats_notes(rows)]
    not_ok = [r for r in rows if r.get("status") != "ok"]
    if not_ok:
        lines += ["", "## Skipped or failed", ""]
        lines += [f"- `{r['model']}` {r.get('status')}: {r.get('reason', '')}" for r in not_ok]
    if plots:
        lines += ["", "## Plots", ""]
        for key, p in plots.items():
            lines += [f"![{key}]({_rel(p, out)})", ""]
    per_model = model_plots or {}
    ok = [r for r in rows if r.get("status") == "ok" and per_model.get(r["model"])]
    if ok:
        lines += ["", "## Models", ""]
        for r in ok:
            lines += [f"### {r['model']}" + (" (best)" if r.get("best") else ""), ""]
            for key, p in _ordered(per_model[r["model"]]):
                lines += [f"**{MODEL_PLOTS.get(key, key)}**", "", f"![{r['model']} {key}]({_rel(p, out)})", ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
