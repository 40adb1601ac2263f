"""The search of one :func:`transferlab.tune.tune` call: :class:`Tuner` checks the options, loads the
data and runs the study's trials until it has ``trials`` finished ones or the budget is spent."""
from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from ..data import DataSplits, load_data
from ..errors import ConfigError, DataError
from ..models import get_recipe
from ..training.api import train
from ..training.config import TrainConfig
from .features import Backbones, FeatureCache
from .options import check_budget, check_sizes, check_space, check_trials, check_views
from .report import TrialLine, write_results
from .space import SearchSpace, plan_sizes
from .study import STUDY_FILE, finished, open_study
from .trials import PruneReporter, fit_head, keep_best_run, trial_value

logger = logging.getLogger("transferlab.tune")


def load_splits(data, base: TrainConfig, progress: bool) -> DataSplits:
    """``data`` (a path, or DataSplits as they are) split as train splits it; a DataError without
    training or validation images."""
    if isinstance(data, DataSplits):
        splits = data
    else:
        if data is None:
            raise DataError("no data given: a folder ROOT/CLASS/*.jpg, ROOT/{train,test}/CLASS or a CSV")
        splits = load_data(data, val_ratio=base.val_ratio, seed=base.seed, progress=progress)
    if not splits.train:
        raise DataError("no training images")
    if not splits.val:
        raise DataError("no validation images: the search needs a validation split (raise --val-ratio)")
    return splits


