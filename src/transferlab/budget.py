"""``transferlab run DATA --budget 15m``: the best models that fit a time budget on this machine.

Measured, not guessed, and re-planned as it goes. :class:`BudgetPlanner` keeps a list of candidate
jobs in cost order and hands out the next one that fits the time really left:

1. **frozen**: the primary pretrained backbone, frozen, with a linear head trained on its cached
   features (one caching pass, then a fraction of a second per epoch). The cheapest honest baseline,
   always tried first, so the run never ends below a linear probe of that backbone.
2. **fine-tune**: the same backbone with its upper blocks fine-tuned on cached lower-block features
   (the recipe's own schedule), with as many epochs as fit the time left.
3. **a second backbone**, frozen, with what is left; then a **from-scratch** net for comparison. A
   from-scratch net is the main choice only where no pretrained backbone can be had (or fits); the
   best model is picked on validation in any case.

:func:`probe` builds a recipe at the input size it would use for this data and times a few batches
of what its training does (the whole backbone's forward pass, the frozen lower blocks' pass, a
training step of the upper blocks and head; for a from-scratch net a training step of the whole net),
on all cores and on one. A busy machine misleads in two ways, and each has its answer:

- *which backbone* is chosen from the one-thread speed (what one free core gives, which a job on
  another core hardly changes), scaled to all cores by :data:`THREAD_GAIN`: the same choice on a quiet
  and a busy machine;
- *how many epochs* are fitted on the speed measured now, on the thread count that was faster (on a
  2-core machine shared with another job, one thread often beats two), and re-fitted after every model
  from how long the last one really took, so a slow minute costs a minute, not the run. A model whose
  real time disagrees with its estimate by more than half has its recipe probed again.

Every model also gets a hard ``time_limit``, so it stops cleanly at its share with its best
checkpoint kept.

>>> planner = BudgetPlanner(splits, 8 * 60)              # doctest: +SKIP
>>> for line in planner.plan().explain(): print(line)    # doctest: +SKIP
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .data.images import load_image
from .data.types import DataSplits
from .errors import ConfigError, TransferlabError
from .models import apply_freeze, create_model, get_recipe
from .models.factory import fallback_source, weights_source
from .models.weights import choose_weights_file, hub_offline
from .training.config import TrainConfig
from .training.features import frozen_part

logger = logging.getLogger("transferlab.budget")

TRANSFER_ORDER = ("efficientnet_lite2", "efficientnet_lite1", "efficientnet_lite0", "mobilenet_v2")
SCRATCH_ORDER = ("resnet_scratch", "cnn_bn")
RESERVE = 0.10           # of the budget, for export and the report
FROZEN_SHARE = 0.40      # a backbone whose fine-tuning fits nowhere is primary when its frozen job fits this share
FINE_TUNE_SHARE = 0.85   # of the time left after the frozen job, for fine-tuning (the rest: a second backbone)
MIN_FINE_TUNE, MAX_FINE_TUNE = 2, 10
MIN_SCRATCH_EPOCHS, MAX_SCRATCH_EPOCHS = 3, 40
THREAD_GAIN = 0.7        # each core past the first adds this much of one core's speed (for the choice only)
REPROBE_RATIO = 1.5      # a model that took 1.5x more (or less) than estimated: its recipe is probed again
HEAD_EPOCHS = 30         # of the frozen job: a linear head on cached features costs little per epoch
EVAL_SECONDS = 5.0       # evaluation's fixed cost (plots, Grad-CAM) besides predicting the validation images
# the frozen job: a linear head on cached features of the unaugmented images
FROZEN_OPTIONS = {"freeze": "frozen", "fine_tune": 0, "epochs": HEAD_EPOCHS, "augment": "none", "label_smoothing": 0.0,
                  "warmup": 0, "schedule": "cosine", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 128}


@dataclass
class Probe:
    """What :func:`probe` measured for a recipe at an input size (images per second on this machine)."""

    recipe: str
    input_size: int
    crop_pct: float | None
    kind: str                      # "transfer" (cached lower blocks + fine-tuned upper) or "scratch"
    train_ips: float               # training step: upper blocks + head on cached features, or the whole net
    infer_ips: float               # the whole model's inference (the frozen job's caching pass, evaluation)
    cache_ips: float | None = None  # the frozen lower blocks' forward pass (feature caching)
    seconds: float = 0.0           # what probing cost
    threads: int = 1               # the thread count the rates above were measured on (the faster one)
    single_ips: float | None = None  # the whole model's inference on one thread

    @property
    def quiet_ratio(self) -> float:
        """Measured inference speed / what this machine gives it when quiet (estimated from one core):
        below 1 on a busy machine. The choice of backbone divides estimates by it."""
        if not self.single_ips:
            return 1.0
        cores = max(1, os.cpu_count() or 1)
        quiet = self.single_ips * (1 + THREAD_GAIN * (cores - 1))
        return min(1.0, self.infer_ips / quiet)


@dataclass
class Choice:
    """One job of a budget: ``label`` is its name in the leaderboard (and run folder)."""

    recipe: str
    options: dict                  # train() options (epochs, fine_tune, input_size, threads, time_limit ...)
    seconds: float                 # estimated training + evaluation time
    why: str
    kind: str = "fine_tune"        # "frozen" | "fine_tune" | "scratch"
    label: str = ""
    real: float | None = None      # how long it really took (set once it ran)

    def __post_init__(self) -> None:
        self.label = self.label or self.recipe

    @property
    def override(self) -> dict:
        """compare's options for this job (a variant's names its recipe as ``model``)."""
        return {**({"model": self.recipe} if self.label != self.recipe else {}), **self.options}

    def describe(self) -> str:
        what = {"frozen": "frozen backbone + linear head on cached features",
                "fine_tune": "upper blocks fine-tuned on cached lower-block features",
                "scratch": "trained from scratch"}[self.kind]
        return f"{self.label} ({what}; {_options_text(self.options)}, about {_fmt(self.seconds)})"


@dataclass
class BudgetPlan:
    budget: float
    choices: list[Choice] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    done: list[Choice] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return [c.label for c in self.choices]

    @property
    def overrides(self) -> dict[str, dict]:
        return {c.label: c.override for c in self.choices}

    def explain(self) -> list[str]:
        lines = []
        if self.probes:
            lines.append(f"budget {_fmt(self.budget)}: probed {', '.join(f'{p.recipe} at {p.input_size} px' for p in self.probes)}"
                         f" in {sum(p.seconds for p in self.probes):.0f} s")
        for p in self.probes:
            cache = f"caching {p.cache_ips:.0f} img/s, " if p.cache_ips else ""
            single = f" (one thread: {p.single_ips:.0f} img/s inference)" if p.single_ips else ""
            lines.append(f"  {p.recipe}: {cache}training {p.train_ips:.0f} img/s, inference {p.infer_ips:.0f} img/s "
                         f"on {p.threads} thread{'s' if p.threads > 1 else ''}{single}")
        for c in self.done:
            lines.append(f"done {c.label}: estimated {_fmt(c.seconds)}, took {_fmt(c.real or 0.0)}")
        for i, c in enumerate(self.choices, 1):
            lines.append(f"{'next' if i == 1 else 'then'} {c.describe()}: {c.why}")
        return lines + self.notes


def _fmt(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _options_text(options: dict) -> str:
    names = {"input_size": "input size", "epochs": "epochs", "fine_tune": "fine-tune epochs", "threads": "threads"}
    return ", ".join(f"{text} {options[k]}" for k, text in names.items() if options.get(k) is not None)


def weights_available(name: str, weights=None) -> bool:
    """True when the recipe's pretrained weights can be had now: a file, a file that fits it in the
    weights folder (checked on a weightless meta-device model), a package, or the hub online."""
    recipe = get_recipe(name)
    try:
        source = weights_source(recipe, weights)
        if source[0] in ("folder", "env"):
            with torch.device("meta"):
                model = create_model(name, 2, pretrained=False)
            if choose_weights_file(model, recipe, source[1])[0] is not None:
                return True
            source = fallback_source(recipe)
    except TransferlabError:
        return False
    return source[0] != "hub" or not hub_offline()


def _rate(step: Callable[[], None], batch: int, min_seconds: float = 0.5, max_steps: int = 20) -> float:
    """Images/s of ``step`` (one warm-up call, then timed calls for about ``min_seconds``)."""
    step()
    done, t0 = 0, time.perf_counter()
    while done < 2 or (time.perf_counter() - t0 < min_seconds and done < max_steps):
        step()
        done += 1
    return batch * done / (time.perf_counter() - t0)


def _on_threads(n: int, measure: Callable[[], float]) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return measure()
    finally:
        torch.set_num_threads(before)


def probe(name: str, splits: DataSplits, *, batch_size: int = 8, input_size: int | None = None) -> Probe:
    """Time a recipe's training and inference on this machine at the input size it would use here,
    on all cores and on one; the training rates are measured on the faster thread count."""
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
    cores = torch.get_num_threads()
    infer_ips = _rate(infer(model, x), batch_size)
    single_ips = _on_threads(1, lambda: _rate(infer(model, x), batch_size)) if cores > 1 else infer_ips
    threads = 1 if single_ips > infer_ips else cores
    infer_ips = max(infer_ips, single_ips)

    def measured(step: Callable[[], None]) -> float:
        return _on_threads(threads, lambda: _rate(step, batch_size))

    cache_ips = None
    if recipe.kind == "transfer" and cfg.fine_tune:
        apply_freeze(model, "full", unfreeze_from=cfg.unfreeze_from, unfreeze_last=cfg.unfreeze_last)
        lower, upper = frozen_part(model)
        if lower is not None and upper is not None:
            lower.eval()
            cache_ips = measured(infer(lower, x))
            with torch.no_grad():
                feats = lower(x)
            top = nn.Sequential(upper, model.head).train()
            train_ips = measured(train_step(top, feats))
        else:
            model.train()
            train_ips = measured(train_step(model, x))
    else:
        if recipe.kind == "transfer":
            apply_freeze(model, cfg.freeze)
        model.train()
        train_ips = measured(train_step(model, x))
    return Probe(name, size, crop, "transfer" if cache_ips else "scratch", train_ips, infer_ips, cache_ips,
                 time.perf_counter() - t0, threads, single_ips)


def decode_seconds(paths: Sequence[str], size: int, sample: int = 16) -> float:
    """Seconds to decode and resize one of ``paths`` to ``size`` px (the image cache's first pass),
    measured on up to ``sample`` of them spread over the list; unreadable ones are skipped."""
    picked = list(paths)[:: max(1, len(paths) // sample)][:sample]
    t0, done = time.perf_counter(), 0
    for path in picked:
        try:
            load_image(path, size)
            done += 1
        except Exception:  # a broken file costs nothing to cache: the scan skips it
            continue
    return (time.perf_counter() - t0) / max(1, done)


def eval_seconds(p: Probe, n_val: int) -> float:
    """Evaluation after training: the validation images through the whole model, plus plots."""
    return n_val / p.infer_ips + EVAL_SECONDS


def frozen_seconds(p: Probe, n_train: int, n_val: int, head_epochs: int = HEAD_EPOCHS) -> float:
    """One caching pass of the whole backbone, ``head_epochs`` epochs of a linear head on the cached
    features (about a quarter of a second each, mostly the checkpoints), then evaluation."""
    return (n_train + n_val) / p.infer_ips + head_epochs * (0.25 + (n_train + n_val) / 50_000) + eval_seconds(p, n_val)


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
    """The train() options that fill ``seconds`` (training only) with the probed recipe on this data,
    and their estimated time: fine-tuning epochs (transfer; ``epochs`` bounds, default 2-10) or epochs
    (from scratch; default 3-40), on the probe's thread count. None when even the lower bound does
    not fit."""
    if p.cache_ips is not None:
        low, high = epochs or (MIN_FINE_TUNE, MAX_FINE_TUNE)
        # one cached view per epoch at most (train caps them so), each a caching pass of the lower blocks
        fits = [n for n in range(low, high + 1) if transfer_seconds(p, n_train, n_val, n, min(views, n)) <= seconds]
        if not fits:
            return None
        n = fits[-1]
        est = transfer_seconds(p, n_train, n_val, n, min(views, n))
        options = {"input_size": p.input_size, "crop_pct": p.crop_pct, "fine_tune": n, "feature_views": min(views, n)}
    else:
        low, high = epochs or (MIN_SCRATCH_EPOCHS, MAX_SCRATCH_EPOCHS)
        per_epoch = scratch_seconds(p, n_train, n_val, 1)
        n = min(high, int(seconds // per_epoch)) if seconds > 0 else 0
        if n < low:
            return None
        est = n * per_epoch
        options = {"input_size": p.input_size, "epochs": n}
    options["threads"] = p.threads
    return options, est


class JobEstimator:
    """What each job takes on this machine now: the probes (a recipe's again once marked ``stale``),
    the image cache's first pass at each input size, and the ``slowdown`` of the last model (its real
    / estimated time), which scales the estimates made after it.

    ``planned``: the input sizes an earlier job of the plan being made decodes (their first pass is
    not counted again); the planner sets it.
    """

    def __init__(self, splits: DataSplits):
        self.splits = splits
        self.n_train, self.n_val = len(splits.train), max(1, len(splits.val))
        self.probes: dict[str, Probe] = {}
        self.probe_order: list[str] = []
        self.stale: set[str] = set()
        self.slowdown = 1.0                 # real / estimated time of the last model
        self.decoded: set[int] = set()       # input sizes whose image cache a model of this run built
        self.planned: set[int] = set()       # sizes an earlier job of the plan being made decodes
        self._decode: dict[int, float] = {}  # input size -> seconds to decode one image

    # ---- measurements --------------------------------------------------------------------------
    def probe(self, name: str) -> Probe:
        if name not in self.probes or name in self.stale:
            logger.info(f"budget: probing {name} ...")
            self.probes[name] = probe(name, self.splits)
            self.stale.discard(name)
            if name not in self.probe_order:
                self.probe_order.append(name)
        return self.probes[name]

    def probed(self) -> list[Probe]:
        """The probes in the order the recipes were first probed."""
        return [self.probes[n] for n in self.probe_order]

    def decode_cost(self, size: int) -> float:
        """The image cache's first pass at ``size`` px (train + val images), unless a model of this run
        already built it."""
        if size in self.decoded or size in self.planned:
            return 0.0
        if size not in self._decode:
            self._decode[size] = decode_seconds([p for p, _ in self.splits.train], size)
        return (self.n_train + self.n_val) * self._decode[size]

    def record(self, choice: Choice, seconds: float) -> None:
        """``choice`` ran in ``seconds``: later estimates are scaled by real / estimated, and a recipe
        whose model disagreed with its estimate by more than :data:`REPROBE_RATIO` is probed again."""
        choice.real = float(seconds)
        self.decoded.add(int(choice.options["input_size"]))
        ratio = choice.real / max(choice.seconds, 1e-6)
        self.slowdown = min(4.0, max(0.5, ratio))
        if ratio > REPROBE_RATIO or ratio < 1 / REPROBE_RATIO:
            self.stale.add(choice.recipe)
            self.slowdown = 1.0  # the new probe measures the machine as it is now

    # ---- jobs and their time ---------------------------------------------------------------------
    def frozen_job(self, name: str, why: str, scale: float | None = None) -> Choice:
        """``name``'s frozen job (:data:`FROZEN_OPTIONS`); its time scaled by ``scale`` (default: the
        slowdown)."""
        p = self.probe(name)
        options = {**FROZEN_OPTIONS, "input_size": p.input_size, "crop_pct": p.crop_pct, "threads": p.threads}
        scale = self.slowdown if scale is None else scale
        seconds = (frozen_seconds(p, self.n_train, self.n_val) + self.decode_cost(p.input_size)) * scale
        return Choice(name, options, seconds, why, kind="frozen", label=f"{name}-frozen")

    def fine_tune_job(self, name: str, seconds: float, why: str, scale: float | None = None) -> Choice | None:
        """``name``'s upper blocks fine-tuned for as many epochs as fit ``seconds`` at ``scale`` (default:
        the slowdown); None when :data:`MIN_FINE_TUNE` do not."""
        p = self.probe(name)
        recipe = TrainConfig(model=name).resolve(get_recipe(name).defaults)
        views = recipe.feature_views or 1
        scale = self.slowdown if scale is None else scale
        fixed = eval_seconds(p, self.n_val) + self.decode_cost(p.input_size)
        fitted = fit_schedule(p, self.n_train, self.n_val, seconds / scale - fixed, views=views)
        if fitted is None:
            return None
        options, est = fitted
        # the recipe's own depth: giving fine_tune alone would make train unfreeze the whole backbone
        # (its freezing plan is taken from the recipe only as a whole), which the probe did not time
        options.update({"unfreeze_from": recipe.unfreeze_from, "unfreeze_last": recipe.unfreeze_last})
        return Choice(name, options, (est + fixed) * scale, why, kind="fine_tune")

    def scratch_job(self, name: str, seconds: float, why: str) -> Choice | None:
        """``name`` trained from scratch for as many epochs as fit ``seconds``; None when
        :data:`MIN_SCRATCH_EPOCHS` do not."""
        p = self.probe(name)
        fixed = eval_seconds(p, self.n_val) + self.decode_cost(p.input_size)
        fitted = fit_schedule(p, self.n_train, self.n_val, seconds / self.slowdown - fixed)
        if fitted is None:
            return None
        options, est = fitted
        return Choice(name, options, (est + fixed) * self.slowdown, why, kind="scratch")

    def eval_part(self, job: Choice) -> float:
        """The evaluation after ``job``'s training (not part of its ``time_limit``)."""
        return eval_seconds(self.probes[job.recipe], self.n_val) if job.recipe in self.probes else 0.0


