"""evaluate() and `transferlab evaluate` on a real (tiny) trained run of the digits sample."""
from __future__ import annotations

import csv
import json
import os
import shutil

import pytest

import transferlab
from transferlab.cli import main
from transferlab.errors import DataError


@pytest.fixture(scope="module")
def run_dir(digits_dir, tmp_path_factory):
    run = transferlab.train(digits_dir, model="cnn_base", epochs=1, input_size=32, batch_size=32,
                            run_dir=str(tmp_path_factory.mktemp("runs")), progress=False)
    return run.dir


def test_evaluate_writes_metrics_predictions_and_plots(run_dir):
    m = transferlab.evaluate(run_dir, progress=False, gradcam=3, mistakes=4)
    ev = run_dir / "eval-val"
    saved = json.loads((ev / "metrics.json").read_text())
    assert saved["accuracy"] == pytest.approx(m["accuracy"])
    assert saved["num_samples"] == 60 and saved["classes"] == [str(d) for d in range(10)]  # 20% of 300
    assert set(saved["top_k_accuracy"]) == {"3", "5"}
    assert saved["num_params"] > 0 and saved["model_size_mb"] > 0 and saved["inference_ms_per_image"] > 0
    assert len(saved["per_class"]) == 10
    with (ev / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 60
    assert list(rows[0])[:4] == ["path", "true", "predicted", "confidence"] and "prob_9" in rows[0]
    assert sum(r["true"] == r["predicted"] for r in rows) / 60 == pytest.approx(m["accuracy"])
    # the summary numbers are those of the predictions written beside them
    import numpy as np
    from sklearn.metrics import f1_score, roc_auc_score

    classes = saved["classes"]
    y = np.array([classes.index(r["true"]) for r in rows])
    probs = np.array([[float(r[f"prob_{c}"]) for c in classes] for r in rows])
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    # (predictions.csv rounds the probabilities, which can reorder near-ties: hence the tolerance)
    assert saved["roc_auc"]["macro"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"),
                                                       abs=2e-3)
    pred = [classes.index(r["predicted"]) for r in rows]
    assert saved["macro_avg"]["f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0), abs=1e-9)
    cm = np.array(saved["confusion_matrix"])
    assert cm.sum() == 60 and np.trace(cm) / 60 == pytest.approx(m["accuracy"])
    assert cm.sum(1).tolist() == [6] * 10  # rows are the true classes, 6 validation images each
    for name in ("history", "confusion_matrix", "roc", "f1", "mistakes", "gradcam"):
        data = (ev / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1024, name
    assert set(saved["plots"]) >= {"history", "confusion_matrix", "roc", "f1", "mistakes", "gradcam"}


def test_evaluate_cli(run_dir, tmp_path, capsys):
    out = tmp_path / "ev"
    rc = main(["evaluate", str(run_dir), "--out", str(out), "--no-plots", "--no-progress"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    api = transferlab.evaluate(run_dir, out=tmp_path / "api", plots=False, progress=False)
    assert metrics["split"] == "val" and metrics["num_samples"] == 60
    assert metrics["accuracy"] == pytest.approx(api["accuracy"]) and metrics["log_loss"] == pytest.approx(api["log_loss"])
    assert metrics["confusion_matrix"] == api["confusion_matrix"]
    printed = capsys.readouterr().out
    assert "accuracy" in printed and f"{metrics['accuracy']:.4f}" in printed
    assert not (out / "confusion_matrix.png").exists()  # --no-plots


def test_evaluate_on_another_dataset(run_dir, digits_dir, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(digits_dir, other)
    m = transferlab.evaluate(run_dir, data=other, out=tmp_path / "all", plots=False, progress=False)
    assert m["split"] == "all" and m["num_samples"] == 300
    # the training data itself, given explicitly: still its validation split, not every image
    m = transferlab.evaluate(run_dir, data=digits_dir, out=tmp_path / "own", plots=False, progress=False)
    assert m["split"] == "val" and m["num_samples"] == 60


def test_a_split_whose_size_changed_since_training_gets_a_note(run_dir, tmp_path):
    run = shutil.copytree(run_dir, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    assert transferlab.evaluate(run, plots=False, progress=False)["notes"] == []   # as trained: no note
    config["split_counts"]["val"] = 99
    (run / "config.json").write_text(json.dumps(config))
    m = transferlab.evaluate(run, plots=False, progress=False)
    assert m["notes"] == ["the val split has 60 images but had 99 when the run was trained: the dataset changed since"]
    assert json.loads((run / "eval-val" / "metrics.json").read_text())["notes"] == m["notes"]


def test_class_mismatch_is_one_clear_line(run_dir, digits_dir, tmp_path, capsys):
    other = tmp_path / "other"
    for d in ("0", "1", "2"):
        shutil.copytree(digits_dir / d, other / d)
    shutil.copytree(digits_dir / "3", other / "cat")
    rc = main(["evaluate", str(run_dir), "--data", str(other), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and "\n" not in err
    assert "cat" in err and "missing" in err


def test_no_test_split_is_a_clear_error(run_dir):
    with pytest.raises(DataError, match="test"):
        transferlab.evaluate(run_dir, split="test", progress=False)


def test_evaluate_split_test_on_a_train_test_layout(digits_dir, tmp_path, capsys):
    """`evaluate --split test` scores the run's own test/ images (not val, not train) into eval-test/."""
    data = tmp_path / "tt"
    for cls_dir in sorted(p for p in digits_dir.iterdir() if p.is_dir()):
        files = sorted(cls_dir.glob("*.png"))
        for part, chunk in (("train", files[:22]), ("test", files[22:])):  # 22 train, 8 test per class
            (data / part / cls_dir.name).mkdir(parents=True)
            for f in chunk:
                shutil.copy(f, data / part / cls_dir.name / f.name)
    run = transferlab.train(data, model="cnn_base", epochs=1, input_size=32, batch_size=32, run_dir=tmp_path / "runs",
                            progress=False)
    assert run.config["split_counts"] == {"train": 180, "val": 40, "test": 80}
    rc = main(["evaluate", str(run.dir), "--split", "test", "--no-plots", "--no-progress"])
    assert rc == 0
    metrics = json.loads((run.dir / "eval-test" / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["num_samples"] == 80
    assert np_sum(metrics["confusion_matrix"], axis=1) == [8] * 10
    with (run.dir / "eval-test" / "predictions.csv").open() as f:
        paths = [r["path"] for r in csv.DictReader(f)]
    assert len(paths) == 80 and all(f"{os.sep}test{os.sep}" in p for p in paths)
    assert "test" in capsys.readouterr().out


def np_sum(matrix, axis):
    import numpy as np

    return np.asarray(matrix).sum(axis).tolist()