class Tuner:
    """One search, with :func:`transferlab.tune.tune`'s arguments, checked before any work; then the
    data is loaded and the collaborators made: the :class:`SearchSpace` a trial draws from and the
    :class:`FeatureCache` of the head space.

    :meth:`run` opens the study (:func:`open_study`) and runs its trials, each :meth:`head_trial` or
    :meth:`full_trial`; :meth:`write_outputs` writes what was found.
    """

    def __init__(self, data, model: str, *, trials, budget, out, space, weights, pretrained, input_sizes, views,
                 seed, val_ratio, amp, progress):
        self.space = check_space(space)
        self.trials = check_trials(trials)
        self.budget = check_budget(budget)
        if self.trials is None and self.budget is None:
            raise ConfigError("give --trials or --budget (or both): the search needs an end")
        self.sizes_given = check_sizes(input_sizes)
        self.views = check_views(views)
        self.recipe = get_recipe(model)
        self.model = self.recipe.name
        # the options every trial shares, validated once as train would
        self.base = TrainConfig(model=self.model, seed=seed, val_ratio=val_ratio, amp=amp, weights=weights,
                                pretrained=pretrained)
        self.base.validate()
        self.scratch = self.recipe.kind == "scratch"
        if space == "head" and self.scratch:
            raise ConfigError(f"{self.model} trains from scratch: there is no pretrained backbone whose features "
                              f"could be cached; tune it with --space full")
        self.data, self.out = data, Path(out)
        self.progress = progress
        self.best_run: Path | None = None     # the full space's best trial's run folder (the only one kept)
        self.deadline: float | None = None
        # the data, its input sizes, the search space and the feature cache
        self.splits = load_splits(data, self.base, progress)
        sizes, crops = plan_sizes(self.recipe, self.splits, self.sizes_given)
        backbones = Backbones(self.model, len(self.splits.classes), self.base, crops)
        self.search = SearchSpace(self.recipe, self.base, self.space, self.splits, sizes=sizes, crops=crops,
                                  views=self.views, backbone=backbones)
        self.features = FeatureCache(backbones, self.splits, self.out, batch_size=self.search.batch_size,
                                     progress=progress)
        backbones(sizes[-1])  # pretrained weights checked before any trial (a one-line error)

    # ---- the story --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        study = open_study(self.out, self.identity(), seed=int(self.base.seed), trials=self.trials,
                           group=self.space == "full")
        done = finished(study)
        left = None if self.trials is None else self.trials - len(done)
        logger.info(f"tuning {self.model} ({self.space} space) on {len(self.splits.train)} train / "
                 f"{len(self.splits.val)} val images: study {self.out / STUDY_FILE} has {len(done)} finished trial(s)"
                 + (f", {left} to go" if left is not None and left > 0 else "")
                 + (f", budget {self.budget:g}s" if self.budget else ""))
        if left is not None and left <= 0:
            logger.info(f"the study already has {len(done)} finished trials (--trials {self.trials}); "
                     f"raise --trials to run more")
        else:
            self.optimize(study)
        return self.write_outputs(study)

    def optimize(self, study: optuna.Study) -> None:
        """Trials until the study has ``trials`` finished ones or the budget is spent; the recipe's own
        defaults first in a new study. On Ctrl-C the outputs of what finished are written, then it re-raises."""
        if not study.trials:
            study.enqueue_trial(self.search.default_params(), user_attrs={"defaults": True})
        self.deadline = time.monotonic() + self.budget if self.budget else None
        callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = [TrialLine(self.trials)]
        if self.trials is not None:
            callbacks.append(optuna.study.MaxTrialsCallback(
                self.trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)))
        try:
            study.optimize(self.objective, n_trials=None, timeout=self.budget, callbacks=callbacks,
                           gc_after_trial=False)
        except KeyboardInterrupt:
            self.write_outputs(study, quiet=True)  # best so far; the caller says how to continue
            raise

    def identity(self) -> dict[str, Any]:
        """What a resumed study must share with this search (see :data:`IDENTITY`)."""
        root = self.splits.root if self.splits.root else str(self.data)
        return {"model": self.model, "data": str(Path(root).resolve()) if root else "", "space": self.space,
                "seed": int(self.base.seed), "val_ratio": float(self.base.val_ratio),
                "input_sizes": list(self.search.sizes), "views": self.views}

    # ---- the objective ------------------------------------------------------------------------------
    def objective(self, trial: optuna.Trial) -> float:
        self.features.spent = 0.0
        params = self.search.suggest(trial)
        trial.set_user_attr("options", self.search.options(params))
        if self.space == "head":
            return self.head_trial(trial, params)
        return self.full_trial(trial, params)

    def head_trial(self, trial: optuna.Trial, params: dict[str, Any]) -> float:
        """The head alone on the frozen backbone's cached features: seconds a trial."""
        cfg = self.search.trial_config(params)
        views = 1 if cfg.augment == "none" else min(int(cfg.feature_views), int(cfg.epochs))
        features = self.features.get(int(params["input_size"]), cfg.augment, views)
        if self.features.spent:
            trial.set_user_attr("feature_seconds", round(self.features.spent, 2))
        reporter = PruneReporter(trial)
        fit_head(self.model, len(self.splits.classes), cfg, features, reporter)
        return trial_value(trial, reporter)

    def full_trial(self, trial: optuna.Trial, params: dict[str, Any]) -> float:
        """A real :func:`transferlab.training.train` with the time left as its limit; its run folder is
        kept only while it is the best trial's."""
        options = {k: v for k, v in self.search.options(params).items() if k != "model"}
        remaining = None if self.deadline is None else max(1.0, self.deadline - time.monotonic())
        reporter = PruneReporter(trial)
        run = train(self.splits, model=self.model, run_dir=str(self.out / "trials"), name=f"trial-{trial.number:03d}",
                    overwrite=True, time_limit=remaining, callbacks=[reporter], progress=False, **options)
        trial.set_user_attr("run", str(run.dir))
        try:
            value = trial_value(trial, reporter)
        except optuna.TrialPruned:
            shutil.rmtree(run.dir, ignore_errors=True)
            raise
        self.best_run = keep_best_run(trial.study, run.dir, value, self.best_run)
        return value

    # ---- outputs ------------------------------------------------------------------------------------
    def write_outputs(self, study: optuna.Study, quiet: bool = False) -> dict[str, Any]:
        """best.json, report.html and summary.json (see :func:`write_results`); unless ``quiet``, how to
        train the best options."""
        result = write_results(study, self.out, self.identity(), self.features.seconds, self.search.options)
        if result["value"] is not None and not quiet:
            data = self.identity()["data"]
            logger.info(f"best: trial {result['trial']}, val_acc {result['value']:.4f}; options in {result['best_json']}; "
                     f"report {result['report']}")
            logger.info(f"train it: transferlab train {data} --config {result['best_json']}")
        return result
