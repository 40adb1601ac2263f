"""``transferlab compare [DATA] --models a,b,c [--preset quick|full] [--epochs N] [--metric accuracy]``.

Trains (or reuses) each recipe under ``OUT/runs/<recipe>`` on the same split and seed, evaluates
it, and writes ``OUT/leaderboard.{csv,json}``, ``OUT/report.md`` and a self-contained
``OUT/report.html``. Re-running resumes: finished recipes are not retrained.
"""
from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console
from rich.table import Table

from ..comparison.leaderboard import METRICS
from ..errors import ConfigError
from .train import add_train_options, given_train_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", nargs="?", default=None,
                        help="ROOT/CLASS/*.jpg, ROOT/{train,test}/CLASS or a path,label CSV (default: the built-in sample, real CIFAR-10 photos)")
    parser.add_argument("--models", metavar="A,B,C", default=None,
                        help="comma-separated recipes (default: the preset's; see `transferlab models`)")
    parser.add_argument("--preset", choices=("quick", "full"), default="quick",
                        help="quick: cnn_base,cnn_aug,cnn_bn,efficientnet_lite0; full: the whole ladder, the ResNets "
                             "from scratch and every transfer backbone (each recipe with its own epochs)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per recipe (default: the preset's)")
    parser.add_argument("--metric", choices=METRICS, default="accuracy", help="leaderboard sort key (default accuracy)")
    parser.add_argument("--out", metavar="DIR", default="compare", help="output folder (default compare)")
    parser.add_argument("--split", choices=("val", "test"), default="val", help="evaluation split (default val)")
    parser.add_argument("--retrain", action="store_true", help="train every recipe again, even finished ones")
    parser.add_argument("--cv", type=int, default=None, metavar="K",
                        help="stratified K-fold cross-validation of the training images (copies never straddle "
                             "folds): OUT/fold-<k>/ and OUT/cv.json with mean +- sd per recipe")
    parser.add_argument("--cv-groups", metavar="DOCTOR_JSON", default=None,
                        help="with --cv: also keep the data doctor's near-duplicate groups inside one fold")
    parser.add_argument("--no-ensemble", action="store_true",
                        help="no ensemble row (default: one when averaging some models beats the best on validation)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report from OUT's existing runs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_train_options(parser)


def run(args: argparse.Namespace) -> int:
    # stage modules are imported here, not at the top: they load PyTorch (3.1 s), which building the
    # CLI parser (`transferlab --help`) must not pay
    from ..comparison import compare, print_leaderboard, write_report
    from ..comparison.runner import read_state

    # the leaderboard is wide: do not squeeze it into 80 columns when piped to a file
    console = Console() if sys.stdout.isatty() else Console(width=160)
    if args.cv is not None:
        return _cross_validate(args, console)
    if args.cv_groups:
        raise ConfigError("--cv-groups goes with --cv K")
    if args.report_only:
        rows = write_report(args.out, metric=args.metric)
    else:
        options = given_train_options(args)
        seed, val_ratio = options.pop("seed", 0), options.pop("val_ratio", 0.2)
        rows = compare(args.data, models=args.models, preset=args.preset, out=args.out, epochs=args.epochs,
                       metric=args.metric, split=args.split, seed=seed, val_ratio=val_ratio,
                       retrain=args.retrain, ensemble=not args.no_ensemble, progress=not args.no_progress, **options)
    # the metric compare ranked by (multi-label data ranks by mAP when accuracy, the default, was asked)
    metric = args.metric if args.report_only else read_state(args.out).get("metric") or args.metric
    print_leaderboard(rows, metric, console=console)
    console.print(f"report: {os.path.join(args.out, 'report.html')}", highlight=False)
    return 0 if any(r.get("status") == "ok" for r in rows) else 1


def _cross_validate(args: argparse.Namespace, console: Console) -> int:
    """``compare --cv K``: one compare per fold, then the mean +- sd table (and OUT/cv.json)."""
    from ..comparison.cv import compare_cv

    if args.report_only or args.split != "val":
        raise ConfigError("--cv scores each fold on its validation fold: it takes neither --report-only nor --split")
    options = given_train_options(args)
    seed, val_ratio = options.pop("seed", 0), options.pop("val_ratio", 0.2)
    result = compare_cv(args.data, args.cv, models=args.models, preset=args.preset, out=args.out, epochs=args.epochs,
                        metric=args.metric, seed=seed, val_ratio=val_ratio, retrain=args.retrain,
                        groups_from=args.cv_groups, progress=not args.no_progress, **options)
    table = Table(title=f"{result['folds']}-fold cross-validation (mean +- sd over the folds; grouping: "
                        f"{result['grouping']})")
    for col in ("model", "accuracy", "macro F1", "log loss"):
        table.add_column(col, justify="left" if col == "model" else "right")

    def cell(s: dict) -> str:
        return "-" if s["mean"] is None else f"{s['mean']:.4f} +- {s['sd']:.4f}"

    models = sorted(result["models"].items(), key=lambda kv: -(kv[1]["accuracy"]["mean"] or -1))
    for name, m in models:
        table.add_row(name, cell(m["accuracy"]), cell(m["f1_macro"]), cell(m["log_loss"]))
    console.print(table)
    console.print(f"per fold: {os.path.join(args.out, 'fold-<k>')}; figures: {os.path.join(args.out, 'cv.json')}",
                  highlight=False)
    return 0 if any(m["accuracy"]["mean"] is not None for _, m in models) else 1
