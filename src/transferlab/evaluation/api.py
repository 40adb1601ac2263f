"""``evaluate(run, ...)``: a trained run's metrics, predictions and plots on a data split.

It reloads the run's best checkpoint, rebuilds the run's own data split (``config.json`` records
the data source, ``val_ratio`` and ``seed``; see :func:`transferlab.runfolder.load_run_splits`),
predicts the images and writes ``RUN/eval-<split>/``: ``metrics.json``, ``predictions.csv`` and
``history.png``, ``confusion_matrix.png``, ``roc.png``, ``f1.png``, ``reliability.png``, ``mistakes.png``
and, for CNNs, ``gradcam.png``.

Calibration: evaluating the run's own validation split fits the softmax temperature on its logits
(:mod:`.calibration`) and stores it in ``RUN/calibration.json``; other splits use the stored one (or
fit it on the validation split first), never their own labels. ``metrics.json`` gets
``calibration``: the temperature, the split it was fitted on and this split's ECE and NLL before and
after; the other metrics and ``predictions.csv`` stay those of the uncalibrated probabilities.

"None of these" (:mod:`transferlab.ood`): the same validation logits choose the rejection threshold on
the calibrated top probability that accepts ``accept_rate`` of the validation photos (stored with the
temperature). ``metrics.json`` gets ``rejection`` (this split's accepted share and the accuracy on the
accepted photos) and, with ``ood=DIR`` (photos of none of the classes), ``ood``: the AUROC of telling
this split from those photos (per score) and the share of them rejected.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sklearn.metrics import roc_auc_score

from ..tta import with_mirrors
from .. import ood as ood_scores
from .. import runfolder, tracking
from .._atomic import atomic_write_text
from .._progress import track
from ..checkpoint import load_model
from ..choices import EVAL_SPLITS
from ..data import ImageDataset, build_transform, make_loader, open_image
from ..data.layout import expand_paths
from ..data.scan import scan_files
from ..errors import ConfigError, DataError
from . import plots
from .calibration import calibrated_probs, expected_calibration_error, fit_temperature, nll, reliability_bins
from .gradcam import gradcam_plot, label_gradcam_plot
from .multilabel import multilabel_metrics, predicted_sets, sigmoid, tune_thresholds
from .metrics import compute_metrics, headline, imbalance_ratio, roc_curves

logger = logging.getLogger(__name__)
ECE_BINS = 15  # equal-width confidence bins of the expected calibration error and the reliability diagram


def _check_classes(run_classes: list[str], data_classes: list[str], source: str) -> None:
    if list(run_classes) == list(data_classes):
        return
    missing = [c for c in run_classes if c not in data_classes]
    extra = [c for c in data_classes if c not in run_classes]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if extra:
        parts.append(f"unknown {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}")
    detail = "; ".join(parts) or "different order"
    raise DataError(f"the classes of {source} do not match the run's ({len(run_classes)} classes): {detail}")


def _samples(splits, split: str):
    if split == "all":
        samples = list(splits.train) + list(splits.val) + list(splits.test)
    else:
        samples = list(splits.split(split))
    if not samples:
        hint = " (this dataset has no test split; use --split val)" if split == "test" else ""
        raise DataError(f"no images in the {split!r} split of {splits.root}{hint}")
    return samples


def _display_image(path: str, size: int = 128):
    img = open_image(path)
    img.thumbnail((size, size))
    return np.asarray(img)


def evaluate(
    run,
    data=None,
    split: str | None = None,
    *,
    batch_size: int = 64,
    out: str | Path | None = None,
    plots: bool = True,
    gradcam: int = 6,
    mistakes: int = 12,
    tta: bool = False,
    workers: int | None = None,
    progress: bool = True,
    ood: str | Path | None = None,
    accept_rate: float | None = None,
) -> dict[str, Any]:
    """Evaluate a run on a data split; write ``metrics.json``, ``predictions.csv`` and plots.

    ``run``: a run folder (or a ``Run``). ``data``: ``None`` = the run's own dataset and split
    (rebuilt from ``config.json``), a dataset path (its class names must equal the run's), or a
    ``DataSplits``. ``split``: ``"val"``, ``"test"``, ``"train"`` or ``"all"``; default ``"val"``,
    or ``"all"`` when ``data`` is another dataset path (not the one the run was trained on). Output goes to ``out`` (default
    ``RUN/eval-<split>``). ``gradcam``/``mistakes``: how many images in those grids (0 = none). ``tta``:
    average each image's probabilities with its mirror image's (test-time augmentation).
    ``ood``: a folder (or file, glob) of photos of none of the run's classes, for the "none of these"
    report (``metrics["ood"]``); ``accept_rate``: the share of in-distribution photos the rejection
    threshold accepts (default: the stored rule's, 0.95 when fitted now).
    Returns the metrics dict written to ``metrics.json``.
    """
    if accept_rate is not None:
        try:
            accept_rate = ood_scores.check_accept_rate(accept_rate)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    run_dir = runfolder.existing_run(run)
    ood_files = _ood_files(ood, progress) if ood is not None else None
    model, meta = load_model(run_dir)
    if meta.get("task") == "multilabel":
        if ood is not None:
            raise ConfigError("--ood is for single-label runs (a multi-label run answers an empty set for none of its labels)")
        return _evaluate_multilabel(run_dir, model, meta, data, split, out, batch_size=batch_size, workers=workers,
                                    tta=tta, progress=progress, plots_on=plots, gradcam=gradcam)
    classes = [str(c) for c in meta["classes"]]
    config = runfolder.read_config(run_dir)
    samples, split, source, foreign, train_counts = _split_samples(run_dir, config, data, split, classes, progress)
    out_dir = Path(out) if out is not None else runfolder.eval_dir(run_dir, split)
    out_dir.mkdir(parents=True, exist_ok=True)

    cfg = dict(meta.get("data_cfg") or getattr(model, "data_cfg", {}))
    dataset = ImageDataset(samples, cfg, transform=build_transform(cfg, train=False))
    logits, infer_seconds = predict_logits(model, dataset, len(classes), batch_size=batch_size, workers=workers,
                                            tta=tta, desc=f"evaluating {run_dir.name} ({split})", progress=progress)
    # the labels are the dataset's, in order; metrics and predictions.csv are of the uncalibrated probabilities
    result = _SplitPredictions(samples, np.asarray(dataset.targets, np.int64), calibrated_probs(logits), classes)

    metrics = compute_metrics(result.labels, result.probs, classes)
    metrics["train_imbalance_ratio"] = imbalance_ratio(train_counts) if train_counts is not None else None
    lead = headline(metrics, train_counts)
    if lead is not None:  # imbalanced training classes: macro F1 and balanced accuracy are the figures to read
        metrics["headline"] = lead
    metrics.update(_run_details(run_dir, meta, model, out_dir, split=split, source=source, batch_size=batch_size,
                                tta=tta, infer_seconds=infer_seconds, images=len(result.labels)))
    _write_predictions(out_dir / runfolder.PREDICTIONS, result)
    note = None if foreign else _changed_split_note(config, split, len(samples))
    if note:
        metrics["notes"].append(note)
    temperature = _temperature(run_dir, config, data, split, foreign, model, cfg, logits, result.labels, metrics,
                               batch_size=batch_size, workers=workers, progress=progress, accept_rate=accept_rate)
    reliability = _calibration_metrics(metrics, logits, result.labels, temperature)
    _rejection_metrics(metrics, logits, result.labels, temperature, accept_rate)
    if ood_files is not None:
        metrics["ood"] = _ood_metrics(model, cfg, ood, ood_files, logits, temperature, metrics.get("rejection"),
                                      batch_size=batch_size, workers=workers, tta=tta, progress=progress)
    if plots:
        metrics["plots"] = _write_plots(out_dir, run_dir, model, dataset, cfg, result, metrics,
                                        gradcam=gradcam, mistakes=mistakes, reliability=reliability)
    atomic_write_text(out_dir / runfolder.METRICS, json.dumps(metrics, indent=2))
    if out is None:  # the run's own evaluation: to its MLflow run too, when trained with --trackers mlflow
        tracking.log_evaluation(run_dir, metrics, out_dir)
    return metrics


def _evaluate_multilabel(run_dir: Path, model, meta: dict, data, split: str | None, out, *, batch_size: int,
                         workers: int | None, tta: bool, progress: bool, plots_on: bool = True,
                         gradcam: int = 6) -> dict[str, Any]:
    """:func:`evaluate` for a multi-label run: sigmoid probabilities, per-class thresholds tuned on the
    run's validation split (stored in calibration.json; never tuned on the split evaluated), the
    multi-label metrics (:mod:`.multilabel`) and predictions.csv with the label sets."""
    classes = [str(c) for c in meta["classes"]]
    config = runfolder.read_config(run_dir)
    splits, source, foreign = runfolder.load_run_splits(run_dir, config, data, progress)
    if not splits.multilabel:
        raise DataError(f"{run_dir.name} is a multi-label run: evaluate it on a multi-label CSV ({source} has one "
                        "label per image)")
    samples, split = _resolve_split(splits, split, foreign, classes, source)
    out_dir = Path(out) if out is not None else runfolder.eval_dir(run_dir, split)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = dict(meta["data_cfg"])

    def probabilities(items: list, what: str, mirrors: bool) -> tuple[np.ndarray, float]:
        logits, seconds = predict_logits(model, ImageDataset(items, cfg), len(classes), batch_size=batch_size,
                                          workers=workers, tta=mirrors, desc=f"{what} {run_dir.name}", progress=progress)
        return sigmoid(logits).mean(axis=1), seconds

    probs, seconds = probabilities(samples, f"evaluating ({split})", tta)
    targets = splits.label_matrix(samples)
    stored = runfolder.read_calibration(run_dir)
    if split == "val" and not foreign:
        thresholds = tune_thresholds(targets, probs)
    elif stored is not None and stored.get("thresholds"):
        thresholds = np.asarray(stored["thresholds"], np.float64)
    else:  # tuned on the run's own validation split now
        own, _, _ = runfolder.load_run_splits(run_dir, config, None if foreign else data, progress)
        thresholds = tune_thresholds(own.label_matrix(own.val), probabilities(own.val, "thresholds for", False)[0])
    if (split == "val" and not foreign) or stored is None or not stored.get("thresholds"):
        ckpt = runfolder.resolve_checkpoint(run_dir)
        runfolder.write_calibration(run_dir, {"temperature": 1.0, "task": "multilabel", "fitted_on": "val",
                                              "thresholds": [float(t) for t in thresholds], "checkpoint": ckpt.name,
                                              "sha256": runfolder.file_sha256(ckpt)})
    metrics = multilabel_metrics(targets, probs, thresholds, classes)
    metrics.update(_run_details(run_dir, meta, model, out_dir, split=split, source=source, batch_size=batch_size,
                                tta=tta, infer_seconds=seconds, images=len(samples)))
    if split == "val" and not foreign:
        metrics["notes"].append("the per-class thresholds were tuned on this split: its F1 figures are optimistic "
                                "(mAP does not depend on them)")
    pred = predicted_sets(probs, thresholds)
    true_names = [";".join(c for c, v in zip(classes, t) if v > 0.5) for t in targets]
    _write_label_sets(out_dir / runfolder.PREDICTIONS, samples, true_names, pred, probs, classes)
    if plots_on:
        metrics["plots"] = _multilabel_plots(out_dir, run_dir, model, ImageDataset(samples, cfg), cfg, metrics,
                                             pred, probs, true_names, classes, gradcam)
    atomic_write_text(out_dir / runfolder.METRICS, json.dumps(metrics, indent=2))
    logger.info(f"{run_dir.name} ({split}, {len(samples)} images): mAP {metrics['mAP'] or 0:.4f}, micro F1 "
                f"{metrics['f1_micro']:.4f}, subset accuracy {metrics['subset_accuracy']:.4f}")
    if out is None:
        tracking.log_evaluation(run_dir, metrics, out_dir)
    return metrics


def _multilabel_plots(out_dir: Path, run_dir: Path, model, dataset, cfg: dict, metrics: dict, pred: np.ndarray,
                      probs: np.ndarray, true_names: list[str], classes: list[str], gradcam: int) -> dict[str, str]:
    """A multi-label run's plots: the training curves, per-label F1 at the thresholds and Grad-CAM per
    predicted label; a plot that fails leaves a note, never loses the metrics."""
    written: dict[str, str] = {}
    history = runfolder.read_history(run_dir)

    def history_plot():
        if not history:
            return "no history.csv in the run: training curves skipped"
        return plots.plot_history(history, out_dir / "history.png", run_dir.name)

    jobs: list[tuple[str, Callable[[], object]]] = [
        ("history", history_plot),
        ("f1", lambda: plots.plot_f1_bars(metrics["per_class"], out_dir / "f1.png", metrics["f1_macro"]))]
    if gradcam > 0:
        jobs.append(("gradcam", lambda: label_gradcam_plot(model, dataset, pred, probs, true_names, classes, cfg,
                                                           out_dir / "gradcam.png", gradcam)))
    for key, job in jobs:
        try:
            result = job()
        except Exception as exc:  # a plot must never lose the metrics
            metrics["notes"].append(f"{key} plot failed: {type(exc).__name__}: {exc}")
            continue
        if isinstance(result, str):
            metrics["notes"].append(result)
        else:
            written[key] = f"{key}.png"
    return written


@dataclass
class _SplitPredictions:
    """A split's images (``(path, label)`` samples) with their true ``labels`` ``[N]``, predicted
    ``probs`` ``[N, C]`` and predicted classes ``preds`` ``[N]``, in the dataset's order."""

    samples: list
    labels: np.ndarray
    probs: np.ndarray
    classes: list[str]
    preds: np.ndarray = field(init=False)

    def __post_init__(self):
        self.preds = self.probs.argmax(axis=1)


def _split_samples(run_dir: Path, config: dict, data, split: str | None, classes: list[str],
                   progress: bool) -> tuple[list, str, str, bool, list[int] | None]:
    """The samples to evaluate: ``(samples, split, source, foreign, train_counts)``, ``split`` resolved
    (``"all"`` for another dataset, else ``"val"``) and checked, the data's classes checked against the
    run's; ``train_counts``: the run's training images per class (config.json's, else its rebuilt split's;
    None when unknown)."""
    splits, source, foreign = runfolder.load_run_splits(run_dir, config, data, progress)
    train_counts = config.get("train_class_counts")
    if train_counts is None and not foreign:  # a run trained before config.json recorded them
        train_counts = [sum(1 for _, y in splits.train if y == c) for c in range(len(classes))]
    samples, split = _resolve_split(splits, split, foreign, classes, source)
    return samples, split, source, foreign, train_counts


def _resolve_split(splits, split: str | None, foreign: bool, classes: list[str], source: str) -> tuple[list, str]:
    """``(samples, split)``: ``split`` resolved (``"all"`` for another dataset, else ``"val"``) and
    checked, the data's classes checked against the run's."""
    if split is None:
        split = "all" if foreign else "val"
    if split not in EVAL_SPLITS:
        raise DataError(f"unknown split {split!r}: choose from {', '.join(EVAL_SPLITS)}")
    _check_classes(classes, splits.classes, source)
    return _samples(splits, split), split


def predict_logits(model, dataset, num_classes: int, *, batch_size: int, workers: int | None, tta: bool,
                    desc: str, progress: bool) -> tuple[np.ndarray, float]:
    """Logits ``[N, V, C]`` for ``dataset``'s images, in order (``V`` = 2 views with ``tta``: each image
    and its mirror image, else 1), and the seconds spent in the model (after a warm-up). ``model`` is
    converted to channels_last in place."""
    if workers is None and len(dataset) < 512:
        workers = 0  # worker start-up costs more than it saves on a small split
    loader = make_loader(dataset, batch_size=batch_size, shuffle=False, workers=workers)

    # channels_last: 1.7-1.8x faster CPU inference for MobileNetV2 / EfficientNet-Lite0 at batch 32 (measured)
    cl = torch.channels_last
    model = model.to(memory_format=cl)
    # filled in place: arrays kept per batch would pin glibc's heap above each batch's freed buffers and
    # grow it by about a batch per batch (see train.features)
    views = 2 if tta else 1
    logits = np.empty((len(dataset), views, num_classes), np.float32)
    done = 0
    infer_seconds = 0.0
    with torch.inference_mode():
        # warm-up (lazy initialisation, allocator) so ms/image measures steady state; straight from the
        # dataset, as a first loader pass would start (and drop) its worker processes
        warm = torch.stack([dataset[i][0] for i in range(min(len(dataset), 8))])
        model(warm.contiguous(memory_format=cl))
        for x, y in track(loader, desc, total=len(loader), progress=progress):
            t0 = time.perf_counter()
            inputs = with_mirrors(x) if tta else x  # test-time augmentation: with the mirrored images
            z = model(inputs.contiguous(memory_format=cl)).float()
            infer_seconds += time.perf_counter() - t0
            n = len(x)
            # with tta the batch is [images; mirrors]: view v of image i is row v * n + i
            logits[done:done + n] = z.cpu().numpy().reshape(views, n, num_classes).transpose(1, 0, 2)
            done += n
            del x, z
    return logits, infer_seconds


def _temperature(run_dir: Path, config: dict, data, split: str, foreign: bool, model, cfg: dict,
                 logits: np.ndarray, labels: np.ndarray, metrics: dict, *, batch_size: int,
                 workers: int | None, progress: bool, accept_rate: float | None = None) -> dict | None:
    """The run's calibration (``calibration.json``): fitted on these logits when they are the run's own
    validation split, else the stored one (with its rejection rule), else fitted on the run's validation
    split now (never on the split being evaluated). None, with a note, when there is none to be had."""
    if split == "val" and not foreign:
        return _fit_and_store(run_dir, logits[:, 0], labels, accept_rate)
    stored = runfolder.read_calibration(run_dir)
    if stored is not None and stored.get("rejection"):
        return stored
    try:
        splits, _, _ = runfolder.load_run_splits(run_dir, config, None if foreign else data, progress)
        val = list(splits.val)
        if not val:
            raise DataError("the run's data has no validation images")
        dataset = ImageDataset(val, cfg, transform=build_transform(cfg, train=False))
        val_logits, _ = predict_logits(model, dataset, logits.shape[-1], batch_size=batch_size, workers=workers,
                                        tta=False, desc=f"calibrating {run_dir.name} (val)", progress=progress)
    except DataError as exc:
        metrics["notes"].append(f"no calibration: the temperature is fitted on the run's validation split, "
                                f"which could not be loaded ({exc})")
        return None
    return _fit_and_store(run_dir, val_logits[:, 0], np.asarray(dataset.targets, np.int64), accept_rate)


def _fit_and_store(run_dir: Path, logits: np.ndarray, labels: np.ndarray, accept_rate: float | None = None) -> dict:
    """Fit the temperature on validation ``logits`` ``[N, C]``, then the rejection threshold on the
    calibrated top probabilities (:func:`transferlab.ood.fit_rejection`), and write ``calibration.json``."""
    t = fit_temperature(logits, labels)
    before, after = calibrated_probs(logits), calibrated_probs(logits, t)
    rule = ood_scores.fit_rejection(ood_scores.max_prob_scores(after), accept_rate or ood_scores.DEFAULT_ACCEPT_RATE)
    ckpt = runfolder.resolve_checkpoint(run_dir)
    info = {"temperature": t, "fitted_on": "val", "images": int(len(labels)), "checkpoint": ckpt.name,
            "sha256": runfolder.file_sha256(ckpt), "bins": ECE_BINS,
            "ece_before": expected_calibration_error(before, labels, ECE_BINS),
            "ece_after": expected_calibration_error(after, labels, ECE_BINS),
            "nll_before": nll(before, labels), "nll_after": nll(after, labels), "rejection": rule}
    runfolder.write_calibration(run_dir, info)
    logger.info(f"{run_dir.name}: temperature {t:.3f} fitted on {len(labels)} validation images "
                f"(ECE {info['ece_before']:.4f} -> {info['ece_after']:.4f})")
    return info


def _calibration_metrics(metrics: dict, logits: np.ndarray, labels: np.ndarray, stored: dict | None) -> dict | None:
    """``metrics["calibration"]``: the temperature and ECE / NLL of this split before and after it;
    returns the reliability bins before and after (None without a temperature)."""
    before = calibrated_probs(logits)
    cal: dict[str, Any] = {"temperature": None, "fitted_on": None, "bins": ECE_BINS,
                           "ece_before": expected_calibration_error(before, labels, ECE_BINS), "ece_after": None,
                           "nll_before": nll(before, labels), "nll_after": None}
    metrics["calibration"] = cal
    if stored is None:
        return None
    t = float(stored["temperature"])
    after = calibrated_probs(logits, t)
    cal.update(temperature=t, fitted_on=stored.get("fitted_on", "val"),
               ece_after=expected_calibration_error(after, labels, ECE_BINS), nll_after=nll(after, labels))
    return {"before": reliability_bins(before, labels, ECE_BINS), "after": reliability_bins(after, labels, ECE_BINS),
            "temperature": t, "ece_before": cal["ece_before"], "ece_after": cal["ece_after"]}


def _rejection_metrics(metrics: dict, logits: np.ndarray, labels: np.ndarray, stored: dict | None,
                       accept_rate: float | None) -> None:
    """``metrics["rejection"]``: the stored rule (at ``accept_rate`` when given) applied to this split:
    the share of its photos accepted and the accuracy on those (nothing without a rule)."""
    if not stored or not stored.get("rejection"):
        return
    rule = stored["rejection"]
    rate = accept_rate or float(rule["accept_rate"])
    threshold = ood_scores.threshold_for(rule, rate)
    probs = calibrated_probs(logits, float(stored["temperature"]))
    accepted = ood_scores.max_prob_scores(probs) >= threshold
    right = probs.argmax(axis=1) == labels
    metrics["rejection"] = {"score": rule["score"], "accept_rate": rate, "threshold": threshold,
                            "fitted_on": stored.get("fitted_on", "val"),
                            "accepted": float(accepted.mean()) if len(accepted) else None,
                            "accuracy_accepted": float(right[accepted].mean()) if accepted.any() else None}


def _ood_files(source, progress: bool) -> tuple[list[str], int]:
    """The readable image files of ``source`` (a folder, searched recursively, files or globs) and the
    number of unreadable ones; DataError when a path is missing or nothing is readable."""
    files, missing = expand_paths(source)
    if missing:
        raise DataError(f"--ood: {missing[0]['path']}: {missing[0]['error']}")
    info, broken = scan_files(files, progress=progress, description="scanning the --ood photos")
    good = [f for f in files if f in info]
    if not good:
        raise DataError(f"--ood: no readable images in {source}")
    return good, len(broken)


def _ood_metrics(model, cfg: dict, source, files: tuple[list[str], int], logits: np.ndarray, stored: dict | None,
                 rejection: dict | None, *, batch_size: int, workers: int | None, tta: bool, progress: bool) -> dict:
    """``metrics["ood"]``: the photos of ``source`` (none of the run's classes; ``files``: its readable
    files and the count of unreadable ones) against the evaluated split's ``logits``: per score the AUROC of
    telling them apart (1.0: every out-of-distribution photo scores lower than every in-distribution one),
    and with a rejection rule the share of them rejected."""
    good, broken = files
    dataset = ImageDataset([(f, 0) for f in good], cfg, transform=build_transform(cfg, train=False))
    out_logits, _ = predict_logits(model, dataset, logits.shape[-1], batch_size=batch_size, workers=workers,
                                    tta=tta, desc="scoring the --ood photos", progress=progress)
    t = float(stored["temperature"]) if stored else 1.0
    truth = np.r_[np.ones(len(logits)), np.zeros(len(out_logits))]  # 1 = in distribution
    score_of = {"max_prob": lambda z: ood_scores.max_prob_scores(calibrated_probs(z, t)),
                "energy": lambda z: ood_scores.energy_scores(z, t)}
    auroc = {name: float(roc_auc_score(truth, np.r_[fn(logits), fn(out_logits)])) for name, fn in score_of.items()}
    report: dict[str, Any] = {"data": str(source), "images": len(good), "unreadable": broken, "auroc": auroc,
                              "temperature": t, "score": None, "threshold": None, "rejected": None}
    if rejection:
        rejected = score_of[rejection["score"]](out_logits) < rejection["threshold"]
        report.update(score=rejection["score"], threshold=rejection["threshold"], accept_rate=rejection["accept_rate"],
                      rejected=float(rejected.mean()), in_accepted=rejection["accepted"])
    logger.info(f"out-of-distribution photos: {len(good)} ({broken} unreadable), AUROC "
                + ", ".join(f"{k} {v:.3f}" for k, v in auroc.items())
                + (f"; {report['rejected']:.1%} rejected" if rejection else ""))
    return report


def _run_details(run_dir: Path, meta: dict, model, out_dir: Path, *, split: str, source: str, batch_size: int,
                 tta: bool, infer_seconds: float, images: int) -> dict[str, Any]:
    """What was evaluated, and how, for ``metrics.json`` (after the metrics); ``notes`` and ``plots`` to fill."""
    ckpt = runfolder.resolve_checkpoint(run_dir)
    return {
        "run": str(run_dir),
        "output_dir": str(out_dir),
        "recipe": meta.get("recipe"),
        "split": split,
        "data": source,
        "checkpoint": ckpt.name,
        "epoch": meta.get("epoch"),
        "inference_ms_per_image": 1000.0 * infer_seconds / max(1, images),
        "inference_batch_size": int(batch_size),
        "tta": bool(tta),
        "model_size_mb": ckpt.stat().st_size / 1e6,
        "num_params": int(sum(p.numel() for p in model.parameters())),
        "notes": [],
        "plots": {},
    }


def _write_predictions(dest: Path, result: _SplitPredictions) -> None:
    """``predictions.csv``: per image its path, true and predicted class, confidence and every probability."""
    classes = result.classes
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "true", "predicted", "confidence", *[f"prob_{c}" for c in classes]])
    for (path, _), t, p, row in zip(result.samples, result.labels, result.preds, result.probs):
        w.writerow([path, classes[t], classes[p], f"{row[p]:.6f}", *[f"{v:.6f}" for v in row]])
    atomic_write_text(dest, buf.getvalue())


