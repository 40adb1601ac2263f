"""Time limits and budgets: a model stops cleanly at its share with its best checkpoint kept, and
``run --budget`` plans from measured images/s (tiny data, fast)."""
from __future__ import annotations

import dataclasses
import json

import pytest

import transferlab as tl
import torch

from transferlab.budget import (HEAD_EPOCHS, MAX_FINE_TUNE, MIN_FINE_TUNE, MIN_SCRATCH_EPOCHS, BudgetPlan,
                                BudgetPlanner, JobEstimator, Probe, eval_seconds, frozen_seconds, plan_budget, probe,
                                scratch_seconds, transfer_seconds)
from transferlab.models import get_recipe
from transferlab.pipeline import run_pipeline
from transferlab.training.api import plan_phases
from transferlab.cli import main
from transferlab.data import load_data
from transferlab.errors import ConfigError
from transferlab.training.callbacks import TimeLimit
from transferlab.training.config import TrainConfig, parse_duration


THREADS = torch.get_num_threads()


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
    monkeypatch.setattr("transferlab.training.callbacks.time.monotonic", lambda: times.pop(0) if len(times) > 1 else times[0])
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
    assert p.cache_ips > 0 and p.train_ips > 0 and p.infer_ips > 0 and p.single_ips > 0
    # caching runs the lower blocks only, so it is faster than the whole model's inference
    assert p.cache_ips > p.infer_ips
    # the rates are those of the faster thread count, and one thread was measured too
    assert p.threads in (1, torch.get_num_threads()) and p.infer_ips >= p.single_ips
    assert torch.get_num_threads() == THREADS  # probing leaves the thread count as it found it
    s = probe("cnn_bn", splits, batch_size=4)
    assert s.kind == "scratch" and s.input_size == 32 and s.cache_ips is None


# (training, inference, caching, one-thread inference) images/s, made up
RATES = {"efficientnet_lite2": (50.0, 100.0, 200.0, 60.0), "efficientnet_lite1": (80.0, 150.0, 300.0, 90.0),
         "efficientnet_lite0": (150.0, 300.0, 600.0, 180.0), "mobilenet_v2": (160.0, 320.0, 640.0, 190.0),
         "resnet_scratch": (400.0, 1500.0, None, 900.0), "cnn_bn": (1500.0, 5000.0, None, 3000.0)}


def _fake_probe(name, splits, rates=RATES, busy=1.0, **kw):
    """A probe of the made-up rates; ``busy`` divides the all-cores rates (another job on the machine),
    not the one-thread one (a free core)."""
    train, infer, cache, single = rates[name]
    return Probe(name, 128 if cache else 32, 1.0 if cache else None, "transfer" if cache else "scratch",
                 train / busy, infer / busy, cache / busy if cache else None, 0.0, 2, single)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _planner(splits, budget, monkeypatch, busy=1.0, **kw):
    monkeypatch.setattr("transferlab.budget.probe", lambda name, s, **k: _fake_probe(name, s, busy=busy))
    monkeypatch.setattr("transferlab.budget.weights_available", lambda name, weights=None: True)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    clock = FakeClock()
    return BudgetPlanner(splits, budget, clock=clock, **kw), clock


def test_plan_starts_with_a_frozen_baseline_then_fine_tunes_and_explains_itself(digits_dir, monkeypatch):
    splits = load_data(digits_dir, progress=False)  # 240 train, 60 val
    planner, _ = _planner(splits, 150, monkeypatch)
    plan = planner.plan()
    assert isinstance(plan, BudgetPlan)
    # the most accurate backbone whose frozen job and two fine-tuning epochs fit, frozen first
    assert plan.models[:2] == ["efficientnet_lite2-frozen", "efficientnet_lite2"]
    frozen, tuned = plan.choices[:2]
    assert frozen.kind == "frozen" and frozen.options["freeze"] == "frozen" and frozen.options["fine_tune"] == 0
    assert frozen.options["augment"] == "none" and frozen.seconds < tuned.seconds
    assert plan.overrides["efficientnet_lite2-frozen"]["model"] == "efficientnet_lite2"
    assert MIN_FINE_TUNE <= tuned.options["fine_tune"] <= MAX_FINE_TUNE and tuned.options["threads"] == 2
    # the recipe's depth (the upper blocks the probe timed), not the whole backbone
    depth = get_recipe("efficientnet_lite2").defaults["unfreeze_last"]
    cfg = TrainConfig(model="efficientnet_lite2", **{k: v for k, v in tuned.options.items() if k != "threads"})
    phases = plan_phases(cfg.resolve(get_recipe("efficientnet_lite2").defaults))
    assert [(ph.policy, ph.unfreeze_last) for ph in phases] == [("frozen", None), ("full", depth)]
    assert all(c.options["time_limit"] > 0 for c in plan.choices)
    assert sum(c.seconds for c in plan.choices) <= 150 * 0.9
    text = "\n".join(plan.explain())
    assert "efficientnet_lite2" in text and "img/s" in text and "one thread" in text and "linear probe" in text


