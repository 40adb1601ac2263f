"""The dataset report behind ``transferlab inspect``: what a notebook's exploration cells show.

:func:`inspect_data` loads and scans a dataset and returns a JSON-ready dict: images per class and
split, class imbalance (largest / smallest class), image sizes (min / max / mean width x height),
file formats and modes, broken files with reasons, duplicate groups (and which cross splits).
:func:`render_report` makes rich tables of it, :func:`write_html` a self-contained page (charts
and sample images embedded as base64), :func:`write_file_csv` a per-file listing.

>>> report = inspect_data("DATA", val_ratio=0.2, seed=0, progress=False)    # doctest: +SKIP
>>> report["imbalance"]["ratio"], report["totals"]                          # doctest: +SKIP
(1.5, {'train': 160, 'val': 40, 'test': 0, 'all': 200})
"""
from __future__ import annotations

import base64
import csv
import io
import os
import warnings
from collections import Counter
from pathlib import Path

from matplotlib.figure import Figure  # Agg canvas, no pyplot / global backend
from rich.table import Table

from .._html import render
from ..errors import ConfigError
from .images import open_image
from .load import load_data
from .scan import duplicate_groups
from .types import SPLITS, DataSplits


def inspect_data(source: str | os.PathLike | DataSplits, *, val_ratio: float = 0.2, seed: int = 0,
                 workers: int | None = None, progress: bool = True) -> dict:
    """Load + scan ``source`` (or take scanned :class:`DataSplits`) and return the report dict.

    Keys: ``root, layout, classes, num_classes, counts {split: {class: n}}, totals {split: n, all},
    class_totals, imbalance {largest, smallest, ratio}, image_size {width, height: {min, max,
    mean}, smallest, largest, mean: [w, h]}, formats, modes, bytes, broken [{path, reason}],
    duplicates [{files, splits, classes, cross_split}], leakage (cross-split groups),
    ignored_files, warnings, settings``.
    """
    splits = load_scanned(source, val_ratio=val_ratio, seed=seed, workers=workers, progress=progress)
    counts = splits.counts()
    totals = {name: len(splits.split(name)) for name in SPLITS}
    totals["all"] = sum(totals.values())
    class_totals = {c: sum(counts[s][c] for s in SPLITS) for c in splits.classes}
    largest = max(class_totals.items(), key=lambda kv: kv[1])
    smallest = min(class_totals.items(), key=lambda kv: kv[1])
    ratio = round(largest[1] / smallest[1], 3) if smallest[1] else None

    split_of: dict[str, str] = {}
    class_of: dict[str, str] = {}
    for name in SPLITS:
        for p, y in splits.split(name):
            split_of[p], class_of[p] = name, splits.classes[y]
    infos = [splits.info[p] for p in split_of if p in splits.info]
    size: dict = {}
    if infos:
        ws, hs = [i.width for i in infos], [i.height for i in infos]
        small = min(infos, key=lambda i: (i.width * i.height, i.width))
        big = max(infos, key=lambda i: (i.width * i.height, i.width))
        size = {
            "width": {"min": min(ws), "max": max(ws), "mean": round(sum(ws) / len(ws), 1)},
            "height": {"min": min(hs), "max": max(hs), "mean": round(sum(hs) / len(hs), 1)},
            "smallest": [small.width, small.height],
            "largest": [big.width, big.height],
            "mean": [round(sum(ws) / len(ws), 1), round(sum(hs) / len(hs), 1)],
            "aspect": aspect_summary(ws, hs),
        }
    dups = []
    for group in duplicate_groups(splits.info, split_of):
        in_splits = sorted({split_of[p] for p in group}, key=SPLITS.index)
        classes = sorted({class_of[p] for p in group})
        dups.append({"files": group, "splits": in_splits, "classes": classes,
                     "cross_split": len(in_splits) > 1, "label_conflict": len(classes) > 1})
    return {
        "root": splits.root,
        "layout": splits.layout,
        "classes": list(splits.classes),
        "num_classes": len(splits.classes),
        "counts": counts,
        "totals": totals,
        "class_totals": class_totals,
        "imbalance": {"largest": {"class": largest[0], "images": largest[1]},
                      "smallest": {"class": smallest[0], "images": smallest[1]}, "ratio": ratio},
        "image_size": size,
        "formats": dict(Counter(i.format for i in infos).most_common()),
        "modes": dict(Counter(i.mode for i in infos).most_common()),
        "bytes": sum(i.bytes for i in infos),
        "broken": [{"path": b.path, "reason": b.reason} for b in splits.broken],
        "duplicates": dups,
        "leakage": sum(d["cross_split"] for d in dups),
        "ignored_files": len(splits.ignored),
        "warnings": list(splits.warnings),
        "settings": {"val_ratio": val_ratio, "seed": seed},
    }


