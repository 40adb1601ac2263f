"""Outliers: images unlike anything in the dataset or in their own class (embedding distance).

Each image's score is its mean cosine distance (uncentred embeddings: centring would make every
image look equally far from the rest) to its ``k`` nearest
neighbours, over the whole dataset and within its class, leaving out the other members of its
own duplicate group (so ten copies of one placeholder image do not vouch for each other). The
distances become robust z-scores (``(d - median) / (1.4826 MAD)``); an image is flagged when
either z-score reaches ``z``, and always when it is a blank (uniform) frame.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> emb = np.vstack([rng.normal(0, 1, (50, 8)) + 5, [[-40, 0, 0, 0, 0, 0, 0, 9]]])
>>> res = outlier_scores(emb, k=5)
>>> int(np.argmax(res["score"]))
50
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .duplicates import _neighbours, normalize

K = 10
#: robust z-score from which an image counts as an outlier
Z = 4.0
#: grayscale pixel standard deviation (0..255) below which an image counts as a blank frame
BLANK_STD = 4.0


def _robust_z(d: np.ndarray) -> np.ndarray:
    if len(d) == 0:
        return d
    med = np.median(d)
    mad = 1.4826 * np.median(np.abs(d - med))
    if mad < 1e-9:
        mad = float(d.std()) or 1.0
    return (d - med) / mad


def outlier_scores(embeddings: np.ndarray, labels: Sequence[int] | np.ndarray | None = None, *, k: int = K,
                   groups: Sequence[int] | np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-image outlier measures: ``dataset_distance``, ``class_distance`` (NaN without labels or
    for a class too small), their robust z-scores ``dataset_z``, ``class_z``, ``score`` (the
    larger z) and ``nearest`` (index of the closest other image, outside its duplicate group)."""
    z = normalize(embeddings, center=False)
    n = len(z)
    ids = np.asarray(groups, np.int64) if groups is not None else np.arange(n)
    nbr, sim = _neighbours(z, k, ids)
    out: dict[str, np.ndarray] = {"dataset_distance": np.full(n, np.nan, np.float32), "class_distance": np.full(n, np.nan, np.float32),
           "dataset_z": np.zeros(n, np.float32), "class_z": np.zeros(n, np.float32),
           "nearest": np.full(n, -1, np.int64)}
    if sim.shape[1]:
        valid = np.isfinite(sim)
        d = np.where(valid, 1.0 - sim, np.nan)
        out["dataset_distance"] = np.nanmean(np.where(valid.any(1, keepdims=True), d, 1.0), axis=1).astype(np.float32)
        out["nearest"] = np.where(valid[:, 0], nbr[:, 0], -1)
        out["dataset_z"] = _robust_z(out["dataset_distance"]).astype(np.float32)
    if labels is not None:
        y = np.asarray(labels)
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            if len(members) < 3:
                continue
            kc = min(k, len(members) - 1)
            _, s = _neighbours(z[members], kc, ids[members])
            if not s.shape[1]:
                continue
            d = np.where(np.isfinite(s), 1.0 - s, np.nan)
            with np.errstate(all="ignore"):
                dist = np.nanmean(d, axis=1)
            dist = np.where(np.isnan(dist), 1.0, dist)
            out["class_distance"][members] = dist
            out["class_z"][members] = _robust_z(dist)
    out["score"] = np.maximum(out["dataset_z"], out["class_z"]).astype(np.float32)
    return out


def flag_outliers(scores: dict[str, np.ndarray], *, pixel_std: np.ndarray | None = None, z: float = Z,
                  limit: int | None = None) -> list[int]:
    """Indices flagged as outliers, the most unusual first: blank frames, then score >= ``z``."""
    score = scores["score"]
    order: list[int] = []
    if pixel_std is not None:
        blank = np.flatnonzero(pixel_std < BLANK_STD)
        order = [int(i) for i in blank[np.argsort(pixel_std[blank])]]
    far = np.flatnonzero(score >= z)
    seen = set(order)
    order += [int(i) for i in far[np.argsort(-score[far])] if int(i) not in seen]
    return order[:limit] if limit else order


def split_flagged(flagged: Sequence[int], scores: dict[str, np.ndarray], pixel_std: np.ndarray,
                  issues: Sequence[dict], z: float = Z) -> tuple[set[int], list[int]]:
    """``(global, shown)``: the flagged images unlike the whole dataset (or blank), and the
    outliers to report. An image unlike the whole dataset (or blank) is an outlier, not a label
    error; one only unlike its own class that cleanlab flags (``issues``) is a label error, not an
    outlier."""
    blank = pixel_std < BLANK_STD
    global_out = {i for i in flagged if blank[i] or scores["dataset_z"][i] >= z}
    issue_set = {it["index"] for it in issues}
    return global_out, [i for i in flagged if i in global_out or i not in issue_set]
