"""Defaults that adapt to a tiny training set, and a note when validation is too small to trust.

With 18 training images and the usual batch of 32 an epoch is a single optimizer step, and ten
epochs are ten steps: a new head on a frozen backbone barely moves at the default learning rate
(the issue's ``mobilenet_v1_025_tf`` scored 0.17). When the user chose neither, :func:`adapt_to_data`

* makes the batch smaller, so that an epoch has at least :data:`MIN_STEPS_PER_EPOCH` steps
  (a power of two, at least :data:`MIN_BATCH`);
* on a tiny training set (fewer than ``MIN_STEPS_PER_EPOCH x 32`` images per process), gives each
  phase whose epochs come from the defaults enough epochs for :data:`MIN_PHASE_STEPS` optimizer
  steps (at most :data:`MAX_EPOCHS`).

Options the user gave are never changed. What was adapted is logged and kept in ``config.json``
(``"adapted"``); the resolved values are the run's own, so ``--resume`` continues with them.

>>> from transferlab.training.config import TrainConfig
>>> given = TrainConfig(model="cnn_bn")
>>> cfg, notes = adapt_to_data(given.resolve({"epochs": 10}), given, n_train=18)
>>> cfg.batch_size, cfg.epochs
(8, 67)
>>> validation_note(6).split(":")[0]
'validation has only 6 images'
"""
from __future__ import annotations

import dataclasses
import math

from .._stats import wilson_interval
from .config import DEFAULT_BATCH_SIZE, ResolvedConfig, TrainConfig

#: an epoch should have at least this many optimizer steps when the batch size is ours to choose
MIN_STEPS_PER_EPOCH = 4
#: the smallest batch the adaptation picks (batch norm and Adam are noisy below it)
MIN_BATCH = 8
#: on a tiny training set, a phase whose epochs come from the defaults gets at least this many steps
MIN_PHASE_STEPS = 200
MAX_EPOCHS = 100
#: half-width of the 95% interval of a 0.90 accuracy above which validation is "too small to trust"
TRUST_HALF_WIDTH = 0.10


def _pow2_floor(x: float) -> int:
    return 1 << max(0, int(math.floor(math.log2(max(x, 1.0)))))


def adapt_to_data(cfg: ResolvedConfig, given: TrainConfig, n_train: int, world_size: int = 1
                  ) -> tuple[ResolvedConfig, list[str]]:
    """``cfg`` (resolved) adapted to ``n_train`` training images; ``given`` is the unresolved config
    (what the user set). Returns the new config and one human line per adapted option."""
    per_process = math.ceil(n_train / max(1, world_size))
    notes: list[str] = []
    batch = int(cfg.batch_size)
    adapted = {"batch_size": cfg.batch_size, "epochs": cfg.epochs, "fine_tune": cfg.fine_tune}
    if given.batch_size is None and per_process < MIN_STEPS_PER_EPOCH * batch:
        smaller = min(batch, max(MIN_BATCH, _pow2_floor(per_process / MIN_STEPS_PER_EPOCH)))
        if smaller < batch:
            notes.append(f"batch size {smaller} (not {batch}): {n_train} training images would make "
                         f"{math.ceil(per_process / batch)} step(s) an epoch at {batch}")
            adapted["batch_size"] = batch = smaller
    steps = math.ceil(per_process / batch)
    tiny = per_process < MIN_STEPS_PER_EPOCH * DEFAULT_BATCH_SIZE
    for name, flag in (("epochs", "epochs"), ("fine_tune", "fine-tune epochs")):
        epochs = int(getattr(cfg, name) or 0)
        if not tiny or getattr(given, name) is not None or epochs <= 0 or epochs * steps >= MIN_PHASE_STEPS:
            continue
        more = min(MAX_EPOCHS, math.ceil(MIN_PHASE_STEPS / steps))
        if more > epochs:
            notes.append(f"{flag} {more} (not {epochs}): {steps} step(s) an epoch; a phase gets at least "
                         f"{min(MIN_PHASE_STEPS, more * steps)} optimizer steps on a tiny training set")
            adapted[name] = more
    if not notes:  # nothing adapted
        return cfg, notes
    return dataclasses.replace(cfg, batch_size=adapted["batch_size"], epochs=adapted["epochs"],
                               fine_tune=adapted["fine_tune"]), notes


def validation_note(n_val: int) -> str | None:
    """A warning when ``n_val`` validation images are too few to trust an accuracy measured on them
    (the 95% Wilson interval of an accuracy of 0.90 is wider than +-:data:`TRUST_HALF_WIDTH`)."""
    if n_val <= 0:
        return "validation has no images: val_loss and val_acc measure nothing; add images or raise --val-ratio"
    lo, hi = wilson_interval(0.9, n_val)
    if (hi - lo) / 2 <= TRUST_HALF_WIDTH:
        return None
    return (f"validation has only {n_val} images: each one moves val_acc by {1 / n_val:.2f}, and an accuracy "
            f"of 0.90 measured on them means {lo:.2f}-{hi:.2f} (95% Wilson interval); do not trust val_acc "
            f"or the best epoch much; add images or raise --val-ratio")