CROP_CUT_ADVICE = 0.15  # a centre crop cutting more than this share of the mean photo: compare the resize modes


def aspect_summary(widths, heights) -> dict:
    """The photos' shapes: ``median`` long/short side ratio, the share ``not_square`` (ratio >= 1.2),
    ``wide`` / ``tall`` shares (ratio >= 1.2 either way), ``crop_cuts``: the mean share of a photo's
    area a square centre crop (``--resize crop``) throws away (``1 - short / long``), and ``advice``:
    ``"compare"`` when the crop cuts more than ``CROP_CUT_ADVICE`` of the mean photo (try ``--resize pad``
    and ``stretch`` against the crop: which wins depends on the data; on the cars, 35% cut, stretch beat
    the crop by 1.3 points and pad lost 2.6, bench/README.md), else ``"crop"``.

    >>> aspect_summary([200, 100], [100, 100])["crop_cuts"]
    0.25
    """
    ratios = [max(w, h) / max(1, min(w, h)) for w, h in zip(widths, heights)]
    n = max(1, len(ratios))
    cuts = sum(1 - min(w, h) / max(1, max(w, h)) for w, h in zip(widths, heights)) / n
    wide = sum(1 for w, h in zip(widths, heights) if w >= 1.2 * h) / n
    tall = sum(1 for w, h in zip(widths, heights) if h >= 1.2 * w) / n
    return {"median": round(sorted(ratios)[len(ratios) // 2], 3) if ratios else None,
            "not_square": round(wide + tall, 4), "wide": round(wide, 4), "tall": round(tall, 4),
            "crop_cuts": round(cuts, 4), "advice": "compare" if cuts > CROP_CUT_ADVICE else "crop"}


def load_scanned(source, *, val_ratio: float = 0.2, seed: int = 0, workers: int | None = None,
                 progress: bool = True) -> DataSplits:
    """Scanned DataSplits for a report; load_data's warnings are kept in ``splits.warnings``."""
    if isinstance(source, DataSplits):
        if not source.scanned:
            raise ConfigError("inspect_data needs scanned DataSplits (load_data(..., scan=True))")
        return source
    with warnings.catch_warnings():  # the notes are kept in splits.warnings and reported
        warnings.simplefilter("ignore")
        return load_data(source, val_ratio=val_ratio, seed=seed, scan=True, workers=workers, progress=progress)


def _titled(title: str, **kwargs) -> Table:
    """A table at least as wide as its title: rich wraps a title to the table's width, and a table of
    short columns (``0``, ``8``, ``2``) would break ``images per class (...)`` over two lines."""
    return Table(title=title, min_width=len(title) + 4, **kwargs)


def render_report(report: dict, max_rows: int = 20) -> list:
    """Rich renderables (tables) for a report dict; print them with a ``rich.console.Console``."""
    out: list = []
    used = [s for s in SPLITS if report["totals"][s]]
    t = _titled(f"images per class ({report['layout']}, {report['num_classes']} classes)")
    t.add_column("class")
    for s in used:
        t.add_column(s, justify="right")
    t.add_column("total", justify="right")
    for c in report["classes"]:
        t.add_row(c, *(str(report["counts"][s][c]) for s in used), str(report["class_totals"][c]))
    t.add_section()
    t.add_row("[bold]all", *(f"[bold]{report['totals'][s]}" for s in used), f"[bold]{report['totals']['all']}")
    out.append(t)

    summary = Table(show_header=False, title="summary")
    imb = report["imbalance"]
    summary.add_row("class imbalance",
                    f"{imb['ratio']}x  (largest {imb['largest']['class']}: {imb['largest']['images']}, "
                    f"smallest {imb['smallest']['class']}: {imb['smallest']['images']})")
    size = report["image_size"]
    if size:
        summary.add_row("image size (w x h)",
                        f"smallest {size['smallest'][0]}x{size['smallest'][1]}, "
                        f"largest {size['largest'][0]}x{size['largest'][1]}, "
                        f"mean {size['mean'][0]:g}x{size['mean'][1]:g}")
        a = size.get("aspect")
        if a and a["median"] is not None:
            hint = ("  [yellow]compare --resize pad / stretch[/] (they keep the whole photo)"
                    if a["advice"] == "compare" else "")
            summary.add_row("aspect ratio (long / short side)",
                            f"median {a['median']:.2f}, {a['not_square']:.0%} not square ({a['wide']:.0%} wide, "
                            f"{a['tall']:.0%} tall); a centre crop cuts {a['crop_cuts']:.0%} of the mean photo{hint}")
    summary.add_row("formats", ", ".join(f"{k} {v}" for k, v in report["formats"].items()))
    summary.add_row("modes", ", ".join(f"{k} {v}" for k, v in report["modes"].items()))
    summary.add_row("broken files", str(len(report["broken"])))
    summary.add_row("duplicate groups", f"{len(report['duplicates'])} ({report['leakage']} across splits)")
    if report["ignored_files"]:
        summary.add_row("non-image files ignored", str(report["ignored_files"]))
    out.append(summary)

    if report["broken"]:
        b = _titled("broken files (skipped)")
        b.add_column("file", overflow="fold")
        b.add_column("reason")
        for item in report["broken"][:max_rows]:
            b.add_row(item["path"], item["reason"])
        if len(report["broken"]) > max_rows:
            b.add_row(f"... and {len(report['broken']) - max_rows} more", "")
        out.append(b)
    if report["duplicates"]:
        d = _titled("duplicate files (same content)")
        d.add_column("files", overflow="fold")
        d.add_column("splits")
        d.add_column("classes")
        for g in report["duplicates"][:max_rows]:
            d.add_row("\n".join(g["files"]), ", ".join(g["splits"]) + ("  [red]leakage" if g["cross_split"] else ""),
                      ", ".join(g["classes"]) + ("  [red]conflict" if g["label_conflict"] else ""))
        if len(report["duplicates"]) > max_rows:
            d.add_row(f"... and {len(report['duplicates']) - max_rows} more groups", "", "")
        out.append(d)
    return out


def write_file_csv(splits: DataSplits, path: str | os.PathLike) -> Path:
    """One row per usable image: ``path,label,split,width,height,format,mode,bytes,sha1``.

    The file is itself a CSV dataset: ``load_data(path)`` reads it back with the same split.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split", "width", "height", "format", "mode", "bytes", "sha1"])
        for name in SPLITS:
            for p, y in splits.split(name):
                i = splits.info.get(p)
                extra = [i.width, i.height, i.format, i.mode, i.bytes, i.sha1] if i else [""] * 6
                w.writerow([p, splits.classes[y], name, *extra])
    return path


def _paths_by_class(splits: DataSplits) -> list[list[str]]:
    """Every image path per class index, in split order (train, val, test), in one pass."""
    by_class: list[list[str]] = [[] for _ in splits.classes]
    for name in SPLITS:
        for p, y in splits.split(name):
            by_class[y].append(p)
    return by_class


def _figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _charts(report: dict, splits: DataSplits) -> tuple[str, str]:
    classes = report["classes"]
    fig = Figure(figsize=(max(5.0, 0.45 * len(classes) + 2), 3.6))
    ax = fig.add_subplot()
    bottom = [0] * len(classes)
    for name in SPLITS:
        vals = [report["counts"][name][c] for c in classes]
        if any(vals):
            ax.bar(classes, vals, bottom=bottom, label=name)
            bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("images")
    ax.set_title("images per class")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.tick_params(axis="x", labelrotation=45 if len(classes) > 8 else 0)
    bars = _figure_png(fig)

    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    for c, paths in zip(classes, _paths_by_class(splits)):
        pts = [splits.info[p] for p in paths if p in splits.info]
        ax.scatter([i.width for i in pts], [i.height for i in pts], s=12, alpha=0.6, label=c)
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.set_title("image sizes")
    if len(classes) <= 12:
        ax.legend(fontsize="small", markerscale=1.5)
    return bars, _figure_png(fig)


def _thumb(path: str, size: int = 96) -> str | None:
    try:
        img = open_image(path)
    except Exception:  # noqa: BLE001 - a thumbnail is optional
        return None
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def write_html(report: dict, splits: DataSplits, path: str | os.PathLike, *, samples_per_class: int = 8) -> Path:
    """A self-contained HTML page: summary, class-count bar chart, image-size scatter, a grid of
    sample images per class, broken and duplicate files. Every image is embedded as base64."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bars, scatter = _charts(report, splits)
    samples = [{"name": c, "thumbs": [{"path": p, "data": t} for p in paths[:samples_per_class] if (t := _thumb(p))]}
               for c, paths in zip(report["classes"], _paths_by_class(splits))]
    page = render("inspect.html", report=report, splits=SPLITS, bars=bars, scatter=scatter, samples=samples)
    path.write_text(page, encoding="utf-8")
    return path
