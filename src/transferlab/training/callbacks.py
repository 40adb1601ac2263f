"""Training callbacks (Keras's names, Lightning's batch hooks and state keys).

A callback is any object with (some of) these methods; :class:`Callback` provides no-op defaults::

    on_train_begin(trainer)              # start of a training phase, and again after --resume
    on_epoch_begin(trainer, epoch)
    on_train_batch_begin(trainer, step)  # step 1, 2, ... of the epoch
    on_train_batch_end(trainer, step, logs)  # logs: loss (of the batch), images, lr
    on_epoch_end(trainer, epoch, logs)   # logs: epoch, train_loss, train_acc, val_loss, val_acc, lr, seconds
    on_train_end(trainer)                # end of a training phase
    state_dict() / load_state_dict(d)    # saved in last_state.pt after every epoch, restored on --resume,
    state_key: str                       # under this key (class name, + the monitored metric), so adding,
                                         # removing or reordering callbacks never hands one another's state
    stop_training: bool                  # set True to end the current phase after this epoch

``trainer`` is the :class:`transferlab.training.loop.Trainer`: ``trainer.model`` (the full model),
``trainer.optimizer``, ``trainer.phase`` (0, or 1 in the fine-tuning phase), ``trainer.is_main``
(rank 0) and ``trainer.save_checkpoint(path, epoch, logs)``. A new phase (``--fine-tune``) calls
``on_train_begin`` again with ``trainer.phase`` changed; EarlyStopping and ReduceLROnPlateau
start afresh there, ModelCheckpoint keeps its best across phases.
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch

from .. import runfolder
from .._callback import Callback  # the base class lives apart so that tracking subclasses it without torch
from ..errors import ConfigError


def _resolve_mode(monitor: str, mode: str) -> Literal["min", "max"]:
    if mode == "auto":
        return "max" if ("acc" in monitor or monitor.startswith("fmeasure")) else "min"
    if mode not in ("min", "max"):
        raise ConfigError(f"mode must be auto, min or max, got {mode!r}")
    return "max" if mode == "max" else "min"


def monitored_value(monitor: str, logs: dict[str, Any]) -> float:
    """``logs[monitor]`` as a float; a ConfigError naming the available metrics when it is missing."""
    if monitor not in logs:
        raise ConfigError(f"monitored metric {monitor!r} is not in the logs ({', '.join(logs)})")
    return float(logs[monitor])


class _Monitor:
    """Tracks the best value of one metric (with ``min_delta``)."""

    def __init__(self, monitor: str, mode: str, min_delta: float):
        self.monitor = monitor
        self.mode = _resolve_mode(monitor, mode)
        self.min_delta = abs(float(min_delta))
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None

    def value(self, logs: dict[str, Any]) -> float:
        return monitored_value(self.monitor, logs)

    def improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class _Monitored(Callback):
    """A callback that watches one metric through ``self._m`` (a :class:`_Monitor`)."""

    _m: _Monitor

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}[{self._m.monitor}]"

    @property
    def best(self) -> float:
        return self._m.best

    @property
    def best_epoch(self) -> int | None:
        return self._m.best_epoch


class EarlyStopping(_Monitored):
    """Stop a phase when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs. With ``restore_best_weights`` the model gets the best epoch's weights back at the end
    of the phase (whether it stopped early or ran out of epochs)."""

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", patience: int = 5,
                 min_delta: float = 0.0, restore_best_weights: bool = True):
        if int(patience) < 0:
            raise ConfigError(f"early-stopping patience must be >= 0, got {patience}")
        self.monitor, self.mode, self.min_delta = monitor, mode, min_delta
        self.patience = int(patience)
        self.restore_best_weights = restore_best_weights
        self._reset(phase=None)

    def _reset(self, phase: int | None) -> None:
        self._m = _Monitor(self.monitor, self.mode, self.min_delta)
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stop_training = False
        self._phase = phase

    def on_train_begin(self, trainer) -> None:
        if self._phase != trainer.phase:
            self._reset(trainer.phase)

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        value = self._m.value(logs)
        if self._m.improved(value):
            self._m.best, self._m.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.stop_training = True
            trainer.log(f"early stopping: {self.monitor} did not improve for {self.patience} epochs "
                        f"(best {self._m.best:.4f} at epoch {self._m.best_epoch})")

    def on_train_end(self, trainer) -> None:
        if self.restore_best_weights and self.best_weights is not None and self._m.best_epoch != trainer.epoch:
            trainer.model.load_state_dict(self.best_weights)
            trainer.log(f"restored the weights of epoch {self._m.best_epoch} ({self.monitor} {self._m.best:.4f})")

    def state_dict(self):
        return {"best": self._m.best, "best_epoch": self._m.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch, "stop_training": self.stop_training,
                "phase": self._phase, "best_weights": self.best_weights}

    def load_state_dict(self, state):
        self._m.best, self._m.best_epoch = state["best"], state["best_epoch"]
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]
        self.stop_training, self._phase = state["stop_training"], state["phase"]
        self.best_weights = state.get("best_weights")


class ModelCheckpoint(_Monitored):
    """Write ``last.safetensors`` after every epoch and ``best.safetensors`` whenever ``monitor``
    improves (atomically, through :func:`transferlab.checkpoint.save_model`; rank 0 only).
    The best is kept across fine-tuning phases."""

    def __init__(self, directory: str | Path, monitor: str = "val_loss", mode: str = "auto",
                 save_best: bool = True, save_last: bool = True, min_delta: float = 0.0):
        self.directory = Path(directory)
        self.save_best, self.save_last = save_best, save_last
        self._m = _Monitor(monitor, mode, min_delta)
        self.monitor = monitor

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        if self.save_last:
            trainer.save_checkpoint(runfolder.checkpoint_path(self.directory, "last"), epoch, logs)
        value = self._m.value(logs)
        if self._m.improved(value):
            self._m.best, self._m.best_epoch = value, epoch
            if self.save_best:
                trainer.save_checkpoint(runfolder.checkpoint_path(self.directory, "best"), epoch, logs)

    def state_dict(self):
        return {"best": self._m.best, "best_epoch": self._m.best_epoch}

    def load_state_dict(self, state):
        self._m.best, self._m.best_epoch = state["best"], state["best_epoch"]


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for ``patience``
    epochs (down to ``min_lr``), as in Keras. Wraps :class:`torch.optim.lr_scheduler.ReduceLROnPlateau`
    (whose ``patience`` counts one epoch more, so it gets ``patience - 1``); its state is saved and
    restored with the run."""

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}[{self.monitor}]"

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", factor: float = 0.1,
                 patience: int = 3, min_lr: float = 0.0, min_delta: float = 1e-4, cooldown: int = 0):
        if not 0.0 < float(factor) < 1.0:
            raise ConfigError(f"reduce-lr factor must be between 0 and 1, got {factor}")
        if int(patience) < 1:
            raise ConfigError(f"reduce-lr patience must be at least 1, got {patience}")
        self.monitor = monitor
        self.mode = _resolve_mode(monitor, mode)
        self.factor, self.patience, self.min_lr = float(factor), int(patience), float(min_lr)
        self.min_delta, self.cooldown = float(min_delta), int(cooldown)
        self.scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self._pending: dict | None = None
        self._phase = None

    def on_train_begin(self, trainer) -> None:
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            trainer.optimizer, mode=self.mode, factor=self.factor, patience=self.patience - 1,
            threshold=self.min_delta, threshold_mode="abs", cooldown=self.cooldown, min_lr=self.min_lr)
        if self._pending is not None and self._pending.get("phase") == trainer.phase:
            self.scheduler.load_state_dict(self._pending["scheduler"])
        self._pending = None
        self._phase = trainer.phase

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        value = monitored_value(self.monitor, logs)
        before = [g["lr"] for g in trainer.optimizer.param_groups]
        assert self.scheduler is not None, "on_train_begin makes the scheduler"
        self.scheduler.step(value)
        after = [g["lr"] for g in trainer.optimizer.param_groups]
        if after != before:
            trainer.log(f"reduce lr on plateau: {self.monitor} stalled for {self.patience} epochs, "
                        f"lr {before[0]:.3g} -> {after[0]:.3g}")

    def state_dict(self):
        sched = self.scheduler.state_dict() if self.scheduler is not None else None
        return {"phase": self._phase, "scheduler": copy.deepcopy(sched)}

    def load_state_dict(self, state):
        self._pending = state if state.get("scheduler") is not None else None


