"""``train(data, model=..., ...) -> Run``: data + recipe in, a run folder out.

One call is one :class:`Session`, whose :meth:`~Session.run` reads top to bottom:

1. the options, completed from the recipe's defaults and validated (``--resume``: the run's own);
2. the data, loaded and split: a data problem is reported before anything is written;
3. the model, built with its pretrained weights, and every phase's freezing checked against it;
4. the run folder, checked, locked against a second writer, emptied with ``--overwrite``
   (:class:`~transferlab.training.folder.RunFolderGuard`);
5. the phases (head only, then fine-tuning with ``--fine-tune``), run by a
   :class:`~transferlab.training.phases.PhaseRunner`: each freezes the model, gets its inputs
   (:func:`transferlab.training.features.phase_inputs`: cached features of the frozen part, or
   images), builds optimizer, schedule and loss and lets the :class:`~transferlab.training.loop.Trainer`
   run the epochs. After every epoch the run state is committed (``history.csv``, ``last_state.pt``:
   :mod:`transferlab.training.state`) so ``resume=True`` continues exactly where a killed run stopped.

A run that fails before its first epoch is committed leaves nothing behind.
"""
from __future__ import annotations

import logging
import contextvars
import dataclasses
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight

from .. import __version__, runfolder
from .._rows import RowFile
from ..data import DataSplits, ImageDataset, build_transform, load_data
from ..errors import ConfigError, DataError
from ..models import create_model, get_recipe
from ..tracking import make_trackers
from . import adapt
from . import distributed as D
from .callbacks import Callback, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, TimeLimit
from .config import ResolvedConfig, TrainConfig
from .folder import RunFolderGuard
from .loop import Runtime
from .losses import Distillation
from .phases import PhaseRunner, check_phases, describe_phases, plan_phases
from .run import Run
from .sampling import shard
from .state import StateWriter, restore, saved_state, seed_everything

logger = logging.getLogger("transferlab.training")

#: what an interrupted training tells the user to do; None: the ``train --resume`` command. Set by
#: callers that resume by themselves when run again (``compare`` and ``run``).
RESUME_HINT: contextvars.ContextVar[str | None] = contextvars.ContextVar("resume_hint", default=None)


