"""The comparison report: ``OUT/report.html`` (one self-contained file) and ``OUT/report.md``.

The HTML report has inline CSS and every plot embedded as a base64 ``data:`` URI, so the single
file opens offline, can be mailed or attached to a CI job. The Markdown report links the same
plots as files under ``OUT/plots/``.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_text
from .leaderboard import COLUMNS, fmt

#: each model's plots (``RUN/eval-<split>/<key>.png``, written by evaluate) in the order the report shows them
MODEL_PLOTS = {"history": "Training history", "confusion_matrix": "Confusion matrix",
               "mistakes": "Most confident mistakes", "roc": "ROC curves (one-vs-rest)", "f1": "Per-class F1",
               "gradcam": "Grad-CAM"}

_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{margin:0 0 4px 0;font-size:26px} h2{margin-top:32px;border-bottom:2px solid #dde1e7;padding-bottom:4px}
.meta{color:#5b6475;font-size:14px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px;box-shadow:0 1px 2px #0001}
th,td{padding:6px 8px;border-bottom:1px solid #e6e9ee;text-align:right;white-space:nowrap}
th{background:#2f3b52;color:#fff;position:sticky;top:0;white-space:normal} th.sorted{background:#1f6feb}
td.name,th.name{text-align:left} td.reason{text-align:left;white-space:normal} tr.best td{background:#e7f6ea;font-weight:600}
tr.skipped td,tr.failed td{color:#8a93a3;font-style:italic}
.badge{display:inline-block;background:#1f6feb;color:#fff;border-radius:8px;padding:1px 7px;font-size:11px;margin-left:6px}
.plots img,.model img{max-width:100%;height:auto;background:#fff;border:1px solid #e6e9ee;margin:8px 0}
.model h4{margin:14px 0 0 0;font-size:14px;color:#2f3b52}
details{background:#fff;border:1px solid #e6e9ee;border-radius:6px;padding:8px 12px;margin:10px 0}
summary{cursor:pointer;font-weight:600} ul.notes li{margin:3px 0} code{background:#eef1f5;padding:1px 4px;border-radius:3px}
.scroll{overflow-x:auto}
"""


