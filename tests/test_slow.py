"""Slow tests: the README's main job exactly as a new user runs it, and its served result.

Excluded from the default run (``-m 'not slow'`` in pyproject); run them with ``python -m pytest -m slow``.
About 6 minutes on a 2-core CPU.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """``transferlab run --out OUT`` with no DATA: the built-in sample, the quick preset, default epochs."""
    tmp = tmp_path_factory.mktemp("main-job")
    out = tmp / "out"
    env = dict(os.environ, TRANSFERLAB_CACHE=str(tmp / "cache"))  # a fresh machine: the sample is written anew
    proc = subprocess.run(
        [sys.executable, "-m", "transferlab", "run", "--out", str(out), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout, json.loads((out / "summary.json").read_text())


def test_main_job_trains_the_quick_preset_well(main_job):
    out, stdout, summary = main_job
    rows = {r["model"]: r for r in summary["leaderboard"]}
    assert set(rows) == {"cnn_base", "cnn_aug", "cnn_bn", "efficientnet_lite0"}
    # the transfer model's weights come from an installed package, so it trains offline too
    assert all(r["status"] == "ok" for r in rows.values()), rows
    # 2,400 real CIFAR-10 photos: transfer learning is the point, and it shows
    assert summary["best"]["model"] == "efficientnet_lite0"
    scratch = [rows[m]["accuracy"] for m in ("cnn_base", "cnn_aug", "cnn_bn")]
    assert rows["efficientnet_lite0"]["accuracy"] >= 0.75
    assert rows["efficientnet_lite0"]["accuracy"] >= max(scratch) + 0.15
    assert rows["cnn_bn"]["accuracy"] > rows["cnn_base"]["accuracy"]  # the ladder climbs
    report = json.loads((out / "inspect.json").read_text())
    assert report["totals"]["all"] == 2400 and report["num_classes"] == 10
    assert (out / "doctor" / "doctor.html").is_file() and "Data doctor" in Path(summary["report"]).read_text()
    assert summary["serve_command"] in stdout
    assert Path(summary["report"]).is_file() and Path(summary["onnx"]).is_file()


def test_served_best_model_classifies_held_out_photos(main_job):
    """The exported best model, behind the REST API, agrees with its own evaluation on held-out photos."""
    from fastapi.testclient import TestClient

    from transferlab.serve import create_app

    _, _, summary = main_job
    run = Path(summary["best"]["run_dir"])
    with open(run / "eval-val" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:60]
    with TestClient(create_app(run)) as client:
        assert client.get("/model").json()["backend"] == "onnx"
        files = [("files", (Path(r["path"]).name, Path(r["path"]).read_bytes(), "image/jpeg")) for r in rows]
        preds = client.post("/predict?topk=1", files=files).json()["predictions"]
    served = [p["top"][0]["class"] for p in preds]
    assert served == [r["predicted"] for r in rows]  # the ONNX server reproduces the PyTorch evaluation
    # the answer is that class, or "unknown" below the threshold evaluate chose (about 5% of val photos)
    assert all(p["label"] == ("unknown" if p["unknown"] else p["top"][0]["class"]) for p in preds)
    assert sum(p["unknown"] for p in preds) <= len(preds) // 4
    accuracy = sum(s == r["true"] for s, r in zip(served, rows)) / len(rows)
    assert accuracy >= 0.7