def train(data, model: str = "mobilenet_v2", *, callbacks: list[Callback] | None = None,
          progress: bool = True, distillation: Distillation | None = None, **options) -> Run:
    """Train ``model`` (a recipe name, see ``transferlab models``) on ``data`` and return the :class:`Run`.

    ``data`` is a dataset folder / CSV (see ``transferlab.data.load_data``) or a ``DataSplits``.
    Options (all keyword; ``None`` means the recipe's default) are the fields of
    :class:`~transferlab.training.config.TrainConfig`, the same as the CLI flags: ``epochs=10,
    batch_size=32`` (both adapted to a tiny training set when not given), ``lr, optimizer
    (sgd|adam|adamw), momentum, nesterov, schedule, warmup, step_size, gamma, min_lr, weight_decay,
    label_smoothing, class_weights (None|"auto"|[w...]), augment, freeze (frozen|full),
    unfreeze_from, unfreeze_last, fine_tune (epochs of a 2nd, unfrozen phase), fine_tune_lr, head,
    dropout, pretrained, weights, input_size, val_ratio=0.2, seed=0, workers, cache,
    feature_cache=True, feature_views, early_stopping (patience), monitor="val_loss",
    min_delta, restore_best, reduce_lr (patience), reduce_lr_factor, reduce_lr_min, device, threads,
    channels_last, amp ("none"|"bf16"), run_dir="runs", name (default: the recipe), resume,
    overwrite, log (["tensorboard", "mlflow"])``. ``callbacks`` are extra
    :class:`~transferlab.training.callbacks.Callback` objects. ``distillation``: soft targets from a
    teacher (:class:`~transferlab.training.losses.Distillation`, rows in the order of ``data.train``, a
    DataSplits); :func:`transferlab.distillation.distill` builds it.

    >>> run = train("DATA", model="cnn_bn", epochs=5)          # doctest: +SKIP
    >>> run.dir, run.history[-1]["val_acc"]                     # doctest: +SKIP
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
    if distillation is not None and not isinstance(data, DataSplits):
        raise ConfigError("distillation needs the data as a DataSplits (its rows follow data.train)")
    return Session(TrainConfig(model=model, **options), data, callbacks or [], progress, distillation).run()


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


def make_datasets(splits: DataSplits, data_cfg: dict, cfg: ResolvedConfig, dist: D.DistInfo, *,
                  progress: bool, soft_targets=None) -> dict[str, ImageDataset]:
    """Train and val images; under torchrun each rank takes its shard (``sampling.shard``) and
    decodes and caches only that, so no rank holds the whole dataset. ``soft_targets``: the training
    images' target distributions (distillation), sharded the same way; multi-label data brings its
    multi-hot labels as the soft targets of both splits."""
    cache_dir = True if cfg.cache else None
    val_targets = None
    if splits.multilabel:
        soft_targets, val_targets = splits.label_matrix(splits.train), splits.label_matrix(shard(splits.val, dist))
    show = progress and dist.is_main
    if dist.enabled and len(splits.train) < dist.world_size:
        raise ConfigError(f"{len(splits.train)} training images cannot be shared by {dist.world_size} ranks")
    if soft_targets is not None and dist.enabled:  # this rank's rows only
        rows = shard(list(range(len(splits.train))), dist)
        soft_targets = soft_targets.take(rows) if isinstance(soft_targets, RowFile) else np.asarray(soft_targets)[rows]
    datasets = {
        "train": ImageDataset(shard(splits.train, dist), data_cfg,
                              build_transform(data_cfg, train=True, augment=cfg.augment), cache_dir, progress=show,
                              soft_targets=soft_targets),
        "val": ImageDataset(shard(splits.val, dist), data_cfg, build_transform(data_cfg, train=False), cache_dir,
                            progress=show, soft_targets=val_targets),
    }
    datasets["train"].shard_total = len(splits.train)
    return datasets


def make_callbacks(cfg: ResolvedConfig, run_dir: Path, started: float) -> list:
    """The callbacks the options ask for (early stopping, lr on plateau, time limit, ``--trackers``
    trackers) around the ModelCheckpoint every run has; the user's come after them."""
    cbs: list = []
    if cfg.early_stopping is not None:
        cbs.append(EarlyStopping(monitor=cfg.monitor, patience=cfg.early_stopping, min_delta=cfg.min_delta,
                                 restore_best_weights=cfg.restore_best))
    if cfg.reduce_lr is not None:
        cbs.append(ReduceLROnPlateau(monitor=cfg.monitor, factor=cfg.reduce_lr_factor, patience=cfg.reduce_lr,
                                     min_lr=cfg.reduce_lr_min))
    cbs.append(ModelCheckpoint(run_dir, monitor=cfg.monitor, min_delta=cfg.min_delta))
    if cfg.time_limit is not None:
        cbs.append(TimeLimit(cfg.time_limit, start=started))
    return cbs + make_trackers(cfg.trackers, run_dir, final_phase=len(plan_phases(cfg)) - 1)  # --trackers


def config_record(cfg: ResolvedConfig, splits: DataSplits, data, meta: dict, model, runtime: Runtime, *,
                  adapted: list[str], warnings: list[str]) -> dict:
    """What ``config.json`` holds: the options, the data (classes, layout, split counts), the model's
    head and preprocessing, its pretrained weights, what was adapted, where it ran, the versions."""
    counts = {s: len(splits.split(s)) for s in ("train", "val", "test")}
    # the training images per class, multi-label: showing it (evaluate reads the imbalance from it)
    per_class = list(splits.counts()["train"].values())
    # the split as drawn: a DataSplits loaded by the caller may have another val ratio / seed than the options
    drawn = {"val_ratio": splits.val_ratio if splits.val_ratio is not None else cfg.val_ratio,
             "split_seed": splits.split_seed if splits.split_seed is not None else cfg.seed}
    return {**cfg.to_dict(), **drawn, "task": meta["task"], "classes": meta["classes"], "num_classes": meta["num_classes"],
            "data": str(splits.root if splits.root else data), "layout": splits.layout,
            "data_cfg": meta["data_cfg"], "split_counts": counts, "train_class_counts": per_class,
            "head": meta["head"], "dropout": meta["dropout"],
            "pretrained_weights": weights_record(model), "adapted": adapted, "warnings": warnings,
            "world_size": runtime.dist.world_size, "device": str(runtime.device), "channels_last": runtime.channels_last,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "transferlab": __version__}}


def check_multilabel_options(cfg: ResolvedConfig, distillation) -> None:
    """The options that have no multi-label meaning are refused in one line."""
    if cfg.sampler == "balanced":
        raise ConfigError("--sampler balanced draws by class and a multi-label image has several: use --loss focal")
    if cfg.class_weights is not None:
        raise ConfigError("--class-weights is for single-label data: use --loss focal for rare labels")
    if distillation is not None:
        raise ConfigError("distill works on single-label data")


