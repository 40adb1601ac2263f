"""A search's own options, checked once with the one-line messages the command line shows."""
from __future__ import annotations

import math

from ..choices import MIN_INPUT_SIZE
from ..errors import ConfigError
from ..training.config import parse_duration

SPACES = ("head", "full")
DEFAULT_VIEWS = 2                        # augmented feature views cached for augment != none (head space)
DEFAULT_MODEL = "efficientnet_lite0"     # pretrained weights ship with a pip package: works offline


def check_space(space: str) -> str:
    if space not in SPACES:
        raise ConfigError(f"unknown --space {space!r}: choose from {', '.join(SPACES)}")
    return space


def check_trials(trials) -> int | None:
    if trials is None:
        return None
    try:
        n = int(str(trials).strip())
    except ValueError:
        raise ConfigError(f"--trials must be a whole number of trials, got {trials!r}") from None
    if n < 1:
        raise ConfigError(f"--trials must be at least 1, got {n}")
    return n


def check_budget(budget) -> float | None:
    if budget is None:
        return None
    if isinstance(budget, (int, float)) and not isinstance(budget, bool):
        if not (budget > 0 and math.isfinite(budget)):
            raise ConfigError(f"--budget must be a positive duration, got {budget!r}")
        return float(budget)
    return parse_duration(str(budget), "--budget")


def check_sizes(sizes) -> list[int] | None:
    if sizes is None:
        return None
    if isinstance(sizes, str):
        sizes = [s for s in sizes.replace(" ", "").split(",") if s]
    try:
        out = sorted({int(s) for s in sizes})
    except (TypeError, ValueError):
        raise ConfigError(f"--input-sizes must be comma-separated integers, e.g. 160,224; got {sizes!r}") from None
    if not out or out[0] < MIN_INPUT_SIZE:
        raise ConfigError(f"--input-sizes must be integers of at least {MIN_INPUT_SIZE}, got {sizes!r}")
    return out


def check_views(views) -> int:
    try:
        n = int(views)
    except (TypeError, ValueError):
        raise ConfigError(f"--views must be a whole number, got {views!r}") from None
    if n < 1:
        raise ConfigError(f"--views must be at least 1, got {n}")
    return n
