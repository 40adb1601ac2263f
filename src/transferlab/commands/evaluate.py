"""``transferlab evaluate RUN [--data DIR] [--split val|test|train|all]``: metrics, plots, predictions.

Writes ``RUN/eval-<split>/`` (metrics.json, predictions.csv, history/confusion/ROC/F1/mistakes/
Grad-CAM PNGs) and prints a summary table. By default the run's own validation split is rebuilt
from its config.json; ``--data DIR`` evaluates another dataset with the same class names.
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run folder written by `transferlab train` (e.g. runs/cnn_base)")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="evaluate on another dataset (same class names) instead of the run's own split")
    parser.add_argument("--split", choices=("val", "test", "train", "all"), default=None,
                        help="which images: val (default), test, train or all (default with --data: all)")
    parser.add_argument("--batch-size", type=int, default=64, help="inference batch size (default 64)")
    parser.add_argument("--out", metavar="DIR", default=None, help="output folder (default RUN/eval-<split>)")
    parser.add_argument("--gradcam", type=int, default=6, metavar="N", help="Grad-CAM images (default 6; 0 = none)")
    parser.add_argument("--mistakes", type=int, default=12, metavar="N",
                        help="most confident mistakes to show (default 12; 0 = none)")
    parser.add_argument("--no-plots", action="store_true", help="metrics and predictions only")
    parser.add_argument("--workers", type=int, default=None, help="data loader workers")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..evaluate import evaluate, print_summary

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    metrics = evaluate(args.run, data=args.data, split=args.split, batch_size=args.batch_size, out=args.out,
                       plots=not args.no_plots, gradcam=max(0, args.gradcam), mistakes=max(0, args.mistakes),
                       workers=args.workers, progress=not args.no_progress)
    print_summary(metrics)
    return 0
