"""One way out for messages (issue 24): loggers under ``transferlab``, a plain stdout handler by
default, the CLI's rich handler in its place, train.log while a run folder is held, quiet ranks > 0;
the trackers option is ``trackers`` (``--trackers``; ``--log`` still read); compare and run take
train's flags, derived from TrainConfig."""
from __future__ import annotations

import argparse
import logging

import pytest

from transferlab import _logging, cli
from transferlab.commands import compare as compare_cmd
from transferlab.commands import doctor as doctor_cmd
from transferlab.commands import inspect as inspect_cmd
from transferlab.commands import run as run_cmd
from transferlab.commands import train as train_cmd
from transferlab.commands import tune as tune_cmd
from transferlab.training.config import TrainConfig


def test_messages_reach_stdout_by_default_and_the_application_handlers_too(capsys, caplog):
    caplog.set_level(logging.INFO, logger="transferlab")
    logging.getLogger("transferlab.training").info("epoch 1/3 something")
    assert capsys.readouterr().out == "epoch 1/3 something\n"
    assert [r.getMessage() for r in caplog.records] == ["epoch 1/3 something"]  # propagated
    logging.getLogger("transferlab.training").debug("not shown")
    assert capsys.readouterr().out == ""


def test_the_cli_handler_replaces_the_default_one_for_the_command(capsys):
    logger = logging.getLogger("transferlab")
    before = list(logger.handlers)
    with _logging.cli_handler() as handler:
        assert handler in logger.handlers and not any(type(h) is _logging.StdoutHandler for h in logger.handlers)
        logging.getLogger("transferlab.x").warning("warning: a long line " + "x" * 300)
    assert logger.handlers == before
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.endswith("x" * 300 + "\n")  # one unwrapped line


def test_use_own_handlers_leaves_the_messages_to_the_application(capsys):
    logger = logging.getLogger("transferlab")
    saved = list(logger.handlers)
    try:
        _logging.use_own_handlers()
        logging.getLogger("transferlab.y").info("only for the application")
        assert capsys.readouterr().out == ""
    finally:
        logger.handlers[:] = saved


def test_a_rank_other_than_zero_says_only_warnings():
    logger = logging.getLogger("transferlab")
    level = _logging.quiet_below_warning()
    try:
        assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)
    finally:
        logger.setLevel(level)


def test_train_log_gets_what_the_loggers_say_while_the_folder_is_held(tmp_path):
    from transferlab.training import distributed as D
    from transferlab.training.folder import RunFolderGuard

    guard = RunFolderGuard(tmp_path / "run", D.DistInfo())
    (tmp_path / "run").mkdir()
    logging.getLogger("transferlab.data.cache").info("before: not ours")
    with guard.taken("new", overwrite=False):
        logging.getLogger("transferlab.data.cache").info("image cache: 3 images")
        logging.getLogger("transferlab.training").info("epoch 1/1")
        (tmp_path / "run" / "history.csv").write_text("epoch\n1\n")  # a committed epoch: the folder stays
    logging.getLogger("transferlab.training").info("after: released")
    assert (tmp_path / "run" / "train.log").read_text().splitlines() == ["image cache: 3 images", "epoch 1/1"]


def test_the_trackers_option_has_one_name_and_the_old_flag_and_config_key_still_work():
    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)
    assert parser.parse_args(["--log", "tensorboard"]).trackers == "tensorboard"
    assert parser.parse_args(["--trackers", "mlflow"]).trackers == "mlflow"
    assert "log" not in {f for f in TrainConfig.__dataclass_fields__}
    assert TrainConfig.from_dict({"model": "cnn_base", "log": ["tensorboard"]}).trackers == ["tensorboard"]


@pytest.mark.parametrize("command", [compare_cmd, run_cmd])
def test_compare_and_run_take_trains_flags_derived_not_copied(command):
    def options(module):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        return {a.dest: (a.option_strings, a.help, a.metavar, a.default) for a in parser._actions}

    train_flags, flags = options(train_cmd), options(command)
    for name in train_cmd.SHARED_OPTIONS:
        assert flags[name] == train_flags[name], name
    args = argparse.Namespace(**{**{n: None for n in train_cmd.SHARED_OPTIONS}, "lr": "0.01", "trackers": "tensorboard"})
    assert train_cmd.given_train_options(args) == {"lr": 0.01, "trackers": ["tensorboard"]}


def test_a_bad_shared_flag_value_is_one_line(capsys):
    assert cli.main(["compare", "/tmp", "--lr", "fast"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --lr")


def _flags(module) -> dict:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return {a.dest: (a.option_strings, a.help, a.metavar, a.default) for a in parser._actions}


@pytest.mark.parametrize("command", [inspect_cmd, doctor_cmd, tune_cmd])
def test_the_split_flags_of_inspect_doctor_and_tune_are_trains(command):
    flags, train_flags = _flags(command), _flags(train_cmd)
    for name in train_cmd.SPLIT_OPTIONS:
        assert flags[name] == train_flags[name], name
    none = argparse.Namespace(val_ratio=None, seed=None)
    assert train_cmd.split_options(none) == (0.2, 0)
    assert train_cmd.split_options(argparse.Namespace(val_ratio="0.3", seed="7")) == (0.3, 7)
    with pytest.raises(Exception, match="--seed"):
        train_cmd.split_options(argparse.Namespace(val_ratio=None, seed="x"))
