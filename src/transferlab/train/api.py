"""``train(data, model=..., ...) -> Run``: data + recipe in, a run folder out.

One call is one :class:`Session`, whose :meth:`~Session.run` reads top to bottom:

1. the options, completed from the recipe's defaults and validated (``--resume``: the run's own);
2. the data, loaded and split: a data problem is reported before anything is written;
3. the model, built with its pretrained weights, and every phase's freezing checked against it;
4. the run folder, checked, locked against a second writer, emptied with ``--overwrite``;
5. the phases (head only, then fine-tuning with ``--fine-tune``): each freezes the model, gets its
   inputs (:func:`transferlab.train.features.phase_inputs`: cached features of the frozen part, or
   images), builds optimizer, schedule and loss and lets the :class:`~transferlab.train.loop.Trainer`
   run the epochs. After every epoch the run state is committed (``history.csv``, ``last_state.pt``)
   so ``resume=True`` continues exactly where a killed run stopped.

A run that fails before its first epoch is committed leaves nothing behind.
"""
from __future__ import annotations

import contextvars
import dataclasses
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from .. import __version__, runfolder
from ..data import DataSplits, ImageDataset, build_transform, load_data
from ..errors import ConfigError, DataError
from ..models import apply_freeze, create_model, get_recipe
from ..models.freeze import check_policy, check_unfreeze_last, resolve_unfreeze_from
from ..tracking import make_trackers
from . import adapt
from . import distributed as D
from . import features
from .callbacks import Callback, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, TimeLimit
from .config import TrainConfig
from .loop import Trainer
from .run import Run
from .sampling import shard
from .schedule import build_optimizer, build_scheduler

STATE_VERSION = 1
#: what an interrupted training tells the user to do; None: the ``train --resume`` command. Set by
#: callers that resume by themselves when run again (``compare`` and ``run``).
RESUME_HINT: contextvars.ContextVar[str | None] = contextvars.ContextVar("resume_hint", default=None)


def train(data, model: str = "mobilenet_v2", *, callbacks: list[Callback] | None = None,
          progress: bool = True, **options) -> Run:
    """Train ``model`` (a recipe name, see ``transferlab models``) on ``data`` and return the :class:`Run`.

    ``data`` is a dataset folder / CSV (see ``transferlab.data.load_data``) or a ``DataSplits``.
    Options (all keyword; ``None`` means the recipe's default) are the fields of
    :class:`~transferlab.train.config.TrainConfig`, the same as the CLI flags: ``epochs=10,
    batch_size=32`` (both adapted to a tiny training set when not given), ``lr, optimizer
    (sgd|adam|adamw), momentum, nesterov, schedule, warmup, step_size, gamma, min_lr, weight_decay,
    label_smoothing, class_weights (None|"auto"|[w...]), augment, freeze (frozen|full),
    unfreeze_from, unfreeze_last, fine_tune (epochs of a 2nd, unfrozen phase), fine_tune_lr, head,
    dropout, pretrained, weights, input_size, val_ratio=0.2, seed=0, workers, cache,
    feature_cache=True, feature_views, early_stopping (patience), monitor="val_loss",
    min_delta, restore_best, reduce_lr (patience), reduce_lr_factor, reduce_lr_min, device, threads,
    channels_last, amp ("none"|"bf16"), run_dir="runs", name (default: the recipe), resume,
    overwrite, log (["tensorboard", "mlflow"])``. ``callbacks`` are extra
    :class:`~transferlab.train.callbacks.Callback` objects.

    >>> run = train("DATA", model="cnn_bn", epochs=5)          # doctest: +SKIP
    >>> run.dir, run.history[-1]["val_acc"]                     # doctest: +SKIP
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
    return Session(TrainConfig(model=model, **options), data, callbacks or [], progress).run()


@dataclasses.dataclass
class Phase:
    index: int
    epochs: int          # epochs in this phase
    lr: float
    policy: str          # apply_freeze policy: "frozen" | "full"
    unfreeze_from: int | None = None
    unfreeze_last: int | None = None


def plan_phases(cfg: TrainConfig) -> list[Phase]:
    """Head-only then fine-tuning with ``fine_tune``; else one phase with the configured freezing."""
    if cfg.fine_tune:
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
        kind = check_policy(phase.policy, phase.unfreeze_from, phase.unfreeze_last)
        if kind == "unfreeze_from":
            resolve_unfreeze_from(model, phase.unfreeze_from)
        elif kind == "unfreeze_last":
            check_unfreeze_last(model, phase.unfreeze_last)


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


def pick_device(requested: str | None, info: D.DistInfo | None = None) -> torch.device:
    if requested in (None, "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but CUDA is not available; use --device cpu")
        if requested == "cuda" and info is not None and info.enabled:
            return torch.device("cuda", info.local_rank)
    return torch.device(requested)


def class_weight_tensor(spec, labels: list[int], num_classes: int) -> torch.Tensor | None:
    """``"auto"`` -> sklearn's ``compute_class_weight("balanced")``; a list -> those weights."""
    if spec is None:
        return None
    if spec == "auto":
        y = np.asarray(labels)
        present = np.unique(y)
        w = np.ones(num_classes, dtype=np.float64)
        w[present] = compute_class_weight("balanced", classes=present, y=y)
        return torch.tensor(w, dtype=torch.float32)
    weights = [float(v) for v in spec]
    if len(weights) != num_classes:
        raise ConfigError(f"--class-weights has {len(weights)} values but there are {num_classes} classes")
    return torch.tensor(weights, dtype=torch.float32)


