"""PNG plots for evaluation (matplotlib, Agg; no pyplot global state, safe in threads and servers).

Every function takes plain data and a destination path, writes one PNG and returns the path.
Figures scale with the number of classes so labels stay readable up to about 50 classes: tick
labels rotate, and per-cell annotations are dropped when there are too many cells.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure  # rendered by Agg on savefig; pyplot is never touched
from matplotlib.ticker import MaxNLocator

ANNOTATE_MAX_CLASSES = 20  # confusion-matrix cells get their numbers up to this many classes
DPI = 100


def figure(width: float, height: float):
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_png(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def label_size(n: int) -> float:
    return 10 if n <= 15 else 8 if n <= 30 else 6


def epoch_axis(ax) -> None:
    """An x axis of epochs: integer ticks only (1, 2, 3, not 1.0, 1.5, 2.0)."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def series(history: Sequence[Mapping[str, float]], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in history], dtype=float)


def plot_history(history: Sequence[Mapping[str, float]], path: str | Path, title: str = "") -> Path:
    """Training vs validation loss and accuracy per epoch (from ``history.csv`` rows)."""
    fig = figure(11, 4)
    axes = fig.subplots(1, 2)
    epochs = series(history, "epoch") if history and "epoch" in history[0] else np.arange(1, len(history) + 1)
    for ax, what in zip(axes, ("loss", "acc")):
        for split, style in (("train", "-o"), ("val", "-s")):
            y = series(history, f"{split}_{what}")
            if np.isfinite(y).any():
                ax.plot(epochs, y, style, markersize=3, label=f"{split}")
        epoch_axis(ax)
        ax.set_ylabel("loss" if what == "loss" else "accuracy")
        ax.set_title(("Loss" if what == "loss" else "Accuracy") + (f" - {title}" if title else ""))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if not history:
        axes[0].text(0.5, 0.5, "no history.csv", ha="center", va="center", transform=axes[0].transAxes)
    return save_png(fig, path)


def plot_confusion(cm, classes: Sequence[str], path: str | Path, normalized=None, title: str = "Confusion matrix") -> Path:
    """Heat map of the confusion matrix: colour = row-normalised rate, text = counts (few classes)."""
    cm = np.asarray(cm)
    n = len(classes)
    if normalized is None:
        rows = cm.sum(axis=1, keepdims=True).astype(float)
        rows[rows == 0] = 1.0
        normalized = cm / rows
    normalized = np.asarray(normalized, dtype=float)
    side = max(5.0, min(22.0, 2.5 + 0.38 * n))
    fig = figure(side + 1.2, side)
    ax = fig.subplots()
    im = ax.imshow(normalized, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fs = label_size(n)
    ax.set_xticks(range(n), [str(c) for c in classes], rotation=45 if n <= 15 else 90, ha="right" if n <= 15 else "center", fontsize=fs)
    ax.set_yticks(range(n), [str(c) for c in classes], fontsize=fs)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= ANNOTATE_MAX_CLASSES:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    color = "white" if normalized[i, j] > 0.5 else "black"
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color=color, fontsize=fs - 1)
    return save_png(fig, path)


def plot_roc(curves: Mapping[str, Mapping[str, Any]], classes: Sequence[str], path: str | Path) -> Path:
    """One-vs-rest ROC curves per class plus micro and macro averages (from ``metrics.roc_curves``)."""
    n = len(classes)
    fig = figure(8 if n <= 15 else 11 if n <= 30 else 13, 7)
    ax = fig.subplots()
    cmap = matplotlib.colormaps["tab20" if n > 10 else "tab10"]
    for i, name in enumerate(classes):
        c = curves.get(name) or {}
        if c.get("fpr") is None:
            continue
        ax.plot(c["fpr"], c["tpr"], lw=1, alpha=0.8, color=cmap(i % cmap.N), label=f"{name} (AUC {c['auc']:.3f})")
    for key, style in (("micro", ":"), ("macro", "--")):
        c = curves.get(key) or {}
        if c.get("fpr") is not None and c.get("auc") is not None:
            ax.plot(c["fpr"], c["tpr"], style, lw=2.5, color="black" if key == "micro" else "crimson",
                    label=f"{key}-average (AUC {c['auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, alpha=0.6)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curves (one-vs-rest)")
    ax.grid(alpha=0.3)
    ncol = 1 if n <= 15 else 2 if n <= 30 else 3
    ax.legend(fontsize=9 if n <= 15 else 7, loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=ncol, frameon=False)
    return save_png(fig, path)


