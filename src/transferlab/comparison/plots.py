"""Comparison plots across models (matplotlib Agg, one PNG each)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np

from ..evaluation.plots import epoch_axis, figure, label_size, save_png, series


def plot_val_curves(histories: Mapping[str, Sequence[Mapping[str, float]]], path: str | Path) -> Path:
    """Validation accuracy and loss per epoch, every model overlaid."""
    fig = figure(12, 4.5)
    axes = fig.subplots(1, 2)
    cmap = matplotlib.colormaps["tab10" if len(histories) <= 10 else "tab20"]
    for i, (name, hist) in enumerate(histories.items()):
        if not hist:
            continue
        epochs = series(hist, "epoch") if "epoch" in hist[0] else np.arange(1, len(hist) + 1)
        for ax, key in zip(axes, ("val_acc", "val_loss")):
            y = series(hist, key)
            if np.isfinite(y).any():
                ax.plot(epochs, y, "-o", markersize=3, color=cmap(i % cmap.N), label=name)
    for ax, label in zip(axes, ("validation accuracy", "validation loss")):
        epoch_axis(ax)
        ax.set_ylabel(label)
        ax.set_title(label.capitalize())
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
    else:
        axes[0].text(0.5, 0.5, "no training history", ha="center", va="center", transform=axes[0].transAxes)
    return save_png(fig, path)


def plot_accuracy_vs_time(rows: Sequence[Mapping], path: str | Path, metric: str = "accuracy") -> Path:
    """Each model as a point: training time (x) against ``metric`` (y); the best is starred."""
    fig = figure(8, 5.5)
    ax = fig.subplots()
    pts = [(r["model"], r["train_seconds"], r[metric], r.get("best")) for r in rows
           if r.get("status") == "ok" and r.get("train_seconds") is not None and r.get(metric) is not None]
    for name, x, y, best in pts:
        ax.scatter([x], [y], s=160 if best else 60, marker="*" if best else "o",
                   color="crimson" if best else "steelblue", zorder=3)
    xs = [p[1] for p in pts if p[1] and p[1] > 0]
    log_x = len(xs) >= 2 and max(xs) / min(xs) > 20
    if log_x:
        ax.set_xscale("log")
    ax.margins(x=0.08, y=0.12)
    # each label on the side of its point that faces the middle of the plot, so that the points at the
    # edges (the best model is often the top-right one) keep their labels inside the axes
    xlo, xhi = ax.get_xlim()
    ylo, yhi = ax.get_ylim()
    xmid = np.sqrt(xlo * xhi) if log_x and xlo > 0 else (xlo + xhi) / 2
    # labels overlapping one placed before move further up or down (boxes estimated in points: 9 pt text)
    placed: list[tuple[float, float, float, float]] = []
    to_points = 72.0 / fig.dpi
    for name, x, y, best in sorted(pts, key=lambda p: (-p[2], p[0])):
        right, top = x > xmid, y > (ylo + yhi) / 2
        px, py = (v * to_points for v in ax.transData.transform((x, y)))
        width, height = 5.8 * len(name) * (1.1 if best else 1.0), 11.0
        base = -6 if top else 6
        for shift in [0] + [s * k * 12 for k in range(1, 16) for s in (1, -1)]:
            dy = base + shift
            x0 = px - 7 - width if right else px + 7
            y0 = py + dy - height if top else py + dy
            box = (x0, y0, x0 + width, y0 + height)
            if not any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in placed):
                break
        placed.append(box)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(-7 if right else 7, dy),
                    ha="right" if right else "left", va="top" if top else "bottom", fontsize=9,
                    fontweight="bold" if best else "normal", annotation_clip=False,
                    arrowprops=dict(arrowstyle="-", lw=0.5, color="0.6") if shift else None)
    if not pts:
        ax.text(0.5, 0.5, "no finished models", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("training time (s)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"{metric.replace('_', ' ').capitalize()} vs training time")
    ax.grid(alpha=0.3)
    return save_png(fig, path)


def plot_f1_heatmap(models: Sequence[str], classes: Sequence[str], f1: np.ndarray, path: str | Path) -> Path:
    """Per-class F1 (columns) for every model (rows)."""
    f1 = np.asarray(f1, dtype=float).reshape(len(models), len(classes))
    nc, nm = len(classes), len(models)
    fig = figure(max(6.0, min(26.0, 2.5 + 0.45 * nc)), max(3.0, 1.2 + 0.45 * nm))
    ax = fig.subplots()
    im = ax.imshow(f1, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="F1", fraction=0.04, pad=0.02)
    fs = label_size(nc)
    ax.set_xticks(range(nc), list(classes), rotation=45 if nc <= 20 else 90, ha="right" if nc <= 20 else "center", fontsize=fs)
    ax.set_yticks(range(nm), list(models), fontsize=9)
    ax.set_title("Per-class F1 by model")
    if nc * nm <= 300:
        for i in range(nm):
            for j in range(nc):
                if np.isfinite(f1[i, j]):
                    ax.text(j, i, f"{f1[i, j]:.2f}", ha="center", va="center", fontsize=max(6, fs - 2),
                            color="black" if f1[i, j] > 0.6 else "white")
    return save_png(fig, path)
