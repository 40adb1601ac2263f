"""Likely label errors: out-of-fold predicted probabilities from a linear head on the embeddings,
ranked by ``cleanlab`` (confident learning).

Each image's class probabilities come from a logistic regression on standardised embeddings
(:class:`SoftmaxRegression`, scikit-learn's model fitted in PyTorch) that
never saw that image (``cross_val_predict`` over stratified folds), so a mislabelled photo is not
"remembered" with its wrong label. ``cleanlab.filter.find_label_issues`` then picks the examples
whose given label disagrees with what the rest of the data implies (estimated noise rates), ranked
by self-confidence (the probability of the given label, lowest first), and
``cleanlab.rank.get_label_quality_scores`` gives every image a quality score in [0, 1].

>>> probs = out_of_fold_probs(features, labels, folds=5, seed=0)     # doctest: +SKIP
>>> issues = label_issues(labels, probs)                              # doctest: +SKIP
>>> issues[0]                                                         # doctest: +SKIP
{'index': 17, 'given': 3, 'suggested': 1, 'score': 0.012, 'p_given': 0.012, 'p_suggested': 0.95}
"""
from __future__ import annotations

import warnings
from typing import TypedDict

import numpy as np
import torch
from cleanlab.filter import find_label_issues
from cleanlab.multilabel_classification.filter import find_label_issues as ml_find_label_issues
from cleanlab.multilabel_classification.rank import get_label_quality_scores as ml_label_quality_scores
from cleanlab.rank import get_label_quality_scores
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
from sklearn.utils import ClassifierTags, Tags

from ..errors import ConfigError

FOLDS = 5
#: inverse regularisation strength of the logistic regression (on standardised features)
C = 0.003


class SoftmaxRegression:
    """Multinomial logistic regression (L2 penalty ``1 / (2 C)`` on the weights, as scikit-learn's
    ``LogisticRegression(C=C)``) fitted by full-batch L-BFGS in PyTorch: a scikit-learn estimator
    (``fit``, ``predict_proba``, ``classes_``) for ``cross_val_predict``.

    scikit-learn's own solver spends most of its time in SciPy's L-BFGS-B bookkeeping for the
    12,800 weights of 1,280 features x 10 classes (measured 60 ms a step on this 2-core machine,
    2-40 s per fit); this one takes milliseconds per step.
    """

    _estimator_type = "classifier"

    def __init__(self, C: float = 0.05, max_iter: int = 200, tol: float = 1e-6):
        self.C, self.max_iter, self.tol = C, max_iter, tol

    def get_params(self, deep: bool = True) -> dict:
        return {"C": self.C, "max_iter": self.max_iter, "tol": self.tol}

    def set_params(self, **params):
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __sklearn_tags__(self):
        return Tags(estimator_type="classifier", target_tags=None, classifier_tags=ClassifierTags())

    def fit(self, X, y):
        X = np.asarray(X, dtype=np.float32)
        self.classes_, yi = np.unique(np.asarray(y), return_inverse=True)
        self.mean_ = X.mean(0)
        self.scale_ = X.std(0)
        self.scale_[self.scale_ < 1e-8] = 1.0
        x = torch.from_numpy((X - self.mean_) / self.scale_)
        t = torch.from_numpy(yi.astype(np.int64))
        k = len(self.classes_)
        w = torch.zeros(x.shape[1], k, requires_grad=True)
        b = torch.zeros(k, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=int(self.max_iter), tolerance_grad=self.tol,
                                tolerance_change=1e-9, history_size=10, line_search_fn="strong_wolfe")
        n, lam = len(x), 1.0 / (2.0 * float(self.C))

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ w + b, t, reduction="sum") / n + lam * (w * w).sum() / n
            loss.backward()
            return loss

        if k > 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # these small products lose more to thread sync than they gain
            try:               # (measured 2x faster on 3,450 x 1,280 features on 2 busy cores, 40x on tiny ones)
                opt.step(closure)
            finally:
                torch.set_num_threads(threads)
        self.coef_, self.intercept_ = w.detach().numpy().copy(), b.detach().numpy().copy()
        return self

    def predict_proba(self, X):
        X = (np.asarray(X, dtype=np.float32) - self.mean_) / self.scale_
        z = X @ self.coef_ + self.intercept_
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(1, keepdims=True)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(1)]


def fold_count(labels: np.ndarray, folds: int = FOLDS) -> int:
    """Folds for a stratified split: ``folds``, fewer when the smallest class is smaller (>= 2)."""
    counts = np.bincount(np.asarray(labels))
    counts = counts[counts > 0]
    return int(max(2, min(int(folds), int(counts.min()) if len(counts) else 2)))


