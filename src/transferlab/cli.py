"""The ``transferlab`` command line: a thin layer over the Python API.

Each sub-command lives in ``transferlab/commands/<name>.py`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``. Heavy imports (torch, timm)
happen inside ``run`` so that ``transferlab --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from ._logging import cli_handler
from .errors import TransferlabError

# command name -> (module, one-line help). Order is the order shown in --help,
# which follows the data flow: data -> model -> train -> evaluate -> compare -> export -> serve.
COMMANDS: dict[str, tuple[str, str]] = {
    "sample-data": ("transferlab.commands.sample_data", "write a built-in sample dataset (real CIFAR-10 photos, or handwritten digits) as class folders"),
    "inspect": ("transferlab.commands.inspect", "report on a dataset: counts, sizes, formats, broken and duplicate files"),
    "doctor": ("transferlab.commands.doctor", "find duplicates, leakage, likely label errors and outliers in a dataset"),
    "models": ("transferlab.commands.models", "list the model recipes"),
    "train": ("transferlab.commands.train", "train one model recipe on a dataset"),
    "tune": ("transferlab.commands.tune", "search training options with Optuna and write best.json for train --config"),
    "evaluate": ("transferlab.commands.evaluate", "evaluate a trained run: metrics, plots, predictions"),
    "compare": ("transferlab.commands.compare", "train and evaluate several recipes side by side"),
    "distill": ("transferlab.commands.distill", "train a small model on a teacher's (or an ensemble's) soft labels"),
    "export": ("transferlab.commands.export", "export a run to ONNX or TorchScript"),
    "predict": ("transferlab.commands.predict", "classify image files, folders or globs with a run"),
    "serve": ("transferlab.commands.serve", "serve a run as a web page and REST API"),
    "run": ("transferlab.commands.run", "the main job: inspect, compare, evaluate, export the best, report"),
    "cache": ("transferlab.commands.cache", "list, size and clear the caches (decoded images, embeddings, samples)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transferlab",
        description="Train, evaluate, compare and deploy image classifiers from a folder of labelled images.",
    )
    parser.add_argument("--version", action="version", version=f"transferlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)  # light: a command imports its stage in run()
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        if name in CACHING:
            p.add_argument("--cache-max-gb", type=_positive_gb, default=None, metavar="GB",
                           help="disk the image cache may use; the least recently used arrays are removed past it "
                                "(default: $TRANSFERLAB_CACHE_MAX_GB or 20; see `transferlab cache`)")
        p.set_defaults(_run=module.run)
    return parser


# the commands that decode images into the image cache (see transferlab.data.cache)
CACHING = ("doctor", "train", "distill", "tune", "evaluate", "compare", "run")


def check_paths(args: argparse.Namespace) -> None:
    """A missing DATA or RUN is said at once, before a command imports PyTorch (5 s) and starts work
    (the same messages as the stages' own checks, which the API still makes)."""
    # imported here, for the commands that take a path: NumPy and Pillow (~0.15 s), never PyTorch
    if isinstance(getattr(args, "data", None), str):
        from .data.load import existing_source

        existing_source(args.data)
    if args.command in ("evaluate", "export", "predict", "serve") and isinstance(getattr(args, "run", None), str):
        from .runfolder import existing_run

        existing_run(args.run)
    if args.command == "distill":
        from .runfolder import existing_run

        existing_run(args.teacher)


def _positive_gb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of GB: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 GB, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        check_paths(args)
    except TransferlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "cache_max_gb", None) is not None:  # read by data.cache wherever an array is built
        os.environ["TRANSFERLAB_CACHE_MAX_GB"] = repr(args.cache_max_gb)
    try:
        with cli_handler():  # transferlab's log messages through the rich console (see _logging)
            return int(args._run(args) or 0)
    except TransferlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
