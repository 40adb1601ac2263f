"""The phases of a run: planned from the options (:func:`plan_phases`), said in one line
(:func:`describe_phases`), checked against the model (:func:`check_phases`) and run one after the
other by a :class:`PhaseRunner`.

A phase freezes the model (head only, or fine-tuning), gets its inputs
(:func:`transferlab.training.features.phase_inputs`: cached features of the frozen part, or images),
builds optimizer, schedule and loss and lets the :class:`~transferlab.training.loop.Trainer` run its
epochs; the run state is committed after every epoch (:class:`~transferlab.training.state.StateWriter`).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from torch import nn

from ..models import apply_freeze
from ..models.freeze import check_policy, check_unfreeze_last, resolve_unfreeze_from
from . import features
from .callbacks import TimeLimit
from .config import ResolvedConfig
from .loop import Runtime, Trainer
from .losses import Distillation, make_criterion
from .schedule import build_optimizer, build_scheduler
from .state import StateWriter, seed_everything, set_rng_state

logger = logging.getLogger("transferlab.training")


@dataclasses.dataclass
class Phase:
    index: int
    epochs: int          # epochs in this phase
    lr: float
    policy: str          # apply_freeze policy: "frozen" | "full"
    unfreeze_from: int | None = None
    unfreeze_last: int | None = None


def plan_phases(cfg: ResolvedConfig) -> list[Phase]:
    """Head-only then fine-tuning with ``fine_tune``; else one phase with the configured freezing."""
    if cfg.fine_tune:
        assert cfg.fine_tune_lr is not None, "resolve() sets fine_tune_lr when fine_tune is set"
        return [Phase(0, cfg.epochs, cfg.lr, "frozen"),
                Phase(1, cfg.fine_tune, cfg.fine_tune_lr, "full", cfg.unfreeze_from, cfg.unfreeze_last)]
    if cfg.unfreeze_from is not None or cfg.unfreeze_last is not None:
        return [Phase(0, cfg.epochs, cfg.lr, "full", cfg.unfreeze_from, cfg.unfreeze_last)]
    return [Phase(0, cfg.epochs, cfg.lr, cfg.freeze)]


def describe_phases(phases: list[Phase]) -> str:
    """The epoch plan in one line, said before training (e.g. ``--epochs 3`` on a transfer recipe
    also fine-tunes for the recipe's epochs).

    >>> describe_phases([Phase(0, 3, 1e-3, "frozen"), Phase(1, 6, 1e-4, "full", None, 11)])
    '9 epochs: 3 training the head (backbone frozen), then 6 fine-tuning the last 11 blocks'
    """
    def what(p: Phase) -> str:
        if p.policy == "frozen":
            return "training the head (backbone frozen)"
        if p.unfreeze_last is not None:
            return f"fine-tuning the last {p.unfreeze_last} blocks"
        if p.unfreeze_from is not None:
            return f"fine-tuning from layer {p.unfreeze_from} up"
        return "training the whole network" if len(phases) == 1 else "fine-tuning the whole network"

    total = sum(p.epochs for p in phases)
    epochs = f"{total} epoch{'s' if total != 1 else ''}"
    if len(phases) == 1:
        return f"{epochs} {what(phases[0])}"
    return f"{epochs}: " + ", then ".join(f"{p.epochs} {what(p)}" for p in phases)


def check_phases(model, phases: list[Phase]) -> None:
    """Every phase's freezing fits the model (unfreeze ranges), checked before any training."""
    for phase in phases:
        check_policy(phase.policy, phase.unfreeze_from, phase.unfreeze_last)  # not both, none when frozen
        if phase.unfreeze_from is not None:
            resolve_unfreeze_from(model, phase.unfreeze_from)
        elif phase.unfreeze_last is not None:
            check_unfreeze_last(model, phase.unfreeze_last)


class PhaseRunner:
    """Runs the phases of one run on its model (``runtime``: where and how, see
    :class:`~transferlab.training.loop.Runtime`), appending to ``history``; ``writer`` commits the run
    state after each epoch. ``meta`` goes into every checkpoint; ``class_weight`` into the loss, which
    ``distillation`` (a teacher's soft targets) wraps."""

    def __init__(self, cfg: ResolvedConfig, model, meta: dict[str, Any], datasets: dict, callbacks: list,
                 runtime: Runtime, history: list[dict[str, Any]], writer: StateWriter,
                 class_weight: torch.Tensor | None, distillation: Distillation | None = None):
        self.cfg = cfg
        self.model = model
        self.meta = meta
        self.datasets = datasets
        self.callbacks = callbacks
        self.runtime = runtime
        self.history = history
        self.writer = writer
        self.class_weight = class_weight
        self.distillation = distillation

    def run_all(self, phases: list[Phase], state: dict[str, Any] | None) -> None:
        """The phases from where ``state`` stopped (all of them for a new run). Once ``--time-limit``
        has run out no further phase starts: the run ends, finished, with what it has."""
        start = state["phase"] + (1 if state["phase_finished"] else 0) if state else 0
        limit = next((cb for cb in self.callbacks if isinstance(cb, TimeLimit)), None)
        last = len(phases) - 1
        for phase in phases[start:]:
            if limit is not None and self.history and (limit.expired or limit.remaining() <= 0):
                logger.info(f"time limit: phase {phase.index + 1} not started; the run ends with what it has")
                self.writer.commit(None, phase=last, phase_finished=True, finished=True)
                break
            resume = state if (state and state["phase"] == phase.index and not state["phase_finished"]) else None
            self.run(phase, resume, len(phases))
        if start >= len(phases):  # a state from before the last phase's commit marked it finished
            self.writer.commit(None, phase=last, phase_finished=True, finished=True)

    def run(self, phase: Phase, resume: dict | None, n_phases: int) -> None:
        """Freeze the model for ``phase``, get its inputs and train its epochs (continuing ``resume``,
        the state of a run stopped inside this phase), then commit the finished phase."""
        cfg, rt, model = self.cfg, self.runtime, self.model
        trainable = apply_freeze(model, phase.policy, unfreeze_from=phase.unfreeze_from,
                                 unfreeze_last=phase.unfreeze_last)
        inputs = features.phase_inputs(
            model, self.datasets,
            features.Settings(batch_size=cfg.batch_size, seed=cfg.seed, views=min(cfg.feature_views, phase.epochs),
                              workers=cfg.workers,
                              amp=cfg.amp, augment=cfg.augment, enabled=cfg.feature_cache, sampler=cfg.sampler),
            dist=rt.dist, device=torch.device(rt.device), channels_last=rt.channels_last, progress=rt.progress)
        what = "head" if phase.policy == "frozen" else model.freeze_policy
        logger.info(f"phase {phase.index + 1}/{n_phases}: {what}, {trainable:,} trainable parameters, lr {phase.lr:g}"
                    + (", on cached features" if inputs.cached else ""))
        self.writer.phase_end = end = self.phase_end(phase, resume)
        trainer = self.make_trainer(phase, inputs, resume, end, n_phases)
        try:
            trainer.fit(end)
        finally:
            inputs.close()  # the phase's feature files
        self.writer.commit(trainer, phase=phase.index, phase_finished=True, finished=phase.index == n_phases - 1)

    def phase_end(self, phase: Phase, resume: dict | None) -> int:
        """The global epoch ``phase`` ends at: the stopped run's (``resume``), else after its epochs."""
        if resume is not None:
            return resume["phase_end"]
        start_epoch = self.history[-1]["epoch"] if self.history else 0
        return start_epoch + phase.epochs

    def make_trainer(self, phase: Phase, inputs: features.PhaseInputs, resume: dict | None, end: int,
                     n_phases: int) -> Trainer:
        """The phase's Trainer (``end``: the global epoch the phase ends at): the net (under DDP when
        launched by torchrun), optimizer, schedule and loss; their states and the random generators
        from ``resume``, else the phase's own seed."""
        cfg, rt = self.cfg, self.runtime
        device = torch.device(rt.device)
        net = inputs.net
        if rt.dist.enabled:
            net = nn.parallel.DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = build_optimizer(inputs.net, cfg.optimizer, phase.lr, weight_decay=cfg.weight_decay,
                                    momentum=cfg.momentum, nesterov=cfg.nesterov)
        scheduler = build_scheduler(optimizer, cfg.schedule, phase.epochs, warmup=cfg.warmup,
                                    step_size=cfg.step_size, gamma=cfg.gamma, min_lr=cfg.min_lr)
        weight = self.class_weight.to(device) if self.class_weight is not None else None
        multilabel = self.meta.get("task") == "multilabel"
        criterion = make_criterion(cfg.loss, weight=weight, label_smoothing=cfg.label_smoothing, gamma=cfg.focal_gamma,
                                   multilabel=multilabel)
        if self.distillation is not None:
            criterion = self.distillation.criterion(criterion)
        if resume is not None:
            optimizer.load_state_dict(resume["optimizer"])
            if resume.get("scheduler") is not None:
                scheduler.load_state_dict(resume["scheduler"])
            set_rng_state(resume["rng"], inputs.train_loader)
        else:
            seed_everything(cfg.seed + 1 + phase.index)  # the same start for cached and uncached training
        later = cfg.fine_tune if phase.index < n_phases - 1 else 0
        return Trainer(self.model, net, inputs.train_loader, inputs.val_loader, optimizer=optimizer,
                       scheduler=scheduler, criterion=criterion, callbacks=self.callbacks, runtime=rt,
                       history=self.history, phase=phase.index, total_epochs=end + later,
                       meta=self.meta, multilabel=multilabel,
                       commit=lambda tr: self.writer.commit(tr, phase=phase.index, phase_finished=False))