class _Draft:
    """The jobs of a plan being made, and the time they leave of ``left``."""

    def __init__(self, left: float, estimator: JobEstimator):
        self.left, self.estimator = left, estimator
        self.jobs: list[Choice] = []

    def take(self, job: Choice | None) -> bool:
        """Add ``job`` when it fits the time left (its input size is then decoded for the jobs after it)."""
        if job is None or job.seconds > self.left:
            return False
        self.jobs.append(job)
        self.left -= job.seconds
        self.estimator.planned.add(int(job.options["input_size"]))
        return True


class BudgetPlanner:
    """Plans ``budget`` seconds of training on this machine, one model at a time.

    :meth:`plan` is the whole remaining plan for the time left now; :meth:`record` is told how long
    a model really took, and the next :meth:`plan` is fitted on that. ``transfer`` / ``scratch``: the
    candidates in order of expected accuracy (default :data:`TRANSFER_ORDER`, :data:`SCRATCH_ORDER`).
    ``clock``: seconds (a fake one in tests). What a job takes is :class:`JobEstimator`'s
    (``estimator``); which jobs, in which order, is decided here.

    >>> planner = BudgetPlanner(splits, 480)           # doctest: +SKIP
    >>> while (job := planner.next()) is not None:     # doctest: +SKIP
    ...     t0 = time.perf_counter(); train(splits, job.recipe, **job.options)
    ...     planner.record(job, time.perf_counter() - t0)
    """

    def __init__(self, splits: DataSplits, budget: float, *, transfer: Sequence[str] | None = None,
                 scratch: Sequence[str] | None = None, weights=None,
                 clock: Callable[[], float] = time.perf_counter):
        if not budget or budget <= 0:
            raise ConfigError(f"--budget must be positive, got {budget}")
        self.splits, self.budget, self.clock = splits, float(budget), clock
        self.started = clock()
        self.transfer = [r for r in (TRANSFER_ORDER if transfer is None else transfer) if weights_available(r, weights)]
        self.scratch = list(SCRATCH_ORDER if scratch is None else scratch)
        self.notes: list[str] = []
        missing = [r for r in (TRANSFER_ORDER if transfer is None else transfer) if r not in self.transfer]
        if missing:
            self._note(f"no pretrained weights to be had for {', '.join(missing)}: not considered")
        self.estimator = JobEstimator(splits)
        self.done: list[Choice] = []
        self._primary: tuple[str | None, bool] | None = None   # (recipe, fine-tune fits)
        self._first: Choice | None = None   # the first job planned

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # ---- time and measurements (the estimator's) -------------------------------------------------
    def left(self) -> float:
        """Seconds left for training and evaluation (the budget less its reserve and what was spent)."""
        return self.budget * (1 - RESERVE) - (self.clock() - self.started)

    def record(self, choice: Choice, seconds: float) -> None:
        """``choice`` ran in ``seconds`` (see :meth:`JobEstimator.record`)."""
        self.estimator.record(choice, seconds)
        self.done.append(choice)

    def decode_cost(self, size: int) -> float:
        return self.estimator.decode_cost(size)

    @property
    def slowdown(self) -> float:
        return self.estimator.slowdown

    @property
    def stale(self) -> set[str]:
        return self.estimator.stale

    # ---- the choice of backbone (once, from quiet-machine estimates) -----------------------------
    def primary(self) -> tuple[str | None, bool]:
        """The pretrained backbone of the run and whether its fine-tuning fits, chosen once at this
        machine's quiet speed (see :attr:`Probe.quiet_ratio`), by the same fitting the plan uses: the
        most accurate one whose frozen job and then :data:`MIN_FINE_TUNE` fine-tuning epochs fit the
        usable budget, else the most accurate one whose frozen job fits :data:`FROZEN_SHARE` of it;
        ``(None, False)`` when none does."""
        if self._primary is not None:
            return self._primary
        usable = self.budget * (1 - RESERVE)
        est = self.estimator
        frozen_only = None
        for name in self.transfer:
            p = est.probe(name)
            quiet = p.quiet_ratio
            frozen = est.frozen_job(name, "", scale=quiet).seconds
            if p.cache_ips is not None:
                est.planned = {p.input_size}  # the frozen job decodes the images the fine-tuning reuses
                fits = est.fine_tune_job(name, (usable - frozen) * FINE_TUNE_SHARE, "", scale=quiet) is not None
                est.planned = set()
                if fits:
                    self._primary = (name, True)
                    return self._primary
                self._note(f"{name} at {p.input_size} px: its frozen job and {MIN_FINE_TUNE} fine-tuning epochs need "
                           f"more than {_fmt(usable)} on a quiet machine")
            if frozen_only is None and frozen <= usable * FROZEN_SHARE:
                frozen_only = name
        self._primary = (frozen_only, False)
        return self._primary

    # ---- the plan --------------------------------------------------------------------------------
    def _ran(self, label: str) -> bool:
        return any(c.label == label for c in self.done)

    def plan(self) -> BudgetPlan:
        """The jobs still to run, in order, fitted to the time left now (each with its ``time_limit``)."""
        left = self.left()
        draft = _Draft(left, self.estimator)
        primary, fine_tune_fits = self.primary() if self.transfer else (None, False)
        self.estimator.planned = set()
        if primary is not None:
            self._plan_transfer(draft, primary, fine_tune_fits)
        if not any(self._ran(name) for name in self.scratch):
            draft.take(self._scratch(draft.left, "for comparison: a net trained from scratch on the time left"
                                     if primary or self.done
                                     else "no pretrained backbone fits: the best from-scratch net that does"))
        self.estimator.planned = set()
        for job in draft.jobs:  # a hard stop above the estimate (its cheap head epochs get more), never past the time left
            stop = job.seconds * (2.0 if job.kind == "frozen" else 1.5) + 10
            job.options["time_limit"] = round(max(1.0, min(stop, left) - self.estimator.eval_part(job)), 1)
        if draft.jobs and self._first is None:
            self._first = draft.jobs[0]
        plan = self.report()
        plan.choices = draft.jobs
        return plan

    def _plan_transfer(self, draft: _Draft, primary: str, fine_tune_fits: bool) -> None:
        """The pretrained jobs not run yet: ``primary``'s frozen job, one fine-tuned backbone, a second
        backbone's frozen job."""
        est = self.estimator
        if not self._ran(f"{primary}-frozen"):
            draft.take(est.frozen_job(primary, "the cheapest honest baseline: a linear probe of the best backbone "
                                               "that fits, on features cached once"))
        if fine_tune_fits and not any(c.kind == "fine_tune" for c in self.done):
            # the primary's upper blocks, as many epochs as fit; when the machine is slower now than
            # its quiet speed promised, the next smaller backbone's that fit (not a frozen job alone)
            for name in self.transfer[self.transfer.index(primary):]:
                why = ("fine-tuning its upper blocks, as many epochs as fit" if name == primary else
                       f"fine-tuning: {primary}'s does not fit the time left at the speed measured now")
                rest = [r for r in self.transfer if r != name]
                # the share leaves time for a second backbone; the whole time left when that is too short
                if draft.take(est.fine_tune_job(name, draft.left * (FINE_TUNE_SHARE if rest else 1.0), why)
                              or est.fine_tune_job(name, draft.left, why)):
                    break
        for other in self.transfer:
            if other != primary and not self._ran(f"{other}-frozen") and not self._ran(other):
                if draft.take(est.frozen_job(other, "the time left: a second backbone")):
                    break

    def _scratch(self, seconds: float, why: str) -> Choice | None:
        """The first from-scratch candidate whose :data:`MIN_SCRATCH_EPOCHS` fit ``seconds`` (a note for
        each that does not)."""
        for name in self.scratch:
            job = self.estimator.scratch_job(name, seconds, why)
            if job is not None:
                return job
            est = self.estimator
            p = est.probes[name]
            self._note(f"{name} at {p.input_size} px needs "
                       f"{_fmt(scratch_seconds(p, est.n_train, est.n_val, MIN_SCRATCH_EPOCHS))} for "
                       f"{MIN_SCRATCH_EPOCHS} epochs; {_fmt(max(0.0, seconds))} are left")
        return None

    def report(self) -> BudgetPlan:
        """What was probed and what ran (estimated and real), without planning anything more."""
        return BudgetPlan(self.budget, [], self.estimator.probed(), list(self.notes), list(self.done))

    def next(self) -> Choice | None:
        """The next job that fits the time left, or None when nothing more does. The first model always
        runs: when probing spent the time the first plan had for it, it runs as planned (and says so)."""
        jobs = self.plan().choices
        if jobs:
            return jobs[0]
        if not self.done and self._first is not None:
            self._note(f"probing took longer than planned: {self._first.label} runs anyway, with its planned "
                       f"time limit ({_fmt(self._first.options['time_limit'])})")
            return self._first
        return None


def plan_budget(splits: DataSplits, budget: float, *, transfer: Sequence[str] | None = None,
                scratch: Sequence[str] | None = None, weights=None) -> BudgetPlan:
    """The whole plan for ``budget`` seconds, as :class:`BudgetPlanner` makes it before any model runs;
    a ConfigError when no model fits."""
    planner = BudgetPlanner(splits, budget, transfer=transfer, scratch=scratch, weights=weights)
    plan = planner.plan()
    if not plan.choices:
        raise nothing_fits(budget, len(splits.train))
    return plan


def nothing_fits(budget: float, n_train: int) -> ConfigError:
    """The error for a budget in which no model fits."""
    return ConfigError(f"no model fits a budget of {_fmt(budget)} on this machine for {n_train} training images "
                       "(see the probes above); give a larger --budget")
