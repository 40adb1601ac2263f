"""``transferlab evaluate RUN [--data DIR] [--split val|test|train|all]``: metrics, plots, predictions.

Writes ``RUN/eval-<split>/`` (metrics.json, predictions.csv, history/confusion/ROC/F1/mistakes/
Grad-CAM PNGs) and prints a summary table. By default the run's own validation split is rebuilt
from its config.json; ``--data DIR`` evaluates another dataset with the same class names.
"""
from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from ..choices import EVAL_SPLITS
from ..errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="a run folder written by `transferlab train` (e.g. runs/cnn_base)")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="evaluate on another dataset (same class names) instead of the run's own split")
    parser.add_argument("--split", choices=EVAL_SPLITS, default=None,
                        help="which images: val (default), test, train or all (default with --data: all)")
    parser.add_argument("--batch-size", type=int, default=64, help="inference batch size (default 64)")
    parser.add_argument("--out", metavar="DIR", default=None, help="output folder (default RUN/eval-<split>)")
    parser.add_argument("--gradcam", type=int, default=6, metavar="N", help="Grad-CAM images (default 6; 0 = none)")
    parser.add_argument("--mistakes", type=int, default=12, metavar="N",
                        help="most confident mistakes to show (default 12; 0 = none)")
    parser.add_argument("--tta", action="store_true", help="average with the mirrored images (test-time augmentation)")
    parser.add_argument("--ood", metavar="DIR", default=None,
                        help="photos of none of the run's classes: report how well the model tells them apart "
                             "(AUROC) and the share its 'unknown' threshold rejects")
    parser.add_argument("--accept-rate", type=float, default=None, metavar="R",
                        help="share of in-distribution photos the 'unknown' threshold accepts, chosen on the "
                             "validation split (default 0.95)")
    parser.add_argument("--no-plots", action="store_true", help="metrics and predictions only")
    parser.add_argument("--workers", type=int, default=None, help="data loader workers")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    # stage modules are imported here, not at the top: they load PyTorch (3.1 s), which building the
    # CLI parser (`transferlab --help`) must not pay
    from ..evaluation import evaluate

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    metrics = evaluate(args.run, data=args.data, split=args.split, batch_size=args.batch_size, out=args.out,
                       plots=not args.no_plots, tta=args.tta, gradcam=max(0, args.gradcam), mistakes=max(0, args.mistakes),
                       workers=args.workers, progress=not args.no_progress, ood=args.ood,
                       accept_rate=args.accept_rate)
    print_summary(metrics)
    return 0


def print_summary(metrics: dict[str, Any], console=None, per_class_limit: int = 60) -> None:
    """Print a rich summary: overall numbers, then the per-class table (like scikit-learn's report).
    With a ``headline`` (imbalanced training classes) macro F1 and balanced accuracy come first."""
    console = console or Console()

    def f(v, digits=4):
        return "-" if v is None else f"{v:.{digits}f}"

    title = f"{metrics.get('recipe') or ''} on {metrics.get('split', '')} ({metrics['num_samples']} images)".strip()
    overall = Table(title=title, show_header=True)
    overall.add_column("metric")
    overall.add_column("value", justify="right")
    lead = metrics.get("headline")
    if lead:  # imbalanced training classes: the figures that weigh every class equally come first
        console.print(f"[bold]macro F1 {f(lead['macro_f1'])}, balanced accuracy {f(lead['balanced_accuracy'])}[/] "
                      f"(read these first: {lead['why']})")
        overall.add_row("macro F1", f(lead["macro_f1"]), style="bold")
        overall.add_row("balanced accuracy", f(lead["balanced_accuracy"]), style="bold")
    overall.add_row("accuracy", f(metrics["accuracy"]))
    if not lead and metrics.get("balanced_accuracy") is not None:
        overall.add_row("balanced accuracy", f(metrics["balanced_accuracy"]))
    for k, v in metrics.get("top_k_accuracy", {}).items():
        overall.add_row(f"top-{k} accuracy", f(v))
    overall.add_row("log loss", f(metrics["log_loss"]))
    cal = metrics.get("calibration")
    if cal:  # temperature scaling, fitted on the validation split
        where = f"T = {cal['temperature']:.3f}, fitted on {cal['fitted_on']}" if cal.get("temperature") else "no temperature"
        overall.add_row(f"ECE before / after ({where})", f"{f(cal['ece_before'])} / {f(cal.get('ece_after'))}")
    rej = metrics.get("rejection")
    if rej:  # "none of these": the threshold chosen on validation for an acceptance rate
        overall.add_row(f"accepted (not 'unknown': {rej['score']} >= {rej['threshold']:.3f})",
                        f"{f(rej['accepted'], 3)} (accuracy on those {f(rej['accuracy_accepted'])})")
    ood = metrics.get("ood")
    if ood:
        overall.add_row(f"--ood photos rejected ({ood['images']})", f(ood.get("rejected"), 3))
        for name, v in ood["auroc"].items():
            overall.add_row(f"--ood AUROC ({name})", f(v, 3))
    for avg in ("macro_avg", "weighted_avg"):
        a = metrics[avg]
        overall.add_row(f"{avg.replace('_avg', '')} precision / recall / F1",
                        f"{f(a['precision'], 3)} / {f(a['recall'], 3)} / {f(a['f1'], 3)}")
    overall.add_row("ROC AUC micro / macro", f"{f(metrics['roc_auc']['micro'], 3)} / {f(metrics['roc_auc']['macro'], 3)}")
    if "inference_ms_per_image" in metrics:
        overall.add_row("inference", f"{metrics['inference_ms_per_image']:.2f} ms/image")
        overall.add_row("model", f"{metrics['model_size_mb']:.2f} MB, {metrics['num_params']:,} parameters")
    console.print(overall)

    per = Table(show_header=True, title="per class")
    for col in ("class", "precision", "recall", "f1", "support", "auc"):
        per.add_column(col, justify="left" if col == "class" else "right")
    items = list(metrics["per_class"].items())
    for name, row in items[:per_class_limit]:
        per.add_row(name, f(row["precision"], 3), f(row["recall"], 3), f(row["f1"], 3), str(row["support"]), f(row["auc"], 3))
    if len(items) > per_class_limit:
        per.add_row(f"... {len(items) - per_class_limit} more", "", "", "", "", "")
    for avg in ("macro_avg", "weighted_avg"):
        a = metrics[avg]
        per.add_row(avg.replace("_", " "), f(a["precision"], 3), f(a["recall"], 3), f(a["f1"], 3), str(a["support"]), "",
                    style="bold")
    console.print(per)
    for note in metrics.get("notes", []):
        console.print(f"[yellow]note:[/] {note}")
    if metrics.get("output_dir"):
        console.print(f"wrote {metrics['output_dir']}")
