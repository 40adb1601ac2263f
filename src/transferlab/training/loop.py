"""The training loop: :class:`Trainer` runs epochs of one training phase.

It is deliberately plain (in the spirit of torchvision's ``references/classification/train.py``):
``train_one_epoch`` then ``evaluate`` then the epoch schedule step, the callbacks, and a commit
hook that writes the run state after every epoch but the phase's last (the caller commits that one
after ``on_train_end``, once EarlyStopping has restored the best weights). What the loop runs
(``net``) may be the whole model or, with feature caching, just the part above the frozen
backbone; checkpoints are always of the full ``model``, which shares its parameters with ``net``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import TextColumn
from torch import nn

from .. import _progress
from ..precision import autocast, training_amp
from ..checkpoint import save_model
from .callbacks import Callback
from .losses import count_correct, plain_loss_sum
from .distributed import DistInfo, all_reduce_sum
from .schedule import current_lr

logger = logging.getLogger("transferlab.training")


@dataclass
class Runtime:
    """Where and how a loop runs, apart from what it trains: the device, the DDP group (``dist``),
    the autocast precision (``amp``), the memory format of the input batches, and the output (a
    progress bar and a log, both on rank 0 only). :func:`transferlab.training.train` builds one per run
    and hands it to every phase's :class:`Trainer`."""

    device: torch.device | str = "cpu"
    dist: DistInfo = field(default_factory=DistInfo)
    amp: str = "none"
    channels_last: bool = False
    progress: bool = True
    verbose: bool = True  # say the epoch lines (a tuning trial's trainer does not)


