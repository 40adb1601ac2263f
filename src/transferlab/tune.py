"""Hyperparameter search with Optuna: ``tune(data, model=..., trials=..., budget=..., out=...) -> dict``.

A TPE sampler proposes training options; a median pruner stops a trial whose per-epoch validation
accuracy falls below the median of earlier trials at the same epoch. The study lives in
``OUT/study.db`` (SQLite), so an interrupted search continues where it stopped when the same call
is made again: ``trials`` is the number of finished (complete or pruned) trials the study should
have, not the number to add.

Two search spaces:

* ``space="head"`` (default): the new head on the **frozen** pretrained backbone, as ``train(...,
  freeze="frozen")`` trains it. The backbone's features are computed once per (input size,
  augmentation) and kept in ``OUT/features/`` as ``.npy`` files; a trial trains only the head on
  them, with :class:`transferlab.train.loop.Trainer` and the optimizer, schedule, sample order and
  loss ``train`` would use, so it takes seconds. Tuned: ``lr``, ``weight_decay``, ``head`` (hidden
  width, 0 = a linear head), ``dropout``, ``label_smoothing``, ``epochs``, ``input_size`` (a few
  cached sizes) and ``augment`` (``none``, or ``shift`` with ``feature_views`` cached augmented
  passes). Unfreezing needs the backbone in every step and is not tuned here.
* ``space="full"``: each trial is a real :func:`transferlab.train.train` (lower blocks still cached
  by train itself) with a time limit: the head options above plus every augmentation and the
  unfreeze depth (``unfreeze_last`` blocks fine-tuned for ``fine_tune`` epochs at
  ``fine_tune_lr``). Minutes a trial.

The first trial of a new study is the recipe's own defaults (within the space), so the best found
is never worse than what ``train`` does untuned on the same split. Outputs in ``OUT``: ``best.json``
(``TrainConfig`` options: ``transferlab train DATA --config OUT/best.json``), ``summary.json``,
``report.html`` with Optuna's optimisation history and parameter importances (``history.png``,
``importance.png``).

>>> from transferlab.tune import tune
>>> result = tune("photos/", model="efficientnet_lite0", trials=20, out="tune")     # doctest: +SKIP
>>> result["value"], result["params"]["lr"], result["best_json"]                   # doctest: +SKIP
(0.93, 0.0021, 'tune/best.json')
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from torch import nn
from torch.utils.data import TensorDataset

from .choices import AUGMENTS
from ._atomic import atomic_write, atomic_write_text, write_json
from ._html import render
from .data import DataSplits, ImageDataset, build_transform, load_data
from .errors import ConfigError, DataError
from .models import apply_freeze, backbone_blocks, create_model, get_recipe
from .train import adapt
from .train.api import seed_everything, train
from .train.callbacks import Callback
from .train.config import TrainConfig, parse_duration
from .train.distributed import DistInfo
from .train.features import FeatureViews, extract, frozen_part
from .train.loop import Trainer
from .train.sampling import image_batches, train_loader, val_loader
from .train.schedule import build_optimizer, build_scheduler

SPACES = ("head", "full")
STUDY_NAME = "transferlab-tune"
STUDY_FILE = "study.db"
HEAD_WIDTHS = (0, 128, 256, 512)         # 0 = a linear head on the pooled features
HEAD_AUGMENTS = ("none", "shift")        # shift has a batched form on the image cache: cheap to cache views of
DEFAULT_VIEWS = 2                        # augmented feature views cached for augment != none (head space)
DEFAULT_MODEL = "efficientnet_lite0"     # pretrained weights ship with a pip package: works offline
# the study's identity: resuming with other values of these would mix incomparable trials
IDENTITY = ("model", "data", "space", "seed", "val_ratio", "input_sizes", "views")


def tune(data, model: str = DEFAULT_MODEL, *, trials: int | str | None = 20, budget: float | str | None = None,
         out: str | os.PathLike = "tune", space: str = "head", weights: str | None = None,
         pretrained: bool | None = None, input_sizes=None, views: int = DEFAULT_VIEWS, seed: int = 0,
         val_ratio: float = 0.2, amp: str = "auto", progress: bool = True, log=print) -> dict[str, Any]:
    """Search training options for ``model`` on ``data``; returns the best trial's params and value.

    ``trials``: the finished trials the study in ``OUT/study.db`` should have (a re-run continues
    up to it; ``None`` = no limit, then give ``budget``). ``budget``: seconds or a duration such as
    ``"15m"`` for this call (a trial starts only while it remains; full-space trials get the rest as
    their ``time_limit``). ``input_sizes``: the sizes to try (default: the one ``train`` picks for
    this data and a smaller one). ``views``: augmented feature passes cached per size (head space).

    Returns ``{"value", "params", "trial", "options", "best_json", "report", "trials": {...},
    "feature_seconds"}``; ``value`` is the best epoch's validation accuracy.
    """
    return Tuner(data, model, trials=trials, budget=budget, out=out, space=space, weights=weights,
                 pretrained=pretrained, input_sizes=input_sizes, views=views, seed=seed, val_ratio=val_ratio,
                 amp=amp, progress=progress, log=log).run()


# ---- options ------------------------------------------------------------------------------------
def check_trials(trials) -> int | None:
    if trials is None:
        return None
    try:
        n = int(str(trials).strip())
    except ValueError:
        raise ConfigError(f"--trials must be a whole number of trials, got {trials!r}") from None
    if n < 1:
        raise ConfigError(f"--trials must be at least 1, got {n}")
    return n


def check_budget(budget) -> float | None:
    if budget is None:
        return None
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        if not (budget > 0 and math.isfinite(budget)):
            raise ConfigError(f"--budget must be a positive duration, got {budget!r}")
        return float(budget)
    return parse_duration(str(budget), "--budget")


def check_sizes(sizes) -> list[int] | None:
    if sizes is None:
        return None
    if isinstance(sizes, str):
        sizes = [s for s in sizes.replace(" ", "").split(",") if s]
    try:
        out = sorted({int(s) for s in sizes})
    except (TypeError, ValueError):
        raise ConfigError(f"--input-sizes must be comma-separated integers, e.g. 160,224; got {sizes!r}") from None
    if not out or out[0] < 8:
        raise ConfigError(f"--input-sizes must be integers of at least 8, got {sizes!r}")
    return out


def smaller_size(size: int) -> int:
    """The second input size tried by default: about 0.7x, a multiple of 32 (at least 32)."""
    return max(32, int(round(size * 0.7 / 32)) * 32)


class PruneReporter(Callback):
    """Reports each epoch's val_acc to the trial and stops training when the pruner says so."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial
        self.best = float("-inf")
        self.pruned_at: int | None = None
        self.stop_training = False

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        acc = float(logs["val_acc"])
        if math.isfinite(acc):
            self.best = max(self.best, acc)
        self.trial.report(acc, epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
            self.stop_training = True


class Tuner:
    def __init__(self, data, model: str, *, trials, budget, out, space, weights, pretrained, input_sizes, views,
                 seed, val_ratio, amp, progress, log):
        if space not in SPACES:
            raise ConfigError(f"unknown --space {space!r}: choose from {', '.join(SPACES)}")
        self.trials = check_trials(trials)
        self.budget = check_budget(budget)
        if self.trials is None and self.budget is None:
            raise ConfigError("give --trials or --budget (or both): the search needs an end")
        self.sizes_given = check_sizes(input_sizes)
        try:
            self.views = int(views)
        except (TypeError, ValueError):
            raise ConfigError(f"--views must be a whole number, got {views!r}") from None
        if self.views < 1:
            raise ConfigError(f"--views must be at least 1, got {self.views}")
        self.recipe = get_recipe(model)
        self.model = self.recipe.name
        # the options every trial shares, validated once as train would
        self.base = TrainConfig(model=self.model, seed=seed, val_ratio=val_ratio, amp=amp, weights=weights,
                                pretrained=pretrained)
        self.base.validate()
        self.space = space
        self.scratch = self.recipe.kind == "scratch"
        if space == "head" and self.recipe.kind == "scratch":
            raise ConfigError(f"{self.model} trains from scratch: there is no pretrained backbone whose features "
                              f"could be cached; tune it with --space full")
        self.data, self.out = data, Path(out)
        self.progress, self.log = progress, log
        self.splits: DataSplits | None = None
        self.sizes: list[int] = []
        self.crops: dict[int, float | None] = {}
        self.batch_size = 32
        self._models: dict[int, nn.Module] = {}
        self._features: dict[tuple, tuple] = {}
        self.feature_seconds: dict[str, float] = {}
        self.best_run: Path | None = None
        self.deadline: float | None = None
        self.trial_feature_seconds = 0.0  # feature extraction inside the current trial

    # ---- the story --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.splits = self.load_data()
        self.plan_sizes()
        self.batch_size = self.trial_config({}).batch_size
        self.model_for(self.sizes[-1])  # pretrained weights checked before any trial (a one-line error)
        study = self.open_study()
        done = finished(study)
        left = None if self.trials is None else self.trials - len(done)
        self.log(f"tuning {self.model} ({self.space} space) on {len(self.splits.train)} train / "
                 f"{len(self.splits.val)} val images: study {self.out / STUDY_FILE} has {len(done)} finished trial(s)"
                 + (f", {left} to go" if left is not None and left > 0 else "")
                 + (f", budget {self.budget:g}s" if self.budget else ""))
        if left is not None and left <= 0:
            self.log(f"the study already has {len(done)} finished trials (--trials {self.trials}); "
                     f"raise --trials to run more")
        else:
            if not study.trials:
                study.enqueue_trial(self.default_params(), user_attrs={"defaults": True})
            self.deadline = time.monotonic() + self.budget if self.budget else None
            callbacks = [self.say_trial]
            if self.trials is not None:
                callbacks.append(optuna.study.MaxTrialsCallback(
                    self.trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)))
            try:
                study.optimize(self.objective, n_trials=None, timeout=self.budget, callbacks=callbacks,
                               gc_after_trial=False)
            except KeyboardInterrupt:
                self.write_outputs(study, quiet=True)  # best so far; the caller says how to continue
                raise
        return self.write_outputs(study)

    # ---- data and sizes ---------------------------------------------------------------------------
    def load_data(self) -> DataSplits:
        if isinstance(self.data, DataSplits):
            splits = self.data
        else:
            if self.data is None:
                raise DataError("no data given: a folder ROOT/CLASS/*.jpg, ROOT/{train,test}/CLASS or a CSV")
            splits = load_data(self.data, val_ratio=self.base.val_ratio, seed=self.base.seed, progress=self.progress)
        if not splits.train:
            raise DataError("no training images")
        if not splits.val:
            raise DataError("no validation images: the search needs a validation split (raise --val-ratio)")
        return splits

    def plan_sizes(self) -> None:
        size, crop = self.recipe.input_for(self.splits.typical_side())
        if self.sizes_given:
            self.sizes = list(self.sizes_given)
        else:
            self.sizes = sorted({smaller_size(size), size})
        self.sizes = [s for s in self.sizes if s >= self.recipe.min_input_size] or [max(size, self.recipe.min_input_size)]
        # the crop train picks for this data (1.0 for small images upscaled) at every size tried
        self.crops = {s: crop for s in self.sizes}

    # ---- the study --------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        root = self.splits.root if self.splits.root else str(self.data)
        return {"model": self.model, "data": str(Path(root).resolve()) if root else "", "space": self.space,
                "seed": int(self.base.seed), "val_ratio": float(self.base.val_ratio), "input_sizes": list(self.sizes),
                "views": self.views}

    def open_study(self) -> optuna.Study:
        self.out.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{(self.out / STUDY_FILE).resolve()}"
        # tune prints its own line per trial; optuna's warning for a failed trial would repeat a Ctrl-C's
        # traceback (an objective's real error is raised anyway)
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        # the pruner's and sampler's settings are not stored: they are rebuilt the same on every run
        startup = 10 if self.trials is None else min(10, max(3, self.trials // 3))
        pruner = optuna.pruners.MedianPruner(n_startup_trials=min(5, startup), n_warmup_steps=4)
        # a resumed study gets a sampler seeded past the trials it holds: the same seed would replay
        # the first run's random start-up proposals
        probe = optuna.create_study(study_name=STUDY_NAME, storage=storage, direction="maximize", load_if_exists=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=int(self.base.seed) + len(probe.trials), n_startup_trials=startup,
                                                 multivariate=True, group=self.space == "full")
            study = optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=sampler, pruner=pruner)
        mine = self.identity()
        theirs = {k: study.user_attrs.get(k) for k in IDENTITY}
        if not study.trials and not study.user_attrs:
            for k, v in mine.items():
                study.set_user_attr(k, v)
        elif theirs != mine:
            diff = ", ".join(f"{k} {theirs[k]!r} (now {mine[k]!r})" for k in IDENTITY if theirs[k] != mine[k])
            raise ConfigError(f"{self.out / STUDY_FILE} holds another search ({diff}); "
                              f"use another --out, or the same options to continue it")
        return study

    # ---- the search space ---------------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        full = self.space == "full"
        p: dict[str, Any] = {
            "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
            "head": trial.suggest_categorical("head", HEAD_WIDTHS),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.2),
            "epochs": (trial.suggest_int("epochs", 2, 12) if full and not self.scratch
                       else trial.suggest_int("epochs", 5, 40, step=5)),
            "input_size": trial.suggest_categorical("input_size", self.sizes),
            "augment": trial.suggest_categorical("augment", self.augments()),
        }
        if full and not self.scratch:  # a from-scratch net trains whole: no unfreeze depth
            p["unfreeze_last"] = trial.suggest_categorical("unfreeze_last", self.unfreeze_choices())
            if p["unfreeze_last"]:
                p["fine_tune"] = trial.suggest_int("fine_tune", 1, 8)
                p["fine_tune_lr"] = trial.suggest_float("fine_tune_lr", 1e-5, 3e-3, log=True)
        return p

    def augments(self) -> tuple[str, ...]:
        return HEAD_AUGMENTS if self.space == "head" else tuple(AUGMENTS)

    def unfreeze_choices(self) -> tuple[int, ...]:
        n = len(backbone_blocks(self.model_for(self.sizes[-1]).backbone))
        own = self.recipe.defaults.get("unfreeze_last")
        picks = {0, 1, max(1, n // 4), max(1, n // 2)} | ({int(own)} if own else set())
        return tuple(sorted(k for k in picks if k <= n))

    def default_params(self) -> dict[str, Any]:
        """The recipe's own options, within the space: the first trial of a new study."""
        d = self.recipe.defaults
        cfg = TrainConfig(model=self.model).resolve(d)
        hidden = list(self.recipe.head)
        auto = self.recipe.input_for(self.splits.typical_side())[0]
        p = {"lr": float(np.clip(cfg.lr, 1e-4, 3e-2)),
             "weight_decay": float(np.clip(cfg.weight_decay or 1e-6, 1e-6, 1e-1)),
             "head": hidden[0] if hidden and hidden[0] in HEAD_WIDTHS else 0,
             "dropout": 0.0, "label_smoothing": float(min(cfg.label_smoothing or 0.0, 0.2)),
             "epochs": self.default_epochs(int(cfg.epochs)),
             "input_size": max([s for s in self.sizes if s <= auto] or self.sizes[:1]),
             "augment": cfg.augment if cfg.augment in self.augments() else "none"}
        if self.space == "full" and not self.scratch:
            k = int(cfg.unfreeze_last or 0)
            choices = self.unfreeze_choices()
            p["unfreeze_last"] = k if k in choices else 0
            if p["unfreeze_last"]:
                p["fine_tune"] = int(min(max(cfg.fine_tune or 1, 1), 8))
                p["fine_tune_lr"] = float(np.clip(cfg.fine_tune_lr or cfg.lr / 10, 1e-5, 3e-3))
        return p

    def default_epochs(self, recipe_epochs: int) -> int:
        if self.scratch:  # the range 5..40 by 5
            return int(min(max(round(recipe_epochs / 5) * 5, 5), 40))
        if self.space == "full":  # the head phase before fine-tuning: 2..12
            return int(min(max(recipe_epochs, 2), 12))
        return 10  # head only (a fine-tuning recipe's own head phase is a single epoch)

    # ---- params -> train options ------------------------------------------------------------------
    def options(self, params: dict[str, Any]) -> dict[str, Any]:
        """The ``train()`` options (TrainConfig names) of a trial's params: what best.json holds."""
        width = int(params.get("head", 0))
        o: dict[str, Any] = {"model": self.model}
        for k in ("lr", "weight_decay", "label_smoothing"):
            if k in params:
                o[k] = float(params[k])
        o["head"] = [width] if width else []
        drop = float(params.get("dropout", 0.0))
        o["dropout"] = [drop] if drop > 0 else []  # as config.json records it
        size = params.get("input_size")
        if size is not None:
            o["input_size"] = int(size)
            if self.crops.get(int(size)) is not None:
                o["crop_pct"] = float(self.crops[int(size)])
        aug = params.get("augment", "none")
        o["augment"] = aug
        if "epochs" in params:
            o["epochs"] = int(params["epochs"])
        k = int(params.get("unfreeze_last", 0) or 0)
        if self.scratch:
            o.update(freeze="full", fine_tune=0)
        elif k:
            o.update(freeze="frozen", fine_tune=int(params["fine_tune"]), fine_tune_lr=float(params["fine_tune_lr"]),
                     unfreeze_last=k)
        else:
            o.update(freeze="frozen", fine_tune=0)
        if aug != "none" and self.space == "head":
            o["feature_views"] = self.views
        o.update(batch_size=self.batch_size, monitor="val_acc", seed=int(self.base.seed),
                 val_ratio=float(self.base.val_ratio))
        if self.base.amp != "auto":
            o["amp"] = self.base.amp
        if self.base.weights is not None:
            o["weights"] = str(self.base.weights)
        if self.base.pretrained is not None:
            o["pretrained"] = bool(self.base.pretrained)
        return o

    def trial_config(self, params: dict[str, Any]) -> TrainConfig:
        """The resolved TrainConfig a trial trains with (batch size adapted to the data as train does)."""
        given = TrainConfig(**{k: v for k, v in self.options(params).items() if k != "batch_size"}) if params \
            else dataclasses.replace(self.base)
        cfg = given.resolve(self.recipe.defaults)
        cfg, _ = adapt.adapt_to_data(cfg, given, len(self.splits.train))
        return cfg

    # ---- the objective ------------------------------------------------------------------------------
    def objective(self, trial: optuna.Trial) -> float:
        self.trial_feature_seconds = 0.0
        params = self.suggest(trial)
        trial.set_user_attr("options", self.options(params))
        if self.space == "head":
            return self.head_trial(trial, params)
        return self.full_trial(trial, params)

    def head_trial(self, trial: optuna.Trial, params: dict[str, Any]) -> float:
        cfg = self.trial_config(params)
        views = 1 if cfg.augment == "none" else min(int(cfg.feature_views), int(cfg.epochs))
        train_views, train_y, val_x, val_y = self.features(int(cfg.input_size), cfg.augment, views)
        if self.trial_feature_seconds:
            trial.set_user_attr("feature_seconds", round(self.trial_feature_seconds, 2))
        # the head as train builds it: the whole model under the seed (no weights read: ~0.03 s), so
        # that its initial weights, and so the trial's figures, are the ones train --config reproduces
        seed_everything(cfg.seed)
        head = create_model(self.model, len(self.splits.classes), pretrained=False, head=tuple(cfg.head),
                            dropout=cfg.dropout, input_size=cfg.input_size, crop_pct=cfg.crop_pct).head
        dist = DistInfo()
        tl = train_loader(FeatureViews(train_views, train_y), batch_size=cfg.batch_size, seed=cfg.seed, dist=dist,
                          seeded=False, workers=0)
        vl = val_loader(TensorDataset(val_x, val_y), batch_size=cfg.batch_size, seed=cfg.seed, dist=dist, workers=0)
        optimizer = build_optimizer(head, cfg.optimizer, cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                                    nesterov=cfg.nesterov)
        scheduler = build_scheduler(optimizer, cfg.schedule, cfg.epochs, warmup=cfg.warmup, step_size=cfg.step_size,
                                    gamma=cfg.gamma, min_lr=cfg.min_lr)
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        reporter = PruneReporter(trial)
        seed_everything(cfg.seed + 1)  # as train's first phase
        trainer = Trainer(head, head, tl, vl, optimizer=optimizer, scheduler=scheduler, criterion=criterion,
                          callbacks=[reporter], total_epochs=cfg.epochs, amp=cfg.amp, progress=False,
                          log=lambda _msg: None)
        trainer.fit(cfg.epochs)
        return self.finish(trial, reporter)

    def full_trial(self, trial: optuna.Trial, params: dict[str, Any]) -> float:
        options = {k: v for k, v in self.options(params).items() if k != "model"}
        remaining = None if self.deadline is None else max(1.0, self.deadline - time.monotonic())
        reporter = PruneReporter(trial)
        run = train(self.splits, model=self.model, run_dir=str(self.out / "trials"), name=f"trial-{trial.number:03d}",
                    overwrite=True, time_limit=remaining, callbacks=[reporter], progress=False, **options)
        trial.set_user_attr("run", str(run.dir))
        try:
            value = self.finish(trial, reporter)
        except optuna.TrialPruned:
            shutil.rmtree(run.dir, ignore_errors=True)
            raise
        best = trial.study.best_value if finished_complete(trial.study) else float("-inf")
        if value > best:  # keep the best trial's run folder only (each holds full checkpoints)
            if self.best_run is not None and self.best_run != run.dir:
                shutil.rmtree(self.best_run, ignore_errors=True)
            self.best_run = run.dir
        else:
            shutil.rmtree(run.dir, ignore_errors=True)
        return value

    def finish(self, trial: optuna.Trial, reporter: PruneReporter) -> float:
        if reporter.pruned_at is not None:
            trial.set_user_attr("pruned_at", reporter.pruned_at)
            raise optuna.TrialPruned(f"pruned at epoch {reporter.pruned_at}")
        if not math.isfinite(reporter.best):
            raise optuna.TrialPruned("no finite validation accuracy")
        return float(reporter.best)

    # ---- cached features ----------------------------------------------------------------------------
    def model_for(self, size: int):
        if size not in self._models:
            seed_everything(self.base.seed)  # as train: a backbone without pretrained weights is seeded
            model = create_model(self.model, len(self.splits.classes), pretrained=self.base.pretrained,
                                 weights=self.base.weights, input_size=size, crop_pct=self.crops.get(size))
            apply_freeze(model, "frozen")
            self._models[size] = model
        return self._models[size]

    def feature_dir(self, size: int, augment: str, model) -> Path:
        h = hashlib.sha1()
        stats = []
        for split in (self.splits.train, self.splits.val):
            for path, label in split:
                try:
                    st = os.stat(path)
                    stats.append((path, label, st.st_size, st.st_mtime_ns))
                except OSError:
                    stats.append((path, label, None, None))
        info = model.weights_info or {}
        h.update(json.dumps({"files": stats, "model": self.model, "size": size, "data_cfg": model.data_cfg,
                             "augment": augment, "seed": int(self.base.seed), "amp": self.base.amp,
                             "batch": self.batch_size, "weights": [info.get("source"), info.get("matched")]},
                            sort_keys=True, default=str).encode())
        return self.out / "features" / f"{self.model}-{size}px-{augment}-{h.hexdigest()[:12]}"

    def features(self, size: int, augment: str, views: int):
        """(train views, train labels, val features, val labels) at ``size``, from OUT/features or computed."""
        key = (size, augment, views)
        if key in self._features:
            return self._features[key]
        model = self.model_for(size)
        folder = self.feature_dir(size, augment, model)
        wanted = [folder / f"train-{v}.npy" for v in range(1, views + 1)] + [folder / "val.npy"]
        missing = [p for p in wanted if not p.is_file()]
        t0 = time.perf_counter()
        if missing:
            self.extract(model, folder, augment, [int(p.stem.split("-")[1]) for p in missing if p.stem != "val"],
                         "val.npy" in {p.name for p in missing})
            seconds = time.perf_counter() - t0
            self.feature_seconds[f"{size}px {augment}"] = round(seconds, 2)
            self.trial_feature_seconds += seconds
            self.log(f"features at {size} px ({augment}, {views} view(s)): {len(self.splits.train)} train + "
                     f"{len(self.splits.val)} val images, {seconds:.1f}s (kept in {folder})")
        load = lambda p: torch.from_numpy(np.array(np.load(p, mmap_mode="r")))  # noqa: E731 - a copy in RAM
        train_views = [load(folder / f"train-{v}.npy") for v in range(1, views + 1)]
        val_x = load(folder / "val.npy")
        train_y = torch.tensor([y for _, y in self.splits.train], dtype=torch.long)
        val_y = torch.tensor([y for _, y in self.splits.val], dtype=torch.long)
        self._features[key] = (train_views, train_y, val_x, val_y)
        return self._features[key]

    def extract(self, model, folder: Path, augment: str, views: list[int], val: bool) -> None:
        lower, _ = frozen_part(model)
        if lower is None:
            raise ConfigError(f"{self.model}'s backbone cannot be frozen and cached; tune it with --space full")
        device = torch.device("cpu")
        model.to(memory_format=torch.channels_last)
        cfg = model.data_cfg
        common = dict(device=device, channels_last=True, progress=self.progress)
        if views:
            ds = ImageDataset(self.splits.train, cfg, build_transform(cfg, train=True, augment=augment), True,
                              progress=self.progress)
            for v in views:
                loader = image_batches(ds, [(v, i) for i in range(len(ds))], batch_size=self.batch_size,
                                       seed=int(self.base.seed), augment=augment, workers=None)
                feats, _ = extract(lower, loader, amp=self.base.amp, description=f"features train {v}", **common)
                _save_npy(folder / f"train-{v}.npy", feats.numpy())
        if val:
            ds = ImageDataset(self.splits.val, cfg, build_transform(cfg, train=False), True, progress=self.progress)
            loader = val_loader(ds, batch_size=self.batch_size, seed=int(self.base.seed), dist=DistInfo())
            feats, _ = extract(lower, loader, amp="none", description="features val", **common)  # fp32, as train
            _save_npy(folder / "val.npy", feats.numpy())

    # ---- progress and outputs -----------------------------------------------------------------------
    def say_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        of = f"/{self.trials}" if self.trials else ""
        n_done = len(finished(study))
        if trial.state == optuna.trial.TrialState.COMPLETE:
            result = f"val_acc {trial.value:.4f}"
        elif trial.state == optuna.trial.TrialState.PRUNED:
            result = f"pruned at epoch {trial.user_attrs.get('pruned_at', '?')}"
        else:
            result = str(trial.state.name).lower()
        best = (f"best {study.best_value:.4f} (trial {study.best_trial.number})"
                if finished_complete(study) else "best -")
        feats = trial.user_attrs.get("feature_seconds")
        took = f"{seconds:.1f}s" + (f" (features {feats:.1f}s)" if feats else "")
        self.log(f"trial {trial.number} [{n_done}{of}]  {shown}  {result}  {took}  {best}")

    def write_outputs(self, study: optuna.Study, quiet: bool = False) -> dict[str, Any]:
        counts = {s.name.lower(): sum(t.state == s for t in study.trials) for s in optuna.trial.TrialState}
        result: dict[str, Any] = {"value": None, "params": None, "trial": None, "options": None, "best_json": None,
                                  "report": None, "study": str(self.out / STUDY_FILE),
                                  "trials": {k: v for k, v in counts.items() if v},
                                  "feature_seconds": dict(self.feature_seconds)}
        if finished_complete(study):
            best = study.best_trial
            options = best.user_attrs.get("options") or self.options(best.params)
            write_json(self.out / "best.json", options)
            result.update(value=float(best.value), params=dict(best.params), trial=best.number, options=options,
                          best_json=str(self.out / "best.json"))
        result["report"] = str(write_report(study, self.out, self.identity(), result))
        write_json(self.out / "summary.json", result)
        if result["value"] is not None and not quiet:
            data = self.identity()["data"]
            self.log(f"best: trial {result['trial']}, val_acc {result['value']:.4f}; options in {result['best_json']}; "
                     f"report {result['report']}")
            self.log(f"train it: transferlab train {data} --config {result['best_json']}")
        return result


def finished(study: optuna.Study) -> list:
    return [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


def finished_complete(study: optuna.Study) -> bool:
    return any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)
    atomic_write(path, write)


# ---- the report -------------------------------------------------------------------------------------
def _plot(kind: str, study: optuna.Study, path: Path) -> str | None:
    """Optuna's matplotlib plot saved as PNG; None (and a note) when it cannot be drawn yet."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("optuna").setLevel(logging.ERROR)
        try:
            ax = (ovm.plot_optimization_history(study) if kind == "history"
                  else ovm.plot_param_importances(study))
        except Exception:  # noqa: BLE001 - too few trials for importances, or a plot bug: the report says so
            plt.close("all")
            return None
    fig = ax.figure
    fig.set_size_inches(7.5, 4.2)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return base64.b64encode(path.read_bytes()).decode("ascii")


def write_report(study: optuna.Study, out: Path, identity: dict, result: dict) -> Path:
    """OUT/report.html (self-contained): the best options, Optuna's history and importance plots,
    the trials table."""
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    history = _plot("history", study, out / "history.png") if complete else None
    importance = _plot("importance", study, out / "importance.png") if len(complete) >= 2 else None
    rows = sorted(study.trials, key=lambda t: (t.value is None, -(t.value or 0.0), t.number))
    names = sorted({k for t in study.trials for k in t.params})
    trials = [{"number": t.number, "state": t.state.name.lower(), "best": result.get("trial") == t.number,
               "value": f"{t.value:.4f}" if t.value is not None else "",
               "seconds": f"{t.duration.total_seconds():.1f}" if t.duration else "",
               "params": [_fmt(t.params[n]) if n in t.params else "" for n in names]} for t in rows]
    page = render("tune.html", identity=identity, result=result, study=str(out / STUDY_FILE),
                  options=json.dumps(result.get("options"), indent=2), best_json=str(out / "best.json"),
                  history=history, importance=importance, params=names, trials=trials)
    path = out / "report.html"
    atomic_write_text(path, page)
    return path
