"""``transferlab sample-data DIR [--per-class N] [--size 32]``: write the built-in sample dataset.

Real handwritten digits (scikit-learn's bundled ``load_digits``, no download) as
``DIR/0/*.png`` .. ``DIR/9/*.png``, ready for ``transferlab inspect DIR`` or ``transferlab train DIR``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data.sample import write_sample


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="folder to write (created if needed)")
    parser.add_argument("--per-class", type=int, default=None, metavar="N",
                        help="at most N images per digit (default: all, about 180 each)")
    parser.add_argument("--size", type=int, default=32, metavar="PX",
                        help="side of the square grayscale PNGs (default 32; the scans are 8x8)")


def run(args: argparse.Namespace) -> int:
    root = write_sample(args.dir, per_class=args.per_class, size=args.size)
    counts = {d.name: sum(1 for _ in d.glob("*.png")) for d in sorted(Path(root).iterdir()) if d.is_dir()}
    print(f"wrote {sum(counts.values())} images in {len(counts)} classes "
          f"({args.size}x{args.size} PNG) to {root}")
    return 0