def weights_record(model) -> dict[str, Any] | None:
    """What pretrained weights were loaded: file (with its sha256) or hub, tensors matched, how."""
    info = dict(model.weights_info or {})
    source = info.get("source")
    if not source:
        return None
    record = {"source": source, "matched": info.get("matched"), "mode": info.get("mode"),
              "classifier": info.get("classifier", False)}
    if os.path.isfile(source):
        record["sha256"] = runfolder.file_sha256(source)
    return record


class Session:
    """One call of :func:`train`. Everything a step hands to the next is set in ``__init__`` or
    returned; :meth:`run` is the whole story."""

    def __init__(self, cfg: TrainConfig, data, user_callbacks: list, progress: bool):
        self.cfg = cfg
        self.given = cfg                               # the options as the user set them
        self.adapted: list[str] = []                   # options adapted to a tiny training set
        self.data_warnings: list[str] = []             # kept in config.json ("warnings")
        self.data = data
        self.user_callbacks = list(user_callbacks)
        self.progress = progress
        self.dist = D.DistInfo()                       # joined in run() when launched by torchrun
        self.device = torch.device("cpu")
        self.run_dir = Path(cfg.run_dir) / (cfg.name or cfg.model)
        self.lock: runfolder.RunLock | None = None
        self.history: list[dict[str, Any]] = []
        self.started = time.monotonic()                # --time-limit counts from here

    # ---- output -----------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        """Print on rank 0; once the run folder is ours, also append to its train.log."""
        if not self.dist.is_main:
            return
        print(message, flush=True)
        if self.lock is not None and self.lock.held:
            runfolder.append_log(self.run_dir, message)

    # ---- the story --------------------------------------------------------------------------------
    def run(self) -> Run:
        recipe = get_recipe(self.cfg.model)
        cfg = self.cfg.resolve(recipe.defaults)
        self.run_dir = Path(cfg.run_dir) / cfg.name
        if cfg.resume and runfolder.has_state(self.run_dir):
            cfg = self.resumed_config(cfg)
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        self.dist = D.setup(self.device.type)
        try:
            self.device = pick_device(cfg.device, self.dist)
            if self.device.type == "cpu":
                torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // self.dist.local_world_size))
            splits = self.load_splits()
            mode = runfolder.check_run_dir(self.run_dir, resume=cfg.resume, overwrite=cfg.overwrite)
            state = runfolder.load_state(self.run_dir) if mode == "resume" else None
            if state is not None and state["classes"] != list(splits.classes):
                raise ConfigError(f"cannot resume {self.run_dir}: the data's classes differ from the run's")
            if state is None:
                self.cfg = cfg = self.size_for_data(recipe, splits)
                self.cfg = cfg = self.adapt_to_data(splits)
            model = self.build_model(splits.classes, resuming=state is not None)
            phases = plan_phases(cfg)
            check_phases(model, phases)
            self.take_run_dir(mode)
            try:
                return self.train_phases(model, splits, phases, state)
            except BaseException:
                self.clean_up_failed_start()
                raise
            finally:
                if self.lock is not None:
                    self.lock.release()
        finally:
            D.cleanup(self.dist)

    # ---- 1. options -------------------------------------------------------------------------------
    def resumed_config(self, cfg: TrainConfig) -> TrainConfig:
        """The run's own options from its config.json; only where and how to run come from the call."""
        saved = runfolder.read_config(self.run_dir, required=True)
        keep = {k: getattr(cfg, k) for k in ("device", "threads", "workers", "run_dir", "name")}
        return dataclasses.replace(TrainConfig.from_dict(saved), **keep, resume=True, overwrite=False)

    # ---- 2. data ----------------------------------------------------------------------------------
    def load_splits(self) -> DataSplits:
        cfg = self.cfg
        splits = self.data if isinstance(self.data, DataSplits) else load_data(
            self.data, val_ratio=cfg.val_ratio, seed=cfg.seed, workers=cfg.workers,
            progress=self.progress and self.dist.is_main)
        if not splits.train:
            raise ConfigError("no training images")
        if not splits.val:
            raise DataError("no validation images: training picks its best epoch on them; give --val-ratio above 0 "
                            "or a val/ folder")
        return splits

    # ---- 3. model ---------------------------------------------------------------------------------
    def size_for_data(self, recipe, splits: DataSplits) -> TrainConfig:
        """The input size (and crop) for this data when not given: see ``Recipe.input_for``."""
        cfg = self.cfg
        if cfg.input_size is not None:
            return cfg
        side = splits.typical_side()
        size, crop = recipe.input_for(side)
        if side:
            self.log(f"input size {size} px for {recipe.name} (the training images' median shorter side is "
                     f"{side:.0f} px)")
        return dataclasses.replace(cfg, input_size=size, crop_pct=cfg.crop_pct if cfg.crop_pct is not None else crop)

    def adapt_to_data(self, splits: DataSplits) -> TrainConfig:
        """Batch size and epochs for a tiny training set when not given, and a warning when validation
        is too small to trust (see :mod:`transferlab.train.adapt`); logged once the run folder is ours."""
        cfg, self.adapted = adapt.adapt_to_data(self.cfg, self.given, len(splits.train), self.dist.world_size)
        note = adapt.validation_note(len(splits.val))
        self.data_warnings = [*splits.warnings, *([note] if note else [])]
        return cfg

    def build_model(self, classes: list[str], *, resuming: bool):
        """The recipe's model; a resume reads no pretrained weights (the saved state holds every tensor)."""
        cfg = self.cfg
        seed_everything(cfg.seed)
        return create_model(cfg.model, len(classes), pretrained=False if resuming else cfg.pretrained,
                            weights=None if resuming else cfg.weights, head=tuple(cfg.head), dropout=cfg.dropout,
                            input_size=cfg.input_size, crop_pct=cfg.crop_pct)

    # ---- 4. run folder ----------------------------------------------------------------------------
    def take_run_dir(self, mode: str) -> None:
        """Lock the run folder (rank 0) and empty it for ``--overwrite``; the other ranks wait."""
        D.barrier(self.dist)
        if self.dist.is_main:
            self.lock = runfolder.RunLock(self.run_dir).acquire()
            if mode == "new" and self.cfg.overwrite:
                runfolder.clear_run_dir(self.run_dir)
        D.barrier(self.dist)

    def clean_up_failed_start(self) -> None:
        """A run that committed no epoch is not resumable: remove what it wrote (rank 0)."""
        if not self.dist.is_main or self.lock is None or runfolder.has_state(self.run_dir):
            return
        if self.lock.created or self.cfg.overwrite:
            runfolder.clear_run_dir(self.run_dir)
            self.lock.release(remove_if_empty=True)
            if self.run_dir.is_dir() and not any(self.run_dir.iterdir()):
                self.run_dir.rmdir()

    # ---- 5. phases --------------------------------------------------------------------------------
    def train_phases(self, model, splits: DataSplits, phases: list[Phase], state: dict | None) -> Run:
        cfg, dist = self.cfg, self.dist
        classes = list(splits.classes)
        meta = {"recipe": cfg.model, "classes": classes, "num_classes": len(classes),
                "head": list(model.head_hidden), "dropout": list(model.head_dropout), "data_cfg": dict(model.data_cfg)}
        datasets = self.make_datasets(splits, meta["data_cfg"])
        channels_last = cfg.channels_last if cfg.channels_last is not None else self.device.type == "cpu"
        model.to(self.device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        if state is None:
            if dist.is_main:
                runfolder.write_config(self.run_dir, self.config_json(splits, meta, channels_last, model))
            self.log(f"training {cfg.model} on {len(splits.train)} images ({len(classes)} classes), "
                     f"validating on {len(splits.val)}; run folder {self.run_dir}")
            weights = weights_record(model)
            if weights is not None:
                self.log(f"pretrained weights: {weights['source']} ({weights['matched']} tensors"
                         + (f", sha256 {weights['sha256'][:12]}" if weights.get("sha256") else "") + ")")
            for line in self.adapted:
                self.log(f"adapted to the data: {line}")
            self.log(f"plan: {describe_phases(phases)}")
            note = adapt.validation_note(len(splits.val))
            if note:
                self.log(f"warning: {note}")
        callbacks = self.make_callbacks()
        if state is not None:
            self.history = list(state["history"])
            model.load_state_dict(state["model"])
            load_callback_states(callbacks, state["callbacks"])
            if state.get("finished"):
                self.log(f"{self.run_dir} already finished ({state['epoch']} epochs); nothing to do")
                return Run.load(self.run_dir)
            self.log(f"resuming {self.run_dir} after epoch {state['epoch']} (options from its config.json)")
        runner = PhaseRunner(self, model, meta, datasets, callbacks, channels_last,
                             class_weight_tensor(cfg.class_weights, [y for _, y in splits.train], len(classes)))
        start = state["phase"] + (1 if state["phase_finished"] else 0) if state else 0
        limit = next((cb for cb in callbacks if isinstance(cb, TimeLimit)), None)
        try:
            for phase in phases[start:]:
                if limit is not None and self.history and (limit.expired or limit.remaining() <= 0):
                    self.log(f"time limit: phase {phase.index + 1} not started; the run ends with what it has")
                    runner.commit(None, phase=len(phases) - 1, phase_finished=True, finished=True)
                    break
                resume = state if (state and state["phase"] == phase.index and not state["phase_finished"]) else None
                runner.run(phase, resume, len(phases))
        except KeyboardInterrupt:
            self.say_interrupted(splits)
            raise
        if start >= len(phases):  # a state from before the last phase's commit marked it finished
            runner.commit(None, phase=len(phases) - 1, phase_finished=True, finished=True)
        D.barrier(dist)
        best = next(((cb.best_epoch, cb.best) for cb in callbacks
                     if isinstance(cb, ModelCheckpoint) and cb.best_epoch is not None), None)
        if best is not None:
            self.log(f"done: best {cfg.monitor} {best[1]:.4f} at epoch {best[0]}; checkpoints in {self.run_dir}")
        return Run.load(self.run_dir)

    def make_datasets(self, splits: DataSplits, data_cfg: dict) -> dict[str, ImageDataset]:
        """Train and val images; under torchrun each rank takes its shard (``sampling.shard``) and
        decodes and caches only that, so no rank holds the whole dataset."""
        cfg, dist = self.cfg, self.dist
        cache_dir = True if cfg.cache else None
        show = self.progress and dist.is_main
        if dist.enabled and len(splits.train) < dist.world_size:
            raise ConfigError(f"{len(splits.train)} training images cannot be shared by {dist.world_size} ranks")
        datasets = {
            "train": ImageDataset(shard(splits.train, dist), data_cfg,
                                  build_transform(data_cfg, train=True, augment=cfg.augment), cache_dir, progress=show,
                                  log=self.log),
            "val": ImageDataset(shard(splits.val, dist), data_cfg, build_transform(data_cfg, train=False), cache_dir,
                                progress=show, log=self.log),
        }
        datasets["train"].shard_total = len(splits.train)
        return datasets

    def make_callbacks(self) -> list:
        cfg = self.cfg
        cbs: list = []
        if cfg.early_stopping is not None:
            cbs.append(EarlyStopping(monitor=cfg.monitor, patience=cfg.early_stopping, min_delta=cfg.min_delta,
                                     restore_best_weights=cfg.restore_best))
        if cfg.reduce_lr is not None:
            cbs.append(ReduceLROnPlateau(monitor=cfg.monitor, factor=cfg.reduce_lr_factor, patience=cfg.reduce_lr,
                                         min_lr=cfg.reduce_lr_min))
        cbs.append(ModelCheckpoint(self.run_dir, monitor=cfg.monitor, min_delta=cfg.min_delta))
        if cfg.time_limit is not None:
            cbs.append(TimeLimit(cfg.time_limit, start=self.started))
        cbs += make_trackers(cfg.log, self.run_dir, final_phase=len(plan_phases(cfg)) - 1)  # --log
        return cbs + self.user_callbacks

    def config_json(self, splits: DataSplits, meta: dict, channels_last: bool, model) -> dict:
        cfg = self.cfg
        counts = {s: len(splits.split(s)) for s in ("train", "val", "test")}
        return {**cfg.to_dict(), "classes": meta["classes"], "num_classes": meta["num_classes"],
                "data": str(splits.root if splits.root else self.data), "layout": splits.layout,
                "data_cfg": meta["data_cfg"], "split_counts": counts, "head": meta["head"], "dropout": meta["dropout"],
                "pretrained_weights": weights_record(model), "adapted": self.adapted, "warnings": self.data_warnings,
                "world_size": self.dist.world_size, "device": str(self.device), "channels_last": channels_last,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "versions": {"python": platform.python_version(), "torch": torch.__version__, "transferlab": __version__}}

    def say_interrupted(self, splits: DataSplits) -> None:
        cfg = self.cfg
        done = self.history[-1]["epoch"] if self.history else 0
        if not done:
            self.log("no epoch had finished: nothing to resume")
            return
        if (hint := RESUME_HINT.get()) is not None:  # a caller that resumes by itself (compare, run)
            self.log(f"{done} completed epoch(s) are saved in {self.run_dir}; {hint}")
            return
        data_arg = self.data if not isinstance(self.data, DataSplits) else splits.root
        self.log(f"{done} completed epoch(s) are saved in {self.run_dir}; continue with:\n"
                 f"  transferlab train {data_arg} --model {cfg.model} --run-dir {cfg.run_dir} "
                 f"--name {cfg.name} --resume")


class PhaseRunner:
    """Runs the phases of one session on its model and commits the run state after each epoch."""

    def __init__(self, session: Session, model, meta: dict, datasets: dict, callbacks: list, channels_last: bool,
                 class_weight: torch.Tensor | None):
        self.session = session
        self.cfg = session.cfg
        self.model = model
        self.meta = meta
        self.datasets = datasets
        self.callbacks = callbacks
        self.channels_last = channels_last
        self.class_weight = class_weight
        self.phase_end: int | None = None

    def run(self, phase: Phase, resume: dict | None, n_phases: int) -> None:
        s, cfg, model = self.session, self.cfg, self.model
        trainable = apply_freeze(model, phase.policy, unfreeze_from=phase.unfreeze_from,
                                 unfreeze_last=phase.unfreeze_last)
        inputs = features.phase_inputs(
            model, self.datasets,
            features.Settings(batch_size=cfg.batch_size, seed=cfg.seed, views=min(cfg.feature_views, phase.epochs),
                              workers=cfg.workers,
                              amp=cfg.amp, augment=cfg.augment, enabled=cfg.feature_cache),
            dist=s.dist, device=s.device, channels_last=self.channels_last, progress=s.progress, log=s.log)
        what = "head" if phase.policy == "frozen" else model.freeze_policy
        s.log(f"phase {phase.index + 1}/{n_phases}: {what}, {trainable:,} trainable parameters, lr {phase.lr:g}"
              + (", on cached features" if inputs.cached else ""))
        net = inputs.net
        if s.dist.enabled:
            net = nn.parallel.DistributedDataParallel(
                net, device_ids=[s.device.index] if s.device.type == "cuda" else None)
        optimizer = build_optimizer(inputs.net, cfg.optimizer, phase.lr, weight_decay=cfg.weight_decay,
                                    momentum=cfg.momentum, nesterov=cfg.nesterov)
        scheduler = build_scheduler(optimizer, cfg.schedule, phase.epochs, warmup=cfg.warmup,
                                    step_size=cfg.step_size, gamma=cfg.gamma, min_lr=cfg.min_lr)
        weight = self.class_weight.to(s.device) if self.class_weight is not None else None
        criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
        start_epoch = s.history[-1]["epoch"] if s.history else 0
        if resume is not None:
            optimizer.load_state_dict(resume["optimizer"])
            if resume.get("scheduler") is not None:
                scheduler.load_state_dict(resume["scheduler"])
            set_rng_state(resume["rng"], inputs.train_loader)
            self.phase_end = resume["phase_end"]
        else:
            seed_everything(cfg.seed + 1 + phase.index)  # the same start for cached and uncached training
            self.phase_end = start_epoch + phase.epochs
        later = cfg.fine_tune if phase.index < n_phases - 1 else 0
        trainer = Trainer(model, net, inputs.train_loader, inputs.val_loader, optimizer=optimizer,
                          scheduler=scheduler, criterion=criterion, device=s.device, callbacks=self.callbacks,
                          history=s.history, phase=phase.index, total_epochs=self.phase_end + later,
                          channels_last=self.channels_last, amp=cfg.amp, dist=s.dist, meta=self.meta,
                          progress=s.progress, log=s.log,
                          commit=lambda tr: self.commit(tr, phase=phase.index, phase_finished=False))
        try:
            trainer.fit(self.phase_end)
        finally:
            inputs.close()  # the phase's feature files
        self.commit(trainer, phase=phase.index, phase_finished=True, finished=phase.index == n_phases - 1)

    def commit(self, trainer: Trainer | None, *, phase: int, phase_finished: bool, finished: bool = False) -> None:
        """Write history.csv and last_state.pt (rank 0): the run can resume from here."""
        s = self.session
        if not s.dist.is_main:
            return
        state = {
            "version": STATE_VERSION,
            "epoch": s.history[-1]["epoch"] if s.history else 0,
            "phase": phase, "phase_finished": phase_finished, "finished": finished,
            "phase_end": self.phase_end,
            "classes": self.meta["classes"],
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},  # saved at once
            "optimizer": trainer.optimizer.state_dict() if trainer else None,
            "scheduler": trainer.scheduler.state_dict() if trainer and trainer.scheduler else None,
            "callbacks": callback_states(self.callbacks),
            "rng": rng_state(trainer.train_loader if trainer else None),
            "history": list(s.history),
        }
        runfolder.write_history(s.run_dir, s.history)
        runfolder.save_state(s.run_dir, state)