def resume_advice(cfg: ResolvedConfig, run_dir: Path, data_arg, done: int) -> str:
    """What an interrupted training says after ``done`` completed epochs: how to continue."""
    if not done:
        return "no epoch had finished: nothing to resume"
    if (hint := RESUME_HINT.get()) is not None:  # a caller that resumes by itself (compare, run)
        return f"{done} completed epoch(s) are saved in {run_dir}; {hint}"
    return (f"{done} completed epoch(s) are saved in {run_dir}; continue with:\n"
            f"  transferlab train {data_arg} --model {cfg.model} --run-dir {cfg.run_dir} "
            f"--name {cfg.name} --resume")


def resolved_config(given: TrainConfig, recipe) -> ResolvedConfig:
    """The options completed from the recipe's defaults; to resume a run with a saved state, the
    run's own from its config.json (only where and how to run come from the call)."""
    cfg = given.resolve(recipe.defaults)
    run_dir = Path(cfg.run_dir) / cfg.name
    if not (cfg.resume and runfolder.has_state(run_dir)):
        return cfg
    saved = runfolder.read_config(run_dir, required=True)
    keep = {k: getattr(cfg, k) for k in ("device", "threads", "workers", "run_dir", "name")}
    return dataclasses.replace(ResolvedConfig.from_dict(saved), **keep, resume=True, overwrite=False)


