"""Multi-label: the CSV forms, the iterative stratified split, the loss, metrics against scikit-learn,
thresholds, and a run trained, evaluated, exported, predicted and served."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, f1_score, hamming_loss

import transferlab as tl
from transferlab.data import load_data
from transferlab.data.dataset import soft_target_rows
from transferlab.errors import ConfigError, DataError
from transferlab.evaluation.multilabel import multilabel_metrics, predicted_sets, tune_thresholds
from transferlab.training.losses import MultiLabelLoss, count_correct, plain_loss_sum


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def digit_labels(digits_dir):
    """Each digit image labelled with its digit and, for about 40% of them, 'even' or 'odd'."""
    rng = random.Random(0)
    out = []
    for folder in sorted(p for p in digits_dir.iterdir() if p.is_dir()):
        for f in sorted(folder.glob("*.png")):
            labels = {f"d{folder.name}"}
            if rng.random() < 0.4:
                labels.add("odd" if int(folder.name) % 2 else "even")
            out.append((str(f), sorted(labels)))
    return out


@pytest.fixture(scope="module")
def list_csv(digit_labels, tmp_path_factory):
    path = tmp_path_factory.mktemp("ml") / "labels.csv"
    return _write(path, ["path", "labels"], [[p, ";".join(ls)] for p, ls in digit_labels])


def test_the_list_and_one_hot_forms_read_the_same(list_csv, digit_labels, tmp_path):
    classes = sorted({x for _, ls in digit_labels for x in ls})
    onehot = _write(tmp_path / "onehot.csv", ["file", *classes],
                    [[p, *["1" if c in ls else "0" for c in classes]] for p, ls in digit_labels])
    a, b = load_data(list_csv, progress=False), load_data(onehot, progress=False)
    assert a.multilabel and a.layout == "csv-multilabel" and a.classes == classes == b.classes
    assert a.label_sets == b.label_sets and a.train == b.train and a.val == b.val
    p, labels = digit_labels[7]
    assert [a.classes[i] for i in a.label_sets[p]] == labels
    # the row order of the CSV does not change the split
    shuffled = _write(tmp_path / "shuffled.csv", ["path", "labels"],
                      [[p, ";".join(ls)] for p, ls in reversed(digit_labels)])
    assert load_data(shuffled, progress=False).val == a.val
    # a 'label' column holding lists is the list form too; a plain path,label CSV stays single-label
    label_col = _write(tmp_path / "label.csv", ["path", "label"], [[p, ";".join(ls)] for p, ls in digit_labels])
    assert load_data(label_col, progress=False).label_sets == a.label_sets
    single = _write(tmp_path / "single.csv", ["path", "label"], [[p, ls[0]] for p, ls in digit_labels])
    assert not load_data(single, progress=False).multilabel
    assert a.counts()["train"]["even"] + a.counts()["val"]["even"] == sum("even" in ls for _, ls in digit_labels)


def test_the_split_keeps_every_labels_share(list_csv):
    s = load_data(list_csv, val_ratio=0.25, seed=3, progress=False)
    val = s.label_matrix(s.val).sum(0)
    total = val + s.label_matrix(s.train).sum(0)
    # iterative stratification trades the exact count for the labels' shares
    assert abs(len(s.val) - 75) <= 8 and np.all(np.abs(val / total - 0.25) <= 0.1)
    assert load_data(list_csv, val_ratio=0.25, seed=4, progress=False).val != s.val


def test_split_column_empty_label_sets_and_bad_rows(digit_labels, tmp_path):
    rows = [[p, ";".join(ls), "test" if i % 10 == 0 else ""] for i, (p, ls) in enumerate(digit_labels)]
    rows[1][1] = ""  # an image showing none of the labels
    s = load_data(_write(tmp_path / "a.csv", ["path", "labels", "split"], rows), progress=False)
    assert len(s.test) == 30 and s.label_sets[digit_labels[1][0]] == ()
    assert s.label_matrix([(digit_labels[1][0], 0)]).sum() == 0
    missing = [*rows[:40], [str(tmp_path / "nope.png"), "d0", ""]]
    s = load_data(_write(tmp_path / "b.csv", ["path", "labels", "split"], missing), progress=False)
    assert [b.reason for b in s.broken] == ["file not found"]
    twice = [*rows[:40], [rows[2][0], "d9", ""]]
    with pytest.raises(DataError, match="is listed with two labels"):
        load_data(_write(tmp_path / "c.csv", ["path", "labels", "split"], twice), progress=False)
    only_test = [[p, "rare" if i == 0 else ls, "test" if i == 0 else ""] for i, (p, ls, _) in enumerate(rows[:40])]
    with pytest.raises(DataError, match="'rare' is on no training image"):
        load_data(_write(tmp_path / "d.csv", ["path", "labels", "split"], only_test), progress=False)


def test_the_loss_and_what_the_loop_counts():
    torch.manual_seed(0)
    logits, t = torch.randn(6, 3), (torch.rand(6, 3) > 0.5).float()
    y = soft_target_rows(torch.zeros(6, dtype=torch.long), t.numpy())
    bce = F.binary_cross_entropy_with_logits(logits, t)
    assert float(MultiLabelLoss()(logits, y)) == pytest.approx(float(bce))
    assert plain_loss_sum(logits, y, multilabel=True) == pytest.approx(float(bce) * 6, rel=1e-5)
    # focal: each term scaled by (1 - p_t)^gamma
    p = torch.sigmoid(logits)
    p_t = p * t + (1 - p) * (1 - t)
    focal = (F.binary_cross_entropy_with_logits(logits, t, reduction="none") * (1 - p_t) ** 2).mean()
    assert float(MultiLabelLoss(gamma=2.0)(logits, y)) == pytest.approx(float(focal), rel=1e-5)
    assert count_correct(logits, y, multilabel=True) == int(((logits > 0) == (t > 0.5)).all(1).sum())


def test_metrics_against_scikit_learn_and_thresholds_that_maximise_f1():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 4)) < [0.5, 0.2, 0.1, 0.3]).astype(int)
    probs = np.clip(y * 0.35 + rng.random((200, 4)) * 0.65, 0, 1)
    th = tune_thresholds(y, probs)
    for c in range(4):  # no other threshold gives a higher F1
        best = max(f1_score(y[:, c], probs[:, c] >= v, zero_division=0) for v in np.unique(probs[:, c]))
        assert f1_score(y[:, c], probs[:, c] >= th[c]) == pytest.approx(best)
    m = multilabel_metrics(y, probs, th, list("abcd"))
    pred = predicted_sets(probs, th)
    assert m["mAP"] == pytest.approx(np.mean([average_precision_score(y[:, c], probs[:, c]) for c in range(4)]))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(y, pred))
    assert m["f1_micro"] == pytest.approx(f1_score(y, pred, average="micro"))
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["subset_accuracy"] == pytest.approx(np.mean((y == pred).all(1)))
    assert m["per_class"]["c"]["ap"] == pytest.approx(average_precision_score(y[:, 2], probs[:, 2]))
    # a class the split never shows: no AP, left out of mAP
    y[:, 3] = 0
    assert multilabel_metrics(y, probs, th, list("abcd"))["per_class"]["d"]["ap"] is None


@pytest.fixture(scope="module")
def ml_run(list_csv, tmp_path_factory):
    root = tmp_path_factory.mktemp("mlruns")
    run = tl.train(list_csv, model="cnn_bn", epochs=12, input_size=32, run_dir=root, progress=False)
    return run


def test_a_run_learns_the_labels_and_evaluate_reports_them(ml_run, list_csv):
    splits = load_data(list_csv, progress=False)
    assert ml_run.config["task"] == "multilabel"
    # per class, the training images that show it
    assert ml_run.config["train_class_counts"] == [int(n) for n in splits.label_matrix(splits.train).sum(0)]
    m = tl.evaluate(ml_run, progress=False)
    assert m["task"] == "multilabel" and m["num_samples"] == 60 and m["mAP"] > 0.6
    stored = json.loads((ml_run.dir / "calibration.json").read_text())
    assert len(stored["thresholds"]) == 12 and stored["fitted_on"] == "val"
    assert [m["per_class"][c]["threshold"] for c in ml_run.classes] == pytest.approx(stored["thresholds"])
    assert set(m["plots"]) == {"history", "f1", "gradcam"} and (ml_run.dir / "eval-val" / "gradcam.png").stat().st_size
    with open(ml_run.dir / "eval-val" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 60 and all(r["true"].startswith("d") for r in rows)
    assert any(";" in r["true"] for r in rows)


def test_export_predict_and_serve_answer_label_sets(ml_run, digit_labels):
    from fastapi.testclient import TestClient

    from transferlab.serve import create_app

    tl.evaluate(ml_run, progress=False)
    tl.export(ml_run)
    meta = json.loads((ml_run.dir / "export" / "model.json").read_text())
    assert meta["task"] == "multilabel" and len(meta["calibration"]["thresholds"]) == 12
    files = [p for p, _ in digit_labels[::37]]
    onnx = tl.predict(ml_run, files, progress=False)
    torch_rows = tl.predict(ml_run, files, progress=False, backend="torch")
    assert [r["label"] for r in onnx] == [r["label"] for r in torch_rows]
    thresholds = meta["calibration"]["thresholds"]
    for r in onnx:
        probs = {t["class"]: t["prob"] for t in r["top"]}
        assert r["label"] == ";".join(x["class"] for x in r["labels"])
        assert all(x["prob"] >= thresholds[x["index"]] for x in r["labels"])
        assert r["prob"] == pytest.approx(max(probs.values()))
    with TestClient(create_app(ml_run.dir)) as client:
        f = Path(files[0])
        body = client.post("/predict", files=[("files", (f.name, f.read_bytes(), "image/png"))]).json()
    assert body["predictions"][0]["label"] == onnx[0]["label"]
    assert [x["class"] for x in body["predictions"][0]["labels"]] == [x["class"] for x in onnx[0]["labels"]]


def test_cached_features_train_on_multi_hot_labels(list_csv, tmp_path):
    run = tl.train(list_csv, model="efficientnet_lite0", pretrained=False, epochs=2, fine_tune=0, freeze="frozen",
                   input_size=32, run_dir=tmp_path, progress=False)
    assert run.history[-1]["val_loss"] < 0.69  # binary cross-entropy per label, below chance (ln 2)


@pytest.mark.parametrize("option, message", [({"sampler": "balanced"}, "--sampler balanced"),
                                             ({"class_weights": "auto"}, "--class-weights")])
def test_options_without_a_multi_label_meaning_are_refused(list_csv, tmp_path, option, message):
    with pytest.raises(ConfigError, match=message):
        tl.train(list_csv, model="cnn_base", epochs=1, input_size=32, run_dir=tmp_path, progress=False, **option)


def test_gradcam_shows_one_map_per_predicted_label(monkeypatch):
    from transferlab.evaluation import gradcam as gc
    from transferlab.models import create_model

    model = create_model("cnn_base", 3, input_size=32).eval()
    images = [(torch.rand(3, 32, 32), 0) for _ in range(3)]
    predicted = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    probs = np.array([[0.6, 0.1, 0.9], [0.2, 0.1, 0.3], [0.1, 0.8, 0.2]])
    shown = {}
    monkeypatch.setattr(gc.plots, "plot_image_grid", lambda items, path, title: shown.update(items=items))
    assert gc.label_gradcam_plot(model, images, predicted, probs, ["a;c", "", "a"], ["a", "b", "c"],
                                 {"mean": [0.5] * 3, "std": [0.25] * 3}, Path("x.png"), count=6) is None
    # the image with two labels first, its labels most probable first; the image with none is left out
    assert [i["caption"].split("\n")[0] for i in shown["items"]] == ["c 0.90", "a 0.60", "b 0.80"]
    assert [i["color"] for i in shown["items"]] == ["darkgreen", "darkgreen", "darkred"]
    assert gc.label_gradcam_plot(model, images, predicted * 0, probs, ["", "", ""], ["a", "b", "c"], {},
                                 Path("x.png"), count=6).startswith("Grad-CAM skipped")


def test_the_doctors_multi_label_check_finds_planted_label_errors():
    from transferlab.doctor import labels as dl

    rng = np.random.default_rng(0)
    n, classes = 300, 4
    targets = (rng.random((n, classes)) < 0.35).astype(np.float32)
    features = targets * 3.0 + rng.normal(size=(n, classes)) * 0.7  # each class shows in its own feature
    features = np.c_[features, rng.normal(size=(n, 8))]
    planted = [5, 50, 120, 200, 260]
    noisy = targets.copy()
    for i in planted:
        noisy[i, i % classes] = 1.0 - noisy[i, i % classes]  # a label added or left out
    probs = dl.multilabel_out_of_fold_probs(features, noisy, folds=5, seed=0)
    assert probs.shape == (n, classes) and ((probs >= 0.5) == (targets > 0.5)).mean() > 0.9  # 0.74 at C 0.003
    ranked, quality = dl.multilabel_label_issues(noisy, probs)
    assert set(planted) <= set(ranked[:10]) and quality.shape == (n,)
    assert quality[planted].max() < np.median(quality)


def test_the_doctor_reports_a_multi_label_set(list_csv, tmp_path, monkeypatch):
    from transferlab.doctor import diagnose

    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))
    report = diagnose(list_csv, out=tmp_path / "doctor", progress=False)
    files = {row[0]: row[1] for row in report["files"]}
    with open(list_csv) as f:
        given = {r["path"]: r["labels"] for r in csv.DictReader(f)}
    assert files == given  # each image with its label set
    assert report["label_issues"] == [] and report["label_review"]  # listed to review, never flagged
    row = report["label_review"][0]
    assert set(row) >= {"given", "suggested", "score", "p_given", "p_suggested"}
    assert any(w["kind"] == "label-check" and "multi-label" in w["message"] for w in report["warnings"])
    assert (tmp_path / "doctor" / "doctor.html").stat().st_size > 0
    # the clean CSV of a multi-label report reads back as multi-label, relabelled sets included
    from transferlab.doctor.clean import write_clean

    done = write_clean(report, tmp_path / "clean.csv", relabel=3)
    back = load_data(tmp_path / "clean.csv", progress=False)
    assert back.multilabel and done["relabelled"] <= 3 and len(back.train) + len(back.val) == done["rows"]


def test_compare_ranks_multi_label_runs_by_map(list_csv, tmp_path):
    from transferlab.comparison.runner import compare, read_state

    rows = compare(list_csv, models="cnn_base,cnn_bn", epochs=2, input_size=32, out=tmp_path / "cmp", progress=False)
    assert [r["model"] for r in rows] == [r["model"] for r in sorted(rows, key=lambda r: -r["mAP"])]
    assert "ensemble" not in {r["model"] for r in rows} and read_state(tmp_path / "cmp")["metric"] == "mAP"
    for r in rows:
        metrics = json.loads((tmp_path / "cmp" / "runs" / r["model"] / "eval-val" / "metrics.json").read_text())
        assert r["mAP"] == pytest.approx(metrics["mAP"]) and r["accuracy"] == pytest.approx(metrics["subset_accuracy"])
        assert "multi-label" in r["stats_note"]


def test_tune_searches_a_multi_label_head_on_its_subset_accuracy(list_csv, tmp_path, monkeypatch):
    from transferlab.tune import trials, tune

    seen = []
    real = trials.make_criterion
    monkeypatch.setattr(trials, "make_criterion", lambda *a, **k: seen.append(k["multilabel"]) or real(*a, **k))
    r = tune(list_csv, model="efficientnet_lite0", pretrained=False, input_sizes=[32], trials=2, out=tmp_path / "t",
             progress=False)
    assert seen == [True, True] and 0.0 <= r["value"] <= 1.0 and (tmp_path / "t" / "best.json").is_file()


def test_the_map_column_shows_only_for_multi_label_rows():
    from transferlab.comparison.leaderboard import CSV_FIELDS, shown_columns

    assert "mAP" not in shown_columns([{"accuracy": 0.9, "mAP": None}])
    assert shown_columns([{"accuracy": 0.2, "mAP": 0.8}])[:2] == ["accuracy", "mAP"]
    assert CSV_FIELDS[-1] == "mAP"  # after the older columns of leaderboard.csv
