"""Multi-label metrics and per-class thresholds, over arrays (no framework): ``targets`` a multi-hot
``[N, C]`` array, ``probs`` the sigmoid outputs ``[N, C]``.

:func:`tune_thresholds` picks, on the validation split, each class's threshold that maximises its F1
(0.5 for a class validation never shows); :func:`multilabel_metrics` reports mAP (the mean over
classes of scikit-learn's average precision, for the classes the split shows), micro / macro F1,
subset accuracy, Hamming loss and per-class precision / recall / F1 / AP at the thresholds.

>>> t = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
>>> p = np.array([[0.9, 0.2], [0.3, 0.8], [0.7, 0.6], [0.1, 0.4]])
>>> tune_thresholds(t, p).tolist()
[0.7, 0.6]
>>> round(multilabel_metrics(t, p, np.array([0.5, 0.5]), ["a", "b"])["mAP"], 3)
1.0
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, hamming_loss, precision_recall_fscore_support

from ..runtime import sigmoid

__all__ = ["DEFAULT_THRESHOLD", "sigmoid", "tune_thresholds", "predicted_sets", "multilabel_metrics"]

DEFAULT_THRESHOLD = 0.5


def tune_thresholds(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per class, the threshold (one of its validation probabilities) with the highest F1, ties to the
    highest threshold; :data:`DEFAULT_THRESHOLD` for a class without a positive image."""
    targets, probs = np.asarray(targets) > 0.5, np.asarray(probs, np.float64)
    out = np.full(targets.shape[1], DEFAULT_THRESHOLD)
    for c in range(targets.shape[1]):
        t = targets[:, c]
        if not t.any():
            continue
        order = np.argsort(-probs[:, c], kind="stable")
        p_sorted, t_sorted = probs[order, c], t[order]
        tp = np.cumsum(t_sorted)  # predicting positive the first k + 1 images (threshold p_sorted[k])
        k = np.arange(1, len(t_sorted) + 1)
        f1 = 2 * tp / (k + t.sum())
        last = np.r_[p_sorted[1:] != p_sorted[:-1], True]  # only thresholds that include all equal scores
        f1 = np.where(last, f1, -1.0)
        best = np.flatnonzero(f1 == f1.max())[0]
        out[c] = p_sorted[best]
    return out


def predicted_sets(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The multi-hot predictions: each class at or above its threshold."""
    return (np.asarray(probs) >= np.asarray(thresholds)[None, :]).astype(np.int64)


def multilabel_metrics(targets: np.ndarray, probs: np.ndarray, thresholds: np.ndarray,
                       classes: list[str]) -> dict[str, Any]:
    """The multi-label figures of a split (see the module doc); ``mAP`` is None when the split shows no
    label at all."""
    y = (np.asarray(targets) > 0.5).astype(np.int64)
    pred = predicted_sets(probs, thresholds)
    shown = y.sum(0) > 0
    ap = np.full(len(classes), np.nan)
    for c in np.flatnonzero(shown):
        ap[c] = average_precision_score(y[:, c], probs[:, c])
    p, r, f, support = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    per_class = {name: {"precision": float(p[c]), "recall": float(r[c]), "f1": float(f[c]),
                        "ap": None if np.isnan(ap[c]) else float(ap[c]), "support": int(support[c]),
                        "threshold": float(thresholds[c])} for c, name in enumerate(classes)}
    return {
        "task": "multilabel",
        "num_samples": int(len(y)),
        "mAP": float(np.nanmean(ap)) if shown.any() else None,
        "micro_ap": float(average_precision_score(y, probs, average="micro")) if shown.any() else None,
        "f1_micro": float(f1_score(y, pred, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(y[:, shown], pred[:, shown], average="macro", zero_division=0)) if shown.any() else 0.0,
        "subset_accuracy": float(np.mean((y == pred).all(1))),
        "hamming_loss": float(hamming_loss(y, pred)),
        "labels_per_image": float(y.sum(1).mean()),
        "predicted_labels_per_image": float(pred.sum(1).mean()),
        "per_class": per_class,
    }