def data_uri(path: str | Path) -> str:
    """A PNG file as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _img(path: Path | None, alt: str) -> str:
    if path is None or not Path(path).is_file() or Path(path).stat().st_size == 0:
        return ""
    return f'<img src="{data_uri(path)}" alt="{html.escape(alt)}">'


def write_html(out: str | Path, rows: Sequence[Mapping[str, Any]], metric: str, plots: Mapping[str, Path],
               model_plots: Mapping[str, Mapping[str, Path]], info: Mapping[str, Any],
               sections: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Write ``OUT/report.html``; ``sections`` (``{"title", "lines", "link"}``) come before the leaderboard."""
    e = html.escape
    ok = [r for r in rows if r.get("status") == "ok"]
    best = next((r for r in rows if r.get("best")), None)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>transferlab comparison - {e(str(info.get('data', '')))}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        "<h1>Model comparison</h1>",
        '<p class="meta">'
        + " &middot; ".join(e(f"{k}: {v}") for k, v in info.items() if v not in (None, ""))
        + "</p>",
    ]
    if best:
        parts.append(f"<p>Best by <b>{e(COLUMNS[metric][0])}</b>: <b>{e(best['model'])}</b> "
                     f"({e(fmt(metric, best.get(metric)))}).</p>")
    for sec in sections:
        parts.append(f"<h2>{e(str(sec.get('title', '')))}</h2><ul class=\"notes\">")
        parts += [f"<li>{e(str(line))}</li>" for line in sec.get("lines", [])]
        parts.append("</ul>")
        if sec.get("link"):
            parts.append(f'<p><a href="{e(str(sec["link"]))}">{e(str(sec.get("title", "details")))}: the full report</a></p>')
    parts += ["<h2>Leaderboard</h2>", '<div class="scroll"><table><thead><tr>',
              '<th>#</th><th class="name">model</th>']
    for col, (head, higher, _) in COLUMNS.items():
        arrow = "&uarr;" if higher else "&darr;"
        parts.append(f'<th class="{"sorted" if col == metric else ""}" title="{"higher" if higher else "lower"} is better">'
                     f"{e(head)} {arrow}</th>")
    parts.append("</tr></thead><tbody>")
    for r in rows:
        status = r.get("status", "ok")
        cls = "best" if r.get("best") else (status if status != "ok" else "")
        name = e(str(r["model"])) + ('<span class="badge">best</span>' if r.get("best") else "")
        if status != "ok":
            reason = str(r.get("reason", ""))
            reason = reason if len(reason) <= 90 else reason[:87] + "..."
            parts.append(f'<tr class="{cls}"><td></td><td class="name">{name}</td>'
                         f'<td colspan="{len(COLUMNS)}" class="reason">{e(status)}: {e(reason)}</td></tr>')
            continue
        cells = "".join(f"<td>{e(fmt(c, r.get(c)))}</td>" for c in COLUMNS)
        parts.append(f'<tr class="{cls}"><td>{r.get("rank") or ""}</td><td class="name">{name}</td>{cells}</tr>')
    parts.append("</tbody></table></div>")
    parts.append('<p class="meta">train-val gap = training accuracy minus validation accuracy at the last epoch '
                 "(large = overfitting); ms/image = mean batched CPU inference time on the evaluation split.</p>")
    not_ok = [r for r in rows if r.get("status") != "ok"]
    if not_ok:
        parts.append("<h2>Skipped or failed</h2><ul class=\"notes\">")
        parts += [f"<li><code>{e(str(r['model']))}</code> {e(str(r.get('status')))}: {e(str(r.get('reason', '')))}</li>"
                  for r in not_ok]
        parts.append("</ul>")
    titles = {"val_curves": "Validation curves", "accuracy_vs_time": "Accuracy vs training time",
              "f1_heatmap": "Per-class F1 by model"}
    if plots:
        parts.append('<h2>Plots</h2><div class="plots">')
        for key, p in plots.items():
            parts.append(f"<h3>{e(titles.get(key, key))}</h3>{_img(p, titles.get(key, key))}")
        parts.append("</div>")
    if ok:
        parts.append("<h2>Models</h2>")
        for r in ok:
            mp = model_plots.get(r["model"], {})
            imgs = "".join(f"<h4>{e(MODEL_PLOTS.get(k, k))}</h4>{img}" for k, p in _ordered(mp)
                           if (img := _img(p, f"{r['model']}: {MODEL_PLOTS.get(k, k)}")))
            parts.append(f'<details class="model"{" open" if r.get("best") else ""}><summary>{e(str(r["model"]))}'
                         f" &mdash; accuracy {e(fmt('accuracy', r.get('accuracy')))}</summary>"
                         f'<p class="meta">run folder: <code>{e(str(r.get("run_dir") or ""))}</code></p>{imgs}</details>')
    parts.append(f'<p class="meta">Generated by transferlab on {_dt.datetime.now().strftime("%Y-%m-%d %H:%M")}.</p>')
    parts.append("</main></body></html>")
    path = Path(out) / "report.html"
    atomic_write_text(path, "\n".join(parts))
    return path


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
    heads = ["#", "model", *[h for h, _, _ in COLUMNS.values()]]
    lines.append("| " + " | ".join(heads) + " |")
    lines.append("|" + "|".join(["---:", ":---", *["---:"] * len(COLUMNS)]) + "|")
    for r in rows:
        if r.get("status") != "ok":
            continue
        name = f"**{r['model']}** (best)" if r.get("best") else str(r["model"])
        lines.append("| " + " | ".join([str(r.get("rank") or ""), name, *[fmt(c, r.get(c)) for c in COLUMNS]]) + " |")
    not_ok = [r for r in rows if r.get("status") != "ok"]
    if not_ok:
        lines += ["", "## Skipped or failed", ""]
        lines += [f"- `{r['model']}` {r.get('status')}: {r.get('reason', '')}" for r in not_ok]
    if plots:
        lines += ["", "## Plots", ""]
        for key, p in plots.items():
            lines += [f"![{key}]({_rel(p, out)})", ""]
    ok = [r for r in rows if r.get("status") == "ok" and (model_plots or {}).get(r["model"])]
    if ok:
        lines += ["", "## Models", ""]
        for r in ok:
            lines += [f"### {r['model']}" + (" (best)" if r.get("best") else ""), ""]
            for key, p in _ordered(model_plots[r["model"]]):
                lines += [f"**{MODEL_PLOTS.get(key, key)}**", "", f"![{r['model']} {key}]({_rel(p, out)})", ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
