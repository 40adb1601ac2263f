"""``transferlab run DATA --budget 15m``: the best models that fit a time budget on this machine.

Measured, not guessed: :func:`probe` builds a recipe at the input size it would use for this data
and times, on this machine, a few batches of what its training does -- for a transfer recipe the
frozen lower blocks' forward pass (feature caching) and a training step of the upper blocks and
head on their output; for a from-scratch net a training step of the whole net -- plus the whole
model's inference. :func:`plan_budget` turns those images/s into seconds for the recipe's schedule
on the data's size and picks, in order of expected accuracy, the first pretrained backbone whose
schedule fits about three quarters of the budget, with as many fine-tuning epochs as fit; then a
from-scratch ResNet (else the CNN with batch norm) with the time left, for comparison. Every model
also gets a hard ``time_limit``, so it stops cleanly at its share with its best checkpoint kept.

>>> plan = plan_budget(splits, 15 * 60)          # doctest: +SKIP
>>> for line in plan.explain(): print(line)      # doctest: +SKIP
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .data.types import DataSplits
from .errors import ConfigError, TransferlabError
from .models import apply_freeze, create_model, get_recipe
from .models.factory import fallback_source, weights_source
from .models.weights import choose_weights_file, hub_offline
from .train.config import TrainConfig
from .train.features import frozen_part

TRANSFER_ORDER = ("efficientnet_lite2", "efficientnet_lite1", "efficientnet_lite0", "mobilenet_v2")
SCRATCH_ORDER = ("resnet_scratch", "cnn_bn")
PRIMARY_SHARE = 0.75     # of the usable budget, for the best pretrained model
RESERVE = 0.10           # of the budget, for evaluation, export and the report
MIN_FINE_TUNE, MAX_FINE_TUNE = 2, 12
MIN_SCRATCH_EPOCHS, MAX_SCRATCH_EPOCHS = 3, 40


@dataclass
class Probe:
    """What :func:`probe` measured for a recipe at an input size (images per second on this machine)."""

    recipe: str
    input_size: int
    crop_pct: float | None
    kind: str                      # "transfer" (cached lower blocks + fine-tuned upper) or "scratch"
    train_ips: float               # training step: upper blocks + head on cached features, or the whole net
    infer_ips: float               # the whole model's inference (feature caching of the head phase, evaluation)
    cache_ips: float | None = None  # the frozen lower blocks' forward pass (feature caching)
    seconds: float = 0.0           # what probing cost


@dataclass
class Choice:
    recipe: str
    options: dict                  # train() options for this recipe (epochs, fine_tune, input_size, time_limit ...)
    seconds: float                 # estimated training time
    why: str


@dataclass
class BudgetPlan:
    budget: float
    choices: list[Choice] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return [c.recipe for c in self.choices]

    @property
    def overrides(self) -> dict[str, dict]:
        return {c.recipe: dict(c.options) for c in self.choices}

    def explain(self) -> list[str]:
        lines = [f"budget {_fmt(self.budget)}: probed {', '.join(f'{p.recipe} at {p.input_size} px' for p in self.probes)} "
                 f"in {sum(p.seconds for p in self.probes):.0f} s"]
        for p in self.probes:
            cache = f"caching {p.cache_ips:.0f} img/s, " if p.cache_ips else ""
            lines.append(f"  {p.recipe}: {cache}training {p.train_ips:.0f} img/s, inference {p.infer_ips:.0f} img/s")
        for c in self.choices:
            lines.append(f"chose {c.recipe} ({_options_text(c.options)}, about {_fmt(c.seconds)}): {c.why}")
        return lines + self.notes


def _fmt(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _options_text(options: dict) -> str:
    keys = ("input_size", "epochs", "fine_tune")
    return ", ".join(f"{k.replace('_', ' ')} {options[k]}" for k in keys if options.get(k) is not None)


def weights_available(name: str, weights=None) -> bool:
    """True when the recipe's pretrained weights can be had now: a file, a file that fits it in the
    weights folder (checked on a weightless meta-device model), a package, or the hub online."""
    recipe = get_recipe(name)
    try:
        source, where = weights_source(recipe, weights)
        if source in ("folder", "env"):
            with torch.device("meta"):
                model = create_model(name, 2, pretrained=False)
            if choose_weights_file(model, recipe, where)[0] is not None:
                return True
            source, where = fallback_source(recipe)
    except TransferlabError:
        return False
    return source != "hub" or not hub_offline()


def _rate(step: Callable[[], None], batch: int, min_seconds: float = 1.0, max_steps: int = 20) -> float:
    """Images/s of ``step`` (one warm-up call, then timed calls for about ``min_seconds``)."""
    step()
    done, t0 = 0, time.perf_counter()
    while done < 2 or (time.perf_counter() - t0 < min_seconds and done < max_steps):
        step()
        done += 1
    return batch * done / (time.perf_counter() - t0)


def probe(name: str, splits: DataSplits, *, batch_size: int = 32, input_size: int | None = None) -> Probe:
    """Time a recipe's training and inference on this machine at the input size it would use here."""
    t0 = time.perf_counter()
    recipe = get_recipe(name)
    size, crop = (input_size, None) if input_size else recipe.input_for(splits.typical_side())
    cfg = TrainConfig(model=name).resolve(recipe.defaults)
    model = create_model(name, len(splits.classes), pretrained=False, input_size=size, crop_pct=crop)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, len(splits.classes), (batch_size,))

    def train_step(net: nn.Module, inputs: torch.Tensor) -> Callable[[], None]:
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)

        def step() -> None:
            loss = nn.functional.cross_entropy(net(inputs), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    def infer(net: nn.Module, inputs: torch.Tensor) -> Callable[[], None]:
        def step() -> None:
            with torch.inference_mode():
                net(inputs)
        return step

    model.eval()
    infer_ips = _rate(infer(model, x), batch_size)
    cache_ips = None
    if recipe.kind == "transfer" and cfg.fine_tune:
        apply_freeze(model, "full", unfreeze_from=cfg.unfreeze_from, unfreeze_last=cfg.unfreeze_last)
        lower, upper = frozen_part(model)
        if lower is not None and upper is not None:
            lower.eval()
            cache_ips = _rate(infer(lower, x), batch_size)
            with torch.no_grad():
                feats = lower(x)
            top = nn.Sequential(upper, model.head).train()
            train_ips = _rate(train_step(top, feats), batch_size)
        else:
            model.train()
            train_ips = _rate(train_step(model, x), batch_size)
    else:
        if recipe.kind == "transfer":
            apply_freeze(model, cfg.freeze)
        model.train()
        train_ips = _rate(train_step(model, x), batch_size)
    return Probe(name, size, crop, "transfer" if cache_ips else "scratch", train_ips, infer_ips, cache_ips,
                 time.perf_counter() - t0)


def transfer_seconds(p: Probe, n_train: int, n_val: int, fine_tune: int, views: int, head_epochs: int = 1) -> float:
    """Head phase (one caching pass of the whole backbone) + fine-tuning phase (``views`` caching passes
    of the lower blocks, then ``fine_tune`` epochs of the upper blocks) + validation each epoch."""
    head = (n_train + n_val) / p.infer_ips + head_epochs * n_val / (20 * p.infer_ips)
    caching = (views * n_train + n_val) / (p.cache_ips or p.infer_ips)
    epoch = n_train / p.train_ips + n_val / (3 * p.train_ips)
    return head + caching + fine_tune * epoch


def scratch_seconds(p: Probe, n_train: int, n_val: int, epochs: int) -> float:
    return epochs * (n_train / p.train_ips + n_val / p.infer_ips)


def fit_schedule(p: Probe, n_train: int, n_val: int, seconds: float, *, views: int = 4,
                 epochs: tuple[int, int] | None = None) -> tuple[dict, float] | None:
    """The train() options that fill ``seconds`` with the probed recipe on this data, and their
    estimated time: fine-tuning epochs (transfer; ``epochs`` bounds, default 2-12) or epochs
    (from scratch; default 3-40), with a hard ``time_limit`` a quarter above the estimate. None when
    even the lower bound does not fit."""
    if p.cache_ips is not None:
        low, high = epochs or (MIN_FINE_TUNE, MAX_FINE_TUNE)
        fixed = transfer_seconds(p, n_train, n_val, 0, views)
        per_epoch = transfer_seconds(p, n_train, n_val, 1, views) - fixed
        n = min(high, int((seconds - fixed) // per_epoch)) if seconds > fixed else 0
        if n < low:
            return None
        est = fixed + n * per_epoch
        options = {"input_size": p.input_size, "crop_pct": p.crop_pct, "fine_tune": n, "feature_views": min(views, n)}
    else:
        low, high = epochs or (MIN_SCRATCH_EPOCHS, MAX_SCRATCH_EPOCHS)
        per_epoch = scratch_seconds(p, n_train, n_val, 1)
        n = min(high, int(seconds // per_epoch)) if seconds > 0 else 0
        if n < low:
            return None
        est = n * per_epoch
        options = {"input_size": p.input_size, "epochs": n}
    options["time_limit"] = round(est * 1.25 + 10, 1)
    return options, est


def plan_budget(splits: DataSplits, budget: float, *, transfer: Sequence[str] | None = None,
                scratch: Sequence[str] | None = None, weights=None, log: Callable[[str], None] = print) -> BudgetPlan:
    """Pick recipes, input sizes and epochs that fit ``budget`` seconds of training on this machine.

    ``transfer`` / ``scratch``: the candidates in order of preference (default :data:`TRANSFER_ORDER`,
    :data:`SCRATCH_ORDER`)."""
    transfer = TRANSFER_ORDER if transfer is None else transfer
    scratch = SCRATCH_ORDER if scratch is None else scratch
    if budget <= 0:
        raise ConfigError(f"--budget must be positive, got {budget}")
    started = time.perf_counter()
    plan = BudgetPlan(budget)
    n_train, n_val = len(splits.train), max(1, len(splits.val))
    usable = budget * (1 - RESERVE)

    def left() -> float:
        return usable - (time.perf_counter() - started)

    primary_time = 0.0
    candidates = [r for r in transfer if weights_available(r, weights)]
    missing = [r for r in transfer if r not in candidates]
    if missing:
        plan.notes.append(f"no pretrained weights to be had for {', '.join(missing)}: not considered")
    for name in candidates:
        log(f"budget: probing {name} ...")
        p = probe(name, splits)
        plan.probes.append(p)
        defaults = TrainConfig(model=name).resolve(get_recipe(name).defaults)
        share = left() * PRIMARY_SHARE
        if p.cache_ips is None:  # no cut: the whole backbone fine-tunes on images
            continue
        fitted = fit_schedule(p, n_train, n_val, share, views=defaults.feature_views or 1)
        if fitted is None:
            need = transfer_seconds(p, n_train, n_val, MIN_FINE_TUNE, defaults.feature_views or 1)
            plan.notes.append(f"{name} at {p.input_size} px needs about {_fmt(need)} for {MIN_FINE_TUNE} fine-tuning "
                              f"epochs; {_fmt(share)} are available for it")
            continue
        options, primary_time = fitted
        why = ("the most accurate pretrained backbone here whose schedule fits" if name == candidates[0]
               else f"the larger backbones do not fit {_fmt(share)}")
        plan.choices.append(Choice(name, options, primary_time, why))
        break
    remaining = left() - primary_time
    for name in scratch:
        log(f"budget: probing {name} ...")
        p = probe(name, splits)
        plan.probes.append(p)
        remaining = left() - primary_time
        fitted = fit_schedule(p, n_train, n_val, remaining)
        if fitted is not None:
            why = ("for comparison: a net trained from scratch on the time left" if plan.choices
                   else "no pretrained backbone fits: the best from-scratch net that does")
            plan.choices.append(Choice(name, fitted[0], fitted[1], why))
            break
        plan.notes.append(f"{name} at {p.input_size} px needs {_fmt(scratch_seconds(p, n_train, n_val, MIN_SCRATCH_EPOCHS))}"
                          f" for {MIN_SCRATCH_EPOCHS} epochs; {_fmt(max(0.0, remaining))} are left")
    if not plan.choices:
        raise ConfigError(f"no model fits a budget of {_fmt(budget)} on this machine for {n_train} training images "
                          f"(see the probes above); give a larger --budget")
    plan.notes.append(f"planning took {time.perf_counter() - started:.0f} s of the budget")
    return plan