def test_the_choice_of_backbone_is_the_same_on_a_busy_machine(digits_dir, monkeypatch):
    splits = load_data(digits_dir, progress=False)
    for budget in (40, 90, 150, 400):
        quiet, _ = _planner(splits, budget, monkeypatch)
        busy, _ = _planner(splits, budget, monkeypatch, busy=2.5)
        assert quiet.primary() == busy.primary(), budget
        # ... while the schedule is fitted on the speed measured now: fewer epochs when busy
        q, b = quiet.plan(), busy.plan()
        ft = [c.options.get("fine_tune") for p in (q, b) for c in p.choices if c.kind == "fine_tune"]
        if len(ft) == 2:
            assert ft[1] <= ft[0]


def test_replans_after_each_model_from_the_time_it_really_took(digits_dir, monkeypatch):
    splits = load_data(digits_dir, progress=False)
    planner, clock = _planner(splits, 100, monkeypatch)
    first = planner.next()
    assert first.kind == "frozen"
    before = next(c for c in planner.plan().choices if c.kind == "fine_tune").options["fine_tune"]
    clock.now += first.seconds * 2  # the machine became twice as slow
    planner.record(first, first.seconds * 2)
    assert first.real == pytest.approx(first.seconds * 2) and "efficientnet_lite2" in planner.stale
    monkeypatch.setattr("transferlab.budget.probe", lambda name, s, **k: _fake_probe(name, s, busy=2.0))
    nxt = planner.next()
    assert nxt.label == "efficientnet_lite2"  # the same backbone, fewer epochs in the time left
    assert nxt.options["fine_tune"] < before and nxt.seconds <= planner.left()
    assert "took" in "\n".join(planner.plan().explain())
    # a model that ran as estimated scales the next estimates by real / estimated, without a new probe
    clock.now += nxt.seconds
    planner.record(nxt, nxt.seconds * 1.2)
    assert planner.slowdown == pytest.approx(1.2) and "efficientnet_lite2" not in planner.stale
    rest = planner.plan().choices
    assert all(c.label not in ("efficientnet_lite2", "efficientnet_lite2-frozen") for c in rest)


def test_scratch_nets_come_last_or_alone(digits_dir, monkeypatch):
    splits = load_data(digits_dir, progress=False)
    planner, _ = _planner(splits, 400, monkeypatch)
    kinds = [c.kind for c in planner.plan().choices]
    assert kinds[0] == "frozen" and ("scratch" not in kinds or kinds.index("scratch") == len(kinds) - 1)
    # no pretrained backbone: a from-scratch net is the main choice, and says why
    alone, _ = _planner(splits, 30, monkeypatch, transfer=())
    plan = alone.plan()
    assert plan.choices[0].kind == "scratch" and "no pretrained backbone fits" in plan.choices[0].why
    # a budget too small for the frozen job of any backbone falls back to a from-scratch net ...
    tiny, _ = _planner(splits, 15, monkeypatch)
    only = tiny.plan().choices
    assert [c.kind for c in only] == ["scratch"] and "no pretrained backbone fits" in only[0].why
    # ... and one too small for anything is an error that says what to do
    monkeypatch.setattr("transferlab.budget.probe", lambda name, s, **k: _fake_probe(name, s))
    with pytest.raises(ConfigError, match="larger --budget"):
        plan_budget(splits, 0.2)


