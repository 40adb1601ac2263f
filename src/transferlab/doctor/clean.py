"""A cleaned dataset CSV from a doctor report: ``path,label,split`` rows that ``load_data`` (and so
``train``, ``compare`` and ``run``) reads like any dataset. The user's files are never touched:
what is dropped or relabelled exists only in the CSV.

Defaults (each can be turned off): copies of a picture that sits in several splits are dropped
from the later split (val, then test; train keeps its copy); groups whose copies carry different
labels are dropped whole; of each set of identical files in one split and class, one is kept.
Outliers and label issues are dropped / relabelled only when asked (``drop_outliers``,
``drop_issues``, ``relabel``: how many from the top of their ranking; ``-1`` for all flagged ones).
The label ranking is the flagged likely label errors, then those only "to review": a count larger
than the flagged list reaches into the review list.

``split_by_group=True`` re-splits train + val (test stays as it is) into a stratified split in
which every near-duplicate group stays on one side.

>>> rows = plan_clean(report)                                   # doctest: +SKIP
>>> write_clean(report, "clean.csv", split_by_group=True)       # doctest: +SKIP
{'path': 'clean.csv', 'rows': 2140, 'dropped': 219, 'relabelled': 0, ...}
"""
from __future__ import annotations

import csv
import io
import os
from collections import Counter, defaultdict
from pathlib import Path

from .._atomic import atomic_write_text

from ..data.split import check_val_ratio, class_rng, val_count
from ..errors import ConfigError

DEDUPE = ("exact", "near", "none")
_ORDER = {"train": 0, "val": 1, "test": 2}


def _count(name: str, value) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number (-1 for all), got {value!r}") from None
    if n < -1:
        raise ConfigError(f"{name} must be 0 or more, or -1 for all, got {n}")
    return n


def _top(items: list, n: int) -> list:
    return items if n == -1 else items[:n]


def plan_clean(report: dict, *, drop_leaks: bool = True, drop_conflicts: bool = True, dedupe: str = "exact",
               drop_outliers: int = 0, drop_issues: int = 0, relabel: int = 0) -> list[dict]:
    """One row per image of the report: ``{"path", "label", "split", "action": "keep" | "drop" |
    "relabel", "reason", "original_label"}`` (``label`` is the label the clean CSV will hold)."""
    if dedupe not in DEDUPE:
        raise ConfigError(f"dedupe must be one of {', '.join(DEDUPE)}, got {dedupe!r}")
    drop_outliers, drop_issues, relabel = (_count("drop_outliers", drop_outliers), _count("drop_issues", drop_issues),
                                           _count("relabel", relabel))
    rows = {p: {"path": p, "label": y, "split": s, "action": "keep", "reason": "", "original_label": y}
            for p, y, s, *_ in report["files"]}

    def drop(path: str, reason: str) -> None:
        r = rows.get(path)
        if r is not None and r["action"] != "drop":
            r["action"], r["reason"], r["label"] = "drop", reason, r["original_label"]

    for d in report["duplicates"]:
        files = d["files"]
        if drop_conflicts and "conflicting-labels" in d["kinds"]:
            for f in files:
                drop(f["path"], f"duplicate group #{d['id']} has conflicting labels ({', '.join(d['classes'])})")
            continue
        if drop_leaks and "cross-split" in d["kinds"]:
            first = min(_ORDER[f["split"]] for f in files)
            for f in files:
                if _ORDER[f["split"]] > first:
                    drop(f["path"], f"copy of a {list(_ORDER)[first]} image (duplicate group #{d['id']})")
        if dedupe == "none":
            continue
        if dedupe == "near":
            subsets = [[f["path"] for f in files]]
        else:  # exact: the sha1 pairs inside the group
            parent = {f["path"]: f["path"] for f in files}

            def find(x: str) -> str:
                while parent[x] != x:
                    parent[x] = parent[parent[x]]
                    x = parent[x]
                return x

            for p in d.get("pairs", []):
                if "sha1" in p["signals"] and p["a"] in parent and p["b"] in parent:
                    parent[find(p["b"])] = find(p["a"])
            if d.get("exact"):
                subsets = [[f["path"] for f in files]]
            else:
                by: dict[str, list[str]] = defaultdict(list)
                for f in files:
                    by[find(f["path"])].append(f["path"])
                subsets = list(by.values())
        for subset in subsets:
            kept: set[tuple[str, str]] = set()
            for p in sorted(subset):
                r = rows.get(p)
                if r is None or r["action"] == "drop":
                    continue
                key = (r["split"], r["label"])
                if key in kept:
                    drop(p, f"{'identical' if dedupe == 'exact' else 'near-identical'} to another {r['split']} "
                            f"image of {r['label']} (duplicate group #{d['id']})")
                kept.add(key)
    for r in _top(report["outliers"], drop_outliers):
        drop(r["path"], f"outlier: {r['reason']}")
    ranked = list(report["label_issues"]) + list(report.get("label_review", []))
    flagged = len(report["label_issues"])
    for r in _top(ranked, flagged if drop_issues == -1 else drop_issues):
        drop(r["path"], f"likely label error: given {r['given']}, suggested {r['suggested']}")
    for r in _top(ranked, flagged if relabel == -1 else relabel):
        row = rows.get(r["path"])
        if row is not None and row["action"] == "keep" and r["suggested"] != row["label"]:
            row["action"], row["label"] = "relabel", r["suggested"]
            row["reason"] = f"likely label error: {r['given']} -> {r['suggested']} (score {r['score']:.3f})"
    return list(rows.values())


