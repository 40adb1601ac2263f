"""evaluate() and `transferlab evaluate` on a real (tiny) trained run of the digits sample."""
from __future__ import annotations

import csv
import json
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
    assert len(saved["per_class"]) == 10 and saved["roc_auc"]["macro"] is not None
    with (ev / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 60
    assert list(rows[0])[:4] == ["path", "true", "predicted", "confidence"] and "prob_9" in rows[0]
    assert sum(r["true"] == r["predicted"] for r in rows) / 60 == pytest.approx(m["accuracy"])
    for name in ("history", "confusion_matrix", "roc", "f1", "mistakes", "gradcam"):
        data = (ev / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1024, name
    assert set(saved["plots"]) >= {"history", "confusion_matrix", "roc", "f1", "mistakes", "gradcam"}


def test_evaluate_cli(run_dir, tmp_path, capsys):
    out = tmp_path / "ev"
    rc = main(["evaluate", str(run_dir), "--out", str(out), "--no-plots", "--no-progress"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "val" and 0.0 <= metrics["accuracy"] <= 1.0
    assert "accuracy" in capsys.readouterr().out


def test_evaluate_on_another_dataset(run_dir, digits_dir, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(digits_dir, other)
    m = transferlab.evaluate(run_dir, data=other, out=tmp_path / "all", plots=False, progress=False)
    assert m["split"] == "all" and m["num_samples"] == 300
    # the training data itself, given explicitly: still its validation split, not every image
    m = transferlab.evaluate(run_dir, data=digits_dir, out=tmp_path / "own", plots=False, progress=False)
    assert m["split"] == "val" and m["num_samples"] == 60


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
