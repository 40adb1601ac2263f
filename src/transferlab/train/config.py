"""The training configuration: every option of ``transferlab train``, validated in one place.

:class:`TrainConfig` is what ``train(...)`` keyword arguments and CLI flags turn into; it is
written (with classes, data_cfg, split counts and environment) to ``RUN/config.json``.
Options left at ``None`` take the recipe's defaults (``lr``, ``augment``, ``weight_decay``,
``freeze``) in :meth:`TrainConfig.resolve`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .schedule import OPTIMIZERS, SCHEDULES

AUGMENTS = ("none", "light", "strong")
FREEZE_POLICIES = ("frozen", "full")
MONITORS = ("val_loss", "val_acc", "train_loss", "train_acc")
AMP_MODES = ("none", "bf16")
FALLBACK_DEFAULTS = {"lr": 1e-3, "augment": "none", "weight_decay": 0.0, "freeze": "full", "optimizer": "adam"}


@dataclass
class TrainConfig:
    model: str = "mobilenet_v2"
    epochs: int = 10
    batch_size: int = 32
    lr: float | None = None
    optimizer: str | None = None         # sgd | adam | adamw (default: the recipe's, else adam)
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "cosine"
    warmup: int = 0
    step_size: int | None = None
    gamma: float = 0.1
    min_lr: float = 0.0
    weight_decay: float | None = None
    label_smoothing: float = 0.0
    class_weights: Any = None            # None | "auto" | list of floats (one per class)
    augment: str | None = None
    freeze: str | None = None            # "frozen" (head only) | "full"
    unfreeze_from: int | None = None     # train backbone layers N.. (model.layers() index), freeze the rest
    unfreeze_last: int | None = None     # train the last K backbone layers
    fine_tune: int = 0                   # second phase: this many epochs with the backbone unfrozen
    fine_tune_lr: float | None = None    # lr of the second phase (default: lr / 10, or the recipe's finetune_lr)
    head: list[int] = field(default_factory=list)
    dropout: list[float] | float | None = None   # None: the recipe's
    pretrained: bool | None = None
    weights: str | None = None
    input_size: int | None = None
    val_ratio: float = 0.2
    seed: int = 0
    workers: int | None = None
    cache: bool = True                   # decoded-image cache (transferlab.data)
    feature_cache: bool = True           # frozen backbone: compute its features once
    feature_views: int | None = None     # augmented views cached (default 1 without augmentation, else min(epochs, 4))
    early_stopping: int | None = None    # patience
    monitor: str = "val_loss"
    min_delta: float = 0.0
    restore_best: bool = True
    reduce_lr: int | None = None         # patience
    reduce_lr_factor: float = 0.1
    reduce_lr_min: float = 0.0
    device: str | None = None
    threads: int | None = None
    channels_last: bool | None = None    # default: on for 4-D conv inputs on CPU
    amp: str = "none"
    run_dir: str = "runs"
    name: str | None = None
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.head, str):
            self.head = parse_int_list(self.head, "--head")
        if isinstance(self.dropout, str):
            self.dropout = parse_float_list(self.dropout, "--dropout")
        if isinstance(self.class_weights, str) and self.class_weights != "auto":
            self.class_weights = parse_float_list(self.class_weights, "--class-weights")

    # ---- validation ---------------------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        def need(cond: bool, msg: str):
            if not cond:
                raise ConfigError(msg)

        need(int(self.epochs) >= 1, f"--epochs must be at least 1, got {self.epochs}")
        need(int(self.batch_size) >= 1, f"--batch-size must be at least 1, got {self.batch_size}")
        need(self.lr is None or (self.lr > 0 and math.isfinite(self.lr)), f"--lr must be a positive number, got {self.lr}")
        need(self.optimizer is None or self.optimizer in OPTIMIZERS, f"unknown --optimizer {self.optimizer!r}: choose from {', '.join(OPTIMIZERS)}")
        need(self.schedule in SCHEDULES, f"unknown --schedule {self.schedule!r}: choose from {', '.join(SCHEDULES)}")
        need(int(self.warmup) >= 0, f"--warmup must be >= 0 epochs, got {self.warmup}")
        need(self.step_size is None or int(self.step_size) >= 1, f"--step-size must be at least 1, got {self.step_size}")
        need(0.0 < self.gamma <= 1.0, f"--gamma must be in (0, 1], got {self.gamma}")
        need(self.min_lr >= 0, f"--min-lr must be >= 0, got {self.min_lr}")
        need(0.0 <= self.momentum < 1.0, f"--momentum must be in [0, 1), got {self.momentum}")
        need(self.weight_decay is None or self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}")
        need(0.0 <= self.label_smoothing < 1.0, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.class_weights is not None and self.class_weights != "auto":
            need(isinstance(self.class_weights, (list, tuple)) and all(w >= 0 for w in self.class_weights),
                 "--class-weights must be 'auto' or comma-separated non-negative numbers, one per class")
        need(self.augment is None or self.augment in AUGMENTS, f"unknown --augment {self.augment!r}: choose from {', '.join(AUGMENTS)}")
        need(self.freeze is None or self.freeze in FREEZE_POLICIES, f"unknown --freeze {self.freeze!r}: choose from {', '.join(FREEZE_POLICIES)}")
        need(self.unfreeze_from is None or int(self.unfreeze_from) >= 0, f"--unfreeze-from must be >= 0, got {self.unfreeze_from}")
        need(self.unfreeze_last is None or int(self.unfreeze_last) >= 1, f"--unfreeze-last must be at least 1, got {self.unfreeze_last}")
        need(self.unfreeze_from is None or self.unfreeze_last is None, "give --unfreeze-from or --unfreeze-last, not both")
        need(int(self.fine_tune) >= 0, f"--fine-tune must be >= 0 epochs, got {self.fine_tune}")
        need(not (self.fine_tune and self.freeze == "full"),
             "--fine-tune trains the head first with the backbone frozen; it cannot be combined with --freeze full")
        need(self.fine_tune_lr is None or self.fine_tune_lr > 0, f"--fine-tune-lr must be positive, got {self.fine_tune_lr}")
        need(all(int(h) >= 1 for h in self.head), f"--head sizes must be positive integers, got {self.head}")
        drops = (self.dropout if isinstance(self.dropout, (list, tuple))
                 else [] if self.dropout is None else [self.dropout])
        need(all(0.0 <= float(d) < 1.0 for d in drops), f"--dropout values must be in [0, 1), got {self.dropout}")
        need(self.input_size is None or int(self.input_size) >= 8, f"--input-size must be at least 8, got {self.input_size}")
        need(0.0 < self.val_ratio < 1.0, f"--val-ratio must be between 0 and 1, got {self.val_ratio}")
        need(self.workers is None or int(self.workers) >= 0, f"--workers must be >= 0, got {self.workers}")
        need(self.feature_views is None or int(self.feature_views) >= 1, f"--feature-views must be at least 1, got {self.feature_views}")
        need(self.early_stopping is None or int(self.early_stopping) >= 0, f"--early-stopping patience must be >= 0, got {self.early_stopping}")
        need(self.reduce_lr is None or int(self.reduce_lr) >= 1, f"--reduce-lr patience must be at least 1, got {self.reduce_lr}")
        need(0.0 < self.reduce_lr_factor < 1.0, f"--reduce-lr-factor must be between 0 and 1, got {self.reduce_lr_factor}")
        need(self.monitor in MONITORS, f"unknown --monitor {self.monitor!r}: choose from {', '.join(MONITORS)}")
        need(self.threads is None or int(self.threads) >= 1, f"--threads must be at least 1, got {self.threads}")
        need(self.amp in AMP_MODES, f"unknown --amp {self.amp!r}: choose from {', '.join(AMP_MODES)}")
        need(self.device is None or self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps",
             f"unknown --device {self.device!r}: use cpu, cuda or cuda:N")
        need(bool(str(self.run_dir)), "--run-dir must not be empty")
        if self.name is not None:
            need(bool(self.name) and "/" not in self.name and self.name not in (".", ".."),
                 f"--name must be a plain folder name, got {self.name!r}")
        need(not (self.resume and self.overwrite), "give --resume or --overwrite, not both")
        return self

    # ---- recipe defaults -----------------------------------------------------------------------
    def resolve(self, recipe_defaults: dict | None) -> "TrainConfig":
        """Fill options left at ``None`` from the recipe's defaults (returns a new config)."""
        d = {**FALLBACK_DEFAULTS, **(recipe_defaults or {})}
        updates = {k: d[k] for k in ("lr", "augment", "weight_decay", "freeze", "optimizer") if getattr(self, k) is None}
        cfg = dataclasses.replace(self, **updates)
        if cfg.fine_tune:
            cfg.freeze = "frozen"
        if cfg.fine_tune and cfg.fine_tune_lr is None:
            cfg.fine_tune_lr = float(d.get("finetune_lr") or cfg.lr / 10.0) if self.lr is None else cfg.lr / 10.0
        if cfg.feature_views is None:
            cfg.feature_views = 1 if cfg.augment == "none" else min(cfg.epochs, 4)
        if cfg.name is None:
            cfg.name = cfg.model.replace(":", "-").replace("/", "-")
        return cfg.validate()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def total_epochs(self) -> int:
        return int(self.epochs) + int(self.fine_tune)


def parse_int_list(text: str, flag: str) -> list[int]:
    text = text.strip()
    if not text:
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated integers, e.g. 256,128; got {text!r}") from None


def parse_float_list(text: str, flag: str) -> list[float]:
    text = text.strip()
    if not text:
        return []
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated numbers, e.g. 0.5,0.3; got {text!r}") from None
