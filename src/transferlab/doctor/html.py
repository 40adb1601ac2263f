"""``doctor.html``: one self-contained page (inline CSS, thumbnails embedded as base64 JPEG)
showing every duplicate group, likely label error and outlier side by side with its labels,
splits and scores, after the summary and the warnings."""
from __future__ import annotations

import base64
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .._atomic import atomic_write_text
from .._html import render
from ..data import open_image

from .render import _short, summary

THUMB = 112


def _thumb(path: str, size: int = THUMB) -> str | None:
    try:
        img = open_image(path)
    except Exception:  # noqa: BLE001 - a thumbnail is optional
        return None
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=82)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_html(report: dict, path: str | os.PathLike, *, max_groups: int = 200, max_issues: int = 150,
               max_review: int = 60, max_outliers: int = 60) -> Path:
    """Write the doctor's HTML page for ``report`` (the dict of :func:`diagnose`; templates/doctor.html);
    returns its path."""
    path = Path(path)
    groups = report["duplicates"][:max_groups]
    issues = report["label_issues"][:max_issues]
    review = report.get("label_review", [])[:max_review]
    outliers = report["outliers"][:max_outliers]
    wanted = {f["path"] for d in groups for f in d["files"]} | {r["path"] for r in issues + review}
    wanted |= {r["path"] for r in outliers} | {r["nearest"] for r in outliers if r.get("nearest")}
    paths = sorted(wanted)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        thumbs = dict(zip(paths, pool.map(_thumb, paths)))

    sections = []
    for kind, title, why in (
            ("cross-split", "Duplicates across splits (leakage)",
             "the same picture in train and val/test: the model is tested on what it trained on"),
            ("conflicting-labels", "Duplicates with conflicting labels", "the same picture filed under different classes"),
            ("within-class", "Duplicates within a class", "copies that add weight, not information")):
        items = [d for d in groups if kind in d["kinds"] and (kind != "within-class" or d["kinds"] == ["within-class"])]
        if kind == "conflicting-labels":
            items = [d for d in items if "cross-split" not in d["kinds"]]
        total = sum(1 for d in report["duplicates"] if kind in d["kinds"])
        if kind == "conflicting-labels" and len(items) < total:
            why += f" ({total - len(items)} of them also across splits, shown above)"
        sections.append({"title": title, "total": total, "why": why, "groups": items})
    page = render("doctor.html", report=report, lines=summary(report), sections=sections, groups=groups,
                  issues=issues, review=review, outliers=outliers, thumbs=thumbs,
                  short={p: _short(report, p) for p in wanted})
    atomic_write_text(path, page)
    return path