def out_of_fold_probs(features: np.ndarray, labels: np.ndarray, *, folds: int = FOLDS, seed: int = 0,
                      C: float = C, max_iter: int = 100, groups: np.ndarray | None = None,
                      estimator=None) -> np.ndarray:
    """Out-of-fold class probabilities ``[N, K]`` (K = ``labels.max() + 1``) of a logistic
    regression on standardised ``features``; each class needs at least 2 images.

    ``groups`` (e.g. near-duplicate group ids) keeps each group inside one fold
    (``StratifiedGroupKFold``), so a copy in the training folds cannot vouch for its twin.
    ``estimator``: any scikit-learn classifier with ``predict_proba`` instead of
    :class:`SoftmaxRegression` (e.g. ``make_pipeline(StandardScaler(), LogisticRegression())``,
    same probabilities within 0.006 on the digits, 37x slower).
    """
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    if len(x) != len(y):
        raise ConfigError(f"{len(x)} feature rows but {len(y)} labels")
    counts = np.bincount(y)
    if (counts[counts > 0] < 2).any() or (counts > 0).sum() < 2:
        raise ConfigError("label checks need at least 2 classes with at least 2 images each")
    k = fold_count(y, folds)
    model = estimator if estimator is not None else SoftmaxRegression(C=C, max_iter=max_iter)
    if groups is not None and len(np.unique(groups)) < len(y):
        cv = StratifiedGroupKFold(n_splits=min(k, len(np.unique(groups))), shuffle=True, random_state=seed)
    else:
        cv, groups = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed), None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        warnings.filterwarnings("ignore", message=".*[Nn]umber of classes in training fold.*")
        probs = cross_val_predict(model, x, y, cv=cv, method="predict_proba", groups=groups)
    full = np.zeros((len(y), int(y.max()) + 1), np.float64)
    present = np.flatnonzero(counts > 0)
    full[:, present] = probs
    return full


def label_issues(labels: np.ndarray, pred_probs: np.ndarray, *, filter_by: str = "prune_by_noise_rate") -> list[dict]:
    """Likely label errors, most likely first: ``[{"index", "given", "suggested", "score",
    "p_given", "p_suggested"}]`` (``score``: cleanlab's label quality, lower is worse).

    Only classes that occur in ``labels`` take part; ``pred_probs`` rows are renormalised over them.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(pred_probs, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(y):
        raise ConfigError(f"pred_probs must be [N, K] with N = {len(y)}, got shape {p.shape}")
    present = np.unique(y)
    if len(present) < 2:
        return []
    remap = np.full(p.shape[1], -1)
    remap[present] = np.arange(len(present))
    yy = remap[y]
    pp = p[:, present]
    pp = np.clip(pp, 1e-12, None)
    pp = pp / pp.sum(1, keepdims=True)
    scores = get_label_quality_scores(yy, pp, method="self_confidence")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranked = find_label_issues(yy, pp, filter_by=filter_by, return_indices_ranked_by="self_confidence")
    out = []
    for i in np.asarray(ranked, dtype=np.int64).tolist():
        s = int(np.argmax(pp[i]))
        out.append({"index": i, "given": int(y[i]), "suggested": int(present[s]), "score": round(float(scores[i]), 4),
                    "p_given": round(float(pp[i, yy[i]]), 4), "p_suggested": round(float(pp[i, s]), 4)})
    return out


#: the precision the default list of likely label errors is held to (estimated, see :func:`flag_rule`)
FLAG_PRECISION = 0.7
#: self-confidence thresholds the rule may flag below (the probability of the given label)
FLAG_GRID = tuple(round(0.005 * i, 3) for i in range(1, 41))
#: correctly labelled images scoring below each threshold of FLAG_GRID, as a share of the probe's
#: disagreements with the given labels, per unit of its disagreement rate: the median over 4 sets
#: with 3% planted wrong labels (cars, flowers, a 2,400-image cifar10-subset slice, fingers;
#: bench/bench_doctor.py refits it and checks the rule leave-one-set-out). A probe that disagrees
#: with a quarter of the labels is confidently wrong about many correctly labelled images; one that
#: disagrees with 3% hardly ever.
CONFIDENT_MISTAKES = (0.0092, 0.0285, 0.0553, 0.093, 0.1321, 0.1644, 0.1982, 0.2272, 0.2473, 0.2643, 0.3136,
                      0.3467, 0.3952, 0.4322, 0.4738, 0.4992, 0.5408, 0.6307, 0.693, 0.7561, 0.8138, 0.8761, 0.913,
                      0.93, 0.984, 1.0302, 1.1055, 1.1502, 1.201, 1.2557, 1.3257, 1.3488, 1.3996, 1.425, 1.505,
                      1.5496, 1.5843, 1.606, 1.7233, 1.7617)


class FlagRule(TypedDict):
    """What :func:`flag_rule` returns."""

    threshold: float | None
    estimated_precision: float | None
    flagged: int
    expected_false: float


def flag_rule(scores: np.ndarray, disagreements: int, *, images: int | None = None,
              precision: float = FLAG_PRECISION, grid: tuple[float, ...] = FLAG_GRID,
              mistakes: tuple[float, ...] | None = None) -> FlagRule:
    """Which label suspects to flag: ``{"threshold", "estimated_precision", "flagged", "expected_false"}``.

    ``scores``: each image's label quality (self-confidence, the out-of-fold probability of its
    given label; NaN: not checked); ``disagreements``: how many of the ``images`` checked (default:
    the non-NaN scores) the probe assigns to another class than the given one, ``r`` that share. At
    a threshold ``t`` the flagged images are those scoring below ``t``; about ``disagreements x r x
    mistakes[t]`` of them are expected to be correctly labelled, so the estimated precision is ``1 -
    that / flagged``. The rule takes the highest threshold whose estimate reaches ``precision`` (the
    lowest of those that flag the same images); none (``threshold`` None, nothing flagged) when no
    threshold does.

    >>> r = flag_rule(np.array([0.001, 0.002, 0.003, 0.5, 0.9, 0.95]), disagreements=3)
    >>> r["flagged"], r["threshold"] is not None
    (3, True)
    >>> flag_rule(np.array([0.004] * 2 + [0.5] * 98), disagreements=100)["flagged"]  # a probe wrong everywhere
    0
    """
    mistakes = CONFIDENT_MISTAKES if mistakes is None else mistakes
    s = np.asarray(scores, dtype=np.float64)
    s = s[~np.isnan(s)]
    if len(grid) != len(mistakes):
        raise ConfigError(f"{len(grid)} thresholds but {len(mistakes)} mistake shares")
    n = len(s) if images is None else int(images)
    rate = float(disagreements) / n if n > 0 else 0.0
    best: FlagRule = {"threshold": None, "estimated_precision": None, "flagged": 0, "expected_false": 0.0}
    for t, share in zip(grid, mistakes):
        flagged = int((s < t).sum())
        if flagged == 0:
            continue
        expected = float(disagreements) * rate * float(share)
        est = 1.0 - expected / flagged
        if est >= precision and flagged > best["flagged"]:  # the same images at a higher threshold: a worse estimate
            best = {"threshold": float(t), "estimated_precision": round(est, 2), "flagged": flagged,
                    "expected_false": round(expected, 1)}
    return best


def label_scores(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """cleanlab's per-image label quality (self-confidence), ``[N]`` in [0, 1], lower is worse."""
    y = np.asarray(labels, dtype=np.int64)
    present = np.unique(y)
    remap = np.full(pred_probs.shape[1], -1)
    remap[present] = np.arange(len(present))
    pp = np.clip(np.asarray(pred_probs, np.float64)[:, present], 1e-12, None)
    return get_label_quality_scores(remap[y], pp / pp.sum(1, keepdims=True), method="self_confidence")