class TimeLimit(Callback):
    """End training cleanly before a wall-clock limit: after an epoch, if another epoch like it
    would end past ``seconds`` from ``start`` (default: now), the phase stops and no later phase
    starts. The checkpoints written so far (``best.safetensors`` by ``--monitor``) are kept; the
    first epoch always runs, so there is a model to keep."""

    def __init__(self, seconds: float, start: float | None = None):
        if not float(seconds) > 0:
            raise ConfigError(f"time limit must be positive, got {seconds}")
        self.seconds = float(seconds)
        self.deadline = (time.monotonic() if start is None else float(start)) + self.seconds
        self.expired = False
        self._epoch_start = 0.0

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def on_train_begin(self, trainer) -> None:
        self.stop_training = self.expired

    def on_epoch_begin(self, trainer, epoch) -> None:
        self._epoch_start = time.monotonic()

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        took = time.monotonic() - self._epoch_start
        if self.remaining() < took:
            self.expired = self.stop_training = True
            trainer.log(f"time limit: stopping after epoch {epoch} ({self.seconds:.0f} s budget; "
                        f"another epoch would take {took:.0f} s, {max(0.0, self.remaining()):.0f} s are left)")


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=lambda t, e, logs: print(logs))``."""

    def __init__(self, on_train_begin=None, on_epoch_begin=None, on_epoch_end=None, on_train_end=None):
        self._fns = {"on_train_begin": on_train_begin, "on_epoch_begin": on_epoch_begin,
                     "on_epoch_end": on_epoch_end, "on_train_end": on_train_end}

    def on_train_begin(self, trainer):
        if self._fns["on_train_begin"]:
            self._fns["on_train_begin"](trainer)

    def on_epoch_begin(self, trainer, epoch):
        if self._fns["on_epoch_begin"]:
            self._fns["on_epoch_begin"](trainer, epoch)

    def on_epoch_end(self, trainer, epoch, logs):
        if self._fns["on_epoch_end"]:
            self._fns["on_epoch_end"](trainer, epoch, logs)

    def on_train_end(self, trainer):
        if self._fns["on_train_end"]:
            self._fns["on_train_end"](trainer)
