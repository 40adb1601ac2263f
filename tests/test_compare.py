"""compare() end to end: two tiny recipes on the digits sample, resume without retraining,
skip/fail isolation, the CLI, and the HTML report opened in headless Chromium."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess

import pytest

import transferlab
import transferlab.training as train_module
from conftest import chromium
from transferlab.cli import main
from transferlab.errors import WeightsError

MODELS = ["cnn_base", "cnn_bn"]


@pytest.fixture(scope="module")
def compared(digits_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "cmp"
    rows = transferlab.compare(digits_dir, models=",".join(MODELS), out=out, epochs=1, input_size=32,
                               batch_size=32, progress=False)
    return out, rows


def test_compare_writes_leaderboard_and_reports(compared):
    out, rows = compared
    assert sorted(r["model"] for r in rows) == sorted(MODELS)
    assert all(r["status"] == "ok" for r in rows)
    assert sum(r["best"] for r in rows) == 1 and rows[0]["best"]
    assert rows[0]["accuracy"] >= rows[1]["accuracy"]
    for r in rows:
        assert r["epochs"] == 1 and r["params"] > 0 and r["size_mb"] > 0 and r["train_seconds"] > 0
        assert r["ms_per_image"] > 0
        # each row is its run's evaluation and history
        run = out / "runs" / r["model"]
        m = json.loads((run / "eval-val" / "metrics.json").read_text())
        assert m["num_samples"] == 60
        assert (r["accuracy"], r["f1_macro"], r["auc_macro"]) == (m["accuracy"], m["macro_avg"]["f1"], m["roc_auc"]["macro"])
        (last,) = transferlab.training.Run.load(run).history
        assert r["train_val_gap"] == pytest.approx(last["train_acc"] - last["val_acc"])
        assert r["accuracy"] == pytest.approx(last["val_acc"])  # evaluation agrees with training's validation
    with (out / "leaderboard.csv").open() as f:
        assert sorted(r["model"] for r in csv.DictReader(f)) == sorted(MODELS)
    assert len(json.loads((out / "leaderboard.json").read_text())["rows"]) == 2
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    for name in MODELS:
        assert f">{name}" in html and name in md


def _mtimes(out):
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns
            for name in MODELS for p in (out / "runs" / name).rglob("*") if p.is_file()}


def test_resume_does_not_retrain_and_isolates_failures(compared, digits_dir, monkeypatch):
    out, _ = compared
    before = _mtimes(out)
    calls = []

    def fake_train(data, model="", **kwargs):
        calls.append(model)
        if model == "efficientnet_b0":
            raise WeightsError("no pretrained weights for 'efficientnet_b0' offline")
        raise RuntimeError("boom")

    monkeypatch.setattr(train_module, "train", fake_train)
    rows = transferlab.compare(digits_dir, models=MODELS + ["efficientnet_b0", "resnet_scratch"], out=out,
                               epochs=1, input_size=32, batch_size=32, progress=False)
    assert calls == ["efficientnet_b0", "resnet_scratch"]  # the finished recipes were reused
    assert _mtimes(out) == before                            # not even re-evaluated
    by = {r["model"]: r for r in rows}
    assert by["efficientnet_b0"]["status"] == "skipped" and "offline" in by["efficientnet_b0"]["reason"]
    assert by["resnet_scratch"]["status"] == "failed" and "boom" in by["resnet_scratch"]["reason"]
    assert all(by[m]["status"] == "ok" for m in MODELS)
    assert by["efficientnet_b0"]["run_dir"] is None and by["resnet_scratch"]["run_dir"] is None
    assert all((out / "runs" / m).samefile(by[m]["run_dir"]) for m in MODELS)
    assert {r["model"] for r in rows[-2:]} == {"efficientnet_b0", "resnet_scratch"}  # not-ok rows sort last
    html = (out / "report.html").read_text()
    assert "efficientnet_b0" in html and "skipped" in html

    # an evaluation lost after training (interrupted compare): re-evaluated, not retrained
    metrics = out / "runs" / "cnn_bn" / "eval-val" / "metrics.json"
    metrics.unlink()
    rows = transferlab.compare(digits_dir, models=MODELS, out=out, epochs=1, input_size=32, batch_size=32,
                               progress=False)
    assert calls == ["efficientnet_b0", "resnet_scratch"]
    assert metrics.is_file() and all(r["status"] == "ok" for r in rows)
    assert (out / "runs" / "cnn_bn" / "best.safetensors").stat().st_mtime_ns == before["runs/cnn_bn/best.safetensors"]


def test_compare_cli_reuses_finished_runs(compared, digits_dir, monkeypatch, capsys):
    out, _ = compared
    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("a finished recipe was retrained"))
    rc = main(["compare", str(digits_dir), "--models", ",".join(MODELS), "--epochs", "1", "--input-size", "32",
               "--batch-size", "32", "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "reusing" in text and all(m in text for m in MODELS)


class _Trained(Exception):
    pass


def _recording_train(calls):
    def fake_train(data, model="", **kwargs):
        calls.append((model, kwargs))
        raise _Trained(model)

    return fake_train


BASE = dict(epochs=1, input_size=32, batch_size=32)


@pytest.mark.parametrize("change", [{"epochs": 3}, {"lr": 0.01}, {"batch_size": 16}, {"input_size": 40},
                                    {"seed": 1}, {"val_ratio": 0.3}, {"augment": "light"}])
def test_a_changed_option_trains_again_instead_of_reusing(compared, digits_dir, tmp_path, monkeypatch, change):
    """A finished run is reused only for the same request: another number of epochs (or lr, batch size,
    seed, ...) trains from scratch, not resumed from the finished run."""
    out = shutil.copytree(compared[0], tmp_path / "cmp")
    calls = []
    monkeypatch.setattr(train_module, "train", _recording_train(calls))
    rows = transferlab.compare(digits_dir, models=MODELS, out=out, progress=False, **{**BASE, **change})
    assert [m for m, _ in calls] == MODELS
    for _, kw in calls:
        assert kw.get("overwrite") is True and not kw.get("resume")
        assert {k: kw[k] for k in change if k in kw} == {k: v for k, v in change.items() if k in kw}
        assert kw.get("epochs") == change.get("epochs", 1)
    assert all(r["status"] == "failed" and "_Trained" in r["reason"] for r in rows)


def test_options_that_do_not_change_the_model_reuse(compared, digits_dir, tmp_path, monkeypatch):
    out = shutil.copytree(compared[0], tmp_path / "cmp")
    calls = []
    monkeypatch.setattr(train_module, "train", _recording_train(calls))
    rows = transferlab.compare(digits_dir, models=MODELS, out=out, progress=False, workers=0, threads=1, **BASE)
    assert calls == [] and all(r["status"] == "ok" for r in rows)


def test_retrain_trains_finished_recipes_again(compared, digits_dir, tmp_path, monkeypatch, capsys):
    out = shutil.copytree(compared[0], tmp_path / "cmp")
    calls = []
    monkeypatch.setattr(train_module, "train", _recording_train(calls))
    args = ["compare", str(digits_dir), "--models", ",".join(MODELS), "--epochs", "1", "--input-size", "32",
            "--batch-size", "32", "--out", str(out), "--no-progress"]
    assert main(args) == 0 and calls == []  # finished: reused
    assert main([*args, "--retrain"]) == 1  # every recipe trained again (and here failed)
    assert [m for m, _ in calls] == MODELS
    assert all(kw.get("overwrite") is True and not kw.get("resume") for _, kw in calls)
    assert "reusing" in capsys.readouterr().out


def test_report_only_cli(compared, tmp_path, capsys):
    out = shutil.copytree(compared[0], tmp_path / "cmp")
    (out / "report.html").unlink()
    assert main(["compare", "--report-only", "--out", str(out), "--metric", "f1_macro"]) == 0
    assert (out / "report.html").is_file()
    assert "Leaderboard" in capsys.readouterr().out
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["metric"] == "f1_macro"
    f1 = [r["f1_macro"] for r in board["rows"]]
    assert f1 == sorted(f1, reverse=True) and board["rows"][0]["best"]


@pytest.mark.browser
def test_report_images_load_in_headless_chromium(compared, headless_chrome):
    out, _ = compared
    browser = headless_chrome
    browser.get((out / "report.html").resolve().as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight]);")
    text = browser.find_element("tag name", "body").text
    assert len(images) >= 3 + len(MODELS)
    broken = [alt for alt, complete, w, h in images if not (complete and w > 0 and h > 0)]
    assert not broken, f"images that did not load: {broken}"
    for name in MODELS:
        assert name in text


@pytest.mark.browser
def test_chromium_dump_dom(compared, tmp_path):
    """The plain command-line check (no selenium): Chromium parses the report offline."""
    out, _ = compared
    proc = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
         "--dump-dom", (out / "report.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert "Leaderboard" in proc.stdout and proc.stdout.count("data:image/png;base64,") >= 3


def test_interrupted_training_resumes(digits_dir, tmp_path):
    from transferlab.training import LambdaCallback

    out = tmp_path / "cmp"
    begun = []

    def stop_in_second_epoch(trainer, epoch):
        begun.append(epoch)
        if len(begun) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        transferlab.compare(digits_dir, models="cnn_base", out=out, epochs=2, input_size=32, progress=False,
                            callbacks=[LambdaCallback(on_epoch_begin=stop_in_second_epoch)])
    state = json.loads((out / "state.json").read_text())
    assert state["models"]["cnn_base"]["status"] == "training"
    rows = transferlab.compare(digits_dir, models="cnn_base", out=out, epochs=2, input_size=32, progress=False)
    assert rows[0]["status"] == "ok" and rows[0]["epochs"] == 2
    assert "resum" in (out / "runs" / "cnn_base" / "train.log").read_text().lower()
