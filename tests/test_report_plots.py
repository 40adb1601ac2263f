"""Issue 13, "report, page and console": the comparison report shows each model's ROC curves and most
confident mistakes; every per-epoch plot ticks whole epochs; the macro-F1 legend covers no bar; the
best model's label in accuracy-vs-time stays inside the plot. Checked on the Figure itself."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from transferlab.comparison import plots as cplots
from transferlab.comparison import write_report
from transferlab.evaluation import compute_metrics, plots, roc_curves


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions would save, drawn (tick labels and extents are final)."""
    drawn = []

    def keep(fig, path):
        FigureCanvasAgg(fig).draw()
        drawn.append(fig)
        return path

    monkeypatch.setattr(plots, "save_png", keep)
    monkeypatch.setattr(cplots, "save_png", keep)
    return drawn


HISTORY = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_acc": 1 - 0.5 / e, "val_acc": 0.9 - 0.5 / e,
            "lr": 1e-3, "seconds": 1.0} for e in (1, 2, 3)]


def _epoch_ticks(ax):
    xmin, xmax = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if xmin <= t <= xmax]
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    return ticks, labels


@pytest.mark.parametrize("n_epochs", [2, 3, 7])
def test_per_epoch_plots_tick_whole_epochs(figures, tmp_path, n_epochs):
    hist = [{**HISTORY[0], "epoch": e} for e in range(1, n_epochs + 1)]
    plots.plot_history(hist, tmp_path / "history.png", "demo")
    cplots.plot_val_curves({"a": hist, "b": hist[:-1]}, tmp_path / "val_curves.png")
    axes = [ax for fig in figures for ax in fig.axes]
    assert len(axes) == 4
    for ax in axes:
        ticks, labels = _epoch_ticks(ax)
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert all(re.fullmatch(r"\d+", lab.replace("\u2212", "-")) for lab in labels), labels


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("n_classes", [3, 10, 40])
def test_macro_f1_legend_covers_no_bar(figures, tmp_path, n_classes):
    per_class = {f"class_{i}": {"f1": 0.95 - 0.01 * (i % 5)} for i in range(n_classes)}  # tall bars everywhere
    plots.plot_f1_bars(per_class, tmp_path / "f1.png", macro=0.93)
    fig = figures[-1]
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    bars = [p.get_window_extent(renderer) for p in ax.patches]
    assert len(bars) == n_classes
    assert not any(_overlaps(legend, b) for b in bars)
    assert fig.bbox.x0 <= legend.x0 and legend.x1 <= fig.bbox.x1  # and the legend is not cut off


@pytest.mark.parametrize("best_at", ["top-right", "top-left", "bottom-right"])
def test_accuracy_vs_time_labels_stay_inside_the_plot(figures, tmp_path, best_at):
    rows = [{"model": name, "status": "ok", "train_seconds": t, "accuracy": a, "best": False}
            for name, t, a in (("cnn_base", 30, 0.61), ("cnn_bn", 45, 0.72), ("resnet_scratch", 80, 0.70))]
    spot = {"top-right": (400, 0.97), "top-left": (5, 0.97), "bottom-right": (400, 0.55)}[best_at]
    rows.append({"model": "efficientnet_lite0_long_name", "status": "ok", "train_seconds": spot[0],
                 "accuracy": spot[1], "best": True})
    cplots.plot_accuracy_vs_time(rows, tmp_path / "avt.png")
    fig = figures[-1]
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    labels = [t for t in ax.texts if t.get_text()]
    assert {t.get_text() for t in labels} == {r["model"] for r in rows}
    for t in labels:
        box = t.get_window_extent(renderer)
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1, \
            (t.get_text(), box, inside)


CLASSES = ["cat", "dog", "fox"]


def fake_run(out, name, skill, seconds, seed):
    """OUT/runs/NAME with history.csv and eval-val/ holding metrics.json and the plots evaluate writes."""
    ev = out / "runs" / name / "eval-val"
    ev.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    y = np.arange(30) % 3
    logits = rng.normal(size=(30, 3))
    logits[np.arange(30), y] += skill
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = compute_metrics(y, probs, CLASSES)
    m.update({"num_params": 1000, "model_size_mb": 0.5, "inference_ms_per_image": 1.0})
    (ev / "metrics.json").write_text(json.dumps(m))
    plots.plot_confusion(m["confusion_matrix"], CLASSES, ev / "confusion_matrix.png")
    plots.plot_roc(roc_curves(y, probs, CLASSES), CLASSES, ev / "roc.png")
    img = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    plots.plot_mistakes([{"image": img, "true": "cat", "pred": "dog", "prob": 0.9}], ev / "mistakes.png")
    with (out / "runs" / name / "history.csv").open("w") as f:
        f.write("epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n")
        f.write(f"1,1.0,0.50,1.1,0.40,0.001,{seconds / 2}\n2,0.5,0.90,0.9,0.70,0.001,{seconds / 2}\n")


def test_report_shows_each_models_roc_and_most_confident_mistakes(tmp_path):
    out = tmp_path / "cmp"
    fake_run(out, "good", 3.0, 20, 1)
    fake_run(out, "weak", 0.5, 5, 2)
    (out / "state.json").write_text(json.dumps({"data": "d", "split": "val", "metric": "accuracy",
                                                "order": ["good", "weak"],
                                                "models": {"good": {"status": "ok"}, "weak": {"status": "ok"}}}))
    write_report(out)
    html = (out / "report.html").read_text()
    for model in ("good", "weak"):
        for what in ("ROC curves (one-vs-rest)", "Most confident mistakes", "Confusion matrix"):
            assert re.search(rf'<img src="data:image/png;base64,[^"]+" alt="{model}: {re.escape(what)}">', html), \
                (model, what)
    # the mistakes come right after the confusion matrix: the plot a user wants first
    section = html[html.index("<summary>good"):]
    assert section.index("Most confident mistakes") < section.index("ROC curves")
    md = (out / "report.md").read_text()
    assert "## Models" in md and "### good (best)" in md
    for model in ("good", "weak"):
        for png in ("roc", "mistakes", "confusion_matrix"):
            link = f"runs/{model}/eval-val/{png}.png"
            assert f"]({link})" in md and (out / link).is_file()
