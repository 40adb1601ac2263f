"""Small statistics shared by the stages (numpy; scipy only inside :func:`mcnemar_exact`).

>>> lo, hi = wilson_interval(0.9, 40)
>>> round(lo, 2), round(hi, 2)
(0.77, 0.96)
"""
from __future__ import annotations

import math

import numpy as np


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a proportion ``p`` measured on ``n`` items."""
    if n <= 0:
        return 0.0, 1.0
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


# ---------------------------------------------------------------- comparing classifiers on one set of images

#: the metrics :func:`bootstrap_interval` knows (the leaderboard's column names)
BOOTSTRAP_METRICS = ("accuracy", "f1_macro")


def _codes(y_true, y_pred, labels=None) -> tuple[np.ndarray, np.ndarray, int]:
    """``y_true``/``y_pred`` as class indices into ``labels`` (default: the sorted union of both)."""
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    if yt.shape != yp.shape or yt.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-d and of one length, got {yt.shape} and {yp.shape}")
    labels = np.unique(np.concatenate([yt, yp])) if labels is None else np.asarray(labels)
    t, p = np.searchsorted(labels, yt), np.searchsorted(labels, yp)
    if labels.size == 0 or not np.array_equal(np.sort(labels), labels) \
            or (t >= labels.size).any() or (p >= labels.size).any() \
            or not (np.array_equal(labels[t], yt) and np.array_equal(labels[p], yp)):
        raise ValueError("labels must be sorted and hold every label of y_true and y_pred")
    return t, p, int(labels.size)


def _scores(true_totals: np.ndarray, pred_totals: np.ndarray, hits: np.ndarray, n: int, metric: str) -> np.ndarray:
    """``metric`` for each row of per-class counts ``[R, C]`` (true per class, predicted per class,
    correct per class) of ``n`` images; macro F1 as scikit-learn's with ``zero_division=0``."""
    if metric == "accuracy":
        return hits.sum(axis=1) / n
    denom = true_totals + pred_totals  # 2tp + fp + fn
    f1 = np.divide(2.0 * hits, denom, out=np.zeros(hits.shape), where=denom > 0)
    return f1.mean(axis=1)


def metric_value(y_true, y_pred, metric: str = "accuracy", *, labels=None) -> float:
    """``metric`` (``"accuracy"`` or ``"f1_macro"``) on the whole sample, computed as
    :func:`bootstrap_interval` computes it on each resample.

    >>> metric_value([0, 0, 1, 1], [0, 1, 1, 1], "f1_macro")
    0.7333333333333334
    """
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"unknown metric {metric!r}: choose from {', '.join(BOOTSTRAP_METRICS)}")
    t, p, k = _codes(y_true, y_pred, labels)
    if t.size == 0:
        raise ValueError("no images to score")
    true_totals, pred_totals = np.bincount(t, minlength=k), np.bincount(p, minlength=k)
    hits = np.bincount(t[t == p], minlength=k)
    return float(_scores(true_totals[None], pred_totals[None], hits[None], t.size, metric)[0])


def bootstrap_interval(y_true, y_pred, metric: str = "accuracy", n: int = 1000, seed: int = 0, *,
                       level: float = 0.95, labels=None) -> tuple[float, float]:
    """The percentile bootstrap interval (95% by default) of ``metric`` (``"accuracy"`` or
    ``"f1_macro"``) over the images: ``n`` resamples of the images with replacement, seeded.

    Vectorised: a resample's score depends only on how many of each (true, predicted) pair it drew,
    and those counts are one multinomial draw over the observed pairs (the same distribution as
    drawing the images), so ``n`` resamples cost ``n x pairs`` numbers whatever the image count.
    Macro F1 averages over ``labels`` (default: every label in ``y_true`` or ``y_pred``), a class
    absent from a resample scoring 0, as scikit-learn's ``f1_score(average="macro", zero_division=0)``.

    >>> low, high = bootstrap_interval([0, 1] * 50, [0, 1] * 45 + [1, 0] * 5)   # accuracy 0.9
    >>> round(low, 2), round(high, 2)
    (0.84, 0.95)
    """
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"unknown metric {metric!r}: choose from {', '.join(BOOTSTRAP_METRICS)}")
    t, p, k = _codes(y_true, y_pred, labels)
    if t.size == 0:
        raise ValueError("no images to resample")
    pairs, counts = np.unique(t * k + p, return_counts=True)  # the observed (true, predicted) pairs
    draws = np.random.default_rng(seed).multinomial(t.size, counts / t.size, size=int(n)).astype(np.float64)
    onehot_true = np.eye(k)[pairs // k]  # [pairs, C]
    onehot_pred = np.eye(k)[pairs % k]
    hit = (pairs // k == pairs % k)[:, None] * onehot_true
    scores = _scores(draws @ onehot_true, draws @ onehot_pred, draws @ hit, t.size, metric)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(scores, [tail, 100.0 - tail])
    return float(low), float(high)


def mcnemar_exact(y_true, pred_a, pred_b) -> dict[str, float | int]:
    """McNemar's exact test of two classifiers on the same images: ``b`` = images ``a`` got right and
    ``b`` wrong, ``c`` = the reverse, ``p_value`` = the two-sided exact binomial test of ``b`` in
    ``b + c`` at 1/2 (scipy's ``binomtest``; 1.0 when they never disagree on correctness).

    >>> mcnemar_exact([0, 0, 1, 1], [0, 0, 1, 0], [0, 1, 0, 0])
    {'b': 2, 'c': 0, 'p_value': 0.5}
    """
    y, a, b_pred = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)
    if not (y.shape == a.shape == b_pred.shape) or y.ndim != 1:
        raise ValueError(f"y_true, pred_a and pred_b must be 1-d and of one length, got {y.shape}, {a.shape}, {b_pred.shape}")
    right_a, right_b = a == y, b_pred == y
    b, c = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    if b + c == 0:
        return {"b": b, "c": c, "p_value": 1.0}
    from scipy.stats import binomtest  # (scipy: only when a test is asked for)

    return {"b": b, "c": c, "p_value": float(binomtest(b, b + c, 0.5).pvalue)}
