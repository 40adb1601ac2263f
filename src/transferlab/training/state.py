"""The resume state of a run: ``last_state.pt`` (with ``history.csv``), written after every epoch.

:class:`StateWriter` commits it (rank 0); :func:`saved_state` reads it back for ``resume=True`` and
:func:`restore` puts the history, the weights and the callbacks' states back. The random number
generators are part of it (:func:`rng_state`), so a resumed run draws what the killed run would have.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import runfolder
from ..errors import ConfigError

STATE_VERSION = 1


def _keys(callbacks: list) -> list[str]:
    """Each callback's ``state_key``, made unique by order (``Key#2`` for the second of a kind)."""
    seen: dict[str, int] = {}
    keys = []
    for cb in callbacks:
        key = getattr(cb, "state_key", type(cb).__name__)
        seen[key] = seen.get(key, 0) + 1
        keys.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return keys


def callback_states(callbacks: list) -> dict[str, dict]:
    """The callbacks' states for the resume state, each under its key (not its place in the list)."""
    return {key: cb.state_dict() for key, cb in zip(_keys(callbacks), callbacks) if hasattr(cb, "state_dict")}


def load_callback_states(callbacks: list, states) -> None:
    """Give each callback the state saved under its key (a list, from states of version 1: by place)."""
    if isinstance(states, list):
        states = dict(zip(_keys(callbacks), states))
    for key, cb in zip(_keys(callbacks), callbacks):
        if states.get(key) is not None and hasattr(cb, "load_state_dict"):
            cb.load_state_dict(states[key])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(loader) -> dict[str, Any]:
    gen = getattr(loader, "generator", None)
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "loader": gen.get_state() if gen is not None else None}


def set_rng_state(state: dict[str, Any], loader) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    gen = getattr(loader, "generator", None)
    if gen is not None and state.get("loader") is not None:
        gen.set_state(state["loader"])


def saved_state(run_dir: Path, mode: str, classes: list[str]) -> dict[str, Any] | None:
    """The state to resume from (``mode`` from :func:`transferlab.runfolder.check_run_dir`), None for
    a new run; a ConfigError when the data's classes are not the run's."""
    state = runfolder.load_state(run_dir) if mode == "resume" else None
    if state is not None and state["classes"] != list(classes):
        raise ConfigError(f"cannot resume {run_dir}: the data's classes differ from the run's")
    return state


def restore(state: dict[str, Any], model, callbacks: list, history: list[dict[str, Any]]) -> None:
    """The saved history (into ``history``), weights and callback states back in place."""
    history[:] = list(state["history"])
    model.load_state_dict(state["model"])
    load_callback_states(callbacks, state["callbacks"])


class StateWriter:
    """Commits the run state (rank 0): ``history.csv`` and ``last_state.pt``, from which the run can
    resume. ``phase_end`` (the global epoch the current phase ends at) is set by the phase runner."""

    def __init__(self, run_dir: Path, model, classes: list[str], callbacks: list, history: list[dict[str, Any]],
                 *, is_main: bool):
        self.run_dir = run_dir
        self.model = model
        self.classes = classes
        self.callbacks = callbacks
        self.history = history
        self.is_main = is_main
        self.phase_end: int | None = None

    def commit(self, trainer, *, phase: int, phase_finished: bool, finished: bool = False) -> None:
        """Write history.csv and last_state.pt (rank 0): the run can resume from here. ``trainer``
        (None after the last phase) gives the optimizer, the schedule and the loader's generator."""
        if not self.is_main:
            return
        state = {
            "version": STATE_VERSION,
            "epoch": self.history[-1]["epoch"] if self.history else 0,
            "phase": phase, "phase_finished": phase_finished, "finished": finished,
            "phase_end": self.phase_end,
            "classes": self.classes,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},  # saved at once
            "optimizer": trainer.optimizer.state_dict() if trainer else None,
            "scheduler": trainer.scheduler.state_dict() if trainer and trainer.scheduler else None,
            "callbacks": callback_states(self.callbacks),
            "rng": rng_state(trainer.train_loader if trainer else None),
            "history": list(self.history),
        }
        runfolder.write_history(self.run_dir, self.history)
        runfolder.save_state(self.run_dir, state)
