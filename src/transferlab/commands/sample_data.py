"""``transferlab sample-data NAME [DIR]``: write a built-in sample dataset.

``cifar10`` (default of every command run without DATA): 2,400 real CIFAR-10 photos shipped with
the package, as ``DIR/train/CLASS/*.jpg`` + ``DIR/test/CLASS/*.jpg``. ``digits``: scikit-learn's
real handwritten digits as ``DIR/0/*.png`` .. ``DIR/9/*.png``. Ready for ``transferlab inspect DIR``
or ``transferlab run DIR``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data.sample import SAMPLES, write_sample


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", choices=SAMPLES,
                        help="cifar10: real 32x32 photos, 10 classes (Krizhevsky 2009); digits: handwritten digits")
    parser.add_argument("dir", metavar="DIR", nargs="?", default=None,
                        help="folder to write (created if needed; default ./NAME)")
    parser.add_argument("--per-class", type=int, default=None, metavar="N",
                        help="at most N (training) images per class (default: all)")
    parser.add_argument("--size", type=int, default=32, metavar="PX",
                        help="digits only: side of the square grayscale PNGs (default 32; the scans are 8x8)")


def run(args: argparse.Namespace) -> int:
    root = write_sample(args.dir or args.name, args.name, per_class=args.per_class, size=args.size)
    files = [p for p in Path(root).rglob("*") if p.is_file() and not p.name.startswith(".")]
    classes = {p.parent.name for p in files}
    print(f"wrote {len(files)} images in {len(classes)} classes to {root}")
    return 0