#: the per-class logistic regressions' inverse regularisation (multi-label): measured on the digits with 12
#: planted errors (1/3 labels left out, 1/3 added, 1/3 wrong): 9 of 12 in cleanlab's top 30 at 0.01, 8 at the
#: single-label C (0.003), 6 at 0.03 to 0.3; on a synthetic 12-feature set 0.003 shrank every probability
#: below 1/2 (74% of the labels right, 93% at 0.01)
MULTILABEL_C = 0.01


def multilabel_out_of_fold_probs(features: np.ndarray, targets: np.ndarray, *, folds: int = FOLDS, seed: int = 0,
                                 C: float = MULTILABEL_C, max_iter: int = 100) -> np.ndarray:
    """Multi-label: out-of-fold probabilities ``[N, C]`` that each image shows each class, one logistic
    regression per class (:class:`SoftmaxRegression` on two classes, standardised ``features``) over
    folds drawn by iterative stratification (``MultilabelStratifiedKFold``), so no image's own labels
    vouch for it. A class that a fold's training part shows always (or never) gets that share."""
    x = np.asarray(features, dtype=np.float32)
    y = (np.asarray(targets) > 0.5).astype(np.int64)
    if len(x) != len(y):
        raise ConfigError(f"{len(x)} feature rows but {len(y)} label rows")
    k = int(max(2, min(int(folds), len(y))))
    probs = np.zeros(y.shape, np.float64)
    cv = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for train, test in cv.split(x, y):
            for c in range(y.shape[1]):
                yc = y[train, c]
                if yc.min() == yc.max():
                    probs[test, c] = float(yc[0])
                    continue
                model = SoftmaxRegression(C=C, max_iter=max_iter).fit(x[train], yc)
                probs[test, c] = model.predict_proba(x[test])[:, 1]
    return probs


def multilabel_label_issues(targets: np.ndarray, pred_probs: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Multi-label: ``(issues, quality)``: cleanlab's likely label errors (indices, worst first: an image
    missing a label it shows or carrying one it does not) and every image's label quality in [0, 1]
    (``cleanlab.multilabel_classification``)."""
    labels = [np.flatnonzero(np.asarray(t) > 0.5).tolist() for t in targets]
    probs = np.clip(np.asarray(pred_probs, np.float64), 1e-6, 1 - 1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranked = ml_find_label_issues(labels=labels, pred_probs=probs, return_indices_ranked_by="self_confidence")
        quality = ml_label_quality_scores(labels, probs)
    return [int(i) for i in ranked], np.asarray(quality, np.float64)
