"""The collaborators of a training session, each on its own, without training: the run folder's guard
(train.folder), the resume state (train.state), the phase runner's phase loop (train.phases) and the
loop's Runtime (train.loop)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from transferlab import runfolder
from transferlab.errors import ConfigError
from transferlab.training.callbacks import TimeLimit
from transferlab.training.distributed import DistInfo
from transferlab.training.folder import RunFolderGuard
from transferlab.training.loop import Runtime, Trainer
from transferlab.training.phases import Phase, PhaseRunner
from transferlab.training.state import StateWriter, restore, saved_state


def test_guard_removes_what_a_failed_start_wrote_and_keeps_a_committed_run(tmp_path):
    run = tmp_path / "runs" / "a"
    guard = RunFolderGuard(run, DistInfo())
    assert guard.check(resume=False, overwrite=False) == "new" and not guard.held
    guard.append_log("before")  # not ours yet: nothing written
    assert not run.exists()
    with pytest.raises(RuntimeError), guard.taken("new", overwrite=False):
        assert guard.held
        guard.append_log("started")
        assert (run / "train.log").read_text().strip() == "started"
        raise RuntimeError("failed before the first epoch")
    assert not run.exists() and not guard.held

    guard = RunFolderGuard(run, DistInfo())
    with pytest.raises(RuntimeError), guard.taken("new", overwrite=False):
        runfolder.save_state(run, {"history": []})  # an epoch was committed: the run is resumable
        raise RuntimeError("failed later")
    assert runfolder.has_state(run) and not guard.held


def test_guard_empties_the_folder_for_overwrite(tmp_path):
    run = tmp_path / "a"
    run.mkdir()
    (run / "config.json").write_text("{}")
    guard = RunFolderGuard(run, DistInfo())
    assert guard.check(resume=False, overwrite=True) == "new"
    with guard.taken("new", overwrite=True):
        assert [p.name for p in run.iterdir() if p.name != runfolder.LOCK] == []
    assert not guard.held


def test_state_writer_commits_what_restore_puts_back(tmp_path):
    model, history = nn.Linear(2, 2), [{"epoch": 1, "val_loss": 0.5}]
    writer = StateWriter(tmp_path, model, ["a", "b"], [TimeLimit(60)], history, is_main=True)
    writer.phase_end = 3
    writer.commit(None, phase=0, phase_finished=False)
    state = saved_state(tmp_path, "resume", ["a", "b"])
    assert (state["epoch"], state["phase_end"], state["optimizer"]) == (1, 3, None)
    assert saved_state(tmp_path, "new", ["a", "b"]) is None
    with pytest.raises(ConfigError, match="classes differ"):
        saved_state(tmp_path, "resume", ["a", "c"])
    other, restored = nn.Linear(2, 2), []
    restore(state, other, [], restored)
    assert restored == history and torch.equal(other.weight, model.weight)
    StateWriter(tmp_path / "rank1", model, [], [], history, is_main=False).commit(None, phase=0, phase_finished=True)
    assert not (tmp_path / "rank1").exists()  # only rank 0 writes


def test_an_expired_time_limit_starts_no_further_phase(tmp_path, logged):
    limit = TimeLimit(60)
    limit.expired = True
    said, history = logged, [{"epoch": 1}]
    writer = StateWriter(tmp_path, nn.Linear(2, 2), ["a", "b"], [limit], history, is_main=True)
    runner = PhaseRunner(None, writer.model, {}, {}, [limit], Runtime(), history, writer, None)
    runner.run_all([Phase(0, 1, 0.1, "frozen"), Phase(1, 1, 0.01, "full")],
                   {"phase": 0, "phase_finished": True})
    assert said == ["time limit: phase 2 not started; the run ends with what it has"]
    state = runfolder.load_state(tmp_path)
    assert (state["phase"], state["phase_finished"], state["finished"]) == (1, True, True)


def test_trainer_takes_where_and_how_from_its_runtime():
    net = nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    trainer = Trainer(net, net, [], [], optimizer=opt,
                      runtime=Runtime(device="cpu", amp="bf16", channels_last=True, progress=True))
    assert (trainer.device, trainer.amp, trainer.channels_last, trainer.progress) == \
        (torch.device("cpu"), "bf16", True, True)
    plain = Trainer(net, net, [], [], optimizer=opt)
    assert (plain.amp, plain.channels_last, plain.dist.world_size, plain.runtime.verbose) == ("none", False, 1, True)
