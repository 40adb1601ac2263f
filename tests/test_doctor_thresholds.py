"""The doctor's default lists: which label suspects are flagged (estimated precision), which image
pairs are near-duplicates (both signals or a high similarity), and the headline's wording. Arrays
only: no images, no backbone."""
from __future__ import annotations

import numpy as np
import pytest

from transferlab.doctor import near_duplicate_pairs, summary
from transferlab.doctor.duplicates import FLOOR, HASH_FLOOR, THRESHOLD
from transferlab.doctor.labels import CONFIDENT_MISTAKES, FLAG_GRID, FLAG_PRECISION, flag_rule, label_scores
from transferlab.doctor.render import label_headline


def _probs(n: int, k: int, accuracy: float, wrong: int, low: float, seed: int = 0):
    """pred_probs of a probe that is right (given label 0.8) on ``accuracy`` of the clean images,
    wrong (given uniform in ``low``..0.4) on the rest, and confident in another class (given ~0.003) on ``wrong``
    mislabelled ones; returns (labels, probs, index of the mislabelled)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    given = np.where(rng.random(n) < accuracy, 0.8, rng.uniform(low, 0.4, n))
    bad = rng.choice(n, wrong, replace=False)
    given[bad] = rng.uniform(0.001, 0.004, wrong)
    p = np.empty((n, k))
    for i in range(n):
        other = rng.dirichlet(np.ones(k - 1)) * (1 - given[i])
        if i in set(bad.tolist()):
            other = np.full(k - 1, 0.0) + 1e-3
            other[rng.integers(0, k - 1)] = 1 - given[i] - 1e-3 * (k - 2)
        p[i] = np.insert(other, y[i], given[i])
    return y, p, bad


def test_flag_rule_flags_the_confident_errors_of_a_good_probe():
    y, p, bad = _probs(600, 5, accuracy=0.97, wrong=15, low=0.25)
    scores = label_scores(y, p)
    disagree = int((p.argmax(1) != y).sum())
    rule = flag_rule(scores, disagree)
    flagged = set(np.flatnonzero(scores < rule["threshold"]).tolist())
    assert flagged == set(bad.tolist()) and rule["flagged"] == 15
    assert rule["estimated_precision"] >= FLAG_PRECISION and rule["expected_false"] < 15 * (1 - FLAG_PRECISION) + 1e-9


def test_flag_rule_flags_nothing_on_a_clean_set_the_probe_often_gets_wrong():
    """A correctly labelled set of 4,000 whose probe disagrees with 1,000 labels, a bit more often
    confidently than measured (as on the clean CIFAR-10 sample): every threshold's estimate stays
    under the target, so nothing is flagged and all of it is only to review."""
    n, m, scores, prev = 4000, 1000, [], 0.0
    for t, share in zip(FLAG_GRID, CONFIDENT_MISTAKES):
        scores += [t - 0.001] * round(1.3 * m * (m / n) * (share - prev))
        prev = share
    scores = np.array(scores + [0.45] * (m - len(scores)) + [0.9] * (n - m))
    rule = flag_rule(scores, m)
    assert rule["flagged"] == 0 and rule["threshold"] is None and rule["estimated_precision"] is None
    scores[-30:] = 0.0005                                                  # 30 confident suspects more ...
    assert flag_rule(scores, m)["flagged"] >= 30                           # ... stand out of it


def test_flag_rule_estimate_and_threshold_by_hand():
    scores = np.array([0.001] * 10 + [0.012] * 10 + [0.5] * 80)
    # 100 images, 40 disagreements (rate 0.4): below 0.005, 10 flagged and 40 x 0.4 x 0.0092 = 0.15
    # expected correct -> 0.985; below 0.015, 20 and 40 x 0.4 x 0.0553 = 0.88 -> 0.956; above, nothing
    # more is flagged while the expected count grows.
    rule = flag_rule(scores, 40)
    assert rule["threshold"] == pytest.approx(0.015) and rule["flagged"] == 20
    assert rule["estimated_precision"] == pytest.approx(1 - 40 * 0.4 * CONFIDENT_MISTAKES[2] / 20, abs=0.01)
    assert rule["expected_false"] == pytest.approx(40 * 0.4 * CONFIDENT_MISTAKES[2], abs=0.05)
    # the same scores, but the probe disagrees with every label: 100 x 1 x 0.0553 = 5.5 of 20 (0.72)
    # is still enough below 0.015; a target of 0.9 flags only the 10 below 0.005 (100 x 0.0092: 0.91)
    assert flag_rule(scores, 100)["flagged"] == 20
    assert flag_rule(scores, 100, precision=0.9)["flagged"] == 10
    assert flag_rule(scores, 100, images=1000)["estimated_precision"] > flag_rule(scores, 100)["estimated_precision"]
    none = flag_rule(scores, 0)                                             # no disagreement: nothing expected
    assert none["flagged"] == 20 and none["threshold"] == pytest.approx(0.015) and none["estimated_precision"] == 1
    assert flag_rule(np.array([np.nan, 0.001]), 0)["flagged"] == 1           # unchecked images do not count


def test_mistake_table_is_a_growing_share():
    assert len(FLAG_GRID) == len(CONFIDENT_MISTAKES)
    assert list(FLAG_GRID) == sorted(FLAG_GRID) and list(CONFIDENT_MISTAKES) == sorted(CONFIDENT_MISTAKES)
    assert 0 < CONFIDENT_MISTAKES[0] and FLAG_PRECISION == 0.7


# ---------------------------------------------------------------- near-duplicates: both signals

def _pair_set(emb, ph, dh, **kw):
    return {(p["a"], p["b"]): p["signals"] for p in near_duplicate_pairs(emb, phash=ph, dhash=dh, **kw)}


def _hashes(n: int, seed: int = 5):
    rng = np.random.default_rng(seed)
    full = np.iinfo(np.uint64).max
    return (rng.integers(0, full, n, dtype=np.uint64, endpoint=True),
            rng.integers(0, full, n, dtype=np.uint64, endpoint=True))


def _with_similarity(base: np.ndarray, target: float, seed: int) -> np.ndarray:
    """A vector at cosine ``target`` from ``base`` (both centred data: the cloud's mean is ~0)."""
    rng = np.random.default_rng(seed)
    u = base / np.linalg.norm(base)
    v = rng.normal(0, 1, base.shape)
    v -= (v @ u) * u
    v /= np.linalg.norm(v)
    return (target * u + np.sqrt(1 - target ** 2) * v) * np.linalg.norm(base)


def _sim(pairs_list, a, b):
    return next(p["similarity"] for p in pairs_list if (p["a"], p["b"]) == (a, b))


def test_hash_alone_at_low_similarity_is_not_a_duplicate():
    emb = np.random.default_rng(0).normal(0, 1, (80, 64)).astype(np.float32)
    ph, dh = _hashes(len(emb))
    ph[1], dh[1] = ph[0], dh[0]                                           # hashes identical ...
    emb[1] = _with_similarity(emb[0], 0.4, 1)                               # ... but unlike (0.4)
    ph[7], dh[7] = ph[6], dh[6]
    emb[7] = _with_similarity(emb[6], 0.65, 5)                              # a recoloured copy: 0.65 is enough
    ph[3], dh[3] = ph[2], dh[2] ^ np.uint64(0b11)                           # hashes close ...
    emb[3] = _with_similarity(emb[2], 0.85, 2)                              # ... and alike (0.85 < 0.9)
    emb[5] = _with_similarity(emb[4], 0.95, 3)                              # hashes far, embedding high
    got = _pair_set(emb, ph, dh, ratio=None)
    assert (0, 1) not in got
    assert got[(2, 3)] == ["hash"] and got[(4, 5)] == ["embedding"] and got[(6, 7)] == ["hash"]
    assert len(got) == 3 and 0.44 < HASH_FLOOR <= 0.61
    # without embeddings the hashes are all there is, and they are kept
    assert (0, 1) in {(p["a"], p["b"]) for p in near_duplicate_pairs(None, phash=ph, dhash=dh)}


def test_ratio_test_needs_the_floor():
    """Two different photos at 0.72 that are each other's nearest by far are not duplicates; the
    same pair at 0.80 is (hashes within the ratio test's 20 bits)."""
    rng = np.random.default_rng(1)
    emb = rng.normal(0, 1, (120, 256)).astype(np.float32)                   # unrelated: cosine ~0
    ph, dh = _hashes(len(emb))
    ph[1], dh[1] = ph[0] ^ np.uint64(0xFFF), dh[0] ^ np.uint64(0xFFFF)      # 12 / 16 bits apart
    for sim, flagged in ((0.72, False), (0.80, True)):
        e = emb.copy()
        e[1] = _with_similarity(e[0], sim, 4)
        pairs = near_duplicate_pairs(e, phash=ph, dhash=dh, threshold=THRESHOLD)
        assert ((0, 1) in {(p["a"], p["b"]) for p in pairs}) is flagged, (sim, pairs[:3])
    assert 0.72 < FLOOR <= 0.76                                             # the known CIFAR-10 copy is 0.76


# ---------------------------------------------------------------- headline wording

def _report(flagged: int, review: int, precision):
    s = {"images": 2400, "duplicate_groups": 0, "cross_split": 0, "conflicting_labels": 0, "label_issues": flagged,
         "label_review": review, "label_precision": precision, "outliers": 0, "exact_groups": 0,
         "duplicate_images": 0, "warnings": 0}
    return {"summary": s, "warnings": [], "settings": {"threshold": 0.9}}


def test_headline_gives_the_estimate_and_the_review_list():
    line = summary(_report(12, 40, 0.81))[0]
    assert line == ("data doctor: 2400 images; no duplicates (similarity >= 0.9), 12 likely label errors "
                    "(estimated precision ~0.81), 40 more to review, no outliers")
    assert "no likely label errors (312 to review)" in summary(_report(0, 312, None))[0]
    assert label_headline({"label_issues": 1, "label_precision": 0.9, "label_review": 0}) == \
        "1 likely label error (estimated precision ~0.90)"
    assert label_headline({"label_issues": 0}) == "no likely label errors"    # reports without a review list