def plot_f1_bars(per_class: Mapping[str, Mapping[str, float]], path: str | Path, macro: float | None = None) -> Path:
    """Per-class F1 as bars, with the macro average as a line."""
    names = list(per_class)
    f1 = [float(per_class[c].get("f1") or 0.0) for c in names]
    n = len(names)
    fig = figure(max(6.0, min(24.0, 1.5 + 0.4 * n)), 4.5)
    ax = fig.subplots()
    ax.bar(range(n), f1, color="steelblue")
    if macro is not None:  # the legend sits outside the axes, where it cannot cover a bar
        ax.axhline(macro, color="crimson", ls="--", lw=1.2, label=f"macro F1 {macro:.3f}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    ax.set_xticks(range(n), names, rotation=45 if n > 8 else 0, ha="right" if n > 8 else "center", fontsize=label_size(n))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.set_title("Per-class F1")
    ax.grid(axis="y", alpha=0.3)
    if n <= 30:
        for i, v in enumerate(f1):
            ax.text(i, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=label_size(n) - 2)
    return save_png(fig, path)


def _grid(n: int, max_cols: int = 6) -> tuple[int, int]:
    cols = min(max_cols, max(1, n))
    return int(np.ceil(n / cols)), cols


def plot_image_grid(items: Sequence[Mapping[str, Any]], path: str | Path, title: str = "", empty: str = "nothing to show") -> Path:
    """A grid of images with captions: ``items`` are ``{"image": HxW[x3] array or PIL image, "caption": str,
    optional "overlay": HxW array in [0, 1] drawn as a translucent heat map, optional "color"}``."""
    n = len(items)
    rows, cols = _grid(max(n, 1))
    fig = figure(2.4 * cols, 2.6 * rows + (0.4 if title else 0))
    if title:
        fig.suptitle(title)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    if not n:
        axes[0].text(0.5, 0.5, empty, ha="center", va="center", transform=axes[0].transAxes)
    for ax, item in zip(axes, items):
        img = np.asarray(item["image"])
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        if item.get("overlay") is not None:
            ax.imshow(np.asarray(item["overlay"]), cmap="jet", alpha=0.4, vmin=0.0, vmax=1.0,
                      extent=(-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5), interpolation="bilinear")
        ax.set_title(item.get("caption", ""), fontsize=8, color=item.get("color", "black"))
    return save_png(fig, path)


def plot_mistakes(mistakes: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """The most confident mistakes: ``{"image", "true", "pred", "prob"}`` each."""
    items = [
        {"image": m["image"], "caption": f"true: {m['true']}\npred: {m['pred']} ({m['prob']:.2f})", "color": "darkred"}
        for m in mistakes
    ]
    return plot_image_grid(items, path, title="Most confident mistakes", empty="no mistakes")


def plot_reliability(before: Mapping[str, Sequence], after: Mapping[str, Sequence], path: str | Path, *,
                     temperature: float, ece_before: float, ece_after: float) -> Path:
    """Reliability diagrams before and after temperature scaling, side by side (from
    ``calibration.reliability_bins``): per confidence bin the accuracy as a bar, the gap to the bin's
    mean confidence shaded, the diagonal of perfect calibration, and the images per bin below."""
    fig = figure(11, 5.5)
    axes = fig.subplots(2, 2, sharex=True, height_ratios=[3, 1])
    panels = ((before, f"before (T = 1): ECE {ece_before:.3f}"),
              (after, f"after (T = {temperature:.2f}): ECE {ece_after:.3f}"))
    for col, (bins, title) in enumerate(panels):
        ax, hist = axes[0, col], axes[1, col]
        lower, upper = np.asarray(bins["lower"], float), np.asarray(bins["upper"], float)
        width, mid = upper - lower, (lower + upper) / 2
        filled = [i for i, n in enumerate(bins["count"]) if n]
        acc = np.array([bins["accuracy"][i] for i in filled], float)
        conf = np.array([bins["confidence"][i] for i in filled], float)
        ax.bar(mid[filled], acc, width=width[filled], color="steelblue", edgecolor="white", label="accuracy")
        ax.bar(mid[filled], conf - acc, bottom=acc, width=width[filled], color="crimson", alpha=0.3,
               edgecolor="crimson", hatch="//", label="gap to confidence")
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        hist.bar(mid, bins["count"], width=width, color="grey", edgecolor="white")
        hist.set_xlabel("confidence (top-1 probability)")
        hist.set_ylabel("images")
        hist.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize=9, frameon=False)
    fig.suptitle("Reliability diagram (temperature scaling fitted on the validation split)")
    return save_png(fig, path)