def test_estimates_add_up():
    p = Probe("x", 128, 1.0, "transfer", train_ips=100.0, infer_ips=200.0, cache_ips=400.0)
    one, two = (transfer_seconds(p, 1000, 100, n, 4) for n in (1, 2))
    assert two - one == pytest.approx(1000 / 100 + 100 / 300)
    s = Probe("y", 32, None, "scratch", train_ips=500.0, infer_ips=1000.0)
    assert scratch_seconds(s, 1000, 100, 3) == pytest.approx(3 * (2 + 0.1))
    # the frozen job: one caching pass of train + val, then cheap head epochs, then evaluation
    assert frozen_seconds(p, 1000, 100, head_epochs=0) == pytest.approx(1100 / 200 + 100 / 200 + 5.0)
    assert frozen_seconds(p, 1000, 100) < transfer_seconds(p, 1000, 100, 2, 2)
    # a busy machine (all cores measured slower than one core would give) shows in quiet_ratio
    busy = Probe("z", 128, 1.0, "transfer", 10.0, 50.0, 100.0, threads=2, single_ips=100.0)
    assert busy.quiet_ratio < 1.0 and Probe("q", 32, None, "scratch", 1.0, 1.0).quiet_ratio == 1.0


def test_run_budget_trains_frozen_then_fine_tuned_and_reports_the_plan(digits_dir, tmp_path, capsys, monkeypatch):
    # made-up slow rates, so that the plan is a frozen head and one or two fine-tuning epochs of a
    # tiny backbone (random weights): a fast test of the whole --budget path
    rates = {"mobilenet_v1_025_tf": (300.0, 600.0, 1200.0, 400.0), "cnn_bn": (150.0, 600.0, None, 400.0),
             "resnet_scratch": (5.0, 10.0, None, 8.0)}
    monkeypatch.setattr("transferlab.budget.probe",
                        lambda name, splits, **kw: dataclasses.replace(_fake_probe(name, splits, rates), input_size=32))
    monkeypatch.setattr("transferlab.budget.TRANSFER_ORDER", ("mobilenet_v1_025_tf",))
    monkeypatch.setattr("transferlab.budget.weights_available", lambda name, weights=None: True)
    out = tmp_path / "job"
    summary = run_pipeline(digits_dir, out=out, budget=40, doctor=False, progress=False, pretrained=False,)
    text = capsys.readouterr().out
    assert "linear probe" in text and "took" in text
    done = summary["plan"]
    assert [d["kind"] for d in done][:2] == ["frozen", "fine_tune"]
    assert done[0]["model"] == "mobilenet_v1_025_tf-frozen" and all(d["real_seconds"] > 0 for d in done)
    board = {r["model"]: r for r in summary["leaderboard"]}
    assert board["mobilenet_v1_025_tf-frozen"]["status"] == "ok" and board["mobilenet_v1_025_tf"]["status"] == "ok"
    frozen_cfg = json.loads((out / "compare" / "runs" / "mobilenet_v1_025_tf-frozen" / "config.json").read_text())
    assert frozen_cfg["model"] == "mobilenet_v1_025_tf" and frozen_cfg["freeze"] == "frozen"
    assert frozen_cfg["fine_tune"] == 0 and frozen_cfg["epochs"] == HEAD_EPOCHS
    report = (out / "compare" / "report.html").read_text()
    assert "Budget plan" in report and "took" in report


def test_run_budget_cli_errors_are_one_line(digits_dir, tmp_path):
    out = tmp_path / "job"
    assert main(["run", str(digits_dir), "--budget", "soon", "--out", str(out)]) == 2
    assert main(["run", str(digits_dir), "--budget", "1m", "--models", "cnn_bn", "--out", str(out)]) == 2


def test_the_first_model_runs_even_when_probing_ate_its_time(digits_dir, monkeypatch):
    splits = load_data(digits_dir, progress=False)
    planner, clock = _planner(splits, 60, monkeypatch)
    first = planner.plan().choices[0]
    clock.now += 60  # a very slow probe: the whole budget is gone before the first model
    job = planner.next()
    assert job is first and "runs anyway" in "\n".join(planner.report().explain())
    planner.record(job, 30)
    assert planner.next() is None  # ... but only the first