def _write_label_sets(dest: Path, samples: list, true_names: list[str], pred: np.ndarray, probs: np.ndarray,
                      classes: list[str]) -> None:
    """A multi-label run's ``predictions.csv``: per image its path, true and predicted labels (joined with
    ``;``) and every class's probability."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "true", "predicted", *[f"prob_{c}" for c in classes]])
    for (path, _), t, p, row in zip(samples, true_names, pred, probs):
        w.writerow([path, t, ";".join(c for c, v in zip(classes, p) if v), *[f"{v:.6f}" for v in row]])
    atomic_write_text(dest, buf.getvalue())


def write_predictions(dest: Path, samples: list, labels, probs: np.ndarray, classes: list[str]) -> None:
    """``predictions.csv`` for ``samples`` (``(path, label)``) with their true ``labels`` and ``probs``
    ``[N, C]``: the file :func:`evaluate` writes (for predictions made another way, e.g. an ensemble)."""
    _write_predictions(dest, _SplitPredictions(list(samples), np.asarray(labels, np.int64), probs, list(classes)))


def _changed_split_note(config: dict, split: str, count: int) -> str | None:
    """A note when the run's own ``split`` now has another image count than when the run was trained."""
    recorded = (config.get("split_counts") or {}).get(split)
    if recorded is not None and int(recorded) != count:
        return (f"the {split} split has {count} images but had {recorded} when the run "
                "was trained: the dataset changed since")
    return None


