"""The doctor's report on screen: :func:`summary` (a few lines, e.g. for ``transferlab run``'s
report) and :func:`render_report` (rich tables)."""
from __future__ import annotations

import os


def _short(report: dict, path: str | None) -> str:
    if not path:
        return "-"
    root = report.get("root") or ""
    try:
        rel = os.path.relpath(path, root)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def label_headline(s: dict) -> str:
    """The label part of the headline: the flagged count with its estimated precision, then how
    many more are only to review.

    >>> label_headline({"label_issues": 12, "label_precision": 0.81, "label_review": 40})
    '12 likely label errors (estimated precision ~0.81), 40 more to review'
    >>> label_headline({"label_issues": 0, "label_review": 312})
    'no likely label errors (312 to review)'
    """
    review = s.get("label_review", 0)
    if s["label_issues"]:
        text = f"{s['label_issues']} likely label error{'s' if s['label_issues'] != 1 else ''}"
        if s.get("label_precision") is not None:
            text += f" (estimated precision ~{s['label_precision']:.2f})"
        return text + (f", {review} more to review" if review else "")
    return "no likely label errors" + (f" ({review} to review)" if review else "")


def summary(report: dict) -> list[str]:
    """A few plain lines on the report: counts of each problem and the warnings that matter.

    >>> summary({"summary": {"images": 10, "duplicate_groups": 0, "cross_split": 0, "conflicting_labels": 0,
    ...          "label_issues": 0, "outliers": 0, "exact_groups": 0, "duplicate_images": 0, "warnings": 0},
    ...          "warnings": [], "settings": {"threshold": 0.9}})[0]
    'data doctor: 10 images; no duplicates (similarity >= 0.9), no likely label errors, no outliers'
    """
    s = report["summary"]
    parts = []
    if s["duplicate_groups"]:
        extra = [f"{s['cross_split']} across splits" if s["cross_split"] else "",
                 f"{s['conflicting_labels']} with conflicting labels" if s["conflicting_labels"] else ""]
        extra = [e for e in extra if e]
        parts.append(f"{s['duplicate_groups']} duplicate groups" + (f" ({', '.join(extra)})" if extra else ""))
    else:
        parts.append(f"no duplicates (similarity >= {report['settings']['threshold']:g})")
    parts.append(label_headline(s))
    parts.append(f"{s['outliers']} outliers" if s["outliers"] else "no outliers")
    lines = [f"data doctor: {s['images']} images; " + ", ".join(parts)]
    if s["cross_split"]:
        n = sum(d["size"] for d in report.get("duplicates", []) if "cross-split" in d["kinds"])
        lines.append(f"leakage: {s['cross_split']} groups ({n} images) of the same or nearly the same picture sit in "
                     f"more than one split, so validation/test accuracy is inflated")
    if s["conflicting_labels"]:
        lines.append(f"conflicting labels: {s['conflicting_labels']} groups of the same picture carry different classes")
    for w in report.get("warnings", []):
        if w["severity"] == "warning":
            lines.append(f"warning: {w['message']}")
    return lines


def render_report(report: dict, max_rows: int = 5) -> list:
    """Rich renderables: one table of issue kinds with counts and top examples, then warnings."""
    from rich.markup import escape
    from rich.table import Table

    s = report["summary"]
    st = report["settings"]
    t = Table(title=f"data doctor: {s['images']} images, {len(report['classes'])} classes "
                    f"({st['backbone']} @ {st['input_size']} px, near-duplicate similarity >= {st['threshold']:g})")
    t.add_column("issue")
    t.add_column("count", justify="right")
    t.add_column("top examples", overflow="fold")

    def group_line(d: dict) -> str:
        files = ", ".join(f"{_short(report, f['path'])} [{f['label']}/{f['split']}]" for f in d["files"][:3])
        more = f" +{d['size'] - 3}" if d["size"] > 3 else ""
        how = "identical files" if d["exact"] else f"{'+'.join(d['signals'])}, sim {d['similarity']}"
        return f"{files}{more} ({how})"

    def kind_rows(kind: str, title: str) -> None:
        groups = [d for d in report["duplicates"] if kind in d["kinds"]]
        t.add_row(title, str(len(groups)), escape("\n".join(group_line(d) for d in groups[:max_rows]) or "-"))

    kind_rows("cross-split", "duplicates across splits (leakage)")
    kind_rows("conflicting-labels", "duplicates with conflicting labels")
    kind_rows("within-class", "duplicates within a class")
    prec = f" (est. precision ~{s['label_precision']:.2f})" if s["label_issues"] and s.get("label_precision") is not None else ""
    rule = report.get("label_rule") or {}
    why = "-"
    if not s["label_issues"] and report.get("label_review"):
        why = (f"none at an estimated precision >= {rule.get('target_precision', 0.7):g}: the probe disagrees with "
               f"{rule.get('disagreements', '?')} given labels, about as many as its own mistakes explain")
    t.add_row("likely label errors" + prec, str(s["label_issues"]), escape("\n".join(
        f"{_short(report, r['path'])}: {r['given']} -> {r['suggested']} (score {r['score']:.3f})"
        for r in report["label_issues"][:max_rows]) or why))
    if report.get("label_review"):
        t.add_row("to review (label doubted)", str(s.get("label_review", len(report["label_review"]))), escape("\n".join(
            f"{_short(report, r['path'])}: {r['given']} -> {r['suggested']} (score {r['score']:.3f})"
            for r in report["label_review"][:max_rows])))
    t.add_row("outliers", str(s["outliers"]), escape("\n".join(
        f"{_short(report, r['path'])} [{r['label']}]: {r['reason']} (z {r['score']:.1f})"
        for r in report["outliers"][:max_rows]) or "-"))
    out = [t]
    notes = [w for w in report["warnings"]]
    if notes:
        w = Table(title="checks", show_header=False)
        w.add_column("severity")
        w.add_column("message", overflow="fold")
        for n in notes:
            w.add_row("[yellow]warning[/]" if n["severity"] == "warning" else "info", escape(n["message"]))
        out.append(w)
    return out


class DoctorReport(dict):
    """The doctor's report (what ``doctor.json`` holds) that a Jupyter cell shows as its summary."""

    #: the HTML page written beside doctor.json (for the notebook view; not part of the report)
    page: str | None = None

    def _repr_html_(self) -> str:
        from .._html import render  # (jinja2: only when a notebook asks)

        return render("nb_doctor.html", root=self.get("root"), lines=summary(self), page=self.page)
