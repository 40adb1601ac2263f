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
  them, with :class:`transferlab.training.loop.Trainer` and the optimizer, schedule, sample order and
  loss ``train`` would use, so it takes seconds. Tuned: ``lr``, ``weight_decay``, ``head`` (hidden
  width, 0 = a linear head), ``dropout``, ``label_smoothing``, ``epochs``, ``input_size`` (a few
  cached sizes) and ``augment`` (``none``, or ``shift`` with ``feature_views`` cached augmented
  passes). Unfreezing needs the backbone in every step and is not tuned here.
* ``space="full"``: each trial is a real :func:`transferlab.training.train` (lower blocks still cached
  by train itself) with a time limit: the head options above plus every augmentation and the
  unfreeze depth (``unfreeze_last`` blocks fine-tuned for ``fine_tune`` epochs at
  ``fine_tune_lr``). Minutes a trial.

The first trial of a new study is the recipe's own defaults (within the space), so the best found
is never worse than what ``train`` does untuned on the same split. Outputs in ``OUT``: ``best.json``
(``TrainConfig`` options: ``transferlab train DATA --config OUT/best.json``), ``summary.json``,
``report.html`` with Optuna's optimisation history and parameter importances (``history.png``,
``importance.png``).

The modules: ``options`` (the call's options, checked), ``space`` (what a trial draws and the ``train``
options it stands for), ``features`` (the frozen backbones and their cached features), ``trials``
(what one trial trains, its pruning and the run folders kept), ``study`` (the SQLite study and its
identity), ``report`` (a line per trial, ``best.json``, ``summary.json``, ``report.html``) and
``tuner`` (:class:`Tuner`, which runs them).

>>> from transferlab.tune import tune
>>> result = tune("photos/", model="efficientnet_lite0", trials=20, out="tune")     # doctest: +SKIP
>>> result["value"], result["params"]["lr"], result["best_json"]                   # doctest: +SKIP
(0.93, 0.0021, 'tune/best.json')
"""
from __future__ import annotations

import os
from typing import Any

from .features import Backbones, FeatureCache
from .options import (DEFAULT_MODEL, DEFAULT_VIEWS, SPACES, check_budget, check_sizes, check_space, check_trials,
                      check_views)
from .report import TrialLine, write_report, write_results
from .space import HEAD_AUGMENTS, HEAD_WIDTHS, SearchSpace, plan_sizes, smaller_size
from .study import IDENTITY, STUDY_FILE, STUDY_NAME, finished, finished_complete, open_study
from .trials import PruneReporter, fit_head, keep_best_run, trial_value
from .tuner import Tuner, load_splits

__all__ = [
    "DEFAULT_MODEL", "DEFAULT_VIEWS", "HEAD_AUGMENTS", "HEAD_WIDTHS", "IDENTITY", "SPACES", "STUDY_FILE", "STUDY_NAME",
    "Backbones", "FeatureCache", "PruneReporter", "SearchSpace", "TrialLine", "Tuner", "check_budget", "check_sizes",
    "check_space", "check_trials", "check_views", "finished", "finished_complete", "fit_head", "keep_best_run",
    "load_splits", "open_study", "plan_sizes", "smaller_size", "trial_value", "tune", "write_report", "write_results",
]


def tune(data, model: str = DEFAULT_MODEL, *, trials: int | str | None = 20, budget: float | str | None = None,
         out: str | os.PathLike = "tune", space: str = "head", weights: str | None = None,
         pretrained: bool | None = None, input_sizes=None, views: int = DEFAULT_VIEWS, seed: int = 0,
         val_ratio: float = 0.2, amp: str = "auto", progress: bool = True) -> dict[str, Any]:
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
                 amp=amp, progress=progress).run()
