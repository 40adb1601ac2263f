"""The training configuration: every option of ``transferlab train``, typed, documented and
validated in one place.

:class:`TrainConfig` is what ``train(...)`` keyword arguments and CLI flags turn into; the CLI is
built from its fields (type, help, group, choices), so a new option is one field here. Values may
be given as text (as the CLI does): they are converted by the field's type, and a bad value is a
one-line :class:`~transferlab.errors.ConfigError`. Options left at ``None`` take the recipe's
defaults in :meth:`TrainConfig.resolve`, which also validates (once). The resolved config is
written, with classes, data_cfg, split counts and environment, to ``RUN/config.json``.

>>> TrainConfig(model="cnn_bn", epochs="5").epochs
5
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Self

from ..choices import (AMP_MODES, AUGMENTS, DEVICES, FREEZE_POLICIES, LOSSES, MIN_INPUT_SIZE, MONITORS, OPTIMIZERS,
                       RESIZE_MODES, SAMPLERS, SCHEDULES, TRACKERS)
from ..data.split import check_val_ratio
from ..errors import ConfigError

DEFAULT_BATCH_SIZE = 32  # the usual batch (train.adapt makes it smaller for a tiny training set)
# Options left at None take the recipe's default (Recipe.defaults), else these.
FALLBACK_DEFAULTS = {"epochs": 10, "batch_size": DEFAULT_BATCH_SIZE, "lr": 1e-3, "optimizer": "adam",
                     "schedule": "cosine", "warmup": 0, "weight_decay": 0.0, "label_smoothing": 0.0,
                     "augment": "none", "freeze": "full", "fine_tune": 0, "fine_tune_lr": None,
                     "unfreeze_from": None, "unfreeze_last": None, "feature_views": None}
RECIPE_OPTIONS = tuple(FALLBACK_DEFAULTS)
# the package each --trackers tracker needs (the [tracking] extra)
TRACKER_MODULES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
# what the freezing plan is made of: taken from the recipe only as a whole, when the user set none of it
FREEZE_PLAN = ("freeze", "fine_tune", "unfreeze_from", "unfreeze_last")
# what TrainConfig.resolve always sets (the recipe options but the optional ones, and the run name)
RESOLVED = ("epochs", "batch_size", "lr", "optimizer", "schedule", "warmup", "weight_decay", "label_smoothing",
            "augment", "freeze", "fine_tune", "feature_views", "name")


def option(default=None, help: str = "", group: str = "optimisation", *, choices: tuple | None = None,
           metavar: str | None = None, default_factory=None):
    """A TrainConfig field with its CLI help, group and choices."""
    meta = {"help": help, "group": group, "choices": choices, "metavar": metavar}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    model: str = option("mobilenet_v2", "recipe name (transferlab models), or timm:NAME", "model and data")
    # -- optimisation
    epochs: int | None = option(None, "epochs (of the first phase; default: the recipe's, else 10)")
    batch_size: int | None = option(None, "batch size per process (default: the recipe's, else 32; smaller for a "
                                          "tiny training set, so that an epoch has several steps)")
    lr: float | None = option(None, "learning rate (default: the recipe's)")
    optimizer: str | None = option(None, "optimizer (default: the recipe's)", choices=OPTIMIZERS)
    momentum: float = option(0.9, "SGD momentum")
    nesterov: bool = option(False, "Nesterov momentum for SGD")
    schedule: str | None = option(None, "lr schedule, stepped per epoch (default: the recipe's, else cosine)",
                                  choices=SCHEDULES)
    warmup: int | None = option(None, "linear warm-up epochs (default: the recipe's, else 0)")
    step_size: int | None = option(None, "epochs between lr drops for --schedule step (default epochs/3)")
    gamma: float = option(0.1, "lr factor of each drop for --schedule step")
    min_lr: float = option(0.0, "final lr of the cosine schedule")
    weight_decay: float | None = option(None, "weight decay, not on biases and norms (default: the recipe's)")
    label_smoothing: float | None = option(None, "cross-entropy label smoothing (default: the recipe's, else 0)")
    class_weights: Any = option(None, "weight the loss per class: auto = sklearn 'balanced', or one number per class",
                                metavar="auto|W1,W2,...")
    sampler: str = option("shuffle", "training order: shuffle (each image once per epoch), or balanced (draws with "
                                     "replacement weighted 1/class count, as many per epoch as images: every class "
                                     "about equally often)", choices=SAMPLERS)
    loss: str = option("ce", "training loss: ce (cross-entropy), or focal (down-weights well-classified images; "
                             "--focal-gamma); both take --class-weights and --label-smoothing", choices=LOSSES)
    focal_gamma: float = option(2.0, "focusing parameter of --loss focal (0 = cross-entropy)")
    # -- model and data
    augment: str | None = option(None, "augmentation preset (default: the recipe's)", "model and data", choices=AUGMENTS)
    freeze: str | None = option(None, "frozen: train the head only; full: everything (default: the recipe's)",
                                "model and data", choices=FREEZE_POLICIES)
    unfreeze_from: int | None = option(None, "train backbone layers N.. and the head", "model and data", metavar="N")
    unfreeze_last: int | None = option(None, "train the last K backbone blocks and the head", "model and data", metavar="K")
    fine_tune: int | None = option(None, "after --epochs of head-only training, fine-tune this many epochs with the "
                                         "backbone unfrozen (all, or --unfreeze-from/--unfreeze-last) at --fine-tune-lr "
                                         "(default: the recipe's, else 0)", "model and data", metavar="EPOCHS")
    fine_tune_lr: float | None = option(None, "lr of the fine-tuning phase (default: the recipe's, else lr/10)",
                                        "model and data")
    head: list[int] = option(None, "hidden dense layers of the head, e.g. 256,128", "model and data", default_factory=list)
    dropout: list[float] | None = option(None, "head dropout: one value or one per layer, e.g. 0.5,0.3", "model and data")
    pretrained: bool | None = option(None, "use pretrained weights (default: the recipe's)", "model and data")
    weights: str | None = option(None, "pretrained weights: a file, a folder (the file that fits is chosen by its "
                                       "tensors), or RECIPE=FILE[,RECIPE=FILE...]", "model and data", metavar="PATH")
    input_size: int | None = option(None, "input image size (default: chosen for the data: scratch nets near the "
                                          "images' own size, pretrained nets 128 px for small images, else their "
                                          "native size)", "model and data")
    crop_pct: float | None = option(None, "fraction of the resized image the centre crop keeps (default: the "
                                          "recipe's; 1.0 for small images)", "model and data")
    resize: str = option("crop", "how a photo becomes square: crop (centre crop), pad (letterbox, aspect kept) or stretch;"
                                 " kept for evaluation, export and serving", "model and data", choices=RESIZE_MODES)
    val_ratio: float = option(0.2, "fraction held out for validation", "model and data")
    seed: int = option(0, "seed of split, init, augmentation and order", "model and data")
    workers: int | None = option(None, "data loader processes (default: 0 with cached small images, else 2)",
                                 "model and data")
    cache: bool = option(True, "decode images once into the image cache", "model and data")
    feature_cache: bool = option(True, "compute the frozen part's features once and train on them", "model and data")
    feature_views: int | None = option(None, "augmented views cached for feature caching, at most one per epoch "
                                             "of a phase (default: the recipe's; 1 without augmentation, else 4)",
                                       "model and data", metavar="K")
    # -- callbacks
    early_stopping: int | None = option(None, "stop after PATIENCE epochs without improvement", "callbacks",
                                        metavar="PATIENCE")
    monitor: str = option("val_loss", "metric for the best checkpoint, early stopping and reduce-lr", "callbacks",
                          choices=MONITORS)
    min_delta: float = option(0.0, "smallest change that counts as an improvement", "callbacks")
    restore_best: bool = option(True, "early stopping restores the best weights", "callbacks")
    reduce_lr: int | None = option(None, "multiply lr by --reduce-lr-factor after PATIENCE stalled epochs",
                                   "callbacks", metavar="PATIENCE")
    reduce_lr_factor: float = option(0.1, "lr factor of ReduceLROnPlateau", "callbacks")
    reduce_lr_min: float = option(0.0, "lower bound of the lr", "callbacks")
    time_limit: float | None = option(None, "stop cleanly before this much wall-clock time (e.g. 600, 90s, 15m, 1h), "
                                            "keeping the best checkpoint", "callbacks", metavar="DURATION")
    # -- speed
    device: str | None = option(None, "cpu | cuda | cuda:N (default: cuda if available, else cpu)", "speed")
    threads: int | None = option(None, "CPU threads (default: all cores, shared among torchrun processes)", "speed")
    channels_last: bool | None = option(None, "channels-last memory format (default: on for CPU)", "speed")
    amp: str = option("auto", "bf16 autocast: auto = fp32 for training and feature caching (bf16 features differ "
                              "from what the exported model computes), bf16 = for both (faster where the CPU has "
                              "bf16 kernels), none = fp32", "speed", choices=AMP_MODES)
    # -- run folder
    run_dir: str = option("runs", "parent folder of runs", "run folder")
    name: str | None = option(None, "run name (default: the recipe name)", "run folder")
    resume: bool = option(False, "continue the run RUN_DIR/NAME from its last completed epoch", "run folder")
    overwrite: bool = option(False, "replace an existing run of the same name", "run folder")
    trackers: list[str] = option(None, "experiment tracking: tensorboard (event files in RUN/tensorboard) and/or mlflow "
                                  "(MLFLOW_TRACKING_URI, else MLflow's local store), comma-separated; needs "
                                  "pip install 'transferlab[tracking]'", "run folder", choices=TRACKERS,
                                 metavar="tensorboard,mlflow", default_factory=list)

    def __post_init__(self) -> None:
        hints = _hints()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str):
                setattr(self, f.name, convert(f.name, value, hints[f.name]))
        self.validate()  # a bad value never makes a config: TrainConfig(epochs=-3) is a ConfigError

    # ---- validation ---------------------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        def need(cond: bool, msg: str):
            if not cond:
                raise ConfigError(msg)

        def one_of(name: str, choices: tuple) -> None:
            value = getattr(self, name)
            for v in (value if isinstance(value, (list, tuple)) else [value]):
                need(v is None or v in choices, f"unknown --{name.replace('_', '-')} {v!r}: choose from "
                                                f"{', '.join(choices)}")

        for f in dataclasses.fields(self):
            if f.metadata.get("choices"):
                one_of(f.name, f.metadata["choices"])
        need(self.epochs is None or int(self.epochs) >= 1, f"--epochs must be at least 1, got {self.epochs}")
        need(self.batch_size is None or int(self.batch_size) >= 1, f"--batch-size must be at least 1, got {self.batch_size}")
        need(self.lr is None or (self.lr > 0 and math.isfinite(self.lr)), f"--lr must be a positive number, got {self.lr}")
        need(self.warmup is None or int(self.warmup) >= 0, f"--warmup must be >= 0 epochs, got {self.warmup}")
        need(self.step_size is None or int(self.step_size) >= 1, f"--step-size must be at least 1, got {self.step_size}")
        need(0.0 < self.gamma <= 1.0, f"--gamma must be in (0, 1], got {self.gamma}")
        need(self.min_lr >= 0, f"--min-lr must be >= 0, got {self.min_lr}")
        need(0.0 <= self.momentum < 1.0, f"--momentum must be in [0, 1), got {self.momentum}")
        need(self.weight_decay is None or self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}")
        need(self.label_smoothing is None or 0.0 <= self.label_smoothing < 1.0,
             f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        need(self.focal_gamma >= 0 and math.isfinite(self.focal_gamma),
             f"--focal-gamma must be a number >= 0, got {self.focal_gamma}")
        if self.class_weights is not None and self.class_weights != "auto":
            need(isinstance(self.class_weights, (list, tuple)) and all(w >= 0 for w in self.class_weights),
                 "--class-weights must be 'auto' or comma-separated non-negative numbers, one per class")
        need(self.unfreeze_from is None or int(self.unfreeze_from) >= 0, f"--unfreeze-from must be >= 0, got {self.unfreeze_from}")
        need(self.unfreeze_last is None or int(self.unfreeze_last) >= 1, f"--unfreeze-last must be at least 1, got {self.unfreeze_last}")
        need(self.unfreeze_from is None or self.unfreeze_last is None, "give --unfreeze-from or --unfreeze-last, not both")
        need(self.fine_tune is None or int(self.fine_tune) >= 0, f"--fine-tune must be >= 0 epochs, got {self.fine_tune}")
        need(not (self.fine_tune and self.freeze == "full"),
             "--fine-tune trains the head first with the backbone frozen; it cannot be combined with --freeze full")
        need(self.fine_tune_lr is None or self.fine_tune_lr > 0, f"--fine-tune-lr must be positive, got {self.fine_tune_lr}")
        need(all(int(h) >= 1 for h in self.head), f"--head sizes must be positive integers, got {self.head}")
        drops = (self.dropout if isinstance(self.dropout, (list, tuple))
                 else [] if self.dropout is None else [self.dropout])
        need(all(0.0 <= float(d) < 1.0 for d in drops), f"--dropout values must be in [0, 1), got {self.dropout}")
        need(self.input_size is None or int(self.input_size) >= MIN_INPUT_SIZE,
             f"--input-size must be at least {MIN_INPUT_SIZE}, got {self.input_size}")
        need(self.crop_pct is None or 0.0 < self.crop_pct <= 1.0, f"--crop-pct must be in (0, 1], got {self.crop_pct}")
        check_val_ratio(self.val_ratio, "--val-ratio")  # the rule load_data applies (0: a train/val layout's own val folder only)
        need(self.workers is None or int(self.workers) >= 0, f"--workers must be >= 0, got {self.workers}")
        need(self.feature_views is None or int(self.feature_views) >= 1, f"--feature-views must be at least 1, got {self.feature_views}")
        need(self.early_stopping is None or int(self.early_stopping) >= 0, f"--early-stopping patience must be >= 0, got {self.early_stopping}")
        need(self.reduce_lr is None or int(self.reduce_lr) >= 1, f"--reduce-lr patience must be at least 1, got {self.reduce_lr}")
        need(self.time_limit is None or self.time_limit > 0, f"--time-limit must be positive, got {self.time_limit}")
        need(0.0 < self.reduce_lr_factor < 1.0, f"--reduce-lr-factor must be between 0 and 1, got {self.reduce_lr_factor}")
        need(self.threads is None or int(self.threads) >= 1, f"--threads must be at least 1, got {self.threads}")
        need(self.device is None or self.device in ("auto", "cpu", "cuda")
             or re.fullmatch(r"cuda:\d+", self.device) is not None,
             f"unknown --device {self.device!r}: use {', '.join(DEVICES)}")
        need(bool(str(self.run_dir)), "--run-dir must not be empty")
        if self.name is not None:
            need(bool(self.name) and "/" not in self.name and self.name not in (".", ".."),
                 f"--name must be a plain folder name, got {self.name!r}")
        need(not (self.resume and self.overwrite), "give --resume or --overwrite, not both")
        missing = [t for t in self.trackers if importlib.util.find_spec(TRACKER_MODULES[t]) is None]
        need(not missing, f"--trackers {','.join(missing)} needs the tracking extra: pip install 'transferlab[tracking]'")
        return self

    # ---- recipe defaults -----------------------------------------------------------------------
    def resolve(self, recipe_defaults: dict | None) -> ResolvedConfig:
        """Fill options left at ``None`` from the recipe's defaults and validate (returns a new config).

        The freezing plan (``freeze``, ``fine_tune``, ``unfreeze_from``, ``unfreeze_last``) comes from
        the recipe only when none of it was given, so that e.g. ``--freeze full`` or
        ``--unfreeze-from 40`` never mixes with the recipe's own plan. ``fine_tune_lr`` defaults to
        the recipe's, or to ``lr / 10`` when ``lr`` was given.
        """
        d = {**FALLBACK_DEFAULTS, **(recipe_defaults or {})}
        own_plan = any(getattr(self, k) is not None for k in FREEZE_PLAN)
        updates = {k: (FALLBACK_DEFAULTS[k] if own_plan and k in FREEZE_PLAN else d[k])
                   for k in RECIPE_OPTIONS if getattr(self, k) is None}
        cfg = types.SimpleNamespace(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, **{})
        for k, v in updates.items():
            setattr(cfg, k, v)
        if cfg.freeze is None:
            cfg.freeze = d["freeze"]
        if cfg.fine_tune:
            cfg.freeze = "frozen"
        if self.fine_tune_lr is None and self.lr is not None:
            cfg.fine_tune_lr = float(cfg.lr) / 10.0
        if cfg.fine_tune and cfg.fine_tune_lr is None:
            cfg.fine_tune_lr = float(cfg.lr) / 10.0
        if cfg.feature_views is None:
            cfg.feature_views = 1 if cfg.augment == "none" else 4
        if cfg.name is None:
            cfg.name = cfg.model.replace(":", "-").replace("/", "-")
        return ResolvedConfig(**vars(cfg))  # validated once, whole

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}
        if "log" in d and "trackers" not in d:  # a run folder written before the option's rename
            d = {**d, "trackers": d["log"]}
        return cls(**{k: v for k, v in d.items() if k in names})


class ResolvedConfig(TrainConfig):
    """A :class:`TrainConfig` whose recipe options are set (:data:`RESOLVED`): what
    :meth:`TrainConfig.resolve` returns, and what a run's ``config.json`` holds. Training reads this
    one; a config without one of them is a ConfigError."""

    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    schedule: str
    warmup: int
    weight_decay: float
    label_smoothing: float
    augment: str
    freeze: str
    fine_tune: int
    feature_views: int
    name: str

    def validate(self) -> ResolvedConfig:
        super().validate()
        missing = [k for k in RESOLVED if getattr(self, k) is None]
        if missing:
            raise ConfigError(f"the training options lack {', '.join(missing)} (a config.json written by hand?)")
        return self

    @property
    def total_epochs(self) -> int:
        return int(self.epochs) + int(self.fine_tune)


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def base_type(hint) -> type:
    """``int | None`` -> int, ``list[float] | None`` -> list, ``bool`` -> bool, ``Any`` -> str."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if args else str
    origin = typing.get_origin(hint)
    if origin is list:
        return list
    return hint if hint in (int, float, bool, str) else str


