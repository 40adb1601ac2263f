"""Calibrated confidence: temperature scaling and the expected calibration error (array level, NumPy + SciPy).

Temperature scaling (Guo et al., 2017) divides a model's logits by one scalar ``T > 0`` before the
softmax: ``T > 1`` softens over-confident probabilities, ``T < 1`` sharpens under-confident ones,
and the predicted class never changes. ``T`` is fitted on held-out (validation) logits by minimising
the negative log-likelihood; ``evaluate`` stores it in the run folder (``calibration.json``) and
``predict``/``serve`` apply it.

>>> import numpy as np
>>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
>>> # bins of width 0.25: (0.75, 1] holds 0.9 (right) and 0.8 (wrong), (0.5, 0.75] 0.6 and 0.7 (both right)
>>> round(expected_calibration_error(probs, [0, 1, 0, 1], bins=4), 4)   # |0.5-0.85|*2/4 + |1-0.65|*2/4
0.35
>>> calibrated_probs(np.array([[2.0, 0.0]]), 2.0).round(4).tolist()     # softmax([1, 0])
[[0.7311, 0.2689]]
"""
from __future__ import annotations

import numpy as np

__all__ = ["fit_temperature", "calibrated_probs", "expected_calibration_error", "reliability_bins", "nll"]

LOG_T_BOUNDS = (-4.0, 4.0)  # T in [0.018, 54.6]: wider than any temperature a real classifier needs


def calibrated_probs(logits, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / T)``, float64. ``logits``: ``[N, C]``, or ``[N, V, C]`` for ``V`` views of each
    image (test-time augmentation), whose probabilities are averaged -> ``[N, C]``."""
    z = np.asarray(logits, np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=-1, keepdims=True)
    return p.mean(axis=1) if p.ndim == 3 else p


def nll(probs, labels) -> float:
    """Mean negative log-likelihood of the true classes (probabilities clipped at 1e-12)."""
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))))


def _nll_at(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))  # log-softmax: exact for large logits


def fit_temperature(logits, labels) -> float:
    """The temperature ``T > 0`` minimising the NLL of ``softmax(logits / T)`` for ``labels``.

    ``logits`` ``[N, C]`` (one view per image), ``labels`` ``[N]`` class indices. A bounded 1-D
    search on ``log T`` (``scipy.optimize.minimize_scalar``, Brent's method within ``LOG_T_BOUNDS``):
    deterministic, no starting point to pick. Returns 1.0 for no images, and when every image's top
    class is its label (nothing to calibrate against).
    """
    from scipy.optimize import minimize_scalar  # not on the lean serving path, which only applies T

    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.int64)
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"logits must be [N, C] with N = len(labels); got {logits.shape} and {labels.shape}")
    if len(labels) == 0:
        return 1.0
    if (logits.argmax(axis=1) == labels).all():
        # no mistake to calibrate against: the NLL falls without end as T -> 0, and a sharpened model
        # would make its next mistake near-certain (seen: T 0.037 on the fingers, 192 of 192 right)
        return 1.0
    res = minimize_scalar(lambda log_t: _nll_at(logits, labels, float(np.exp(log_t))), bounds=LOG_T_BOUNDS,
                          method="bounded", options={"xatol": 1e-5})
    t = float(np.exp(res.x))
    # never worse than no scaling (a flat objective can stop the search anywhere in the bounds)
    return t if _nll_at(logits, labels, t) <= _nll_at(logits, labels, 1.0) else 1.0


def reliability_bins(probs, labels, bins: int = 15) -> dict[str, list]:
    """Equal-width confidence bins over ``(0, 1]``: per bin its ``lower``/``upper`` edge, image ``count``,
    mean ``confidence`` (top-1 probability) and ``accuracy`` (``None`` for an empty bin)."""
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == labels) if len(probs) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    # bin b holds confidences in (edges[b], edges[b+1]]; a confidence of exactly 0 cannot occur (>= 1/C)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, int(bins) - 1)
    out: dict[str, list] = {"lower": edges[:-1].tolist(), "upper": edges[1:].tolist(), "count": [],
                            "confidence": [], "accuracy": []}
    for b in range(int(bins)):
        m = idx == b
        n = int(m.sum())
        out["count"].append(n)
        out["confidence"].append(float(conf[m].mean()) if n else None)
        out["accuracy"].append(float(correct[m].mean()) if n else None)
    return out


def expected_calibration_error(probs, labels, bins: int = 15) -> float:
    """ECE: the image-weighted mean over equal-width confidence bins of ``|accuracy - mean confidence|``
    (top-1 confidence, ``bins`` bins over ``(0, 1]``). 0.0 for no images."""
    r = reliability_bins(probs, labels, bins)
    total = sum(r["count"])
    if total == 0:
        return 0.0
    return float(sum(n * abs(a - c) for n, a, c in zip(r["count"], r["accuracy"], r["confidence"]) if n) / total)
