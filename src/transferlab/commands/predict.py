"""``transferlab predict RUN PATH...``: classify image files, folders (recursive) and globs.

Uses ONNX Runtime when the run was exported (``RUN/export/model.onnx``), else PyTorch. Unreadable
files are reported (path and reason) and skipped; the exit code is 0 when at least one image was
classified. A photo scoring below the run's "unknown" threshold (chosen by ``evaluate`` on the
validation split) is answered ``unknown``; ``--no-unknown`` always answers a class.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..choices import BACKENDS
from ..errors import ConfigError, DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run folder (with best.safetensors or export/model.onnx)")
    parser.add_argument("paths", metavar="PATH", nargs="+", help="image files, folders (recursive) or globs (quote them)")
    parser.add_argument("--topk", type=int, default=5, help="classes shown per image (default 5)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table", help="default table")
    parser.add_argument("--output", "-o", metavar="FILE", default=None, help="write to FILE instead of stdout")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="images per model call (default 8: on a CPU larger batches are no faster and need "
                             "more memory)")
    parser.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto: ONNX Runtime when exported, else PyTorch (default auto)")
    parser.add_argument("--no-calibration", action="store_true",
                        help="raw softmax probabilities (default: divided by the temperature evaluate fitted on "
                             "the validation split, RUN/calibration.json, when there is one)")
    parser.add_argument("--no-unknown", action="store_true",
                        help="always answer a class (default: 'unknown' when the photo's calibrated top probability "
                             "is below the threshold evaluate chose on the validation split)")
    parser.add_argument("--accept-rate", type=float, default=None, metavar="R",
                        help="the share of in-distribution photos the 'unknown' threshold accepts (default: the "
                             "one it was chosen for, 0.95)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..predictor import Predictor  # here: ONNX Runtime adds 0.3 s to every CLI start (measured)

    if args.topk < 1:
        raise ConfigError(f"--topk must be >= 1, got {args.topk}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    predictor = Predictor(args.run, backend=args.backend, batch_size=args.batch_size,
                          calibrate=not args.no_calibration, reject=not args.no_unknown, accept_rate=args.accept_rate)
    for note in predictor.notes:
        print(f"note: {note}", file=sys.stderr)
    rows = predictor.predict_paths(args.paths, topk=args.topk, tta=args.tta, progress=not args.no_progress)
    good = [r for r in rows if "error" not in r]
    bad = [r for r in rows if "error" in r]

    if args.format == "json":
        text = json.dumps(rows, indent=2) + "\n"
    elif args.format == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "rank", "class", "probability", "error", "answer", "score"])
        for r in rows:
            if "error" in r:
                w.writerow([r["path"], "", "", "", r["error"], "", ""])
            else:  # answer: the image's label (its top class, or unknown); score: what the threshold compares
                for rank, t in enumerate(r["top"], 1):
                    w.writerow([r["path"], rank, t["class"], f"{t['prob']:.6f}", "", r["label"], f"{r['score']:.6f}"])
        text = buf.getvalue()
    else:
        text = None

    if text is not None:
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    elif good:
        calibrated = f", temperature {predictor.temperature:.3f}" if predictor.temperature != 1.0 else ""
        rej = predictor.rejection
        if rej:
            calibrated += f", unknown below {rej['threshold']:.3f}"
        table = Table(title=f"{predictor.meta.get('recipe')} ({predictor.backend}{calibrated})")
        table.add_column("path", overflow="fold")
        table.add_column("class")
        table.add_column("prob", justify="right")
        table.add_column(f"top {args.topk}", overflow="fold")
        for r in good:
            others = ", ".join(f"{t['class']} {t['prob']:.1%}" for t in r["top"])
            label = f"[yellow]unknown[/] (score {r['score']:.2f})" if r["unknown"] else (r["label"] or "(none of the labels)")
            table.add_row(r["path"], label, f"{r['prob']:.1%}", others)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as f:
                Console(file=f, width=160).print(table)
        else:
            Console().print(table)
    for r in bad:
        print(f"skipped {r['path']}: {r['error']}", file=sys.stderr)
    where = f" -> {args.output}" if args.output else ""
    unknown = sum(1 for r in good if r["unknown"])
    print(f"predicted {len(good)} image(s) with {predictor.backend}" + (f", {unknown} unknown" if unknown else "")
          + (f", {len(bad)} skipped" if bad else "") + where, file=sys.stderr)
    if not good:
        raise DataError(f"no image could be classified ({len(bad)} path(s) skipped, reasons above)")
    return 0
