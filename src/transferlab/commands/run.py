"""``transferlab run [DATA]``: the main job, end to end.

inspect the data -> train and evaluate the from-scratch ladder and transfer models on one split
-> export the best to ONNX -> write the HTML report -> print the leaderboard and how to serve it.
With no DATA it runs on the built-in sample (2,400 real CIFAR-10 photos).
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys

from rich.console import Console

from ..choices import EXPORT_FORMATS
from ..comparison.leaderboard import METRICS
from ..training.config import parse_duration
from .train import add_train_options, given_train_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", nargs="?", default=None,
                        help="ROOT/CLASS/*.jpg, ROOT/{train,test}/CLASS or a path,label CSV "
                             "(default: the built-in sample, 2,400 CIFAR-10 photos)")
    parser.add_argument("--out", metavar="DIR", default="transferlab-out",
                        help="output folder: inspect.json, compare/ (runs, report.html), summary.json (default transferlab-out)")
    parser.add_argument("--preset", choices=("quick", "full"), default="quick",
                        help="quick: the from-scratch ladder and EfficientNet-Lite0 (default); "
                             "full: the whole ladder and every transfer backbone")
    parser.add_argument("--models", metavar="A,B,C", default=None, help="recipes to compare instead of the preset's")
    parser.add_argument("--budget", metavar="DURATION", default=None,
                        help="e.g. 15m: pick the recipes, input size and epochs that fit this much training time "
                             "on this machine (measured with a short probe), stop each cleanly at its share")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per model (default: each recipe's own)")
    parser.add_argument("--no-doctor", action="store_true", help="skip the data doctor step")
    parser.add_argument("--no-ensemble", action="store_true",
                        help="no ensemble row (default: one when averaging some models beats the best on validation)")
    parser.add_argument("--metric", choices=METRICS, default="accuracy", help="metric that picks the best model (default accuracy)")
    parser.add_argument("--format", dest="export_format", choices=EXPORT_FORMATS, default="onnx",
                        help="export format for the best model (default onnx)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_train_options(parser)


def run(args: argparse.Namespace) -> int:
    # stage modules are imported here, not at the top: they load PyTorch (3.1 s), which building the
    # CLI parser (`transferlab --help`) must not pay
    from ..comparison import print_leaderboard
    from ..comparison.leaderboard import fmt
    from ..pipeline import run_pipeline

    budget = parse_duration(args.budget, "--budget") if args.budget is not None else None
    options = given_train_options(args)
    seed, val_ratio = options.pop("seed", 0), options.pop("val_ratio", 0.2)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    summary = run_pipeline(
        args.data,
        out=args.out,
        preset=args.preset,
        models=args.models,
        epochs=args.epochs,
        budget=budget,
        doctor=not args.no_doctor,
        ensemble=not args.no_ensemble,
        metric=args.metric,
        export_format=args.export_format,
        seed=seed,
        val_ratio=val_ratio,
        progress=not args.no_progress,
        **options,
    )
    metric = summary.get("metric") or args.metric
    print_leaderboard(summary["leaderboard"], metric, console=console)
    best = summary["best"]
    console.print(f"best model: {best['model']} ({metric} {fmt(metric, best.get(metric))})",
                  highlight=False)
    console.print(f"exported:   {summary['onnx']}", highlight=False)
    console.print(f"report:     {summary['report']}", highlight=False)
    if summary.get("doctor"):
        console.print(f"doctor:     {Path(summary['doctor']).with_suffix('.html')}", highlight=False)
    console.print(f"serve it:   {summary['serve_command']}", highlight=False)
    return 0