class Trainer:
    """Runs the epochs of one phase: ``model`` is what checkpoints hold, ``net`` what the loop runs
    (the model or, on cached features, its part above the frozen backbone); ``runtime`` says where
    and how (see :class:`Runtime`). ``history`` is the run's, appended to; ``phase`` and
    ``total_epochs`` (for the epoch line) say where this phase sits in the run; ``meta`` goes into
    every checkpoint; ``commit(trainer)`` writes the run state after every epoch but the last."""

    def __init__(self, model: nn.Module, net: nn.Module, train_loader, val_loader, *,
                 optimizer: torch.optim.Optimizer, scheduler=None, criterion: nn.Module | None = None,
                 callbacks: Sequence[Callback] = (), runtime: Runtime | None = None,
                 history: list[dict[str, Any]] | None = None, phase: int = 0, total_epochs: int | None = None,
                 meta: dict[str, Any] | None = None, commit: Callable[["Trainer"], None] | None = None,
                 multilabel: bool = False):
        self.model = model
        self.net = net
        self.train_loader, self.val_loader = train_loader, val_loader
        self.optimizer, self.scheduler = optimizer, scheduler
        self.criterion = criterion or nn.CrossEntropyLoss()
        self.runtime = runtime = runtime or Runtime()
        self.device = torch.device(runtime.device)
        self.dist = runtime.dist
        self.amp = runtime.amp
        self.channels_last = runtime.channels_last
        self.progress = runtime.progress and self.dist.is_main
        self.callbacks = list(callbacks)
        self.history = history if history is not None else []
        self.phase = phase
        self.total_epochs = total_epochs
        self.meta = dict(meta or {})
        self.commit = commit
        self.epoch = self.history[-1]["epoch"] if self.history else 0
        self.stop_training = False
        self.multilabel = multilabel  # labels are multi-hot rows: subset accuracy and binary cross-entropy

    # ---- helpers ---------------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    @property
    def eval_net(self) -> nn.Module:
        return getattr(self.net, "module", self.net)  # unwrap DistributedDataParallel

    def log(self, message: str) -> None:
        """Say ``message`` (rank 0 only) through the ``transferlab.training`` loggers."""
        if self.is_main and self.runtime.verbose:
            logger.info(message)

    def save_checkpoint(self, path: str | Path, epoch: int, logs: dict[str, Any]) -> None:
        if not self.is_main:
            return
        metrics = {k: v for k, v in logs.items() if k != "epoch"}
        save_model(path, self.model, {**self.meta, "epoch": int(epoch), "metrics": metrics})

    def _autocast(self):
        return autocast(training_amp(self.amp), self.device)

    def _to_device(self, x: torch.Tensor, y: torch.Tensor):
        return to_device(x, self.device, self.channels_last), y.to(self.device, non_blocking=True)

    def _set_train_mode(self) -> None:
        # the full model's train(): frozen layers keep inference behaviour (Classifier.train), and
        # ``net`` (the model, or its part above cached features) shares its modules
        self.model.train()

    # ---- one epoch -------------------------------------------------------------------------------
    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        self._set_train_mode()
        sampler = getattr(self.train_loader, "sampler", None)
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        lr = current_lr(self.optimizer)
        loss_sum, correct, seen = 0.0, 0, 0
        start = time.perf_counter()
        total = len(self.train_loader)
        label = f"epoch {epoch}/{self.total_epochs}" if self.total_epochs else f"epoch {epoch}"
        with _EpochBar(label, total, enabled=self.progress) as bar:
            for step, (x, y) in enumerate(self.train_loader, 1):
                for cb in self.callbacks:
                    cb.on_train_batch_begin(self, step)
                x, y = self._to_device(x, y)
                with self._autocast():
                    out = self.net(x)
                loss = self.criterion(out.float(), y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                n = y.shape[0]
                batch_loss = loss.item()
                loss_sum += batch_loss * n
                correct += count_correct(out, y, self.multilabel)
                seen += n
                elapsed = time.perf_counter() - start
                bar.update(step, loss=loss_sum / seen, acc=correct / seen, lr=lr,
                           ips=seen * self.dist.world_size / max(elapsed, 1e-9))
                for cb in self.callbacks:
                    cb.on_train_batch_end(self, step, {"loss": batch_loss, "images": n, "lr": lr})
        total_loss, total_correct, total_seen = all_reduce_sum([loss_sum, correct, seen], self.dist, self.device)
        return {"train_loss": total_loss / max(total_seen, 1), "train_acc": total_correct / max(total_seen, 1),
                "lr": lr, "images": int(total_seen)}

    def evaluate(self, loader=None) -> dict[str, float]:
        """Plain (unweighted, unsmoothed) cross-entropy and accuracy on the validation data (multi-label:
        binary cross-entropy and subset accuracy), in fp32
        whatever ``amp`` says: the figures of the best epoch are then the ones ``transferlab evaluate``
        gives for its checkpoint (bf16 moved validation accuracy by up to 1.5 points)."""
        loader = loader if loader is not None else self.val_loader
        net = self.eval_net
        net.eval()
        loss_sum, correct, seen = 0.0, 0, 0
        with torch.inference_mode():
            for x, y in loader:
                x, y = self._to_device(x, y)
                out = net(x).float()
                loss_sum += plain_loss_sum(out, y, self.multilabel)
                correct += count_correct(out, y, self.multilabel)
                seen += y.shape[0]
        total_loss, total_correct, total_seen = all_reduce_sum([loss_sum, correct, seen], self.dist, self.device)
        if total_seen == 0:
            return {"val_loss": float("nan"), "val_acc": float("nan")}
        return {"val_loss": total_loss / total_seen, "val_acc": total_correct / total_seen}

    # ---- the phase -------------------------------------------------------------------------------
    def fit(self, epochs: int) -> list[dict[str, Any]]:
        """Train up to global epoch ``epochs`` (continuing from ``self.epoch``); returns the history."""
        self.stop_training = False
        for cb in self.callbacks:
            cb.on_train_begin(self)
        for epoch in range(self.epoch + 1, epochs + 1):
            for cb in self.callbacks:
                cb.on_epoch_begin(self, epoch)
            t0 = time.perf_counter()
            train_logs = self.train_one_epoch(epoch)
            val_logs = self.evaluate()
            seconds = time.perf_counter() - t0
            logs = {"epoch": epoch, "train_loss": train_logs["train_loss"], "train_acc": train_logs["train_acc"],
                    **val_logs, "lr": train_logs["lr"], "seconds": round(seconds, 3)}
            self.history.append(logs)
            self.epoch = epoch
            if self.scheduler is not None:
                self.scheduler.step()
            self.log(format_epoch(logs, self.total_epochs, train_logs["images"] / max(seconds, 1e-9)))
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch, logs)
            stop = self.stop_training or any(getattr(cb, "stop_training", False) for cb in self.callbacks)
            if stop or epoch == epochs:
                break  # the caller commits the finished phase after on_train_end
            if self.commit is not None:
                self.commit(self)
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """An input batch on ``device`` (channels_last for 4-d images when asked)."""
    x = x.to(device, non_blocking=True)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def format_epoch(logs: dict[str, Any], total: int | None, images_per_s: float | None = None) -> str:
    """The one-line epoch summary printed and written to train.log."""
    width = len(str(total)) if total else 1
    of = f"/{total}" if total else ""
    parts = [f"epoch {logs['epoch']:>{width}}{of}",
             f"train_loss {logs['train_loss']:.4f}", f"train_acc {logs['train_acc']:.4f}",
             f"val_loss {logs['val_loss']:.4f}", f"val_acc {logs['val_acc']:.4f}",
             f"lr {logs['lr']:.3g}", f"{logs['seconds']:.1f}s"]
    if images_per_s:
        parts.append(f"{images_per_s:.0f} img/s")
    return "  ".join(parts)


class _EpochBar:
    """A rich progress bar for one epoch: loss, accuracy, lr, images/s, ETA (quiet when not a TTY)."""

    def __init__(self, description: str, total: int, enabled: bool = True):
        self.enabled = _progress.enabled(enabled)
        self.description, self.total = description, total
        self._bar = None
        self._last = 0.0

    def __enter__(self):
        if self.enabled:
            # transient: the epoch's summary line follows, so a finished bar would print the epoch twice
            self._bar = _progress.make_progress(TextColumn("{task.fields[stats]}"), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, stats="")
        return self

    def update(self, step: int, *, loss: float, acc: float, lr: float, ips: float) -> None:
        if self._bar is None:
            return
        now = time.perf_counter()
        if now - self._last < 0.1 and step < self.total:
            return
        self._last = now
        stats = f"loss {loss:.4f} acc {acc:.3f} lr {lr:.2g} {ips:.0f} img/s"
        self._bar.update(self._task, completed=step, stats=stats)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False
