"""Issue 13, "validate before spending time": every problem that can be known before training is
reported before the first model trains (exit 2, one line), a failed command leaves no run folder
behind, and a run folder being trained refuses a second writer."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from transferlab import runfolder
from transferlab.cli import main
from transferlab.errors import ConfigError
from transferlab.training import Callback, train

FAST = dict(input_size=32, progress=False)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """4 digit classes x 10 images, 32 px: enough for a one-epoch run in about a second."""
    from transferlab.data.sample import write_digits

    root = write_digits(tmp_path_factory.mktemp("small") / "digits", per_class=10, size=32)
    for d in [d for d in sorted(root.iterdir()) if d.is_dir()][4:]:
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
    return root


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    return err


# ---------------------------------------------------------------- compare: every name before training

def test_compare_typo_in_models_exits_2_before_any_training(small, tmp_path, capsys, monkeypatch):
    trained = []
    import transferlab.training as train_stage

    monkeypatch.setattr(train_stage, "train", lambda *a, **k: trained.append(k) or pytest.fail("trained"))
    out = tmp_path / "cmp"
    rc = main(["compare", str(small), "--models", "cnn_bn,nosuchmodel", "--epochs", "1", "--out", str(out),
               "--no-progress"])
    assert rc == 2
    err = one_error_line(capsys)
    assert "nosuchmodel" in err and "Known recipes:" in err and "cnn_bn" in err and "mobilenet_v2" in err
    assert trained == [] and not out.exists()  # nothing trained, nothing written


def test_compare_bad_option_exits_2_before_any_training(small, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(small), "--models", "cnn_base,cnn_bn", "--lr", "-1", "--out", str(out),
                 "--no-progress"]) == 2
    assert "--lr must be a positive number" in one_error_line(capsys)
    assert not out.exists()


# ---------------------------------------------------------------- train: the data problem first

@pytest.fixture
def taken_runs(tmp_path):
    """runs/cnn_bn already holds a run: a data problem must still be reported as the data problem."""
    runs = tmp_path / "runs"
    (runs / "cnn_bn").mkdir(parents=True)
    (runs / "cnn_bn" / "config.json").write_text("{}")
    return runs


def _train_cli(data, runs, *extra):
    return main(["train", str(data), "--model", "cnn_bn", "--run-dir", str(runs), "--no-progress", *extra])


def test_missing_data_is_not_found_even_when_the_run_folder_is_taken(tmp_path, taken_runs, capsys):
    assert _train_cli(tmp_path / "nonexistent", taken_runs) == 2
    err = one_error_line(capsys)
    assert "not found" in err and "nonexistent" in err and "already holds" not in err


def test_one_class_folder_is_reported_before_the_run_folder(small, tmp_path, taken_runs, capsys):
    one = tmp_path / "one"
    (one / "a").mkdir(parents=True)
    for f in sorted((small / "0").iterdir())[:5]:
        (one / "a" / f.name).write_bytes(f.read_bytes())
    assert _train_cli(one, taken_runs) == 2
    err = one_error_line(capsys)
    assert "only one class" in err and "already holds" not in err


def test_all_broken_folder_is_reported_before_the_run_folder(tmp_path, taken_runs, capsys):
    broken = tmp_path / "broken"
    for c in ("a", "b"):
        (broken / c).mkdir(parents=True)
        (broken / c / "x.png").write_bytes(b"")
        (broken / c / "y.jpg").write_bytes(b"not an image at all")
    assert _train_cli(broken, taken_runs) == 2
    err = one_error_line(capsys)
    assert "no readable images" in err and "already holds" not in err


def test_unfreeze_range_is_checked_before_phase_one(small, tmp_path, capsys):
    runs = tmp_path / "runs"
    rc = main(["train", str(small), "--model", "mobilenet_v1_025_tf", "--no-pretrained", "--input-size", "32",
               "--unfreeze-last", "99", "--fine-tune", "1", "--run-dir", str(runs), "--no-progress"])
    assert rc == 2
    captured = capsys.readouterr()
    assert "epoch 1/" not in captured.out and "phase 1/" not in captured.out  # nothing trained
    err = captured.err.strip()
    assert err.startswith("error:") and "unfreeze_last=99 is out of range" in err and "14 blocks" in err
    assert not runs.exists()  # and nothing left behind


# ---------------------------------------------------------------- no folder left behind on failure

class Boom(Callback):
    def on_epoch_begin(self, trainer, epoch):
        raise RuntimeError("boom")


def test_a_run_that_fails_before_its_first_epoch_leaves_nothing(small, tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="boom"):
        train(small, model="cnn_base", epochs=1, run_dir=runs, callbacks=[Boom()], **FAST)
    assert not (runs / "cnn_base").exists()


def test_overwrite_that_fails_leaves_no_half_run(small, tmp_path):
    runs = tmp_path / "runs"
    train(small, model="cnn_base", epochs=1, run_dir=runs, **FAST)
    with pytest.raises(RuntimeError, match="boom"):
        train(small, model="cnn_base", epochs=1, run_dir=runs, overwrite=True, callbacks=[Boom()], **FAST)
    # the old run was replaced and the new one never committed an epoch: nothing resumable remains,
    # in particular no config.json of the new run without its history
    assert not (runs / "cnn_base").exists() or not any((runs / "cnn_base").iterdir())


# ---------------------------------------------------------------- one writer per run folder

def test_a_second_writer_is_refused_while_the_first_trains(small, tmp_path, capsys):
    runs = tmp_path / "runs"
    run = train(small, model="cnn_base", epochs=1, run_dir=runs, **FAST)
    before = (run.dir / "history.csv").read_text()
    with runfolder.RunLock(run.dir):  # "the first writer": this process, alive, holds the folder
        with pytest.raises(ConfigError, match="being trained by another process"):
            train(small, model="cnn_base", epochs=2, run_dir=runs, resume=True, **FAST)
        rc = main(["train", str(small), "--model", "cnn_base", "--run-dir", str(runs), "--resume", "--no-progress"])
        assert rc == 2
        err = one_error_line(capsys)
        assert f"pid {os.getpid()}" in err and "another --name" in err
        assert (run.dir / runfolder.LOCK).is_file()  # the holder's lock is left alone
    assert (run.dir / "history.csv").read_text() == before  # and nothing was written into its folder
    assert not (run.dir / runfolder.LOCK).exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(small, tmp_path, capsys):
    runs = tmp_path / "runs"
    run = train(small, model="cnn_base", epochs=1, run_dir=runs, **FAST)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run.dir / runfolder.LOCK).write_text(f"{socket.gethostname()} {dead.pid} 2026-01-01T00:00:00\n")
    cfg = json.loads((run.dir / "config.json").read_text())
    resumed = train(small, model="cnn_base", epochs=cfg["epochs"], run_dir=runs, resume=True, **FAST)
    assert resumed.history and not (run.dir / runfolder.LOCK).exists()
    assert "being trained by another process" not in capsys.readouterr().out
