"""``transferlab train`` on the digits: the run folder, and one-line errors with exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from transferlab.cli import main


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))


def test_cli_train_writes_the_run_folder(digits_dir, tmp_path, capsys):
    rc = main(["train", str(digits_dir), "--model", "cnn_bn", "--epochs", "2", "--input-size", "32",
               "--batch-size", "64", "--run-dir", str(tmp_path / "runs"), "--name", "digits", "--early-stopping", "3",
               "--reduce-lr", "2", "--monitor", "val_acc", "--head", "64", "--dropout", "0.2", "--no-progress"])
    assert rc == 0
    run = tmp_path / "runs" / "digits"
    for f in ("config.json", "history.csv", "best.safetensors", "last.safetensors", "last_state.pt", "train.log"):
        assert (run / f).is_file(), f
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["monitor"] == "val_acc" and cfg["early_stopping"] == 3 and cfg["reduce_lr"] == 2
    assert cfg["head"] == [64] and cfg["dropout"] == [0.2]
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and f"run: {run}" in out
    # the same command again refuses; --resume on the finished run is a no-op
    assert main(["train", str(digits_dir), "--model", "cnn_bn", "--input-size", "32", "--run-dir", str(tmp_path / "runs"),
                 "--name", "digits", "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["train", str(digits_dir), "--model", "cnn_bn", "--run-dir", str(tmp_path / "runs"), "--name", "digits",
                 "--resume", "--no-progress"]) == 0


@pytest.mark.parametrize("args, needle", [
    (["--epochs", "many"], "--epochs must be an integer"),
    (["--lr", "fast"], "--lr must be a number"),
    (["--optimizer", "rmsprop"], "--optimizer"),
    (["--schedule", "poly"], "--schedule"),
    (["--freeze", "half"], "--freeze"),
    (["--monitor", "val_f1"], "--monitor"),
    (["--class-weights", "x,y"], "--class-weights"),
    (["--head", "256,abc"], "--head"),
    (["--val-ratio", "1.5"], "--val-ratio"),
    (["--amp", "fp8"], "--amp"),
    (["--model", "no_such_model"], "no_such_model"),
])
def test_cli_bad_values_exit_2_with_one_line(digits_dir, tmp_path, capsys, args, needle):
    rc = main(["train", str(digits_dir), "--model", "cnn_base", "--run-dir", str(tmp_path), "--no-progress", *args])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and needle in err


def test_cli_help_lists_the_training_flags():
    out = subprocess.run([sys.executable, "-m", "transferlab", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--fine-tune", "--unfreeze-from", "--feature-views", "--early-stopping", "--reduce-lr", "--resume",
                 "--class-weights", "--amp", "--channels-last"):
        assert flag in out.stdout


def test_every_training_option_has_a_flag():
    """A TrainConfig field without a CLI flag fails here instead of being silently unreachable."""
    import argparse
    import dataclasses

    from transferlab.commands import train as train_cmd
    from transferlab.training.config import TrainConfig

    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)
    opts = train_cmd.options_from_args(parser.parse_args(["--lr", "0.5", "--epochs", "3"]))
    assert set(opts) == {f.name for f in dataclasses.fields(TrainConfig)} - {"model"}
    assert opts["lr"] == 0.5 and opts["epochs"] == 3 and isinstance(opts["epochs"], int)