def test_the_image_cache_first_pass_is_counted_once_per_input_size(digits_dir, monkeypatch):
    splits = load_data(digits_dir, progress=False)  # 300 images
    monkeypatch.setattr("transferlab.budget.decode_seconds", lambda paths, size, sample=16: 0.1)
    slow, _ = _planner(splits, 400, monkeypatch)
    a, b = slow.plan().choices[:2]
    monkeypatch.setattr("transferlab.budget.decode_seconds", lambda paths, size, sample=16: 0.0)
    free, _ = _planner(splits, 400, monkeypatch)
    c, d = free.plan().choices[:2]
    monkeypatch.setattr("transferlab.budget.decode_seconds", lambda paths, size, sample=16: 0.1)
    assert (a.label, b.label) == (c.label, d.label) == ("efficientnet_lite2-frozen", "efficientnet_lite2")
    assert a.seconds == pytest.approx(c.seconds + 300 * 0.1)  # the frozen job decodes the images ...
    assert b.options["input_size"] == a.options["input_size"]
    assert b.seconds <= d.seconds + 1e-9  # ... the fine-tuning after it at that size does not again
    slow.record(a, a.seconds)
    assert slow.decode_cost(a.options["input_size"]) == 0.0 and slow.decode_cost(999) == pytest.approx(30.0)


def test_a_slower_machine_fine_tunes_a_smaller_backbone_rather_than_none(digits_dir, monkeypatch):
    splits = load_data(digits_dir, progress=False)
    planner, clock = _planner(splits, 100, monkeypatch)
    assert planner.primary() == ("efficientnet_lite2", True)
    frozen = planner.next()
    clock.now += frozen.seconds * 3.5
    planner.record(frozen, frozen.seconds * 3.5)  # the machine is much slower now: Lite2's fine-tuning no longer fits
    monkeypatch.setattr("transferlab.budget.probe", lambda name, s, **k: _fake_probe(name, s, busy=3.5))
    tuned = [c for c in planner.plan().choices if c.kind == "fine_tune"]
    assert len(tuned) == 1 and tuned[0].label in ("efficientnet_lite1", "efficientnet_lite0")
    assert "does not fit" in tuned[0].why
    clock.now += tuned[0].seconds
    planner.record(tuned[0], tuned[0].seconds)
    assert not [c for c in planner.plan().choices if c.kind == "fine_tune"]  # one fine-tuned backbone a run


def test_job_estimator_times_jobs_and_scales_them_by_the_last_models_slowdown(digits_dir, monkeypatch):
    splits = load_data(digits_dir, progress=False)  # 240 train, 60 val
    monkeypatch.setattr("transferlab.budget.probe", lambda name, s, **k: _fake_probe(name, s))
    monkeypatch.setattr("transferlab.budget.decode_seconds", lambda paths, size, sample=16: 0.0)
    est = JobEstimator(splits)
    frozen = est.frozen_job("efficientnet_lite0", "why")
    p = est.probes["efficientnet_lite0"]
    assert frozen.label == "efficientnet_lite0-frozen" and frozen.seconds == pytest.approx(frozen_seconds(p, 240, 60))
    assert est.frozen_job("efficientnet_lite0", "", scale=2.0).seconds == pytest.approx(2 * frozen.seconds)
    assert est.fine_tune_job("efficientnet_lite0", 1.0, "") is None  # not even MIN_FINE_TUNE epochs fit
    tuned = est.fine_tune_job("efficientnet_lite0", 600.0, "")
    assert MIN_FINE_TUNE <= tuned.options["fine_tune"] <= MAX_FINE_TUNE and tuned.seconds <= 600.0
    scratch = est.scratch_job("cnn_bn", 600.0, "")
    assert scratch.kind == "scratch" and scratch.options["epochs"] >= MIN_SCRATCH_EPOCHS
    assert est.eval_part(scratch) == pytest.approx(eval_seconds(est.probes["cnn_bn"], 60))
    est.record(frozen, frozen.seconds * 1.2)  # within REPROBE_RATIO: later estimates are 1.2x
    assert est.slowdown == pytest.approx(1.2) and not est.stale and est.decoded == {128}
    assert est.frozen_job("efficientnet_lite0", "").seconds == pytest.approx(1.2 * frozen.seconds)
    est.record(frozen, frozen.seconds * 2)  # far off: probed again, at the machine's speed now
    assert est.slowdown == 1.0 and est.stale == {"efficientnet_lite0"}
    est.probe("efficientnet_lite0")
    assert not est.stale and [q.recipe for q in est.probed()] == ["efficientnet_lite0", "cnn_bn"]
