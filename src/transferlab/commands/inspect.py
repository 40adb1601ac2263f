"""``transferlab inspect [DATA]``: a dataset report, printed as tables and written as JSON (and HTML / CSV).

Images per class and split, class imbalance, image sizes, formats, broken and duplicate files.
With no DATA, the built-in sample (real CIFAR-10 photos) is used.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from .train import SPLIT_OPTIONS, add_train_options, split_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", nargs="?", default=None,
                        help="ROOT/CLASS/*.jpg, ROOT/{train,test[,val]}/CLASS, or a path,label CSV "
                             "(default: the built-in sample, real CIFAR-10 photos)")
    parser.add_argument("--json", metavar="PATH", default="inspect.json", help="report file (default inspect.json)")
    parser.add_argument("--html", metavar="PATH", default=None,
                        help="also write a self-contained HTML page with charts and sample images")
    parser.add_argument("--csv", metavar="PATH", nargs="?", const="inspect.csv", default=None,
                        help="also write a per-file CSV (path,label,split,width,height,...; default inspect.csv); "
                             "it is itself a dataset CSV that reproduces this split")
    parser.add_argument("--workers", type=int, default=None, help="scan threads (default: CPU count)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_train_options(parser, SPLIT_OPTIONS, title="the split (as in transferlab train)")


def run(args: argparse.Namespace) -> int:
    # here, not at the top: the report pulls in matplotlib, which added 0.4 s and 28 MB of RSS to
    # every CLI start, `transferlab serve` included (measured)
    from ..data.report import inspect_data, load_scanned, render_report, write_file_csv, write_html
    from ..data.sample import sample_dir

    source = args.data if args.data is not None else sample_dir()
    val_ratio, seed = split_options(args)
    splits = load_scanned(source, val_ratio=val_ratio, seed=seed, workers=args.workers,
                          progress=not args.no_progress)  # its warnings are reported below
    report = inspect_data(splits, val_ratio=val_ratio, seed=seed)

    console = Console()
    for table in render_report(report):
        console.print(table)
    err = Console(stderr=True)
    for note in report["warnings"]:
        err.print(f"[yellow]warning:[/] {note}", highlight=False, markup=True, soft_wrap=True)

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console.print(f"report: {out}", highlight=False)
    if args.html:
        console.print(f"html: {write_html(report, splits, args.html)}", highlight=False)
    if args.csv:
        console.print(f"csv: {write_file_csv(splits, args.csv)}", highlight=False)
    return 0
