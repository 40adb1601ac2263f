"""``train(data, model=..., ...) -> Run``: data + recipe in, a run folder out.

The steps, each a small function: resolve the config (recipe defaults, run folder, resume),
load and split the data, build the model, then for each phase (head-only, then fine-tuning when
``fine_tune`` is set) freeze, optionally cache the frozen part's features, build optimizer +
schedule + loss, and let the :class:`~transferlab.train.loop.Trainer` run the epochs. After each
epoch the run state is committed (``history.csv``, ``last_state.pt``) so ``resume=True`` carries
on exactly where a killed run stopped.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from . import distributed as D
from .callbacks import Callback, EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from .config import TrainConfig
from .features import FeatureViews, estimate_bytes, extract
from .loop import Trainer, to_device
from .sampling import EpochSampler, SeededItems
from .run import (STATE_FILE, Run, load_state, prepare_run_dir, save_state, write_history, write_json)
from .schedule import build_optimizer, build_scheduler

MAX_FEATURE_CACHE_BYTES = int(float(os.environ.get("TRANSFERLAB_FEATURE_CACHE_GB", "4")) * 2**30)
STATE_VERSION = 1


def train(data, model: str = "mobilenet_v2", *, callbacks: list[Callback] | None = None,
          progress: bool = True, **options) -> Run:
    """Train ``model`` (a recipe name, see ``transferlab models``) on ``data`` and return the :class:`Run`.

    ``data`` is a dataset folder / CSV (see ``transferlab.data.load_data``) or a ``DataSplits``.
    Options (all keyword; ``None`` means the recipe's default) are the fields of
    :class:`~transferlab.train.config.TrainConfig`, the same as the CLI flags: ``epochs=10,
    batch_size=32, lr, optimizer="adam" (sgd|adam|adamw), momentum, nesterov, schedule="cosine"
    (constant|cosine|step), warmup, step_size, gamma, min_lr, weight_decay, label_smoothing,
    class_weights (None|"auto"|[w...]), augment (none|light|strong), freeze (frozen|full),
    unfreeze_from, unfreeze_last, fine_tune (epochs of a 2nd, unfrozen phase), fine_tune_lr,
    head, dropout, pretrained, weights, input_size, val_ratio=0.2, seed=0, workers, cache,
    feature_cache=True, feature_views, early_stopping (patience), monitor="val_loss", min_delta,
    restore_best, reduce_lr (patience), reduce_lr_factor, reduce_lr_min, device, threads,
    channels_last, amp ("none"|"bf16"), run_dir="runs", name (default: the recipe), resume,
    overwrite``. ``callbacks`` are extra :class:`~transferlab.train.callbacks.Callback` objects.

    >>> run = train("DATA", model="cnn_bn", epochs=5)          # doctest: +SKIP
    >>> run.dir, run.history[-1]["val_acc"]                     # doctest: +SKIP
    """
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
    cfg = TrainConfig(model=model, **options)
    return _Session(cfg, data, callbacks or [], progress).run()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(loader) -> dict[str, Any]:
    gen = getattr(loader, "generator", None)
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "loader": gen.get_state() if gen is not None else None}


def _set_rng_state(state: dict[str, Any], loader) -> None:
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
        from sklearn.utils.class_weight import compute_class_weight

        y = np.asarray(labels)
        present = np.unique(y)
        w = np.ones(num_classes, dtype=np.float64)
        w[present] = compute_class_weight("balanced", classes=present, y=y)
        return torch.tensor(w, dtype=torch.float32)
    weights = [float(v) for v in spec]
    if len(weights) != num_classes:
        raise ConfigError(f"--class-weights has {len(weights)} values but there are {num_classes} classes")
    return torch.tensor(weights, dtype=torch.float32)


@dataclasses.dataclass
class Phase:
    index: int
    epochs: int          # epochs in this phase
    lr: float
    policy: str          # apply_freeze policy
    unfreeze_from: int | None = None
    unfreeze_last: int | None = None


def plan_phases(cfg: TrainConfig) -> list[Phase]:
    if cfg.fine_tune:
        return [Phase(0, cfg.epochs, cfg.lr, "frozen"),
                Phase(1, cfg.fine_tune, cfg.fine_tune_lr, "full", cfg.unfreeze_from, cfg.unfreeze_last)]
    if cfg.unfreeze_from is not None or cfg.unfreeze_last is not None:
        return [Phase(0, cfg.epochs, cfg.lr, "full", cfg.unfreeze_from, cfg.unfreeze_last)]
    return [Phase(0, cfg.epochs, cfg.lr, cfg.freeze)]


class _Session:
    """One call of ``train()``: holds what the steps share."""

    def __init__(self, cfg: TrainConfig, data, user_callbacks: list, progress: bool):
        self.cfg, self.data, self.user_callbacks, self.progress = cfg, data, list(user_callbacks), progress
        self.log_file: Path | None = None

    # ---- output -----------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if not self.dist.is_main:
            return
        print(message, flush=True)
        if self.log_file is not None:
            with open(self.log_file, "a", encoding="utf-8") as f:
                f.write(message + "\n")

    # ---- main -------------------------------------------------------------------------------------
    def run(self) -> Run:
        from ..models import get_recipe

        cfg = self.cfg.validate()
        self.device = pick_device(cfg.device)
        self.dist = D.setup(self.device.type)
        try:
            self.device = pick_device(cfg.device, self.dist)
            if self.device.type == "cpu":
                n = cfg.threads or max(1, (os.cpu_count() or 1) // self.dist.local_world_size)
                torch.set_num_threads(n)
            recipe = get_recipe(cfg.model)
            cfg = cfg.resolve(recipe.defaults)
            self.run_dir = Path(cfg.run_dir) / cfg.name
            mode = prepare_run_dir(self.run_dir, resume=cfg.resume, overwrite=cfg.overwrite, write=False)
            D.barrier(self.dist)
            if self.dist.is_main:
                prepare_run_dir(self.run_dir, resume=cfg.resume, overwrite=cfg.overwrite, write=True)
                self.run_dir.mkdir(parents=True, exist_ok=True)
            D.barrier(self.dist)
            self.log_file = self.run_dir / "train.log"
            self.state = None
            if mode == "resume":
                cfg, self.state = self._load_resume(cfg)
            self.cfg = cfg
            return self._train(recipe)
        finally:
            D.cleanup(self.dist)

    def _load_resume(self, cfg: TrainConfig):
        import json

        saved = json.loads((self.run_dir / "config.json").read_text(encoding="utf-8"))
        keep = {k: getattr(cfg, k) for k in ("device", "threads", "workers", "run_dir", "name")}
        resumed = dataclasses.replace(TrainConfig.from_dict(saved), **keep, resume=True, overwrite=False)
        state = load_state(self.run_dir / STATE_FILE)
        self.log(f"resuming {self.run_dir} after epoch {state['epoch']} (options from its config.json)")
        return resumed, state

    def _train(self, recipe) -> Run:
        from ..data import DataSplits, ImageDataset, build_transform, load_data
        from ..models import create_model

        cfg, dist = self.cfg, self.dist
        splits = self.data if isinstance(self.data, DataSplits) else load_data(
            self.data, val_ratio=cfg.val_ratio, seed=cfg.seed, workers=cfg.workers, progress=self.progress and dist.is_main)
        classes = list(splits.classes)
        if self.state is not None and self.state["classes"] != classes:
            raise ConfigError(f"cannot resume {self.run_dir}: the data's classes differ from the run's")
        if not splits.train:
            raise ConfigError("no training images")
        seed_everything(cfg.seed)
        resuming = self.state is not None  # every tensor comes from the saved state: no pretrained load
        model = create_model(cfg.model, len(classes), pretrained=False if resuming else cfg.pretrained,
                             weights=None if resuming else cfg.weights,
                             head=tuple(cfg.head), dropout=cfg.dropout, input_size=cfg.input_size)
        self.model = model
        data_cfg = dict(model.data_cfg)
        self.meta = {"recipe": cfg.model, "classes": classes, "num_classes": len(classes),
                     "head": list(getattr(model, "head_hidden", cfg.head)),
                     "dropout": list(getattr(model, "head_dropout", [])), "data_cfg": data_cfg}
        cache_dir = True if cfg.cache else None
        # rank 0 builds the image cache first; the others wait, then read it
        if not dist.is_main:
            D.barrier(dist)
        self.datasets = {
            "train": ImageDataset(splits.train, data_cfg, build_transform(data_cfg, train=True, augment=cfg.augment),
                                  cache_dir, progress=self.progress and dist.is_main),
            "val": ImageDataset(splits.val, data_cfg, build_transform(data_cfg, train=False), cache_dir,
                                progress=self.progress and dist.is_main),
        }
        if dist.is_main:
            D.barrier(dist)
        self.channels_last = (cfg.channels_last if cfg.channels_last is not None else self.device.type == "cpu")
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.weight = class_weight_tensor(cfg.class_weights, [y for _, y in splits.train], len(classes))

        if self.state is None and dist.is_main:
            write_json(self.run_dir / "config.json", self._config_json(cfg, classes, data_cfg, splits))
            self.log(f"training {cfg.model} on {len(splits.train)} images ({len(classes)} classes), "
                     f"validating on {len(splits.val)}; run folder {self.run_dir}")
        self.history: list[dict] = list(self.state["history"]) if self.state else []
        self.callbacks = self._callbacks(cfg)
        if self.state is not None:
            model.load_state_dict(self.state["model"])
            for cb, st in zip(self.callbacks, self.state["callbacks"]):
                if st is not None and hasattr(cb, "load_state_dict"):
                    cb.load_state_dict(st)
        if self.state is not None and self.state.get("finished"):
            self.log(f"{self.run_dir} already finished ({self.state['epoch']} epochs); nothing to do")
            return Run.load(self.run_dir)

        start_phase = self.state["phase"] + (1 if self.state["phase_finished"] else 0) if self.state else 0
        phases = plan_phases(cfg)
        try:
            for phase in phases[start_phase:]:  # the last phase's commit marks the run finished
                resume_state = self.state if (self.state and self.state["phase"] == phase.index
                                              and not self.state["phase_finished"]) else None
                self._run_phase(phase, resume_state, len(phases))
        except KeyboardInterrupt:
            done = self.history[-1]["epoch"] if self.history else 0
            data_arg = self.data if not isinstance(self.data, DataSplits) else "DATA"
            self.log(f"interrupted: {done} completed epoch(s) are saved in {self.run_dir}; continue with:\n"
                     f"  transferlab train {data_arg} --model {cfg.model} --run-dir {cfg.run_dir} "
                     f"--name {cfg.name} --resume")
            raise
        if start_phase >= len(phases):  # a state from before the last phase's commit said "finished"
            self._commit(None, phase=len(phases) - 1, phase_finished=True, finished=True)
        D.barrier(dist)
        best = _checkpoint_best(self.callbacks)
        if best is not None:
            self.log(f"done: best {cfg.monitor} {best[1]:.4f} at epoch {best[0]}; checkpoints in {self.run_dir}")
        return Run.load(self.run_dir)

    # ---- pieces -----------------------------------------------------------------------------------
    def _config_json(self, cfg, classes, data_cfg, splits) -> dict:
        counts = {s: len(splits.split(s)) for s in ("train", "val", "test")}
        return {**cfg.to_dict(), "classes": classes, "num_classes": len(classes),
                "data": str(getattr(splits, "root", self.data)), "layout": getattr(splits, "layout", None),
                "data_cfg": data_cfg, "split_counts": counts,
                "head": self.meta["head"], "dropout": self.meta["dropout"],
                "world_size": self.dist.world_size, "device": str(self.device),
                "channels_last": self.channels_last, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "versions": {"python": platform.python_version(), "torch": torch.__version__,
                             "transferlab": sys.modules["transferlab"].__version__}}

    def _callbacks(self, cfg) -> list:
        cbs: list = []
        if cfg.early_stopping is not None:
            cbs.append(EarlyStopping(monitor=cfg.monitor, patience=cfg.early_stopping, min_delta=cfg.min_delta,
                                     restore_best_weights=cfg.restore_best))
        if cfg.reduce_lr is not None:
            cbs.append(ReduceLROnPlateau(monitor=cfg.monitor, factor=cfg.reduce_lr_factor, patience=cfg.reduce_lr,
                                         min_lr=cfg.reduce_lr_min))
        cbs.append(ModelCheckpoint(self.run_dir, monitor=cfg.monitor, min_delta=cfg.min_delta))
        return cbs + self.user_callbacks

    def _train_loader(self, dataset, *, seeded: bool, workers=None):
        """Shuffled batches of ``(epoch, index)`` keys: the order and each image's augmentation depend
        only on (seed, epoch, index) -- not on workers, resume or the number of processes."""
        from ..data import make_loader

        dist, cfg = self.dist, self.cfg
        sampler = EpochSampler(len(dataset), seed=cfg.seed, shuffle=True, num_replicas=dist.world_size, rank=dist.rank)
        if seeded:
            dataset = SeededItems(dataset, seed=cfg.seed)
        return make_loader(dataset, batch_size=cfg.batch_size, shuffle=False, seed=cfg.seed, workers=workers,
                           sampler=sampler)

    def _val_loader(self, dataset, *, workers=None):
        from torch.utils.data import Subset

        from ..data import make_loader

        dist = self.dist
        if dist.enabled:  # an exact shard per rank (no padding); metrics are summed over ranks
            dataset = Subset(dataset, range(dist.rank, len(dataset), dist.world_size))
        return make_loader(dataset, batch_size=self.cfg.batch_size, shuffle=False, seed=self.cfg.seed, workers=workers)

    def _frozen_part(self, phase: Phase):
        """``(lower, upper_or_None)``: the frozen part of the backbone to cache, if any."""
        from ..models import split_backbone

        model = self.model
        if phase.policy == "frozen":
            return model.backbone, None
        n = None
        if phase.unfreeze_from is not None:
            n = phase.unfreeze_from
        elif phase.unfreeze_last is not None:
            from ..models.freeze import layer_parameters

            first = [i for i, (_, m) in enumerate(model.layers())
                     if any(p.requires_grad for p in layer_parameters(m))]
            n = first[0] if first else len(model.layers())
        if n is None:
            return None, None
        parts = split_backbone(model, n)
        if parts is None:
            return None, None
        lower, upper = parts
        if len(lower) == 0:
            return None, None
        return lower, upper

    def _features(self, lower: nn.Module):
        """Cache ``lower``'s outputs for the train views and validation set (or None if too big)."""
        cfg = self.cfg
        train_ds, val_ds = self.datasets["train"], self.datasets["val"]
        views = int(cfg.feature_views)
        x0, _ = train_ds[0]
        x0 = to_device(x0.unsqueeze(0), self.device, self.channels_last)
        need = estimate_bytes(lower, x0, len(train_ds) * views + len(val_ds), 1)  # one forward pass
        if need > MAX_FEATURE_CACHE_BYTES:
            self.log(f"feature cache would need {need / 2**30:.1f} GiB (limit TRANSFERLAB_FEATURE_CACHE_GB="
                     f"{MAX_FEATURE_CACHE_BYTES / 2**30:g}); training without it")
            return None
        t0 = time.perf_counter()
        train_views, labels = [], None
        for v in range(1, views + 1):  # view v = the augmentation images get in epoch v without caching
            feats, labels = self._extract(lower, train_ds, view=v,
                                          description=f"features {v}/{views}" if views > 1 else "features train")
            train_views.append(feats)
        val_feats, val_labels = self._extract(lower, val_ds, view=None, description="features val")
        self.log(f"cached frozen-backbone features: {views} view(s) of {len(train_ds)} train + {len(val_ds)} val "
                 f"images, {tuple(train_views[0].shape[1:])} each, {time.perf_counter() - t0:.1f}s")
        from torch.utils.data import TensorDataset

        return FeatureViews(train_views, labels), TensorDataset(val_feats, val_labels)

    def _extract(self, lower, dataset, *, view: int | None, description: str):
        """Features of ``dataset`` (train: augmented as in epoch ``view``); with DDP each rank
        computes a shard and they are all-gathered."""
        from torch.utils.data import Subset

        from ..data import make_loader

        dist = self.dist
        mine = range(dist.rank, len(dataset), dist.world_size)
        if view is None:
            ds, sampler = (Subset(dataset, mine) if dist.enabled else dataset), None
        else:
            ds, sampler = SeededItems(dataset, seed=self.cfg.seed), [(view, i) for i in mine]
        loader = make_loader(ds, batch_size=self.cfg.batch_size, shuffle=False, seed=self.cfg.seed,
                             workers=self.cfg.workers, sampler=sampler)
        feats, labels = extract(lower, loader, device=self.device, channels_last=self.channels_last, amp=self.cfg.amp,
                                description=description, progress=self.progress and dist.is_main)
        if not dist.enabled:
            return feats, labels
        import torch.distributed as tdist

        shards: list = [None] * dist.world_size
        tdist.all_gather_object(shards, (feats, labels))
        full_f = torch.empty((len(dataset), *feats.shape[1:]), dtype=feats.dtype)
        full_y = torch.empty((len(dataset),), dtype=labels.dtype)
        for r, (f, y) in enumerate(shards):
            full_f[r::dist.world_size] = f
            full_y[r::dist.world_size] = y
        return full_f, full_y

    def _run_phase(self, phase: Phase, state: dict | None, n_phases: int) -> None:
        from ..models import apply_freeze
        from ..models.freeze import frozen_batchnorms

        cfg, model, dist = self.cfg, self.model, self.dist
        trainable = apply_freeze(model, phase.policy, unfreeze_from=phase.unfreeze_from,
                                 unfreeze_last=phase.unfreeze_last)
        lower, upper = self._frozen_part(phase)
        cached = None
        if lower is not None and cfg.feature_cache:
            cached = self._features(lower)
        if cached is not None:
            net = model.head if upper is None else nn.Sequential(upper, model.head)
            train_loader = self._train_loader(cached[0], seeded=False, workers=0)
            val_loader = self._val_loader(cached[1], workers=0)
            eval_modules = frozen_batchnorms(model)
        else:
            net = model
            train_loader = self._train_loader(self.datasets["train"], seeded=True, workers=cfg.workers)
            val_loader = self._val_loader(self.datasets["val"], workers=cfg.workers)
            eval_modules = ([lower] if lower is not None else []) + frozen_batchnorms(model)
        what = "head" if phase.policy == "frozen" else model.freeze_policy
        self.log(f"phase {phase.index + 1}/{n_phases}: {what}, {trainable:,} trainable parameters, lr {phase.lr:g}"
                 + (", on cached features" if cached is not None else ""))
        ddp_net = net
        if dist.enabled:
            ddp_net = nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        optimizer = build_optimizer(net, cfg.optimizer, phase.lr, weight_decay=cfg.weight_decay,
                                    momentum=cfg.momentum, nesterov=cfg.nesterov)
        scheduler = build_scheduler(optimizer, cfg.schedule, phase.epochs, warmup=cfg.warmup,
                                    step_size=cfg.step_size, gamma=cfg.gamma, min_lr=cfg.min_lr)
        weight = self.weight.to(self.device) if self.weight is not None else None
        criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
        start_epoch = self.history[-1]["epoch"] if self.history else 0
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            if state.get("scheduler") is not None:
                scheduler.load_state_dict(state["scheduler"])
            _set_rng_state(state["rng"], train_loader)
            end_epoch = state["phase_end"]
        else:
            seed_everything(cfg.seed + 1 + phase.index)  # the same start for cached and uncached training
            end_epoch = start_epoch + phase.epochs
        self.phase_end = end_epoch
        self.trainer = Trainer(model, ddp_net, train_loader, val_loader, optimizer=optimizer, scheduler=scheduler,
                               criterion=criterion, device=self.device, callbacks=self.callbacks, history=self.history,
                               phase=phase.index, total_epochs=end_epoch + (cfg.fine_tune if phase.index < n_phases - 1 else 0),
                               eval_modules=eval_modules, channels_last=self.channels_last, amp=cfg.amp, dist=dist,
                               meta=self.meta, progress=self.progress, log=self.log,
                               commit=lambda tr: self._commit(tr, phase=phase.index, phase_finished=False))
        self.trainer.fit(end_epoch)
        self._commit(self.trainer, phase=phase.index, phase_finished=True, finished=phase.index == n_phases - 1)

    def _commit(self, trainer: Trainer | None, *, phase: int, phase_finished: bool, finished: bool = False) -> None:
        """Write history.csv and last_state.pt (rank 0): the run can resume from here."""
        if not self.dist.is_main:
            return
        trainer = trainer or getattr(self, "trainer", None)
        state = {
            "version": STATE_VERSION,
            "epoch": self.history[-1]["epoch"] if self.history else 0,
            "phase": phase, "phase_finished": phase_finished, "finished": finished,
            "phase_end": getattr(self, "phase_end", None),
            "classes": self.meta["classes"],
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},  # saved at once
            "optimizer": trainer.optimizer.state_dict() if trainer else None,
            "scheduler": trainer.scheduler.state_dict() if trainer and trainer.scheduler else None,
            "callbacks": [cb.state_dict() if hasattr(cb, "state_dict") else None for cb in self.callbacks],
            "rng": _rng_state(trainer.train_loader if trainer else None),
            "history": list(self.history),
        }
        write_history(self.run_dir / "history.csv", self.history)
        save_state(self.run_dir / STATE_FILE, state)


def _checkpoint_best(callbacks) -> tuple[int, float] | None:
    for cb in callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.best_epoch is not None:
            return cb.best_epoch, cb.best
    return None
