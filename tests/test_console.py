"""Issue 13, console: Ctrl-C says "interrupted" once (and the resume hint once), the inspect table's
title does not wrap at 80 columns, and ``transferlab run`` prints one step counter, the models it was
given and a formatted accuracy."""
from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from transferlab.cli import main


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from transferlab.data.sample import write_digits

    return write_digits(tmp_path_factory.mktemp("small") / "digits", per_class=12, size=32)


@pytest.mark.parametrize("at_epoch", [1, 2])
def test_ctrl_c_is_reported_once(small, tmp_path, capsys, monkeypatch, at_epoch):
    from transferlab.training.loop import Trainer

    real = Trainer.train_one_epoch

    def ctrl_c(self, epoch):
        if epoch == at_epoch:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(Trainer, "train_one_epoch", ctrl_c)
    rc = main(["train", str(small), "--model", "cnn_base", "--epochs", "3", "--input-size", "32",
               "--run-dir", str(tmp_path / "runs"), "--no-progress"])
    assert rc == 130
    captured = capsys.readouterr()
    both = captured.out + captured.err
    assert both.count("interrupted") == 1 and captured.err.strip() == "interrupted"
    if at_epoch == 1:
        assert both.count("nothing to resume") == 1
    else:
        assert both.count("1 completed epoch(s) are saved") == 1 and both.count("--resume") == 1


def test_inspect_table_title_does_not_wrap_at_80_columns(small):
    from transferlab.data.report import inspect_data, load_scanned, render_report

    report = inspect_data(load_scanned(small, progress=False))
    console = Console(width=80, file=io.StringIO(), record=True)
    for table in render_report(report):
        console.print(table)
    text = console.export_text()
    title = f"images per class (class-folders, {report['num_classes']} classes)"
    assert any(line.strip() == title for line in text.splitlines()), text[:400]
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80


def test_run_prints_one_step_counter_the_models_and_a_formatted_accuracy(small, tmp_path, capsys):
    rc = main(["run", str(small), "--out", str(tmp_path / "out"), "--models", "cnn_base", "--epochs", "1",
               "--no-doctor", "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    steps = re.findall(r"^step (\d+)/(\d+): ", out, re.M)
    assert [int(i) for i, _ in steps] == list(range(1, len(steps) + 1)) and {n for _, n in steps} == {str(len(steps))}
    assert not re.search(r"^\[\d+/\d+\] (inspect|train|export|writ)", out, re.M)  # no second counter for the steps
    assert "models: cnn_base" in out and "preset" not in out
    best = re.search(r"^best model: cnn_base \(accuracy (\S+)\)$", out, re.M)
    assert best and re.fullmatch(r"\d\.\d{4}", best.group(1)), out[-600:]
    assert not re.search(r"\d\.\d{6,}", out.split("step 1/")[1])  # no 0.9749303621169917 anywhere after the start
