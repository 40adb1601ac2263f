"""One true number: the accuracy (and loss) reported for a model's best epoch during training, in the
leaderboard, in ``metrics.json`` and by ``transferlab evaluate`` on the same split and checkpoint agree.

Training may cache features and train in bf16 (``--amp bf16``; ``auto`` caches in fp32 since
2026-12-05), but validation runs in fp32, as evaluation does: the figures must match to 1e-3 (accuracy) and 1e-4
(loss), which bf16 validation features do not (they moved val_acc 0.68 -> 0.665 on the sample).
"""
from __future__ import annotations

import json

import pytest

import transferlab as tl
from transferlab.checkpoint import read_meta
from transferlab.cli import main
from transferlab.comparison import compare


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))


def _best_row(run_dir):
    run = tl.Run.load(run_dir)
    epoch = read_meta(run.best_checkpoint)["epoch"]
    return next(r for r in run.history if r["epoch"] == epoch)


@pytest.mark.parametrize("amp", ["bf16", "auto"])
def test_training_leaderboard_metrics_and_evaluate_agree(digits_dir, weights_dir, tmp_path, amp):
    # real pretrained weights (random ones give logits near zero, whose loss is ln 10 in any precision):
    # a head phase then a fine-tune of the upper blocks, both on cached features (the path whose
    # validation went through bf16 features: val_acc 0.717 vs 0.750 evaluated, before the fix)
    options = dict(weights=str(weights_dir), input_size=64, epochs=3, fine_tune=3, unfreeze_last=3, augment="none",
                   amp=amp, lr=3e-3, workers=0)
    rows = compare(digits_dir, models=["mobilenet_v1_025_tf"], out=tmp_path / "cmp", progress=False, **options)
    row = rows[0]
    assert row["status"] == "ok", row["reason"]
    run_dir = tmp_path / "cmp" / "runs" / "mobilenet_v1_025_tf"
    log = (run_dir / "train.log").read_text()
    assert "on cached features" in log  # the path under test really cached
    best = _best_row(run_dir)
    metrics = json.loads((run_dir / "eval-val" / "metrics.json").read_text())
    assert metrics["epoch"] == best["epoch"]
    assert abs(best["val_acc"] - metrics["accuracy"]) < 1e-3
    assert abs(best["val_loss"] - metrics["log_loss"]) < 1e-4 * max(1.0, best["val_loss"])
    assert abs(row["accuracy"] - metrics["accuracy"]) < 1e-12
    # transferlab evaluate on the same split and checkpoint, as a user runs it
    out = tmp_path / "again"
    assert main(["evaluate", str(run_dir), "--split", "val", "--out", str(out), "--no-progress"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert abs(again["accuracy"] - best["val_acc"]) < 1e-3
    assert abs(again["log_loss"] - best["val_loss"]) < 1e-4 * max(1.0, best["val_loss"])
