"""The search space: the params a trial draws, the recipe's own as the first trial, and the ``train()``
options they stand for (what ``best.json`` holds)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from ..choices import AUGMENTS
from ..data import DataSplits
from ..models import Classifier, Recipe, backbone_blocks
from ..training import adapt
from ..training.config import ResolvedConfig, TrainConfig

HEAD_WIDTHS = (0, 128, 256, 512)         # 0 = a linear head on the pooled features
HEAD_AUGMENTS = ("none", "shift")        # shift has a batched form on the image cache: cheap to cache views of


def smaller_size(size: int) -> int:
    """The second input size tried by default: about 0.7x, a multiple of 32 (at least 32)."""
    return max(32, int(round(size * 0.7 / 32)) * 32)


def plan_sizes(recipe: Recipe, splits: DataSplits,
               given: list[int] | None) -> tuple[list[int], dict[int, float | None]]:
    """The input sizes tried (``given``, else the one train picks for this data and a smaller one; none
    below the recipe's minimum) and the crop at each."""
    size, crop = recipe.input_for(splits.typical_side())
    sizes = list(given) if given else sorted({smaller_size(size), size})
    sizes = [s for s in sizes if s >= recipe.min_input_size] or [max(size, recipe.min_input_size)]
    # the crop train picks for this data (1.0 for small images upscaled) at every size tried
    return sizes, {s: crop for s in sizes}


class SearchSpace:
    """What a trial of ``space`` ("head" or "full") may try for ``recipe`` on ``splits``.

    ``base``: the options every trial shares (model, seed, val_ratio, amp, weights, pretrained).
    ``backbone(size)``: the frozen model at an input size, asked only for its block count (the
    unfreeze depths of the full space). ``batch_size`` is the one train adapts to this data.
    """

    def __init__(self, recipe: Recipe, base: TrainConfig, space: str, splits: DataSplits, *, sizes: list[int],
                 crops: dict[int, float | None], views: int, backbone: Callable[[int], Classifier]):
        self.recipe, self.model, self.base, self.space = recipe, recipe.name, base, space
        self.scratch = recipe.kind == "scratch"
        self.splits, self.sizes, self.crops, self.views = splits, sizes, crops, views
        self.backbone = backbone
        self.batch_size = self.trial_config({}).batch_size

    # ---- what a trial draws -----------------------------------------------------------------------
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
        n = len(backbone_blocks(self.backbone(self.sizes[-1]).backbone))
        own = self.recipe.defaults.get("unfreeze_last")
        picks = {0, 1, max(1, n // 4), max(1, n // 2)} | ({int(own)} if own else set())
        return tuple(sorted(k for k in picks if k <= n))

    # ---- the first trial of a new study ---------------------------------------------------------
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
            crop = self.crops.get(int(size))
            if crop is not None:
                o["crop_pct"] = float(crop)
        aug = params.get("augment", "none")
        o["augment"] = aug
        if "epochs" in params:
            o["epochs"] = int(params["epochs"])
        o.update(self._depth(params))
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

    def _depth(self, params: dict[str, Any]) -> dict[str, Any]:
        """What is trained: the whole net (from scratch), the head only, or the last blocks too."""
        k = int(params.get("unfreeze_last", 0) or 0)
        if self.scratch:
            return {"freeze": "full", "fine_tune": 0}
        if k:
            return {"freeze": "frozen", "fine_tune": int(params["fine_tune"]),
                    "fine_tune_lr": float(params["fine_tune_lr"]), "unfreeze_last": k}
        return {"freeze": "frozen", "fine_tune": 0}

    def trial_config(self, params: dict[str, Any]) -> ResolvedConfig:
        """The resolved TrainConfig a trial trains with (batch size adapted to the data as train does)."""
        given = TrainConfig(**{k: v for k, v in self.options(params).items() if k != "batch_size"}) if params \
            else dataclasses.replace(self.base)
        cfg = given.resolve(self.recipe.defaults)
        cfg, _ = adapt.adapt_to_data(cfg, given, len(self.splits.train))
        return cfg
