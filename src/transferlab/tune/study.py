"""The Optuna study in ``OUT/study.db`` (SQLite): opened or resumed with the same sampler and pruner
settings, and refused when it holds another search."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna

from ..errors import ConfigError

STUDY_NAME = "transferlab-tune"
STUDY_FILE = "study.db"
# the study's identity: resuming with other values of these would mix incomparable trials
IDENTITY = ("model", "data", "space", "seed", "val_ratio", "input_sizes", "views")


def open_study(out: Path, identity: dict[str, Any], *, seed: int, trials: int | None, group: bool) -> optuna.Study:
    """The study in ``out/study.db``, created with ``identity`` or resumed when it has the same one.

    ``trials``: the finished trials wanted (sets the start-up length); ``group``: the sampler's
    conditional groups (the full space, whose fine-tuning params exist only with ``unfreeze_last``).
    """
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(out / STUDY_FILE).resolve()}"
    # tune prints its own line per trial; optuna's warning for a failed trial would repeat a Ctrl-C's
    # traceback (an objective's real error is raised anyway)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # the pruner's and sampler's settings are not stored: they are rebuilt the same on every run
    startup = 10 if trials is None else min(10, max(3, trials // 3))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=min(5, startup), n_warmup_steps=4)
    # a resumed study gets a sampler seeded past the trials it holds: the same seed would replay
    # the first run's random start-up proposals
    probe = optuna.create_study(study_name=STUDY_NAME, storage=storage, direction="maximize", load_if_exists=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=int(seed) + len(probe.trials), n_startup_trials=startup,
                                             multivariate=True, group=group)
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=sampler, pruner=pruner)
    check_identity(study, identity, out)
    return study


def check_identity(study: optuna.Study, identity: dict[str, Any], out: Path) -> None:
    """Record ``identity`` on a new study; a ConfigError when a used one holds another search."""
    theirs = {k: study.user_attrs.get(k) for k in IDENTITY}
    if not study.trials and not study.user_attrs:
        for k, v in identity.items():
            study.set_user_attr(k, v)
    elif theirs != identity:
        diff = ", ".join(f"{k} {theirs[k]!r} (now {identity[k]!r})" for k in IDENTITY if theirs[k] != identity[k])
        raise ConfigError(f"{out / STUDY_FILE} holds another search ({diff}); "
                          f"use another --out, or the same options to continue it")


def finished(study: optuna.Study) -> list:
    return [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


def finished_complete(study: optuna.Study) -> bool:
    return any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
