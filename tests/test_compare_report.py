"""Leaderboard ranking and the report writer, from hand-made run folders (no training)."""
from __future__ import annotations

import base64
import csv
import json
import re

import numpy as np
import pytest

from transferlab.comparison import make_row, rank_rows, write_report
from transferlab.comparison.leaderboard import history_summary
from transferlab.errors import ConfigError
from transferlab.evaluation import compute_metrics
from transferlab.evaluation import plots

CLASSES = ["cat", "dog", "fox"]


def fake_run(out, name, *, skill, seconds, seed=0):
    """OUT/runs/NAME with history.csv and eval-val/{metrics.json, confusion_matrix.png}."""
    run = out / "runs" / name
    ev = run / "eval-val"
    ev.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    y = np.arange(30) % 3
    logits = rng.normal(size=(30, 3))
    logits[np.arange(30), y] += skill
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = compute_metrics(y, probs, CLASSES)
    m.update({"num_params": 1000 + seed, "model_size_mb": 0.5, "inference_ms_per_image": 1.0 + seed})
    (ev / "metrics.json").write_text(json.dumps(m))
    plots.plot_confusion(m["confusion_matrix"], CLASSES, ev / "confusion_matrix.png")
    with (run / "history.csv").open("w") as f:
        f.write("epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n")
        f.write(f"1,1.0,0.50,1.1,0.40,0.001,{seconds / 2}\n")
        f.write(f"2,0.5,0.90,0.9,0.70,0.001,{seconds / 2}\n")
    return m


def test_history_summary():
    hist = [{"train_acc": 0.5, "val_acc": 0.4, "seconds": 1.5}, {"train_acc": 0.9, "val_acc": 0.7, "seconds": 2.5}]
    assert history_summary(hist) == {"epochs": 2, "train_seconds": 4.0, "train_val_gap": pytest.approx(0.2)}
    assert history_summary([])["epochs"] == 0


def test_make_row_and_ranking():
    m = {"accuracy": 0.8, "macro_avg": {"precision": 0.7, "recall": 0.75, "f1": 0.72}, "roc_auc": {"macro": 0.9},
         "log_loss": 0.5, "num_params": 123, "model_size_mb": 1.5, "inference_ms_per_image": 2.0}
    a = make_row("a", m, [{"train_acc": 1.0, "val_acc": 0.8, "seconds": 10}])
    assert a["f1_macro"] == 0.72 and a["auc_macro"] == 0.9 and a["train_val_gap"] == pytest.approx(0.2)
    assert a["epochs"] == 1 and a["train_seconds"] == 10 and a["params"] == 123
    b = make_row("b", {**m, "accuracy": 0.9, "inference_ms_per_image": 5.0})
    s = make_row("s", None, status="skipped", reason="no weights offline")
    ranked = rank_rows([a, s, b], "accuracy")
    assert [r["model"] for r in ranked] == ["b", "a", "s"]
    assert [r["rank"] for r in ranked] == [1, 2, None]
    assert ranked[0]["best"] and not ranked[1]["best"] and not ranked[2]["best"]
    by_speed = rank_rows([a, s, b], "ms_per_image")  # lower is better
    assert [r["model"] for r in by_speed] == ["a", "b", "s"]
    with pytest.raises(ConfigError):
        rank_rows([a], "nonsense")


