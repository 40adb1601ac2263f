"""Optimizers and learning-rate schedules, built from torch's own classes.

Schedules are stepped once per epoch (after validation), like torchvision's reference
training script: ``constant``, ``cosine`` (to ``min_lr`` at the end of the phase) and ``step``
(multiply by ``gamma`` every ``step_size`` epochs), each with an optional linear warm-up over the
first ``warmup`` epochs (``LinearLR`` chained with ``SequentialLR``). All of torch's schedulers
used here are *chainable*, so a ReduceLROnPlateau callback that lowers the lr in between keeps
its effect.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim import lr_scheduler as S

from ..choices import OPTIMIZERS, SCHEDULES
from ..errors import ConfigError



def param_groups(modules: nn.Module | Iterable[nn.Parameter], weight_decay: float) -> list[dict]:
    """Trainable parameters in two groups: weights with ``weight_decay``, and biases/norm
    parameters (1-D tensors) without it (the usual practice; timm and torchvision do the same)."""
    params = modules.parameters() if isinstance(modules, nn.Module) else modules
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in params:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups: list[dict] = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if not groups:
        raise ConfigError("the model has no trainable parameters (check --freeze / --unfreeze-from)")
    return groups


def build_optimizer(net: nn.Module, name: str, lr: float, *, weight_decay: float = 0.0,
                    momentum: float = 0.9, nesterov: bool = False) -> torch.optim.Optimizer:
    """``sgd`` (momentum, optionally Nesterov), ``adam`` or ``adamw`` over ``net``'s trainable parameters."""
    groups = param_groups(net, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ConfigError(f"unknown optimizer {name!r}: choose from {', '.join(OPTIMIZERS)}")


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, epochs: int, *, warmup: int = 0,
                    warmup_factor: float = 0.1, step_size: int | None = None, gamma: float = 0.1,
                    min_lr: float = 0.0) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-epoch schedule over ``epochs`` epochs; the first ``warmup`` ramp linearly from
    ``warmup_factor * lr`` up to ``lr``."""
    warmup = max(0, min(int(warmup), epochs - 1))
    main_epochs = max(1, epochs - warmup)
    main: S.LRScheduler
    if name == "constant":
        main = S.ConstantLR(optimizer, factor=1.0, total_iters=0)
    elif name == "cosine":
        main = S.CosineAnnealingLR(optimizer, T_max=main_epochs, eta_min=min_lr)
    elif name == "step":
        main = S.StepLR(optimizer, step_size=step_size or max(1, main_epochs // 3), gamma=gamma)
    else:
        raise ConfigError(f"unknown schedule {name!r}: choose from {', '.join(SCHEDULES)}")
    if warmup == 0:
        return main
    warm = S.LinearLR(optimizer, start_factor=warmup_factor, end_factor=1.0, total_iters=warmup)
    return S.SequentialLR(optimizer, [warm, main], milestones=[warmup])


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