def _write_plots(out_dir: Path, run_dir: Path, model, dataset, cfg: dict, result: _SplitPredictions,
                 metrics: dict, *, gradcam: int, mistakes: int, reliability: dict | None = None) -> dict[str, str]:
    """The plots (``{key: file name}`` of those written); a plot that fails or is skipped leaves a note."""
    samples, labels, preds, probs, classes = result.samples, result.labels, result.preds, result.probs, result.classes
    written: dict[str, str] = {}

    def attempt(key: str, fn, *args, **kwargs):
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # a plot must never lose the metrics
            metrics["notes"].append(f"{key} plot failed: {type(exc).__name__}: {exc}")
            return None
        if isinstance(result, str):  # a skip note
            metrics["notes"].append(result)
            return None
        written[key] = f"{key}.png"
        return result

    history = runfolder.read_history(run_dir)
    if history:
        attempt("history", plots.plot_history, history, out_dir / "history.png", run_dir.name)
    else:
        metrics["notes"].append("no history.csv in the run: training curves skipped")
    attempt("confusion_matrix", plots.plot_confusion, metrics["confusion_matrix"], classes,
            out_dir / "confusion_matrix.png", metrics["confusion_matrix_normalized"])
    attempt("roc", plots.plot_roc, roc_curves(labels, probs, classes), classes, out_dir / "roc.png")
    attempt("f1", plots.plot_f1_bars, metrics["per_class"], out_dir / "f1.png", metrics["macro_avg"]["f1"])
    if reliability is not None:
        attempt("reliability", plots.plot_reliability, reliability["before"], reliability["after"],
                out_dir / "reliability.png", temperature=reliability["temperature"],
                ece_before=reliability["ece_before"], ece_after=reliability["ece_after"])
    if mistakes > 0:
        wrong = np.flatnonzero(preds != labels)
        wrong = wrong[np.argsort(-probs[wrong, preds[wrong]], kind="stable")][:mistakes]

        def mistakes_plot():
            items = [{"image": _display_image(samples[i][0]), "true": classes[labels[i]],
                      "pred": classes[preds[i]], "prob": float(probs[i, preds[i]])} for i in wrong]
            return plots.plot_mistakes(items, out_dir / "mistakes.png")

        attempt("mistakes", mistakes_plot)
    if gradcam > 0:
        attempt("gradcam", gradcam_plot, model, dataset, labels, classes, cfg, out_dir / "gradcam.png", gradcam)
    return written