def list_item_type(hint) -> type:
    """The item type of a ``list[T]`` (or ``list[T] | None``) hint."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if typing.get_origin(a) is list)
    return typing.get_args(hint)[0]


def convert(name: str, text: str, hint) -> Any:
    """Text (a CLI value) -> the field's type; a one-line ConfigError when it does not parse."""
    flag = f"--{name.replace('_', '-')}"
    kind = base_type(hint)
    if name == "class_weights":
        return text if text.strip() == "auto" else parse_float_list(text, flag)
    if name == "time_limit":
        return parse_duration(text, flag)
    if name == "trackers":
        return [t.strip() for t in text.replace(" ", ",").split(",") if t.strip()]
    if kind is list:
        item = list_item_type(hint)
        return parse_int_list(text, flag) if item is int else parse_float_list(text, flag)
    if kind is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{flag} must be true or false, got {text!r}")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"{flag} must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    return text


def parse_duration(text: str, flag: str = "--budget") -> float:
    """``"90"``, ``"90s"``, ``"15m"``, ``"1h"``, ``"1h30m"``, ``"2.5m"`` -> seconds.

    >>> parse_duration("1h30m"), parse_duration("90")
    (5400.0, 90.0)
    """
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    s = str(text).strip().lower().replace(" ", "")
    total, number, seen = 0.0, "", False
    try:
        for ch in s:
            if ch.isdigit() or ch == ".":
                number += ch
            elif ch in units and number:
                total += float(number) * units[ch]
                number, seen = "", True
            else:
                raise ValueError
        if number:
            total += float(number)
            seen = True
    except ValueError:
        seen = False
    if not seen or total <= 0:
        raise ConfigError(f"{flag} must be a duration such as 600, 90s, 15m or 1h30m; got {text!r}")
    return total


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