def test_report_from_existing_runs(tmp_path):
    out = tmp_path / "cmp"
    fake_run(out, "good", skill=3.0, seconds=20, seed=1)
    fake_run(out, "weak", skill=0.5, seconds=5, seed=2)
    (out / "state.json").write_text(json.dumps({
        "data": "somewhere", "split": "val", "metric": "accuracy", "order": ["weak", "good", "offline"],
        "models": {"good": {"status": "ok"}, "weak": {"status": "ok"},
                   "offline": {"status": "skipped", "reason": "no pretrained weights offline"}},
    }))
    rows = write_report(out, metric="f1_macro")
    assert [r["model"] for r in rows] == ["good", "weak", "offline"]
    assert rows[0]["best"] and rows[2]["status"] == "skipped"

    html = (out / "report.html").read_text()
    for name in ("good", "weak", "offline", "no pretrained weights offline"):
        assert name in html
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) >= 5  # 3 comparison plots + one confusion matrix per model
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # self-contained: no external stylesheets, scripts or images
    assert not re.search(r'<link|<script[^>]*src=|src="http|url\(http', html)

    md = (out / "report.md").read_text()
    assert "| 1 | **good** (best)" in md and "`offline` skipped" in md
    for p in re.findall(r"\]\(([^)]+\.png)\)", md):
        assert (out / p).is_file()
    with (out / "leaderboard.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == ["good", "weak", "offline"]
    assert json.loads((out / "leaderboard.json").read_text())["metric"] == "f1_macro"
    for png in ("val_curves", "accuracy_vs_time", "f1_heatmap"):
        assert (out / "plots" / f"{png}.png").stat().st_size > 1024


def test_report_with_nothing_to_report(tmp_path):
    with pytest.raises(ConfigError):
        write_report(tmp_path / "empty")


def test_report_with_a_corrupt_metrics_file_marks_that_model_failed(tmp_path):
    out = tmp_path / "cmp"
    fake_run(out, "good", skill=3.0, seconds=20, seed=1)
    fake_run(out, "broken", skill=1.0, seconds=5, seed=2)
    (out / "runs" / "broken" / "eval-val" / "metrics.json").write_text('{"accuracy": 0.5,')  # cut short
    (out / "state.json").write_text(json.dumps({"split": "val", "metric": "accuracy", "order": ["good", "broken"],
                                                "models": {"good": {"status": "ok"}, "broken": {"status": "ok"}}}))
    rows = write_report(out)
    assert [(r["model"], r["status"]) for r in rows] == [("good", "ok"), ("broken", "failed")]
    assert "cannot read" in rows[1]["reason"] and "metrics.json" in rows[1]["reason"]
    assert "cannot read" in (out / "report.html").read_text()


def test_metric_option_sorts_by_that_metric(tmp_path, capsys):
    """`compare --report-only --metric f1_macro` ranks by macro F1 where accuracy would rank the other way."""
    from transferlab.cli import main

    out = tmp_path / "cmp"
    for name, seed, acc, f1 in (("sharp", 1, 0.9, 0.5), ("even", 2, 0.8, 0.7)):
        fake_run(out, name, skill=2.0, seconds=10, seed=seed)
        path = out / "runs" / name / "eval-val" / "metrics.json"
        m = json.loads(path.read_text())
        m["accuracy"], m["macro_avg"]["f1"] = acc, f1
        path.write_text(json.dumps(m))
    (out / "state.json").write_text(json.dumps({"split": "val", "metric": "accuracy", "order": ["sharp", "even"],
                                                "models": {"sharp": {"status": "ok"}, "even": {"status": "ok"}}}))

    def board():
        with (out / "leaderboard.csv").open() as f:
            return [(r["model"], r["rank"], r["best"]) for r in csv.DictReader(f)]

    assert main(["compare", "--report-only", "--out", str(out), "--metric", "f1_macro"]) == 0
    assert board() == [("even", "1", "True"), ("sharp", "2", "False")]
    assert json.loads((out / "leaderboard.json").read_text())["metric"] == "f1_macro"
    assert "sorted by macro F1" in capsys.readouterr().out
    assert "| 1 | **even** (best)" in (out / "report.md").read_text()
    assert main(["compare", "--report-only", "--out", str(out), "--metric", "accuracy"]) == 0
    assert board() == [("sharp", "1", "True"), ("even", "2", "False")]
    assert main(["compare", "--report-only", "--out", str(out), "--metric", "ms_per_image"]) == 0
    assert board()[0][0] == "sharp"  # lower is better: seed 1 has 2.0 ms, seed 2 has 3.0 ms
