""""None of these": scoring how much a photo looks like the training classes, and rejecting it below a
threshold chosen on validation (NumPy only: the lean serving path uses it).

A model answers every photo with one of its classes, even a photo of something it never saw. Each image
gets a *score* (higher = more like the training data) and is answered ``"unknown"`` when the score is
below a threshold. The threshold is not guessed: ``evaluate`` chooses it on the run's validation split
so that a stated share of in-distribution photos is accepted (``accept_rate``, 0.95 by default), stores
it with the temperature in ``RUN/calibration.json`` (and the export's ``model.json``), and
``predict``/``serve`` apply it.

Scores (both after temperature scaling):

* ``max_prob``: the top calibrated class probability (Hendrycks & Gimpel, 2017). It needs only the
  probabilities, so it works the same for test-time augmentation (averaged probabilities) and for
  ensembles; the default.
* ``energy``: ``T * logsumexp(logits / T)`` (the negative free energy, Liu et al., 2020), from the logits.

>>> import numpy as np
>>> val = np.linspace(0.5, 1.0, 101)             # validation scores
>>> rule = fit_rejection(val, accept_rate=0.95)
>>> round(rule["threshold"], 3), float((val >= rule["threshold"]).mean()) >= 0.95
(0.525, True)
>>> round(threshold_for(rule, 0.5), 3)            # another acceptance rate, from the stored quantiles
0.75
"""
from __future__ import annotations

import numpy as np

__all__ = ["SCORES", "DEFAULT_SCORE", "DEFAULT_ACCEPT_RATE", "UNKNOWN", "max_prob_scores", "energy_scores",
           "fit_rejection", "threshold_for", "check_accept_rate"]

SCORES = ("max_prob", "energy")
DEFAULT_SCORE = "max_prob"
DEFAULT_ACCEPT_RATE = 0.95
UNKNOWN = "unknown"   # the label of a rejected photo
QUANTILES = 201       # validation score quantiles stored (q = 0, 0.005, ..., 1): any acceptance rate later


def check_accept_rate(rate) -> float:
    """``rate`` as a float in ``(0, 1]``; ValueError otherwise."""
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"accept rate must be a number in (0, 1], got {rate!r}") from None
    if not 0.0 < r <= 1.0:
        raise ValueError(f"accept rate must be in (0, 1] (e.g. 0.95: accept 95% of in-distribution photos), got {rate!r}")
    return r


def max_prob_scores(probs) -> np.ndarray:
    """The top probability of each row of ``probs`` ``[N, C]`` -> ``[N]`` (float64)."""
    probs = np.asarray(probs, np.float64)
    return probs.max(axis=1) if len(probs) else np.zeros(0)


def energy_scores(logits, temperature: float = 1.0) -> np.ndarray:
    """``T * logsumexp(logits / T)`` per image -> ``[N]``; ``logits`` ``[N, C]`` or ``[N, V, C]`` (views
    averaged)."""
    z = np.asarray(logits, np.float64) / float(temperature)
    m = z.max(axis=-1, keepdims=True)
    e = float(temperature) * (m[..., 0] + np.log(np.exp(z - m).sum(axis=-1)))
    return e.mean(axis=1) if e.ndim == 2 else e


def fit_rejection(val_scores, accept_rate: float = DEFAULT_ACCEPT_RATE, score: str = DEFAULT_SCORE) -> dict:
    """The rejection rule for validation ``val_scores`` ``[N]``: ``{"score", "accept_rate", "threshold",
    "images", "quantiles"}``. ``threshold`` is the largest value accepting at least ``accept_rate`` of
    the validation images (a photo is accepted when its score is ``>= threshold``); ``quantiles`` lets
    :func:`threshold_for` pick another rate without the images."""
    rate = check_accept_rate(accept_rate)
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of: {', '.join(SCORES)}")
    s = np.sort(np.asarray(val_scores, np.float64))
    if len(s) == 0:
        raise ValueError("no validation scores to choose a rejection threshold on")
    # accepting s >= s[k] accepts the len(s) - k largest scores (ties accept more): the largest such k
    k = int(np.floor(len(s) * (1.0 - rate) + 1e-9))
    quantiles = np.quantile(s, np.linspace(0.0, 1.0, QUANTILES))
    return {"score": score, "accept_rate": rate, "threshold": float(s[min(k, len(s) - 1)]), "images": int(len(s)),
            "quantiles": [float(q) for q in quantiles]}


def threshold_for(rule: dict, accept_rate: float) -> float:
    """The threshold accepting about ``accept_rate`` of the validation photos of ``rule``
    (:func:`fit_rejection`'s): its own threshold at its own rate, else interpolated between the stored
    quantiles."""
    rate = check_accept_rate(accept_rate)
    if abs(rate - float(rule["accept_rate"])) < 1e-12:
        return float(rule["threshold"])
    q = np.asarray(rule["quantiles"], np.float64)
    return float(np.interp(1.0 - rate, np.linspace(0.0, 1.0, len(q)), q))
