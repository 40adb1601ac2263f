"""Array-level classification metrics (scikit-learn), usable without a model or a run.

Everything here works on plain arrays: ``y_true`` (class indices, shape ``[N]``) and ``probs``
(class probabilities, shape ``[N, C]``, rows summing to 1). The result of :func:`compute_metrics`
is JSON-serialisable; undefined numbers (an AUC for a class absent from ``y_true``) are ``None``.

Example::

    >>> import numpy as np
    >>> from transferlab.evaluation.metrics import compute_metrics
    >>> m = compute_metrics([0, 1, 1], np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), ["cat", "dog"])
    >>> round(m["accuracy"], 3), m["per_class"]["dog"]["recall"]
    (0.667, 0.5)
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
    top_k_accuracy_score,
)

from ..errors import ConfigError

TOP_K = (3, 5)
# a training set whose largest class has this many times the images of its smallest: accuracy mostly
# measures the big classes, and the report leads with macro F1 and balanced accuracy instead
HEADLINE_IMBALANCE = 5.0


def _as_arrays(y_true, probs, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    classes = [str(c) for c in classes]
    if p.ndim != 2:
        raise ConfigError(f"probs must be a 2-D array [N, C], got shape {p.shape}")
    if p.shape[0] != y.shape[0]:
        raise ConfigError(f"{y.shape[0]} labels but {p.shape[0]} rows of probabilities")
    if p.shape[1] != len(classes):
        raise ConfigError(f"probs has {p.shape[1]} columns but there are {len(classes)} classes")
    if len(classes) < 2:
        raise ConfigError("metrics need at least 2 classes")
    if y.size == 0:
        raise ConfigError("no samples to evaluate")
    if y.min() < 0 or y.max() >= len(classes):
        raise ConfigError(f"labels must be in 0..{len(classes) - 1}")
    if not np.isfinite(p).all():
        raise ConfigError("probs contain NaN or infinite values")
    return y, p, classes


def _normalised(p: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to exactly 1 (float32 softmax rows only approximately do; log_loss is strict).
    Only for log_loss: rescaling elsewhere would break exact score ties in ROC curves."""
    p = np.clip(p, 0.0, None)
    s = p.sum(axis=1, keepdims=True)
    s[s == 0] = 1.0
    return p / s


def _num(x) -> float | None:
    """A JSON-safe float: NaN/inf become None."""
    if x is None:
        return None
    x = float(x)
    return None if (math.isnan(x) or math.isinf(x)) else x


