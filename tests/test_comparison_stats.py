"""The leaderboard's statistics: bootstrap intervals of accuracy / macro F1 and the exact McNemar test
(transferlab._stats), and how compare's leaderboard and reports show them (hand-made run folders)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, f1_score

from transferlab import runfolder
from transferlab._stats import bootstrap_interval, mcnemar_exact, metric_value
from transferlab.comparison import print_leaderboard, write_report
from transferlab.comparison.leaderboard import CSV_FIELDS, STAT_FIELDS, add_statistics, make_row, rank_rows
from transferlab.evaluation import compute_metrics

CLASSES = ["cat", "dog", "fox"]


def discordant(b: int, c: int, same_right: int = 7, same_wrong: int = 3):
    """Labels and two models' predictions with ``b`` images only A gets right, ``c`` only B."""
    y = np.zeros(b + c + same_right + same_wrong, np.int64)
    a = np.concatenate([np.zeros(b), np.ones(c), np.zeros(same_right), np.ones(same_wrong)]).astype(np.int64)
    bb = np.concatenate([np.ones(b), np.zeros(c), np.zeros(same_right), np.full(same_wrong, 2)]).astype(np.int64)
    return y, a, bb


@pytest.mark.parametrize("b,c", [(9, 2), (2, 9), (5, 5), (1, 0), (30, 12), (0, 0), (0, 7)])
def test_mcnemar_p_value_is_the_exact_binomial_test_of_the_discordant_pairs(b, c):
    y, a, bb = discordant(b, c)
    got = mcnemar_exact(y, a, bb)
    assert (got["b"], got["c"]) == (b, c)
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert got["p_value"] == pytest.approx(expected, rel=1e-12)
    assert mcnemar_exact(y, bb, a)["p_value"] == pytest.approx(got["p_value"], rel=1e-12)  # symmetric


@pytest.mark.parametrize("b,c", [(9, 2), (5, 5), (30, 12), (0, 7)])
def test_mcnemar_agrees_with_statsmodels(b, c):
    tables = pytest.importorskip("statsmodels.stats.contingency_tables")
    y, a, bb = discordant(b, c)
    table = [[7, b], [c, 3]]  # rows: A right / wrong; columns: B right / wrong
    assert mcnemar_exact(y, a, bb)["p_value"] == pytest.approx(tables.mcnemar(table, exact=True).pvalue, rel=1e-9)


def test_mcnemar_rejects_unequal_lengths():
    with pytest.raises(ValueError):
        mcnemar_exact([0, 1], [0, 1], [0])


