"""``transferlab tune``: the Optuna study on cached features, its resume after more trials or Ctrl-C,
best.json through ``train --config``, and one-line errors."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import optuna
import pytest

from transferlab import runfolder
from transferlab.cli import main
from transferlab.data import load_data
from transferlab.errors import ConfigError
from transferlab.models import get_recipe
from transferlab.training.config import TrainConfig
from transferlab.tune import (STUDY_FILE, STUDY_NAME, SearchSpace, TrialLine, Tuner, check_space, check_views,
                              keep_best_run, open_study, plan_sizes, tune)

from conftest import SHARED

WEIGHTS = SHARED / "weights" / "mobilenetv1_025_224_keras_stm32.pth" if SHARED else None


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tiny() -> dict:
    """The tiny recipe at 32 px: the shared 2 MB weights when present, else a random backbone."""
    if WEIGHTS is not None and WEIGHTS.is_file():
        return {"model": "mobilenet_v1_025_tf", "weights": str(WEIGHTS)}
    return {"model": "mobilenet_v1_025_tf", "pretrained": False}


def _cli_model_args(tiny: dict) -> list[str]:
    return ["--model", tiny["model"], "--input-sizes", "32", "--no-progress"] + (
        ["--weights", tiny["weights"]] if "weights" in tiny else ["--no-pretrained"])


def _study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{out / STUDY_FILE}")


def _finished(study) -> list:
    return [t for t in study.trials if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL]


def test_tune_writes_best_json_and_a_second_call_resumes(digits_dir, tmp_path, tiny, logged):
    out = tmp_path / "tune"
    r = tune(digits_dir, **tiny, input_sizes=[32], trials=2, out=out, progress=False)
    assert (out / "best.json").is_file() and (out / "report.html").is_file() and (out / "history.png").is_file()
    best = json.loads((out / "best.json").read_text())
    assert best == r["options"] and best["model"] == "mobilenet_v1_025_tf" and best["input_size"] == 32
    assert best["freeze"] == "frozen" and best["fine_tune"] == 0 and best["monitor"] == "val_acc"
    assert 0.0 <= r["value"] <= 1.0 and set(r["params"]) >= {"lr", "weight_decay", "head", "dropout",
                                                             "label_smoothing", "epochs", "input_size", "augment"}
    # trial 0 is the recipe's own defaults; the features were cached on disk
    first = _study(out).trials[0]
    assert first.user_attrs.get("defaults") and first.params["lr"] == pytest.approx(1e-3)
    assert list((out / "features").glob("*/val.npy"))
    assert len(_finished(_study(out))) == 2
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Optimisation history" in html

    lines = logged
    lines.clear()
    r2 = tune(digits_dir, **tiny, input_sizes=[32], trials=3, out=out, progress=False)
    study = _study(out)
    assert [t.number for t in study.trials] == [0, 1, 2] and len(_finished(study)) == 3
    assert study.trials[2].params not in (study.trials[0].params, study.trials[1].params)
    assert "has 2 finished trial(s), 1 to go" in lines[0]
    assert not any(line.startswith("features at") for line in lines)  # read back from OUT/features
    assert r2["value"] >= r["value"]
    trial_lines = [line for line in lines if line.startswith("trial ")]
    assert len(trial_lines) == 1 and "val_acc" in trial_lines[0] and "best" in trial_lines[0]
    # the same call again: nothing left to do
    lines.clear()
    tune(digits_dir, **tiny, input_sizes=[32], trials=3, out=out, progress=False)
    assert len(_study(out).trials) == 3 and any("raise --trials" in line for line in lines)
    # another search in the same folder is refused
    with pytest.raises(Exception, match="holds another search"):
        tune(digits_dir, **tiny, input_sizes=[32, 48], trials=4, out=out, progress=False)


def test_best_json_trains_with_train_config_and_reproduces_the_value(digits_dir, tmp_path, tiny, capsys):
    out = tmp_path / "tune"
    r = tune(digits_dir, **tiny, input_sizes=[32], trials=2, out=out, progress=False)
    runs = tmp_path / "runs"
    assert main(["train", str(digits_dir), "--config", str(out / "best.json"), "--run-dir", str(runs),
                 "--no-progress"]) == 0
    cfg = json.loads((runs / "mobilenet_v1_025_tf" / "config.json").read_text())
    for key, value in r["options"].items():
        assert cfg[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    # the tuned figure is what train gets: same features, head init, order and schedule
    history = runfolder.read_history(runs / "mobilenet_v1_025_tf")
    assert max(float(h["val_acc"]) for h in history) == pytest.approx(r["value"], abs=1e-6)

    # flags given on the command line win over the file
    from transferlab.commands import train as train_cmd
    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)
    args = parser.parse_args([str(digits_dir), "--config", str(out / "best.json"), "--epochs", "3", "--lr", "0.5"])
    train_cmd.apply_config_file(args)
    opts = train_cmd.options_from_args(args)
    assert opts["epochs"] == 3 and opts["lr"] == 0.5
    assert opts["weight_decay"] == pytest.approx(r["options"]["weight_decay"]) and opts["head"] == r["options"]["head"]
    assert args.model == "mobilenet_v1_025_tf"


@pytest.mark.parametrize("content, needle", [
    ('{"lr": 0.01, "learning_rate": 1}', "unknown training option(s) learning_rate"),
    ('[1, 2]', "JSON object"),
    ('{"lr": ', "not a JSON file"),
    ('{"epochs": "many"}', "--epochs must be an integer"),
])
def test_train_config_errors_are_one_line(digits_dir, tmp_path, capsys, content, needle):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    rc = main(["train", str(digits_dir), "--config", str(bad), "--run-dir", str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and "\n" not in err and needle in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, needle", [
    (["--trials", "0"], "--trials must be at least 1"),
    (["--trials", "many"], "--trials must be a whole number"),
    (["--budget", "5x"], "--budget must be a duration"),
    (["--input-sizes", "32,big"], "--input-sizes"),
    (["--input-sizes", "16,32"], "--input-sizes must be integers of at least 32"),  # the one minimum (choices)
    (["--model", "no_such_model"], "no_such_model"),
    (["--model", "cnn_bn"], "--space full"),
])
def test_tune_bad_values_exit_2_with_one_line(digits_dir, tmp_path, capsys, args, needle):
    rc = main(["tune", str(digits_dir), "--out", str(tmp_path / "t"), "--no-progress", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error:") and "\n" not in err and needle in err


def test_tune_missing_data_is_one_line(tmp_path, capsys):
    assert main(["tune", str(tmp_path / "nowhere"), "--out", str(tmp_path / "t"), "--trials", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "not found" in err


def test_ctrl_c_leaves_a_resumable_study(digits_dir, tmp_path, tiny, capsys, monkeypatch):
    out = tmp_path / "tune"
    argv = ["tune", str(digits_dir), "--trials", "3", "--out", str(out), *_cli_model_args(tiny)]
    real = Tuner.head_trial
    calls = {"n": 0}

    def interrupted_after_one(self, trial, params):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, trial, params)

    monkeypatch.setattr(Tuner, "head_trial", interrupted_after_one)
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("interrupted:") and "transferlab tune" in err and str(out) in err
    study = _study(out)
    assert len(_finished(study)) == 1 and study.trials[1].state == optuna.trial.TrialState.FAIL
    assert (out / "best.json").is_file()  # written from what finished

    monkeypatch.setattr(Tuner, "head_trial", real)
    assert main(argv) == 0
    study = _study(out)
    assert len(_finished(study)) == 3 and len(study.trials) == 4
    numbers = [t.params for t in _finished(study)]
    assert all(numbers.count(p) == 1 for p in numbers)


def test_full_space_runs_real_training_and_keeps_the_best_run(digits_dir, tmp_path, tiny):
    out = tmp_path / "full"
    r = tune(digits_dir, **tiny, input_sizes=[32], trials=2, space="full", out=out, progress=False)
    study = _study(out)
    assert len(_finished(study)) == 2 and "unfreeze_last" in study.trials[0].params
    kept = sorted(p.name for p in (out / "trials").iterdir())
    assert kept == [f"trial-{r['trial']:03d}"]  # only the best trial's run folder stays
    cfg = json.loads((out / "trials" / kept[0] / "config.json").read_text())
    assert cfg["lr"] == pytest.approx(r["options"]["lr"]) and cfg["augment"] == r["options"]["augment"]


# ---- the package's pieces, without training ------------------------------------------------------------
def _space(digits_dir, space="head", views=2, backbone=None) -> SearchSpace:
    recipe = get_recipe("mobilenet_v1_025_tf")
    splits = load_data(digits_dir, progress=False)
    sizes, crops = plan_sizes(recipe, splits, [32])
    base = TrainConfig(model=recipe.name, pretrained=False)

    def no_backbone(size):
        raise AssertionError("the head space needs no backbone to draw or convert params")
    return SearchSpace(recipe, base, space, splits, sizes=sizes, crops=crops, views=views,
                       backbone=backbone or no_backbone)


def test_option_checks_are_one_line_config_errors():
    assert check_space("full") == "full" and check_views("3") == 3
    with pytest.raises(ConfigError, match="unknown --space 'all'"):
        check_space("all")
    with pytest.raises(ConfigError, match="--views must be at least 1"):
        check_views(0)
    with pytest.raises(ConfigError, match="--views must be a whole number"):
        check_views("two")


def test_plan_sizes_keeps_the_recipes_minimum_and_the_crop_train_picks(digits_dir):
    recipe = get_recipe("mobilenet_v1_025_tf")
    splits = load_data(digits_dir, progress=False)
    size, crop = recipe.input_for(splits.typical_side())
    sizes, crops = plan_sizes(recipe, splits, None)
    assert size in sizes and len(sizes) <= 2 and crops == {s: crop for s in sizes}
    assert plan_sizes(recipe, splits, [1]) == ([max(size, recipe.min_input_size)],
                                               {max(size, recipe.min_input_size): crop})


def test_search_space_turns_params_into_the_train_options_of_best_json(digits_dir):
    space = _space(digits_dir, views=3)
    defaults = space.default_params()
    assert defaults["lr"] == pytest.approx(1e-3) and defaults["input_size"] == 32
    o = space.options({**defaults, "augment": "shift", "head": 128, "dropout": 0.2})
    assert o["model"] == "mobilenet_v1_025_tf" and o["head"] == [128] and o["dropout"] == [0.2]
    assert o["freeze"] == "frozen" and o["fine_tune"] == 0 and o["feature_views"] == 3
    assert o["batch_size"] == space.batch_size and o["pretrained"] is False and "weights" not in o
    cfg = space.trial_config(defaults)
    assert cfg.input_size == 32 and cfg.batch_size == space.batch_size and cfg.epochs == defaults["epochs"]


def test_full_space_asks_the_backbone_for_its_unfreeze_depths(digits_dir):
    from transferlab.models import create_model

    asked = []

    def backbone(size):
        asked.append(size)
        return create_model("mobilenet_v1_025_tf", 10, pretrained=False, input_size=size)
    space = _space(digits_dir, space="full", backbone=backbone)
    choices = space.unfreeze_choices()
    assert asked == [32] and choices[0] == 0 and 1 in choices
    o = space.options({"unfreeze_last": choices[-1], "fine_tune": 2, "fine_tune_lr": 1e-4})
    assert o["fine_tune"] == 2 and o["unfreeze_last"] == choices[-1] and "feature_views" not in o


def _completed(study, value: float) -> None:
    study.add_trial(optuna.trial.create_trial(
        value=value, params={"lr": 0.001}, distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 0.1)}))


def test_open_study_refuses_another_search_in_the_same_folder(tmp_path):
    mine = {"model": "m", "data": "/d", "space": "head", "seed": 0, "val_ratio": 0.2, "input_sizes": [32], "views": 2}
    study = open_study(tmp_path, mine, seed=0, trials=4, group=False)
    assert study.user_attrs == mine and (tmp_path / STUDY_FILE).is_file()
    _completed(study, 0.5)
    assert len(open_study(tmp_path, mine, seed=0, trials=4, group=False).trials) == 1
    with pytest.raises(ConfigError, match=r"holds another search \(seed 0 \(now 1\)\)"):
        open_study(tmp_path, {**mine, "seed": 1}, seed=1, trials=4, group=False)


def test_trial_line_and_keep_best_run(tmp_path, logged):
    study = optuna.create_study(direction="maximize")
    lines = logged
    first, second = tmp_path / "trial-000", tmp_path / "trial-001"
    first.mkdir()
    assert keep_best_run(study, first, 0.5, None) == first  # nothing finished yet: the first is the best
    _completed(study, 0.5)
    TrialLine(3)(study, study.trials[0])
    assert lines == ["trial 0 [1/3]  lr=0.001  val_acc 0.5000  0.0s  best 0.5000 (trial 0)"]
    second.mkdir()
    assert keep_best_run(study, second, 0.4, first) == first and not second.exists()  # worse: removed
    second.mkdir()
    assert keep_best_run(study, second, 0.6, first) == second and not first.exists()  # better: the old one goes
