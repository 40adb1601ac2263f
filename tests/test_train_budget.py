"""Time limits and budgets: a model stops cleanly at its share with its best checkpoint kept, and
``run --budget`` plans from measured images/s (tiny data, fast)."""
from __future__ import annotations

import json

import pytest

import transferlab as tl
from transferlab.budget import BudgetPlan, Probe, plan_budget, probe, scratch_seconds, transfer_seconds
from transferlab.cli import main
from transferlab.data import load_data
from transferlab.errors import ConfigError
from transferlab.train.callbacks import TimeLimit
from transferlab.train.config import TrainConfig, parse_duration


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))


def test_durations_parse_and_bad_ones_are_one_line_errors():
    assert parse_duration("15m") == 900 and parse_duration("1h30m") == 5400 and parse_duration("90") == 90
    assert parse_duration("2.5m") == 150 and parse_duration("45s") == 45
    assert TrainConfig(time_limit="10m").time_limit == 600
    for bad in ("", "soon", "m15", "-5", "0"):
        with pytest.raises(ConfigError, match="duration"):
            parse_duration(bad)


def test_time_limit_stops_training_cleanly_with_the_best_checkpoint(digits_dir, tmp_path):
    # the limit leaves room for the first epoch only: training stops after it, skips the fine-tune
    # phase, and the run is finished (not resumable half-way) with best.safetensors written
    run = tl.train(digits_dir, model="cnn_bn", epochs=50, input_size=32, time_limit=0.01, run_dir=tmp_path,
                   progress=False)
    assert len(run.history) == 1 and run.best_checkpoint.is_file() and run.best["epoch"] == 1
    log = (run.dir / "train.log").read_text()
    assert "time limit: stopping after epoch 1" in log
    assert json.loads((run.dir / "config.json").read_text())["time_limit"] == 0.01
    again = tl.train(digits_dir, model="cnn_bn", run_dir=tmp_path, resume=True, progress=False)
    assert len(again.history) == 1  # finished: a resume has nothing left to do


def test_time_limit_callback_predicts_the_next_epoch(monkeypatch):
    times = [0.0, 100.0, 160.0, 160.0, 160.0, 215.0]
    monkeypatch.setattr("transferlab.train.callbacks.time.monotonic", lambda: times.pop(0) if len(times) > 1 else times[0])
    limit = TimeLimit(250)                          # deadline 250 s from t=0
    logs = []
    trainer = type("T", (), {"log": lambda self, m: logs.append(m)})()
    limit.on_epoch_begin(trainer, 1)                # t=100
    limit.on_epoch_end(trainer, 1, {})              # t=160: took 60, 90 left -> go on
    assert not limit.stop_training
    limit.on_epoch_begin(trainer, 2)                # t=160
    limit.on_epoch_end(trainer, 2, {})              # t=215: took 55, 35 left -> stop
    assert limit.stop_training and limit.expired and "stopping after epoch 2" in logs[0]


def test_probe_measures_this_machine(digits_dir):
    splits = load_data(digits_dir, progress=False)
    p = probe("efficientnet_lite0", splits, batch_size=4)
    assert p.kind == "transfer" and p.input_size == 128 and p.crop_pct == 1.0  # 32 px photos: upscaled, uncropped
    assert p.cache_ips > 0 and p.train_ips > 0 and p.infer_ips > 0
    # caching runs the lower blocks only, so it is faster than the whole model's inference
    assert p.cache_ips > p.infer_ips
    s = probe("cnn_bn", splits, batch_size=4)
    assert s.kind == "scratch" and s.input_size == 32 and s.cache_ips is None


RATES = {"efficientnet_lite2": (50.0, 100.0, 200.0), "efficientnet_lite1": (80.0, 150.0, 300.0),
         "efficientnet_lite0": (150.0, 300.0, 600.0), "mobilenet_v2": (160.0, 320.0, 640.0),
         "resnet_scratch": (400.0, 1500.0, None), "cnn_bn": (1500.0, 5000.0, None)}


def _fake_probe(name, splits, rates=RATES, **kw):
    train, infer, cache = rates[name]
    return Probe(name, 128 if cache else 32, 1.0 if cache else None, "transfer" if cache else "scratch",
                 train, infer, cache, 0.0)


def test_plan_fits_the_budget_and_explains_itself(digits_dir, monkeypatch):
    splits = load_data(digits_dir, progress=False)  # 240 train, 60 val
    monkeypatch.setattr("transferlab.budget.probe", _fake_probe)
    plan = plan_budget(splits, 120, log=lambda m: None)
    assert isinstance(plan, BudgetPlan) and plan.models[0] == "efficientnet_lite2"  # the best that fits
    first = plan.choices[0]
    assert 2 <= first.options["fine_tune"] <= 12 and first.options["time_limit"] > first.seconds
    assert sum(c.seconds for c in plan.choices) <= 120 * 0.9
    assert plan.models[1] == "resnet_scratch"  # the time left: a from-scratch net for comparison
    text = "\n".join(plan.explain())
    assert "efficientnet_lite2" in text and "img/s" in text and "chose" in text
    # a tight budget falls back to smaller backbones, then to a scratch net alone
    assert plan_budget(splits, 25, log=lambda m: None).models[0] in ("efficientnet_lite0", "mobilenet_v2",
                                                                      "efficientnet_lite1")
    tiny = plan_budget(splits, 1.5, log=lambda m: None)
    assert tiny.models == ["cnn_bn"] and "no pretrained backbone fits" in tiny.choices[0].why
    with pytest.raises(ConfigError, match="larger --budget"):
        plan_budget(splits, 0.2, log=lambda m: None)


def test_estimates_add_up():
    p = Probe("x", 128, 1.0, "transfer", train_ips=100.0, infer_ips=200.0, cache_ips=400.0)
    one, two = (transfer_seconds(p, 1000, 100, n, 4) for n in (1, 2))
    assert two - one == pytest.approx(1000 / 100 + 100 / 300)
    s = Probe("y", 32, None, "scratch", train_ips=500.0, infer_ips=1000.0)
    assert scratch_seconds(s, 1000, 100, 3) == pytest.approx(3 * (2 + 0.1))


def test_run_budget_cli_trains_what_it_planned(digits_dir, tmp_path, capsys, monkeypatch):
    # slow made-up rates, so that the plan is a few epochs of the small CNN: a fast test
    slow = {**RATES, "resnet_scratch": (20.0, 100.0, None), "cnn_bn": (150.0, 600.0, None)}
    monkeypatch.setattr("transferlab.budget.probe", lambda name, splits, **kw: _fake_probe(name, splits, slow))
    monkeypatch.setattr("transferlab.budget.TRANSFER_ORDER", ())  # scratch nets only
    out = tmp_path / "job"
    assert main(["run", str(digits_dir), "--budget", "7s", "--out", str(out), "--no-progress", "--no-doctor"]) == 0
    text = capsys.readouterr().out
    assert "budget 7 s" in text and "chose cnn_bn" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plan"] and summary["plan"][0]["options"]["time_limit"] > 0
    assert "Budget plan" in (out / "compare" / "report.html").read_text()
    assert main(["run", str(digits_dir), "--budget", "soon", "--out", str(out)]) == 2
    assert main(["run", str(digits_dir), "--budget", "1m", "--models", "cnn_bn", "--out", str(out)]) == 2