def noisy(n: int, skill: float, seed: int = 0, k: int = 4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return y, np.where(rng.random(n) < skill, y, rng.integers(0, k, n))


@pytest.mark.parametrize("seed", range(4))
def test_macro_f1_is_sklearns(seed):
    y, p = noisy(60 + 40 * seed, 0.6, seed, k=5)
    p[p == 4] = 3  # a class never predicted
    assert metric_value(y, p, "f1_macro") == pytest.approx(f1_score(y, p, average="macro", zero_division=0))
    labels = np.arange(7)  # classes absent from both score 0, as sklearn with labels= and zero_division=0
    assert metric_value(y, p, "f1_macro", labels=labels) == pytest.approx(
        f1_score(y, p, labels=labels, average="macro", zero_division=0))
    assert metric_value(y, p, "accuracy") == pytest.approx(accuracy_score(y, p))
    names = np.array(["a", "b", "c", "d", "e"])  # string labels work too
    assert metric_value(names[y], names[p], "f1_macro") == pytest.approx(f1_score(y, p, average="macro"))


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro"])
def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_images(metric):
    small, large = noisy(100, 0.7, 1), noisy(2000, 0.7, 1)
    lo_s, hi_s = bootstrap_interval(*small, metric)
    lo_l, hi_l = bootstrap_interval(*large, metric)
    assert lo_s <= metric_value(*small, metric) <= hi_s
    assert lo_l <= metric_value(*large, metric) <= hi_l
    assert 0 < hi_l - lo_l < (hi_s - lo_s) / 2  # ~ 1/sqrt(n): 4.5x narrower for 20x the images
    assert 0.0 <= lo_s < hi_s <= 1.0


@pytest.mark.parametrize("metric", ["accuracy", "f1_macro"])
def test_bootstrap_interval_is_reproducible_with_the_seed(metric):
    y, p = noisy(300, 0.6, 2)
    assert bootstrap_interval(y, p, metric, seed=3) == bootstrap_interval(y, p, metric, seed=3)
    assert bootstrap_interval(y, p, metric, seed=3) != bootstrap_interval(y, p, metric, seed=4)


def test_bootstrap_interval_matches_resampling_the_images():
    """The multinomial shortcut has the distribution of drawing images with replacement."""
    y, p = noisy(400, 0.75, 5)
    idx = np.random.default_rng(9).integers(0, len(y), size=(4000, len(y)))
    naive = np.percentile((y[idx] == p[idx]).mean(axis=1), [2.5, 97.5])
    assert bootstrap_interval(y, p, "accuracy", n=4000) == pytest.approx(tuple(naive), abs=0.01)
    f1s = [f1_score(y[i], p[i], labels=range(4), average="macro", zero_division=0) for i in idx[:1000]]
    assert bootstrap_interval(y, p, "f1_macro", n=4000) == pytest.approx(tuple(np.percentile(f1s, [2.5, 97.5])),
                                                                          abs=0.015)


def test_bootstrap_interval_of_a_perfect_model_is_a_point():
    assert bootstrap_interval([0, 1, 2] * 5, [0, 1, 2] * 5, "f1_macro") == (1.0, 1.0)


def test_bootstrap_interval_rejects_bad_input():
    with pytest.raises(ValueError):
        bootstrap_interval([0, 1], [0, 1], "auc")
    with pytest.raises(ValueError):
        bootstrap_interval([], [], "accuracy")
    with pytest.raises(ValueError):
        bootstrap_interval([0, 5], [0, 1], "accuracy", labels=[0, 1])


# ---------------------------------------------------------------- the leaderboard and reports

def fake_run(out, name, *, skill, n=200, seed=0, paths=None):
    """OUT/runs/NAME with history.csv and eval-val/{metrics.json, predictions.csv} (no training)."""
    run = out / "runs" / name
    ev = runfolder.eval_dir(run, "val")
    ev.mkdir(parents=True)
    y = np.arange(n) % 3
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += skill
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = compute_metrics(y, probs, CLASSES)
    m.update({"num_params": 1000, "model_size_mb": 0.5, "inference_ms_per_image": 1.0})
    runfolder.metrics_path(run, "val").write_text(json.dumps(m))
    paths = paths or [f"/data/{CLASSES[t]}/{i}.png" for i, t in enumerate(y)]
    with (ev / runfolder.PREDICTIONS).open("w", newline="") as f:  # the format evaluate writes
        w = csv.writer(f)
        w.writerow(["path", "true", "predicted", "confidence", *[f"prob_{c}" for c in CLASSES]])
        for path, t, row in zip(paths, y, probs):
            w.writerow([path, CLASSES[t], CLASSES[row.argmax()], f"{row.max():.6f}", *[f"{v:.6f}" for v in row]])
    runfolder.write_history(run, [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.9, "val_loss": 1.0,
                                   "val_acc": m["accuracy"], "lr": 0.001, "seconds": 1.0}])
    return m


def test_read_predictions(tmp_path):
    fake_run(tmp_path, "a", skill=2.0, n=9)
    preds, why = runfolder.read_predictions(tmp_path / "runs" / "a", "val")
    assert why is None and preds is not None
    assert preds["classes"] == CLASSES and len(preds["paths"]) == 9 and preds["true"][:3] == CLASSES
    probs = runfolder.read_probabilities(tmp_path / "runs" / "a", "val")
    assert list(probs) == preds["paths"] and all(len(v) == len(CLASSES) for v in probs.values())
    assert runfolder.read_probabilities(tmp_path / "runs" / "a", "test") is None
    assert runfolder.read_predictions(tmp_path / "runs" / "a", "test") == (
        None, f"no {runfolder.predictions_path(tmp_path / 'runs' / 'a', 'test')}")
    runfolder.predictions_path(tmp_path / "runs" / "a", "val").write_text("a,b\n1,2\n")
    assert "expected the columns" in runfolder.read_predictions(tmp_path / "runs" / "a", "val")[1]


@pytest.fixture
def compared(tmp_path):
    out = tmp_path / "cmp"
    metrics = {"good": fake_run(out, "good", skill=3.0, seed=1), "close": fake_run(out, "close", skill=2.85, seed=1),  # right where good is, but a few,
               "weak": fake_run(out, "weak", skill=0.8, seed=3),
               "other": fake_run(out, "other", skill=1.0, seed=4, n=150),  # evaluated on other images
               "old": fake_run(out, "old", skill=1.0, seed=5)}
    runfolder.predictions_path(out / "runs" / "old", "val").unlink()  # evaluated before predictions.csv
    (out / "state.json").write_text(json.dumps({
        "data": "somewhere", "split": "val", "metric": "accuracy", "order": [*metrics, "broken"],
        "models": {**{m: {"status": "ok"} for m in metrics}, "broken": {"status": "failed", "reason": "boom"}}}))
    return out, metrics