class Session:
    """One call of :func:`train`, with its options (step 1) resolved from the ``given`` ones.
    Everything a step hands to the next is set in ``__init__`` or returned; :meth:`run` is the
    whole story."""

    def __init__(self, given: TrainConfig, data, user_callbacks: list, progress: bool,
                 distillation: Distillation | None = None):
        self.started = time.monotonic()                # --time-limit counts from here
        self.given = given                             # the options as the user set them
        self.recipe = get_recipe(given.model)
        self.cfg = resolved_config(given, self.recipe)  # 1. the options
        self.adapted: list[str] = []                   # options adapted to a tiny training set
        self.data_warnings: list[str] = []             # kept in config.json ("warnings")
        self.data = data
        self.user_callbacks = list(user_callbacks)
        self.progress = progress
        self.distillation = distillation               # a teacher's soft targets (transferlab distill)
        self.dist = D.DistInfo()                       # joined in run() when launched by torchrun
        self.device = torch.device("cpu")
        self.run_dir = Path(self.cfg.run_dir) / self.cfg.name
        self.folder: RunFolderGuard | None = None      # the run folder, once checked
        self.history: list[dict[str, Any]] = []

    def log(self, message: str) -> None:
        """Say ``message`` on rank 0 through the ``transferlab.training`` loggers (and so, while the run
        folder is held, into its train.log: :meth:`RunFolderGuard.taken`)."""
        if self.dist.is_main:
            logger.info(message)

    # ---- the story --------------------------------------------------------------------------------
    def run(self) -> Run:
        cfg = self.cfg
        self.device = pick_device(cfg.device)
        self.dist = D.setup(self.device.type)
        try:
            self.device = pick_device(cfg.device, self.dist)
            if self.device.type == "cpu":
                torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // self.dist.local_world_size))
            splits = self.load_splits()
            self.folder = RunFolderGuard(self.run_dir, self.dist)
            mode = self.folder.check(resume=cfg.resume, overwrite=cfg.overwrite)
            state = saved_state(self.run_dir, mode, splits.classes)
            if state is None:
                self.cfg = self.size_for_data(splits)
                self.cfg = self.adapt_to_data(splits)
            model = self.build_model(splits.classes, resuming=state is not None)
            phases = plan_phases(self.cfg)
            check_phases(model, phases)
            with self.folder.taken(mode, overwrite=self.cfg.overwrite):
                return self.train_phases(model, splits, phases, state)
        finally:
            D.cleanup(self.dist)

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
        if splits.multilabel:
            check_multilabel_options(cfg, self.distillation)
        return splits

    # ---- 3. model ---------------------------------------------------------------------------------
    def size_for_data(self, splits: DataSplits) -> ResolvedConfig:
        """The input size (and crop) for this data when not given: see ``Recipe.input_for``."""
        cfg, recipe = self.cfg, self.recipe
        if cfg.input_size is not None:
            return cfg
        side = splits.typical_side()
        size, crop = recipe.input_for(side)
        if side:
            self.log(f"input size {size} px for {recipe.name} (the training images' median shorter side is "
                     f"{side:.0f} px)")
        return dataclasses.replace(cfg, input_size=size, crop_pct=cfg.crop_pct if cfg.crop_pct is not None else crop)

    def adapt_to_data(self, splits: DataSplits) -> ResolvedConfig:
        """Batch size and epochs for a tiny training set when not given, and a warning when validation
        is too small to trust (see :mod:`transferlab.training.adapt`); logged once the run folder is ours."""
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
                            input_size=cfg.input_size, crop_pct=cfg.crop_pct, resize=cfg.resize)

    # ---- 5. phases (4., the run folder, is held around them: see run) -----------------------------
    def train_phases(self, model, splits: DataSplits, phases: list, state: dict | None) -> Run:
        cfg = self.cfg
        classes = list(splits.classes)
        data_cfg = dict(model.data_cfg)
        meta: dict[str, Any] = {"recipe": cfg.model, "classes": classes, "num_classes": len(classes),
                                "head": list(model.head_hidden), "dropout": list(model.head_dropout),
                                "data_cfg": data_cfg, "task": "multilabel" if splits.multilabel else "single"}
        distill = self.distillation
        datasets = make_datasets(splits, data_cfg, cfg, self.dist, progress=self.progress,
                                 soft_targets=distill.probs if distill is not None else None)
        runtime = self.place(model)
        if state is None:
            self.announce(model, splits, meta, phases, runtime)
        callbacks = make_callbacks(cfg, self.run_dir, self.started) + self.user_callbacks
        if state is not None:
            restore(state, model, callbacks, self.history)
            if state.get("finished"):
                self.log(f"{self.run_dir} already finished ({state['epoch']} epochs); nothing to do")
                return Run.load(self.run_dir)
            self.log(f"resuming {self.run_dir} after epoch {state['epoch']} (options from its config.json)")
        writer = StateWriter(self.run_dir, model, classes, callbacks, self.history, is_main=self.dist.is_main)
        runner = PhaseRunner(cfg, model, meta, datasets, callbacks, runtime, self.history, writer,
                             class_weight_tensor(cfg.class_weights, [y for _, y in splits.train], len(classes)),
                             distill)
        try:
            runner.run_all(phases, state)
        except KeyboardInterrupt:
            self.say_interrupted(splits)
            raise
        D.barrier(self.dist)
        best = next(((cb.best_epoch, cb.best) for cb in callbacks
                     if isinstance(cb, ModelCheckpoint) and cb.best_epoch is not None), None)
        if best is not None:
            self.log(f"done: best {cfg.monitor} {best[1]:.4f} at epoch {best[0]}; checkpoints in {self.run_dir}")
        return Run.load(self.run_dir)

    def place(self, model) -> Runtime:
        """Where and how the run trains (channels_last by default on CPU), the model moved there."""
        cfg = self.cfg
        channels_last = cfg.channels_last if cfg.channels_last is not None else self.device.type == "cpu"
        model.to(self.device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        return Runtime(device=self.device, dist=self.dist, amp=cfg.amp, channels_last=channels_last,
                       progress=self.progress)

    def announce(self, model, splits: DataSplits, meta: dict, phases: list, runtime: Runtime) -> None:
        """A new run: its config.json, then what it trains on, from which weights, what was adapted
        to the data, the plan, and a warning when validation is too small to trust."""
        cfg = self.cfg
        if self.dist.is_main:
            record = config_record(cfg, splits, self.data, meta, model, runtime, adapted=self.adapted,
                                   warnings=self.data_warnings)
            if self.distillation is not None:
                record["distillation"] = self.distillation.record
            runfolder.write_config(self.run_dir, record)
        self.log(f"training {cfg.model} on {len(splits.train)} images ({len(meta['classes'])} classes), "
                 f"validating on {len(splits.val)}; run folder {self.run_dir}")
        weights = weights_record(model)
        if weights is not None:
            self.log(f"pretrained weights: {weights['source']} ({weights['matched']} tensors"
                     + (f", sha256 {weights['sha256'][:12]}" if weights.get("sha256") else "") + ")")
        for line in self.adapted:
            self.log(f"adapted to the data: {line}")
        self.log(f"plan: {describe_phases(phases)}")
        if self.distillation is not None:
            d = self.distillation
            self.log(f"distilling {d.record.get('teacher', 'a teacher')}: loss {d.alpha:g} x T^2 x KL(teacher || student, "
                     f"at T {d.temperature:g}) + {1 - d.alpha:g} x the loss on the true labels")
        note = adapt.validation_note(len(splits.val))
        if note:
            self.log(f"warning: {note}")

    def say_interrupted(self, splits: DataSplits) -> None:
        data_arg = self.data if not isinstance(self.data, DataSplits) else splits.root
        self.log(resume_advice(self.cfg, self.run_dir, data_arg, self.history[-1]["epoch"] if self.history else 0))
