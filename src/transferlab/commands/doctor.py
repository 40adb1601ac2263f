"""``transferlab doctor [DATA]``: find, rank and explain the problems of an image dataset.

Exact and near-duplicates (within a class, across classes, across splits), likely label errors
(cleanlab on out-of-fold predictions), outliers, and warnings (a validation split too small to
trust, tiny or imbalanced classes, tiny images, grayscale mixed with colour). Prints a table and
writes ``doctor.json`` and ``doctor.html`` (``--out``); ``--write-clean FILE.csv`` writes a dataset
CSV without the problems. The user's files are never modified. With no DATA, the built-in sample
is used.
"""
from __future__ import annotations

import argparse

from ..doctor.duplicates import FLOOR, HASH_DISTANCE, RATIO, REFERENCE, THRESHOLD
from .train import SPLIT_OPTIONS, add_train_options, split_options


def _count(text: str) -> int:
    if str(text).lower() == "all":
        return -1
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'all', got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more (or 'all'), got {n}")
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", nargs="?", default=None,
                        help="ROOT/CLASS/*.jpg, ROOT/{train,test[,val]}/CLASS, or a path,label CSV "
                             "(default: the built-in CIFAR-10 photo sample)")
    parser.add_argument("--out", metavar="DIR", default="doctor", help="folder for doctor.json and doctor.html (default doctor/)")
    parser.add_argument("--threshold", type=float, default=THRESHOLD,
                        help=f"cosine similarity of embeddings from which two images are near-duplicates (default {THRESHOLD})")
    parser.add_argument("--ratio", type=float, default=RATIO,
                        help=f"ratio test: also a near-duplicate when a pair is at most RATIO times as far apart as "
                             f"each image's {REFERENCE}th nearest image (similarity >= {FLOOR}); 0 turns it off "
                             f"(default {RATIO})")
    parser.add_argument("--hash-distance", type=int, nargs=2, metavar=("PHASH", "DHASH"), default=list(HASH_DISTANCE),
                        help=f"perceptual-hash bits (of 64) within which two images are near-duplicates "
                             f"(default {HASH_DISTANCE[0]} {HASH_DISTANCE[1]})")
    parser.add_argument("--backbone", default="efficientnet_lite0", help="pretrained recipe whose embeddings are used "
                                                                         "(default efficientnet_lite0)")
    parser.add_argument("--input-size", type=int, default=None, help="embedding input size (default: the backbone's)")
    parser.add_argument("--precision", choices=("auto", "bf16", "none"), default="auto",
                        help="auto: bfloat16 autocast where the CPU supports it (about 2x faster, same neighbours)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds for the label check (default 5)")
    parser.add_argument("--outlier-z", type=float, default=4.0, help="robust z-score from which an image is an outlier (default 4)")
    parser.add_argument("--no-html", action="store_true", help="write doctor.json only")
    parser.add_argument("--rows", type=int, default=5, help="examples per issue in the table (default 5)")
    clean = parser.add_argument_group("clean dataset CSV")
    clean.add_argument("--write-clean", metavar="FILE.csv", default=None,
                       help="write a path,label,split dataset CSV without the problems (the files stay where they are)")
    clean.add_argument("--split-by-group", action="store_true",
                       help="in that CSV, re-split train+val so every near-duplicate group stays on one side")
    clean.add_argument("--keep-leaks", action="store_true", help="keep copies of train images in val/test")
    clean.add_argument("--keep-conflicts", action="store_true", help="keep duplicate groups with conflicting labels")
    clean.add_argument("--dedupe", choices=("exact", "near", "none"), default="exact",
                       help="per split and class keep one of each group of identical files (exact, default), "
                            "of each near-duplicate group (near), or all (none)")
    clean.add_argument("--drop-outliers", type=_count, default=0, metavar="N",
                       help="drop the top N outliers ('all': every one flagged; default 0)")
    clean.add_argument("--drop-label-issues", type=_count, default=0, metavar="N",
                       help="drop the top N of the label ranking: the flagged likely label errors, then those to "
                            "review ('all': the flagged ones; default 0)")
    clean.add_argument("--relabel", type=_count, default=0, metavar="N",
                       help="give the top N of the label ranking their suggested label ('all': the flagged ones; "
                            "default 0)")
    clean.add_argument("--relative-paths", action="store_true", help="paths relative to the CSV's folder (default absolute)")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: CPU count)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_train_options(parser, SPLIT_OPTIONS, title="the split (as in transferlab train)")


def run(args: argparse.Namespace) -> int:
    import sys

    from rich.console import Console

    from ..doctor import diagnose, render_report, summary, write_clean, write_outputs
    from ..errors import ConfigError

    if args.data is None:
        from ..data.sample import sample_dir  # the same default dataset as `transferlab inspect`

        source = sample_dir()
    else:
        source = args.data
    if args.rows < 0:
        raise ConfigError(f"--rows must be 0 or more, got {args.rows}")
    if args.write_clean and not str(args.write_clean).lower().endswith(".csv"):
        raise ConfigError(f"--write-clean needs a .csv file name, got {args.write_clean}")
    if args.split_by_group and not args.write_clean:
        raise ConfigError("--split-by-group changes the split of the clean CSV: give --write-clean FILE.csv too")
    val_ratio, seed = split_options(args)
    report = diagnose(source, backbone=args.backbone, input_size=args.input_size, threshold=args.threshold,
                      ratio=args.ratio or None, hash_distance=tuple(args.hash_distance), folds=args.folds,
                      outlier_z=args.outlier_z, val_ratio=val_ratio, seed=seed, amp=args.precision,
                      workers=args.workers, progress=not args.no_progress)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    for table in render_report(report, max_rows=args.rows):
        console.print(table)
    console.print(summary(report)[0], highlight=False)
    written = write_outputs(report, args.out, html=not args.no_html)
    console.print(f"report: {written['json']}", highlight=False)
    if "html" in written:
        console.print(f"html:   {written['html']}", highlight=False)
    if args.write_clean:
        done = write_clean(report, args.write_clean, split_by_group=args.split_by_group, relative=args.relative_paths,
                           drop_leaks=not args.keep_leaks, drop_conflicts=not args.keep_conflicts, dedupe=args.dedupe,
                           drop_outliers=args.drop_outliers, drop_issues=args.drop_label_issues, relabel=args.relabel)
        what = ", ".join(f"{k} {v}" for k, v in sorted(done["reasons"].items())) or "nothing changed"
        split = ", ".join(f"{k} {v}" for k, v in done["counts"].items())
        console.print(f"clean:  {done['path']} ({done['rows']} images: {split}; {what})", highlight=False)
    return 0