def test_the_leaderboard_has_intervals_and_a_verdict_against_the_winner(compared):
    out, metrics = compared
    rows = {r["model"]: r for r in write_report(out)}
    good, close, weak = rows["good"], rows["close"], rows["weak"]
    assert good["rank"] == 1 and good["verdict"] == "the reference" and good["p_value"] is None
    for r in (good, close, weak):
        assert r["accuracy_ci_low"] <= r["accuracy"] <= r["accuracy_ci_high"]
        assert r["f1_macro_ci_low"] <= r["f1_macro"] <= r["f1_macro_ci_high"]
        assert r["stats_note"] == ""
    assert close["verdict"] == "not significantly different" and close["p_value"] >= 0.05
    assert weak["p_value"] < 0.05 and weak["verdict"].startswith("worse (p=") and weak["mcnemar_b"] > weak["mcnemar_c"]
    assert weak["p_value"] == pytest.approx(binomtest(weak["mcnemar_b"], weak["mcnemar_b"] + weak["mcnemar_c"]).pvalue)
    # no statistics, said so: other images, no predictions.csv, a failed model
    assert rows["other"]["stats_note"] == "no statistics: evaluated on other images than the winner (150 vs 200)"
    assert rows["old"]["stats_note"].startswith("no statistics: no ") and "predictions.csv" in rows["old"]["stats_note"]
    assert rows["broken"]["stats_note"] == "no statistics: failed"
    for name in ("other", "old", "broken"):
        assert all(rows[name][k] is None for k in STAT_FIELDS if k != "stats_note")
    # rerunning the report gives the same intervals (fixed seed)
    again = {r["model"]: r for r in write_report(out)}
    assert again["weak"]["accuracy_ci_low"] == weak["accuracy_ci_low"]


def test_the_files_keep_their_columns_and_add_the_statistics(compared):
    out, _ = compared
    write_report(out)
    with (out / "leaderboard.csv").open() as f:
        reader = csv.DictReader(f)
        table = {r["model"]: r for r in reader}
        assert reader.fieldnames == CSV_FIELDS
    assert CSV_FIELDS[:CSV_FIELDS.index("run_dir") + 1] == [
        "rank", "model", "status", "best", "accuracy", "precision_macro", "recall_macro", "f1_macro", "auc_macro",
        "log_loss", "train_val_gap", "epochs", "train_seconds", "params", "size_mb", "ms_per_image", "reason",
        "run_dir"]
    assert table["weak"]["verdict"].startswith("worse (p=") and float(table["weak"]["accuracy_ci_low"]) > 0
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["statistics"]["resamples"] == 1000 and "McNemar" in board["statistics"]["test"]

    md = (out / "report.md").read_text()
    weak = next(r for r in board["rows"] if r["model"] == "weak")
    ci = f"{weak['accuracy_ci_low']:.3f}-{weak['accuracy_ci_high']:.3f}"
    assert "| accuracy 95% CI | macro F1 95% CI | vs the best (McNemar) |" in md
    assert ci in md and weak["verdict"] in md and "not significantly different" in md and "the reference" in md
    assert "- other: no statistics: evaluated on other images than the winner (150 vs 200)" in md
    html = (out / "report.html").read_text()
    assert ci in html and weak["verdict"] in html and "vs the best (McNemar)" in html
    assert "no statistics: evaluated on other images" in html


def test_the_console_table_shows_the_statistics(compared, capsys):
    from rich.console import Console

    out, _ = compared
    rows = write_report(out)
    print_leaderboard(rows, "accuracy", console=Console(width=300))
    text = capsys.readouterr().out
    weak = next(r for r in rows if r["model"] == "weak")
    assert "acc 95% CI" in text and weak["verdict"] in text and "not significantly different" in text
    assert "other: no statistics: evaluated on other images" in text
    page = rows._repr_html_()  # the Jupyter table (a Leaderboard)
    assert "acc 95% CI" in page and weak["verdict"] in page


def test_add_statistics_without_the_winners_predictions_still_gives_intervals():
    y = ["a", "b"] * 20
    preds = {"x": {"paths": [str(i) for i in range(40)], "true": y, "predicted": ["a"] * 40, "classes": ["a", "b"]}}
    m = {"accuracy": 0.5}
    rows = rank_rows([make_row("best", {"accuracy": 0.9}), make_row("x", m)])
    add_statistics(rows, {"best": (None, "no predictions.csv here"), "x": (preds["x"], None)})
    assert rows[0]["stats_note"] == "no statistics: no predictions.csv here"
    assert rows[1]["accuracy_ci_low"] < 0.5 < rows[1]["accuracy_ci_high"]
    assert rows[1]["verdict"] is None and rows[1]["stats_note"].startswith("no test: the winner has no predictions")


def test_rows_without_statistics_print_as_before(capsys):
    from rich.console import Console

    print_leaderboard([{"model": "cnn_bn", "status": "ok", "rank": 1, "best": True, "accuracy": 0.9}], "accuracy",
                      console=Console(width=250))
    assert "95% CI" not in capsys.readouterr().out
