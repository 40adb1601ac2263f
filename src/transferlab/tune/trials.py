"""What one trial runs: the head on cached features as ``train`` trains it (head space), the epoch
reports the pruner judges, and the run folders a full-space search keeps."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import optuna
from torch.utils.data import TensorDataset

from ..models import create_model
from ..training.api import seed_everything
from ..training.callbacks import Callback
from ..training.config import ResolvedConfig
from ..training.distributed import DistInfo
from ..training.features import FeatureViews
from ..training.loop import Runtime, Trainer
from ..training.losses import make_criterion
from ..training.sampling import train_loader, val_loader
from ..training.schedule import build_optimizer, build_scheduler
from .features import Features
from .study import finished_complete


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


def trial_value(trial: optuna.Trial, reporter: PruneReporter) -> float:
    """The trial's best validation accuracy; ``optuna.TrialPruned`` when it was pruned or had none."""
    if reporter.pruned_at is not None:
        trial.set_user_attr("pruned_at", reporter.pruned_at)
        raise optuna.TrialPruned(f"pruned at epoch {reporter.pruned_at}")
    if not math.isfinite(reporter.best):
        raise optuna.TrialPruned("no finite validation accuracy")
    return float(reporter.best)


def fit_head(model: str, n_classes: int, cfg: ResolvedConfig, features: Features, reporter: PruneReporter) -> None:
    """Train ``model``'s new head on cached ``features`` with the optimizer, schedule, sample order and
    loss ``train(..., freeze="frozen")`` uses, reporting each epoch to ``reporter``."""
    train_views, train_y, val_x, val_y = features
    # the head as train builds it: the whole model under the seed (no weights read: ~0.03 s), so
    # that its initial weights, and so the trial's figures, are the ones train --config reproduces
    seed_everything(cfg.seed)
    head = create_model(model, n_classes, pretrained=False, head=tuple(cfg.head), dropout=cfg.dropout,
                        input_size=cfg.input_size, crop_pct=cfg.crop_pct).head
    dist = DistInfo()
    tl = train_loader(FeatureViews(train_views, train_y), batch_size=cfg.batch_size, seed=cfg.seed, dist=dist,
                      seeded=False, workers=0)
    vl = val_loader(TensorDataset(val_x, val_y), batch_size=cfg.batch_size, seed=cfg.seed, dist=dist, workers=0)
    optimizer = build_optimizer(head, cfg.optimizer, cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                                nesterov=cfg.nesterov)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.epochs, warmup=cfg.warmup, step_size=cfg.step_size,
                                gamma=cfg.gamma, min_lr=cfg.min_lr)
    multilabel = train_y.ndim == 2  # packed multi-hot rows: binary cross-entropy, subset accuracy
    criterion = make_criterion("ce", label_smoothing=cfg.label_smoothing, multilabel=multilabel)
    seed_everything(cfg.seed + 1)  # as train's first phase
    trainer = Trainer(head, head, tl, vl, optimizer=optimizer, scheduler=scheduler, criterion=criterion,
                      callbacks=[reporter], total_epochs=cfg.epochs, multilabel=multilabel,
                      runtime=Runtime(amp=cfg.amp, progress=False, verbose=False))
    trainer.fit(cfg.epochs)


def keep_best_run(study: optuna.Study, run_dir: Path, value: float, kept: Path | None) -> Path | None:
    """The run folder to keep after a full-space trial that reached ``value``: ``run_dir`` when it beats
    the study's best (``kept``, the earlier best's, is removed), else ``kept`` (``run_dir`` is removed).
    Each holds full checkpoints."""
    best = study.best_value if finished_complete(study) else float("-inf")
    if value > best:
        if kept is not None and kept != run_dir:
            shutil.rmtree(kept, ignore_errors=True)
        return run_dir
    shutil.rmtree(run_dir, ignore_errors=True)
    return kept