def roc_curves(y_true, probs, classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One-vs-rest ROC curves: ``{class: {"fpr", "tpr", "auc"}}`` plus ``"micro"`` and ``"macro"``.

    A class absent from ``y_true`` (or the only class present) has no curve: ``fpr``/``tpr`` are
    ``None`` and its ``auc`` is ``None``. ``macro`` averages the defined per-class AUCs (its curve
    is the mean TPR over a common FPR grid); ``micro`` pools every (sample, class) decision.
    """
    y, p, classes = _as_arrays(y_true, probs, classes)
    onehot = np.eye(len(classes), dtype=np.int64)[y]
    out: dict[str, dict[str, Any]] = {}
    grid = np.linspace(0.0, 1.0, 201)
    tprs = []
    for i, name in enumerate(classes):
        pos = onehot[:, i]
        if pos.min() == pos.max():  # no positives (absent class) or no negatives
            out[name] = {"fpr": None, "tpr": None, "auc": None}
            continue
        fpr, tpr, _ = roc_curve(pos, p[:, i])
        out[name] = {"fpr": fpr, "tpr": tpr, "auc": _num(roc_auc_score(pos, p[:, i]))}
        tprs.append(np.interp(grid, fpr, tpr))
    flat_true, flat_score = onehot.ravel(), p.ravel()
    if flat_true.min() != flat_true.max():
        fpr, tpr, _ = roc_curve(flat_true, flat_score)
        out["micro"] = {"fpr": fpr, "tpr": tpr, "auc": _num(roc_auc_score(flat_true, flat_score))}
    else:  # pragma: no cover - impossible with >= 2 classes
        out["micro"] = {"fpr": None, "tpr": None, "auc": None}
    aucs = [out[c]["auc"] for c in classes if out[c]["auc"] is not None]
    if tprs:
        mean_tpr = np.mean(tprs, axis=0)
        mean_tpr[0] = 0.0
        out["macro"] = {"fpr": grid, "tpr": mean_tpr, "auc": _num(np.mean(aucs))}
    else:
        out["macro"] = {"fpr": None, "tpr": None, "auc": None}
    return out


def compute_metrics(y_true, probs, classes: Sequence[str]) -> dict[str, Any]:
    """Every classification metric transferlab reports, from labels and probabilities.

    Returns a JSON-serialisable dict:

    - ``accuracy``; ``balanced_accuracy`` (the mean of the per-class recalls, scikit-learn's, over
      the classes present in ``y_true``); ``top_k_accuracy`` ``{"3": .., "5": ..}`` (only k < number of classes);
      ``log_loss``;
    - ``per_class`` ``{class: {precision, recall, f1, support, auc}}`` and ``macro_avg`` /
      ``weighted_avg`` ``{precision, recall, f1, support}`` (scikit-learn, ``zero_division=0``);
      ``classification_report`` (scikit-learn's text table);
    - ``confusion_matrix`` (counts, rows = true class) and ``confusion_matrix_normalized``
      (rows sum to 1; a class with no samples is a row of zeros);
    - ``roc_auc`` ``{"per_class": {class: auc|None}, "micro": .., "macro": ..}`` (one-vs-rest;
      ``None`` for a class absent from ``y_true``);
    - ``num_samples``, ``num_classes``, ``classes``.
    """

    y, p, classes = _as_arrays(y_true, probs, classes)
    n_classes = len(classes)
    labels = list(range(n_classes))
    y_pred = p.argmax(axis=1)

    prec, rec, f1, support = precision_recall_fscore_support(y, y_pred, labels=labels, zero_division=0)
    averages = {}
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(y, y_pred, labels=labels, average=avg, zero_division=0)
        averages[avg] = {"precision": _num(ap), "recall": _num(ar), "f1": _num(af), "support": int(len(y))}

    top_k = {}
    for k in TOP_K:
        if k < n_classes:
            top_k[str(k)] = _num(top_k_accuracy_score(y, p, k=k, labels=labels))

    curves = roc_curves(y, p, classes)
    per_class = {
        name: {
            "precision": _num(prec[i]),
            "recall": _num(rec[i]),
            "f1": _num(f1[i]),
            "support": int(support[i]),
            "auc": curves[name]["auc"],
        }
        for i, name in enumerate(classes)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "labels with no true samples" is expected and handled
        report = classification_report(
            y, y_pred, labels=labels, target_names=classes, digits=3, zero_division=0
        )
        cm_norm = confusion_matrix(y, y_pred, labels=labels, normalize="true")
        balanced = balanced_accuracy_score(y, y_pred)  # warns when a predicted class is absent from y
    return {
        "num_samples": int(len(y)),
        "num_classes": n_classes,
        "classes": classes,
        "accuracy": _num(accuracy_score(y, y_pred)),
        "balanced_accuracy": _num(balanced),
        "top_k_accuracy": top_k,
        "log_loss": _num(log_loss(y, _normalised(p), labels=labels)),
        "per_class": per_class,
        "macro_avg": averages["macro"],
        "weighted_avg": averages["weighted"],
        "classification_report": report,
        "confusion_matrix": confusion_matrix(y, y_pred, labels=labels).astype(int).tolist(),
        "confusion_matrix_normalized": np.nan_to_num(cm_norm).round(6).tolist(),
        "roc_auc": {
            "per_class": {name: curves[name]["auc"] for name in classes},
            "micro": curves["micro"]["auc"],
            "macro": curves["macro"]["auc"],
        },
    }


def imbalance_ratio(counts: Sequence[int]) -> float | None:
    """Largest over smallest class count (None when a class has no images or there are none)."""
    counts = [int(c) for c in counts]
    if not counts or min(counts) <= 0:
        return None
    return max(counts) / min(counts)


def headline(metrics: dict[str, Any], train_counts: Sequence[int] | None) -> dict[str, Any] | None:
    """The figures to read first when the training classes are imbalanced (ratio >= :data:`HEADLINE_IMBALANCE`):
    macro F1 and balanced accuracy, with the ratio and why; None otherwise (accuracy leads).

    >>> headline({"macro_avg": {"f1": 0.5}, "balanced_accuracy": 0.6}, [100, 5])["metrics"]
    ['macro_f1', 'balanced_accuracy']
    """
    ratio = imbalance_ratio(train_counts) if train_counts is not None else None
    if ratio is None or ratio < HEADLINE_IMBALANCE:
        return None
    return {"metrics": ["macro_f1", "balanced_accuracy"],
            "macro_f1": metrics["macro_avg"]["f1"], "balanced_accuracy": metrics["balanced_accuracy"],
            "imbalance_ratio": round(ratio, 2),
            "why": f"the training classes are imbalanced {ratio:.1f}x (largest/smallest): accuracy mostly measures "
                   f"the big classes; macro F1 and balanced accuracy weigh every class equally"}