def group_split(rows: list[dict], groups: list[list[str]], *, val_ratio: float = 0.2, seed: int = 0) -> None:
    """Re-split the kept train + val rows in place: stratified by label, ``round(n * val_ratio)``
    per class in val, every group (a list of paths) on one side. Test rows are left alone."""
    val_ratio = check_val_ratio(val_ratio)
    pool = [r for r in rows if r["action"] != "drop" and r["split"] in ("train", "val")]
    unit_of = {r["path"]: r["path"] for r in pool}
    for g in groups:
        present = [p for p in g if p in unit_of]
        for p in present:
            unit_of[p] = present[0]
    units: dict[str, list[dict]] = defaultdict(list)
    for r in pool:
        units[unit_of[r["path"]]].append(r)
    by_class: dict[str, list[list[dict]]] = defaultdict(list)
    for members in units.values():
        label = Counter(r["label"] for r in members).most_common(1)[0][0]
        by_class[label].append(members)
    for label in sorted(by_class):
        members_list = sorted(by_class[label], key=lambda m: min(r["path"] for r in m))
        n = sum(len(m) for m in members_list)
        target = val_count(n, val_ratio)
        rng = class_rng(seed, label)
        in_val = 0
        for k in rng.permutation(len(members_list)).tolist():
            unit = members_list[k]
            to_val = in_val < target and (in_val + len(unit) - target) <= (target - in_val)
            for r in unit:
                r["split"] = "val" if to_val else "train"
            in_val += len(unit) if to_val else 0


def write_clean(report: dict, path: str | os.PathLike, *, split_by_group: bool = False, val_ratio: float | None = None,
                seed: int | None = None, relative: bool = False, **plan) -> dict:
    """Write the clean dataset CSV (``path,label,split``); returns what was done:
    ``{"path", "rows", "dropped", "relabelled", "reasons": {"drop: outlier": n, ...}, "counts": {split: n},
    "changes": [one dict per dropped or relabelled image]}``.

    ``plan``: the options of :func:`plan_clean`. ``split_by_group``: see :func:`group_split`
    (``val_ratio`` and ``seed`` default to the report's). ``relative``: paths relative to the
    CSV's folder instead of absolute.
    """
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise ConfigError(f"the clean dataset must be a .csv file, got {path}")
    if path.exists() and path.is_dir():
        raise ConfigError(f"{path} is a folder; give a .csv file name")
    rows = plan_clean(report, **plan)
    if split_by_group:
        settings = report.get("settings", {})
        groups = [[f["path"] for f in d["files"]] for d in report["duplicates"]]
        group_split(rows, groups, val_ratio=settings.get("val_ratio", 0.2) if val_ratio is None else val_ratio,
                    seed=settings.get("seed", 0) if seed is None else seed)
    kept = [r for r in rows if r["action"] != "drop"]
    multilabel = report.get("task") == "multilabel"  # labels "a;b": written under a 'labels' header
    if len({x for r in kept for x in (r["label"].split(";") if multilabel else [r["label"]]) if x}) < 2:
        raise ConfigError("the clean dataset would have fewer than 2 classes left; drop less")
    base = os.path.abspath(path.parent)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "labels" if multilabel else "label", "split"])
    for r in sorted(kept, key=lambda r: (_ORDER[r["split"]], r["label"], r["path"])):
        w.writerow([os.path.relpath(r["path"], base) if relative else r["path"], r["label"], r["split"]])
    atomic_write_text(path, buf.getvalue())
    reasons = Counter(f"{r['action']}: {_reason_kind(r['reason'])}" for r in rows if r["action"] != "keep")
    return {"path": str(path), "rows": len(kept), "dropped": sum(r["action"] == "drop" for r in rows),
            "relabelled": sum(r["action"] == "relabel" for r in rows), "reasons": dict(reasons),
            "counts": dict(Counter(r["split"] for r in kept)), "split_by_group": bool(split_by_group),
            "changes": [{k: r[k] for k in ("path", "action", "original_label", "label", "split", "reason")}
                        for r in rows if r["action"] != "keep"]}


def _reason_kind(reason: str) -> str:
    if reason.startswith("duplicate group") and "conflicting" in reason:
        return "conflicting labels"
    if reason.startswith("copy of a"):
        return "cross-split copy"
    if reason.startswith(("identical", "near-identical")):
        return "duplicate in the same split"
    if reason.startswith("outlier"):
        return "outlier"
    if reason.startswith("likely label error"):
        return "label error"
    return reason
