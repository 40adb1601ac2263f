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

from ..compare.leaderboard import METRICS


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
    parser.add_argument("--batch-size", type=int, default=None, help="training batch size (default: train's)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: each recipe's)")
    parser.add_argument("--input-size", type=int, default=None, help="image side fed to every model (default: each recipe's)")
    parser.add_argument("--val-ratio", type=float, default=0.2, help="fraction held out for validation (default 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="split and training seed (default 0)")
    parser.add_argument("--weights", metavar="PATH", default=None,
                        help="pretrained weights: a folder of weight files (each recipe takes the file that fits "
                             "it), or RECIPE=FILE[,RECIPE=FILE...]")
    parser.add_argument("--log", metavar="tensorboard,mlflow", default=None,
                        help="experiment tracking for every model trained: TensorBoard event files in each run "
                             "folder and/or an MLflow run each (MLFLOW_TRACKING_URI); needs pip install "
                             "'transferlab[tracking]'")
    parser.add_argument("--retrain", action="store_true", help="train every recipe again, even finished ones")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report from OUT's existing runs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    # stage modules are imported here, not at the top: they load PyTorch (3.1 s), which building the
    # CLI parser (`transferlab --help`) must not pay
    from ..compare import compare, print_leaderboard, write_report

    # the leaderboard is wide: do not squeeze it into 80 columns when piped to a file
    console = Console() if sys.stdout.isatty() else Console(width=160)
    if args.report_only:
        rows = write_report(args.out, metric=args.metric)
    else:
        kwargs = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr), ("input_size", args.input_size),
                                    ("weights", args.weights), ("log", args.log)) if v is not None}
        rows = compare(args.data, models=args.models, preset=args.preset, out=args.out, epochs=args.epochs,
                       metric=args.metric, split=args.split, seed=args.seed, val_ratio=args.val_ratio,
                       retrain=args.retrain, progress=not args.no_progress, console=console, **kwargs)
    print_leaderboard(rows, args.metric, console=console)
    console.print(f"report: {os.path.join(args.out, 'report.html')}", highlight=False)
    return 0 if any(r.get("status") == "ok" for r in rows) else 1
