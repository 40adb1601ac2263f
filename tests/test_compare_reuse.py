"""compare()'s bookkeeping with training and evaluation replaced by fakes that write the files a real
run writes (milliseconds per call): what is reused, resumed, retrained or re-evaluated, and what
state.json records. tests/test_compare.py runs the same paths with real training."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from transferlab import runfolder
from transferlab.comparison import runner
from transferlab.comparison.leaderboard import rank_rows
from transferlab.data import DataSplits
from transferlab.errors import ConfigError, WeightsError
from transferlab.evaluation import compute_metrics

CLASSES = ["a", "b"]


@pytest.fixture
def splits(tmp_path) -> DataSplits:
    files = [(str(tmp_path / "data" / c / f"{i}.png"), k) for k, c in enumerate(CLASSES) for i in range(5)]
    return DataSplits(root=str(tmp_path / "data"), layout="class-folders", classes=CLASSES,
                      train=[f for f in files if not f[0].endswith("4.png")],
                      val=[f for f in files if f[0].endswith("4.png")], test=[])


class Fakes:
    """Fake train / evaluate recording their calls; ``fail`` maps a recipe to an exception to raise."""

    def __init__(self):
        self.trained: list[tuple[str, dict]] = []
        self.evaluated: list[str] = []
        self.fail: dict[str, BaseException] = {}
        self.fail_eval: dict[str, BaseException] = {}
        self.fail_resume = False
        self.status_when_trained: list[str] = []
        self.eval_kwargs: list[dict] = []
        self.data: list = []

    def train(self, splits, model="", **kw):
        self.trained.append((model, kw))
        self.data.append(splits)
        state = json.loads((Path(kw["run_dir"]).parent / "state.json").read_text())
        self.status_when_trained.append(state["models"][model]["status"])  # recorded before training starts
        if kw.get("resume") and self.fail_resume:
            raise ConfigError("nothing to resume")
        if model in self.fail:
            raise self.fail[model]
        run = Path(kw["run_dir"]) / kw["name"]
        run.mkdir(parents=True, exist_ok=True)
        epochs = kw.get("epochs") or 1  # None: the recipe's own number
        runfolder.write_history(run, [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5, "val_loss": 1.0,
                                       "val_acc": 0.4, "lr": 0.001, "seconds": 0.5} for e in range(1, epochs + 1)])
        runfolder.checkpoint_path(run, "best").write_bytes(b"weights")

    def evaluate(self, run_dir, data=None, split="val", **kw):
        name = Path(run_dir).name
        self.evaluated.append(name)
        self.eval_kwargs.append({"data": data, "split": split, **kw})
        if name in self.fail_eval:
            raise self.fail_eval[name]
        y = np.array([0, 1, 0, 1])
        skill = {"cnn_base": 0.4, "cnn_bn": 0.9}.get(name, 0.7)  # accuracy 0 and 1
        probs = np.where(np.eye(2)[y] == 1, skill, 1 - skill)
        path = runfolder.metrics_path(run_dir, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(compute_metrics(y, probs, CLASSES)))


@pytest.fixture
def fakes(monkeypatch) -> Fakes:
    f = Fakes()
    monkeypatch.setattr(runner.train_stage, "train", f.train)
    monkeypatch.setattr(runner.evaluate_stage, "evaluate", f.evaluate)
    # the leaderboard without plots or HTML (tests/test_compare_report.py covers those)
    def report(out, metric="accuracy", models=None):
        f.reports.append((metric, list(models)))
        return rank_rows(runner.collect_rows(out, models), metric)

    f.reports = []
    monkeypatch.setattr(runner, "write_report", report)
    return f


MODELS = ["cnn_base", "cnn_bn"]
OPTS = dict(epochs=1, input_size=32, progress=False)


def _state(out):
    return json.loads((out / "state.json").read_text())


def test_first_compare_trains_and_evaluates_each_recipe_and_records_the_request(splits, fakes, tmp_path):
    out = tmp_path / "cmp"
    rows = runner.compare(splits, models=MODELS, out=out, lr=0.01, **OPTS)
    assert [m for m, _ in fakes.trained] == MODELS and fakes.evaluated == MODELS
    for name, kw in fakes.trained:
        assert kw["overwrite"] is True and "resume" not in kw
        assert kw["run_dir"] == str(out / "runs") and kw["name"] == name
        assert (kw["epochs"], kw["seed"], kw["val_ratio"], kw["lr"], kw["input_size"]) == (1, 0, 0.2, 0.01, 32)
    assert [r["model"] for r in rows] == ["cnn_bn", "cnn_base"] and all(r["status"] == "ok" for r in rows)
    state = _state(out)
    assert state["order"] == MODELS and state["split"] == "val" and state["epochs"] == 1
    assert state["preset"] is None and state["metric"] == "accuracy" and state["data"] == splits.root
    for name in MODELS:
        entry = state["models"][name]
        assert entry["status"] == "ok" and entry["trained"] is True and entry["reason"] == ""
        assert entry["request"] == {"epochs": 1, "seed": 0, "val_ratio": 0.2, "input_size": 32, "lr": 0.01}
        assert entry["train_wall_seconds"] >= 0


def test_the_same_request_reuses_finished_recipes(splits, fakes, tmp_path, logged):
    out = tmp_path / "cmp"
    runner.compare(splits, models=MODELS, out=out, **OPTS)
    fakes.trained.clear()
    fakes.evaluated.clear()
    logged.clear()
    rows = runner.compare(splits, models=MODELS, out=out, workers=0, threads=1, **OPTS)
    assert fakes.trained == [] and fakes.evaluated == []
    assert logged == [f"[{i}/2] {m}: finished earlier, reusing {out / 'runs' / m}" for i, m in enumerate(MODELS, 1)]
    assert all(r["status"] == "ok" for r in rows)


@pytest.mark.parametrize("change", [{"epochs": 3}, {"lr": 0.1}, {"seed": 2}, {"val_ratio": 0.3},
                                    {"batch_size": 8}, {"input_size": 48}])
def test_a_changed_request_trains_afresh(splits, fakes, tmp_path, change):
    out = tmp_path / "cmp"
    runner.compare(splits, models=MODELS, out=out, **OPTS)
    fakes.trained.clear()
    runner.compare(splits, models=MODELS, out=out, **{**OPTS, **change})
    assert [m for m, _ in fakes.trained] == MODELS
    assert all(kw["overwrite"] is True and "resume" not in kw for _, kw in fakes.trained)
    for name in MODELS:
        request = _state(out)["models"][name]["request"]
        assert all(request[k] == v for k, v in change.items())
        history = runfolder.read_history(out / "runs" / name)
        assert len(history) == change.get("epochs", 1)


def test_retrain_trains_finished_recipes_afresh(splits, fakes, tmp_path):
    out = tmp_path / "cmp"
    runner.compare(splits, models=MODELS, out=out, **OPTS)
    fakes.trained.clear()
    runner.compare(splits, models=MODELS, out=out, retrain=True, **OPTS)
    assert [m for m, _ in fakes.trained] == MODELS
    assert all(kw["overwrite"] is True and "resume" not in kw for _, kw in fakes.trained)


def test_lost_evaluation_is_redone_without_training(splits, fakes, tmp_path):
    out = tmp_path / "cmp"
    runner.compare(splits, models=MODELS, out=out, **OPTS)
    runfolder.metrics_path(out / "runs" / "cnn_bn", "val").unlink()
    fakes.trained.clear()
    fakes.evaluated.clear()
    rows = runner.compare(splits, models=MODELS, out=out, **OPTS)
    assert fakes.trained == [] and fakes.evaluated == ["cnn_bn"]
    assert all(r["status"] == "ok" for r in rows)


def test_interrupted_training_resumes_and_falls_back_to_a_fresh_start(splits, fakes, tmp_path, logged):
    out = tmp_path / "cmp"
    fakes.fail["cnn_bn"] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        runner.compare(splits, models=MODELS, out=out, **OPTS)
    entry = _state(out)["models"]["cnn_bn"]
    assert entry["status"] == "training" and entry["trained"] is False
    assert _state(out)["models"]["cnn_base"]["status"] == "ok"
    del fakes.fail["cnn_bn"]
    fakes.trained.clear()
    runner.compare(splits, models=MODELS, out=out, **OPTS)
    assert [(m, kw.get("resume"), kw.get("overwrite")) for m, kw in fakes.trained] == [("cnn_bn", True, None)]
    assert any(line.startswith("[2/2] cnn_bn: training") and line.endswith(" (resuming)") for line in logged)
    # a checkpoint lost after training: resumed too (same request), and a folder that cannot be
    # resumed starts again from scratch
    runfolder.checkpoint_path(out / "runs" / "cnn_base", "best").unlink()
    fakes.trained.clear()
    fakes.fail_resume = True
    runner.compare(splits, models=MODELS, out=out, **OPTS)
    assert [(m, kw.get("resume"), kw.get("overwrite")) for m, kw in fakes.trained] == [
        ("cnn_base", True, None), ("cnn_base", None, True)]
    assert _state(out)["models"]["cnn_base"]["status"] == "ok"


def test_failures_are_isolated_and_recorded(splits, fakes, tmp_path, logged):
    out = tmp_path / "cmp"
    fakes.fail["efficientnet_b0"] = WeightsError("no pretrained weights for 'efficientnet_b0' offline\nsecond line")
    fakes.fail["cnn_base"] = RuntimeError("boom")
    fakes.fail_eval["cnn_bn"] = ValueError("bad metrics")
    rows = runner.compare(splits, models=["cnn_base", "cnn_bn", "efficientnet_b0"], out=out,
                          **OPTS)
    state = _state(out)["models"]
    assert state["efficientnet_b0"] == {"status": "skipped", "request": {"epochs": 1, "seed": 0, "val_ratio": 0.2,
                                                                       "input_size": 32},
                                        "reason": "no pretrained weights for 'efficientnet_b0' offline"}
    assert state["cnn_base"]["status"] == "failed" and state["cnn_base"]["reason"] == "RuntimeError: boom"
    assert state["cnn_base"]["trained"] is False
    assert state["cnn_bn"]["status"] == "failed" and state["cnn_bn"]["trained"] is True
    assert state["cnn_bn"]["reason"] == "evaluation failed: ValueError: bad metrics"
    assert {r["model"]: r["status"] for r in rows} == {"cnn_base": "failed", "cnn_bn": "failed",
                                                       "efficientnet_b0": "skipped"}
    assert any("efficientnet_b0: skipped - no pretrained weights" in line for line in logged)
    assert any("cnn_base: failed - RuntimeError: boom" in line for line in logged)
    # next time: the recipe whose evaluation failed is evaluated again, not retrained
    fakes.fail.clear()
    fakes.fail_eval.clear()
    fakes.trained.clear()
    fakes.evaluated.clear()
    rows = runner.compare(splits, models=["cnn_base", "cnn_bn"], out=out, **OPTS)
    assert [m for m, _ in fakes.trained] == ["cnn_base"] and fakes.evaluated == ["cnn_base", "cnn_bn"]
    assert all(r["status"] == "ok" for r in rows)


def test_bad_requests_fail_before_any_training(splits, fakes, tmp_path):
    out = tmp_path / "cmp"
    with pytest.raises(ConfigError, match="unknown training option"):
        runner.compare(splits, models=MODELS, out=out, epoch=3, progress=False)
    with pytest.raises(ConfigError, match="--epochs must be at least 1, got 0"):
        runner.compare(splits, models=MODELS, out=out, epochs=0, progress=False)
    with pytest.raises(ConfigError, match="--preset"):
        runner.compare(splits, preset="huge", out=out, progress=False)
    with pytest.raises(ConfigError, match="--split"):
        runner.compare(splits, models=MODELS, out=out, split="train", **OPTS)
    with pytest.raises(ConfigError, match="has no test images"):
        runner.compare(splits, models=MODELS, out=out, split="test", **OPTS)
    with pytest.raises(ConfigError, match="no_such_recipe"):
        runner.compare(splits, models=["no_such_recipe"], out=out, **OPTS)
    with pytest.raises(ConfigError, match="--lr"):
        runner.compare(splits, models=MODELS, out=out, lr=-1.0, **OPTS)
    assert fakes.trained == []


def test_preset_supplies_models_and_epochs(splits, fakes, tmp_path):
    out = tmp_path / "cmp"
    runner.compare(splits, preset="quick", out=out, input_size=32, progress=False)
    assert [m for m, _ in fakes.trained] == runner.PRESETS["quick"]["models"]
    assert {kw["epochs"] for _, kw in fakes.trained} == {runner.PRESETS["quick"]["epochs"]}
    state = _state(out)
    assert state["preset"] == "quick" and state["epochs"] == runner.PRESETS["quick"]["epochs"]


def test_parse_models_and_jsonable():
    assert runner.parse_models(None) is None
    assert runner.parse_models(" a, b,,a ,c") == ["a", "b", "c"]
    assert runner.parse_models(["x", "x", "y"]) == ["x", "y"]
    with pytest.raises(ConfigError, match="^--models is empty: give comma-separated recipe names, e.g. cnn_base,cnn_bn$"):
        runner.parse_models(" , ")
    value = {"p": Path("/x/y"), 1: (1, 2.5, None, True), "o": object}
    assert runner._jsonable(value) == {"p": "/x/y", "1": [1, 2.5, None, True], "o": repr(object)}
    assert json.dumps(runner._jsonable(value))


def test_read_state_tolerates_a_missing_or_damaged_file(tmp_path):
    assert runner.read_state(tmp_path) == {"models": {}}
    (tmp_path / "state.json").write_text("{not json")
    assert runner.read_state(tmp_path) == {"models": {}}
    (tmp_path / "state.json").write_text('{"split": "test"}')
    assert runner.read_state(tmp_path) == {"split": "test", "models": {}}


def test_what_training_and_evaluation_are_given_and_the_time_recorded(splits, fakes, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    clock = iter(10.0 * i for i in range(1000))
    monkeypatch.setattr(runner.time, "perf_counter", lambda: next(clock))
    runner.compare(splits, models=MODELS, out=out, metric="f1_macro", eval_batch_size=16, **OPTS)
    assert fakes.status_when_trained == ["training", "training"]  # an interrupted compare resumes these
    assert all(kw["progress"] is False for _, kw in fakes.trained)
    assert fakes.eval_kwargs == [{"data": splits, "split": "val", "batch_size": 16, "progress": False}] * 2
    assert fakes.reports == [("f1_macro", MODELS)]
    assert [_state(out)["models"][m]["train_wall_seconds"] for m in MODELS] == [10.0, 10.0]
    assert _state(out)["metric"] == "f1_macro"


def test_a_message_less_failure_is_named_by_its_type(splits, fakes, tmp_path):
    out = tmp_path / "cmp"
    fakes.fail["cnn_base"] = RuntimeError()
    rows = runner.compare(splits, models=["cnn_base"], out=out, **OPTS)
    assert rows[0]["status"] == "failed" and _state(out)["models"]["cnn_base"]["reason"] == "RuntimeError"
    fakes.fail["cnn_base"] = RuntimeError("MAX")  # only the separator is stripped from the end
    runner.compare(splits, models=["cnn_base"], out=out, **OPTS)
    assert _state(out)["models"]["cnn_base"]["reason"] == "RuntimeError: MAX"


def test_bad_metric_and_val_ratio_fail_before_training(splits, fakes, tmp_path):
    with pytest.raises(ConfigError, match="metric"):
        runner.compare(splits, models=MODELS, out=tmp_path / "cmp", metric="nonsense", **OPTS)
    with pytest.raises(ConfigError, match="val"):
        runner.compare(splits, models=MODELS, out=tmp_path / "cmp", val_ratio=1.5, **OPTS)
    assert fakes.trained == []


def test_state_json_entries_are_exact_while_training_evaluating_and_after(splits, fakes, tmp_path, monkeypatch):
    """What an interrupted compare finds in state.json at each moment: the entry written before training,
    the one written after it (read while the model is evaluated), and the final one."""
    out = tmp_path / "cmp"
    seen_in_train, seen_in_eval = [], []
    train, evaluate = fakes.train, fakes.evaluate

    def spy_train(splits_, model="", **kw):
        seen_in_train.append(_state(out)["models"][model])
        return train(splits_, model=model, **kw)

    def spy_eval(run_dir, **kw):
        seen_in_eval.append(dict(_state(out)["models"][Path(run_dir).name]))
        return evaluate(run_dir, **kw)

    monkeypatch.setattr(runner.train_stage, "train", spy_train)
    monkeypatch.setattr(runner.evaluate_stage, "evaluate", spy_eval)
    sections = [{"title": "Data doctor", "lines": ["2 problems"], "link": "doctor/doctor.html"}]
    runner.compare(splits, models=["cnn_base"], out=out, sections=sections, **OPTS)
    request = {"epochs": 1, "seed": 0, "val_ratio": 0.2, "input_size": 32}
    assert seen_in_train == [{"status": "training", "trained": False, "reason": "", "request": request}]
    wall = seen_in_eval[0].pop("train_wall_seconds")
    assert wall >= 0 and seen_in_eval == [{"status": "trained", "trained": True, "reason": "", "request": request}]
    state = _state(out)
    assert state["models"]["cnn_base"] == {"status": "ok", "trained": True, "reason": "", "request": request,
                                           "train_wall_seconds": wall}
    assert state["sections"] == sections
    # a failed training: exactly these keys, the request kept
    fakes.fail["cnn_bn"] = RuntimeError("boom")
    runner.compare(splits, models=["cnn_bn"], out=out, **OPTS)
    assert _state(out)["models"]["cnn_bn"] == {"status": "failed", "trained": False, "reason": "RuntimeError: boom",
                                               "request": request}
    assert _state(out)["sections"] == []  # each compare records its own sections


def test_console_lines_for_fresh_training_and_evaluation(splits, fakes, tmp_path, logged):
    runner.compare(splits, models=MODELS, out=tmp_path / "cmp", **OPTS)
    assert logged == ["[1/2] cnn_base: training", "[1/2] cnn_base: evaluating on val",
                             "[2/2] cnn_bn: training", "[2/2] cnn_bn: evaluating on val"]


def test_defaults_passed_to_training_and_evaluation(splits, fakes, tmp_path, monkeypatch):
    """Progress on and evaluation batches of 64 unless asked otherwise."""
    monkeypatch.chdir(tmp_path)
    runner.compare(splits, models=["cnn_base"], epochs=1, input_size=32)
    assert fakes.trained[0][1]["progress"] is True
    assert fakes.eval_kwargs == [{"data": splits, "split": "val", "batch_size": 64, "progress": True}]
    assert (tmp_path / "compare" / "state.json").is_file()  # OUT defaults to ./compare


def test_data_given_as_a_path_is_loaded_with_the_split_options(splits, fakes, tmp_path, monkeypatch):
    calls = []

    def fake_load(data, **kw):
        calls.append((data, kw))
        return splits

    monkeypatch.setattr(runner, "load_data", fake_load)
    runner.compare("photos/", models=["cnn_base"], out=tmp_path / "a", val_ratio=0.3, seed=5, epochs=1, progress=False)
    monkeypatch.setattr(runner, "sample_dir", lambda: "SAMPLE")
    runner.compare(None, models=["cnn_base"], out=tmp_path / "b", epochs=1, progress=False)
    assert calls == [("photos/", {"val_ratio": 0.3, "seed": 5, "progress": False}),
                     ("SAMPLE", {"val_ratio": 0.2, "seed": 0, "progress": False})]


def test_per_recipe_overrides_apply_to_their_recipe_only_and_are_checked(splits, fakes, tmp_path):
    out = tmp_path / "cmp"
    runner.compare(splits, models=MODELS, out=out, overrides={"cnn_bn": {"lr": 0.5}}, **OPTS)
    lrs = {m: kw.get("lr") for m, kw in fakes.trained}
    assert lrs == {"cnn_base": None, "cnn_bn": 0.5}
    assert _state(out)["models"]["cnn_bn"]["request"]["lr"] == 0.5 and "lr" not in _state(out)["models"]["cnn_base"]["request"]
    fakes.trained.clear()
    with pytest.raises(ConfigError, match=r"unknown training option\(s\): bogus, other$"):
        runner.compare(splits, models=MODELS, out=out, other=1, overrides={"cnn_bn": {"bogus": 1}}, **OPTS)
    with pytest.raises(ConfigError, match=r"--lr"):
        runner.compare(splits, models=MODELS, out=out, overrides={"cnn_bn": {"lr": -1.0}}, **OPTS)
    with pytest.raises(ConfigError, match=r"choose from quick, full$"):
        runner.compare(splits, preset="huge", out=out, progress=False)
    assert fakes.trained == []


def test_evaluation_uses_the_requested_split(fakes, tmp_path, splits):
    import dataclasses

    with_test = dataclasses.replace(splits, test=list(splits.val))
    runner.compare(with_test, models=["cnn_base"], out=tmp_path / "cmp", split="test", **OPTS)
    assert [kw["split"] for kw in fakes.eval_kwargs] == ["test"]
    assert _state(tmp_path / "cmp")["split"] == "test"
    assert all(d is with_test for d in fakes.data)  # training gets the scanned splits themselves
    # finished on the test split: reused (its test metrics exist; no val metrics are needed)
    runner.compare(with_test, models=["cnn_base"], out=tmp_path / "cmp", split="test", **OPTS)
    assert len(fakes.eval_kwargs) == 1 and len(fakes.trained) == 1


def test_check_requests_checks_each_recipe_with_its_own_overrides():
    runner.check_requests(["cnn_base", "cnn_bn"], {"lr": 0.01}, {"cnn_bn": {"epochs": 2}}, seed=0, val_ratio=0.2)
    with pytest.raises(ConfigError, match="--lr"):
        runner.check_requests(["cnn_base", "cnn_bn"], {}, {"cnn_bn": {"lr": -1.0}})
    with pytest.raises(ConfigError, match="^unknown training option: .*bogus"):
        runner.check_requests(["cnn_base"], {"bogus": 1})
