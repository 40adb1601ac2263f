"""``transferlab tune [DATA] --model NAME --trials N [--budget 15m] --out DIR``: search training options
with Optuna (TPE + median pruning) and write ``DIR/best.json`` for ``transferlab train --config``.

The study is kept in ``DIR/study.db``: after Ctrl-C (exit 130), the same command continues it.
See :mod:`transferlab.tune` for the search spaces.
"""
from __future__ import annotations

import argparse
import shlex
import sys

from ..errors import ConfigError
from .train import SPLIT_OPTIONS, add_train_options, split_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", nargs="?", default=None,
                        help="ROOT/CLASS/*.jpg, ROOT/{train,test[,val]}/CLASS, or a path,label CSV "
                             "(default: the built-in sample)")
    parser.add_argument("--model", "-m", metavar="RECIPE", default=None,
                        help="recipe to tune (default efficientnet_lite0: its ImageNet weights ship with a pip package)")
    parser.add_argument("--trials", metavar="N", default=None,
                        help="finished trials the study should have; a re-run continues up to N (default 20, or no "
                             "limit with --budget)")
    parser.add_argument("--budget", metavar="DURATION", default=None,
                        help="wall-clock time for this call, e.g. 600, 90s, 15m, 1h30m (a trial starts only while "
                             "some remains)")
    parser.add_argument("--out", metavar="DIR", default="tune",
                        help="folder of the study (DIR/study.db), cached features, best.json and report.html "
                             "(default tune)")
    parser.add_argument("--space", choices=("head", "full"), default="head",
                        help="head: the head on cached frozen-backbone features, seconds a trial (lr, weight decay, "
                             "head width, dropout, label smoothing, epochs, input size, none/shift augmentation); "
                             "full: real training runs, adding every augmentation and the unfreeze depth (minutes a "
                             "trial) (default head)")
    parser.add_argument("--weights", metavar="PATH", default=None,
                        help="pretrained weights: a file, a folder (the file that fits is chosen by its tensors), "
                             "or RECIPE=FILE")
    parser.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                        help="use pretrained weights (default: the recipe's; --no-pretrained tunes on a randomly "
                             "initialised backbone, for tests)")
    parser.add_argument("--input-sizes", metavar="S1,S2", default=None,
                        help="input sizes to try (default: the size train picks for the data and about 0.7x of it)")
    parser.add_argument("--views", metavar="K", default=2,
                        help="augmented feature passes cached per input size for --augment shift (head space; "
                             "default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_train_options(parser, SPLIT_OPTIONS, title="the split (as in transferlab train)")


def _number(text, kind, flag: str):
    try:
        return kind(str(text).strip())
    except ValueError:
        raise ConfigError(f"{flag} must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None


def resume_command(args: argparse.Namespace) -> str:
    """The command line that continues this search."""
    parts = ["transferlab", "tune"] + ([args.data] if args.data else [])
    for flag, value in (("--model", args.model), ("--trials", args.trials), ("--budget", args.budget),
                        ("--out", args.out), ("--space", args.space if args.space != "head" else None),
                        ("--weights", args.weights), ("--input-sizes", args.input_sizes),
                        ("--views", args.views if str(args.views) != "2" else None),
                        ("--seed", args.seed), ("--val-ratio", args.val_ratio)):
        if value is not None:
            parts += [flag, str(value)]
    if args.pretrained is not None:
        parts.append("--pretrained" if args.pretrained else "--no-pretrained")
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    # the search imports PyTorch and Optuna: here, not at the top, so that `transferlab --help` stays fast
    from ..data.sample import sample_dir
    from ..tune import DEFAULT_MODEL, tune

    val_ratio, seed = split_options(args)
    trials = args.trials if args.trials is not None else (None if args.budget is not None else 20)
    data = args.data if args.data is not None else sample_dir()
    try:
        tune(data, model=args.model or DEFAULT_MODEL, trials=trials, budget=args.budget, out=args.out,
             space=args.space, weights=args.weights, pretrained=args.pretrained, input_sizes=args.input_sizes,
             views=_number(args.views, int, "--views"), seed=seed, val_ratio=val_ratio,
             progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted: the study is saved in {args.out}; continue with: {resume_command(args)}",
              file=sys.stderr, flush=True)
        return 130
    return 0
