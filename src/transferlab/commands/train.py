"""``transferlab train [DATA] --model NAME ...``: train one recipe into ``runs/NAME/``.

The flags are built from :class:`~transferlab.training.config.TrainConfig`'s fields (name, type, help,
group, choices), so every option of :func:`transferlab.training.train` has exactly one flag and a new
option needs no change here. Values reach TrainConfig as text and are converted and validated
there: a bad value is one ``error:`` line (exit 2). Under ``torchrun --nproc_per_node N -m
transferlab train ...`` it trains with DistributedDataParallel.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError
from ..training.config import TrainConfig, base_type, convert


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


#: the training options that compare and run take too (their flags derived from TrainConfig, as train's)
SHARED_OPTIONS = ("batch_size", "lr", "input_size", "resize", "val_ratio", "seed", "weights", "trackers")
#: old flag spellings still accepted
ALIASES = {"trackers": ["--log"]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", nargs="?", default=None,
                        help="ROOT/CLASS/*.jpg, ROOT/{train,test[,val]}/CLASS, or a path,label CSV "
                             "(default: the built-in sample)")
    hints = typing.get_type_hints(TrainConfig)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(TrainConfig):
        group = groups.get(f.metadata["group"]) or groups.setdefault(f.metadata["group"],
                                                                       parser.add_argument_group(f.metadata["group"]))
        _add_option(group, f, hints)
    parser.add_argument("--config", metavar="FILE.json", default=None,
                        help="a JSON object of training options (the names above with _, e.g. the best.json "
                             "transferlab tune writes); flags given on the command line win over it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_train_options(parser: argparse.ArgumentParser, names: Sequence[str] = SHARED_OPTIONS,
                      title: str = "training options (as in transferlab train)") -> None:
    """The flags of the training options ``names``, exactly as ``train`` has them (for compare and run)."""
    hints = typing.get_type_hints(TrainConfig)
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    group = parser.add_argument_group(title)
    for name in names:
        _add_option(group, fields[name], hints)


#: the split's options, which inspect, doctor and tune take too
SPLIT_OPTIONS = ("val_ratio", "seed")


def split_options(args: argparse.Namespace) -> tuple[float, int]:
    """``(val_ratio, seed)`` as given on the command line (flags of :func:`add_train_options` with
    :data:`SPLIT_OPTIONS`), else TrainConfig's defaults."""
    given = given_train_options(args, SPLIT_OPTIONS)
    return float(given.get("val_ratio", TrainConfig.val_ratio)), int(given.get("seed", TrainConfig.seed))


def given_train_options(args: argparse.Namespace, names: Sequence[str] = SHARED_OPTIONS) -> dict[str, Any]:
    """The options among ``names`` given on the command line, converted from text as TrainConfig does
    (a bad value is a one-line ConfigError); checked when the training config is built."""
    hints = typing.get_type_hints(TrainConfig)
    return {n: convert(n, getattr(args, n), hints[n]) for n in names if getattr(args, n, None) is not None}


def _add_option(group, f: dataclasses.Field, hints: dict[str, Any]) -> None:
    """One TrainConfig field as a flag: its name, help (with choices and default), a switch for a bool."""
    meta = f.metadata
    names = [_flag(f.name)] + (["-m"] if f.name == "model" else []) + ALIASES.get(f.name, [])
    default = f.default if f.default is not dataclasses.MISSING else None
    help_text = meta["help"]
    if meta.get("choices"):
        help_text += f" ({' | '.join(meta['choices'])})"
    if base_type(hints[f.name]) is bool:
        if default is False:  # a switch
            group.add_argument(*names, dest=f.name, action="store_true", default=None, help=help_text)
        else:  # on/off with a default (or the recipe's)
            state = "" if default is None else f" (default {'on' if default else 'off'})"
            group.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text + state)
        return
    if default not in (None, "", []) and f.name != "model":
        help_text += f" (default {default:g})" if isinstance(default, float) else f" (default {default})"
    group.add_argument(*names, dest=f.name, default=None, metavar=meta.get("metavar") or f.name.upper(),
                       help=help_text)


def _as_text(value) -> str:
    """A JSON value as the text of its CLI flag (lists comma-separated), converted by TrainConfig."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_as_text(v) for v in value)
    return str(value)


def read_config_file(path: str) -> dict:
    """The options in a ``--config`` JSON file, as flag texts; a one-line ConfigError for a missing or
    malformed file and for names that are not training options."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--config {path}: not a JSON file ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: must hold a JSON object of training options")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"--config {path}: unknown training option(s) {', '.join(unknown)} "
                          f"(see transferlab train --help; names use _, e.g. weight_decay)")
    return {k: _as_text(v) for k, v in data.items() if v is not None}


def apply_config_file(args: argparse.Namespace) -> None:
    """Fill the flags not given on the command line from ``--config`` (in place)."""
    path = getattr(args, "config", None)
    if not path:
        return
    for name, text in read_config_file(path).items():
        if getattr(args, name, None) is None:
            setattr(args, name, text)


def options_from_args(args: argparse.Namespace) -> dict:
    """The ``train()`` keyword arguments for parsed CLI args: every option, the flags given converted
    from text by TrainConfig (a bad value is a ConfigError), the others at their defaults."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if f.name != "model" and getattr(args, f.name) is not None}
    options = dataclasses.asdict(TrainConfig(**given))
    del options["model"]
    return options


def run(args: argparse.Namespace) -> int:
    # stage modules are imported here, not at the top: they load PyTorch (3.1 s), which building the
    # CLI parser (`transferlab --help`) must not pay
    from ..data.sample import sample_dir
    from ..training import train
    from ..training.distributed import env_rank

    apply_config_file(args)
    data = args.data if args.data is not None else sample_dir()
    result = train(data, model=args.model or TrainConfig.model, progress=not args.no_progress, **options_from_args(args))
    best = result.best
    if best is not None and env_rank() == 0:
        print(f"run: {result.dir}  best epoch {best['epoch']}: val_loss {best['val_loss']:.4f}, "
              f"val_acc {best['val_acc']:.4f}")
    return 0
