"""``compare --cv K``: stratified K-fold cross-validation of the recipes, copies never straddling folds.

The training pool (train + val images; a test folder stays untouched) is cut into ``K`` folds by
scikit-learn's ``StratifiedGroupKFold`` (shuffled, seeded): each class is spread evenly over the folds,
and every group of copies stays inside one fold. The groups are the files with identical content (from
the scan), joined with the data doctor's near-duplicate groups when its report is given
(``groups_from=doctor.json``): a copy in the training folds of a model and in its validation fold would
score the model on a photo it trained on. Each fold is one :func:`~transferlab.comparison.compare` into
``OUT/fold-<k>/`` (fold ``k`` is the validation split: it picks each model's best epoch and scores it,
as ``compare --split val`` does); ``OUT/cv.json`` holds per recipe the mean and standard deviation
over the folds of accuracy, macro F1 and log loss, and each fold's figure.

>>> import numpy as np
>>> summarize([0.8, 0.9, 0.85])
{'mean': 0.85, 'sd': 0.05, 'folds': [0.8, 0.9, 0.85]}
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold

from .._atomic import atomic_write_text
from ..data import DataSplits, load_data
from ..data.sample import sample_dir
from ..data.scan import duplicate_groups
from ..errors import ConfigError, DataError
from .runner import compare

logger = logging.getLogger(__name__)

CV_FILE = "cv.json"
CV_METRICS = ("accuracy", "f1_macro", "log_loss")


def summarize(values) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the folds' values."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    if not len(v):
        return {"mean": None, "sd": None, "folds": list(values)}
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"mean": round(float(v.mean()), 6), "sd": round(sd, 6),
            "folds": [None if x is None else float(x) for x in values]}


def copy_groups(paths: list[str], splits: DataSplits, doctor_groups: list[list[str]] | None = None) -> np.ndarray:
    """A group id per path: paths with identical content (the scan's sha1) or in one of the doctor's
    near-duplicate groups share an id (groups joined transitively); every other path is its own group."""
    index = {p: i for i, p in enumerate(paths)}
    pairs = [(index[a], index[b]) for g in duplicate_groups(splits.info, paths) for a, b in zip(g, g[1:])]
    for g in doctor_groups or []:
        members = [index[p] for p in g if p in index]
        pairs += list(zip(members, members[1:]))
    n = len(paths)
    if not pairs:
        return np.arange(n)
    a, b = np.array(pairs).T
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def doctor_groups_of(path: str | Path) -> list[list[str]]:
    """The duplicate groups of a data doctor report (``doctor.json``)."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        return [[f["path"] for f in d["files"]] for d in report["duplicates"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read the duplicate groups of {path}: {exc}") from None


def cv_folds(splits: DataSplits, k: int, seed: int = 0, doctor_groups: list[list[str]] | None = None) -> list[DataSplits]:
    """``k`` DataSplits over the training pool (train + val): fold ``i`` is the validation split of the
    ``i``-th, the other folds its training split; the test split is kept as it is."""
    if int(k) < 2:
        raise ConfigError(f"--cv needs at least 2 folds, got {k}")
    pool = list(splits.train) + list(splits.val)
    labels = np.array([y for _, y in pool])
    smallest = int(np.bincount(labels).min()) if len(labels) else 0
    if smallest < k:
        raise DataError(f"--cv {k}: the smallest class has {smallest} training image(s); every fold needs one of "
                        f"each class (use fewer folds)")
    groups = copy_groups([p for p, _ in pool], splits, doctor_groups)
    folds = StratifiedGroupKFold(n_splits=int(k), shuffle=True, random_state=int(seed))
    out = []
    for train_idx, val_idx in folds.split(np.zeros(len(pool)), labels, groups):
        out.append(replace(splits, train=[pool[i] for i in train_idx], val=[pool[i] for i in val_idx],
                           val_ratio=None, split_seed=None, warnings=[], duplicates=[]))  # copies kept together
    return out


def compare_cv(data=None, k: int = 5, *, out: str | Path = "compare", seed: int = 0, val_ratio: float = 0.2,
               groups_from: str | Path | None = None, progress: bool = True, **compare_kwargs) -> dict[str, Any]:
    """Cross-validate the recipes of :func:`compare` (same arguments; ``split`` and ``ensemble`` are
    not taken): one compare per fold into ``OUT/fold-<i>``, then ``OUT/cv.json`` with per recipe the
    mean +- sd over the folds. Returns that dict."""
    for key in ("split", "ensemble"):
        if key in compare_kwargs:
            raise ConfigError(f"compare --cv does not take {key!r}: each fold is scored on its validation fold")
    splits = data if isinstance(data, DataSplits) else load_data(data or sample_dir(), val_ratio=val_ratio, seed=seed,
                                                                 progress=progress)
    doctor = doctor_groups_of(groups_from) if groups_from else None
    folds = cv_folds(splits, k, seed, doctor)
    out = Path(out)
    per_model: dict[str, dict[str, list]] = {}
    for i, fold in enumerate(folds, 1):
        logger.info(f"fold {i}/{k}: {len(fold.train)} training and {len(fold.val)} validation images")
        rows = compare(fold, out=out / f"fold-{i}", split="val", seed=seed, val_ratio=val_ratio, ensemble=False,
                       progress=progress, **compare_kwargs)
        for r in rows:
            m = per_model.setdefault(r["model"], {name: [None] * k for name in CV_METRICS})
            for name in CV_METRICS:
                m[name][i - 1] = r.get(name) if r.get("status") == "ok" else None
    result = {"folds": int(k), "seed": int(seed), "data": str(splits.root),
              "grouping": "identical files" + (f" + the doctor's duplicate groups ({groups_from})" if doctor else ""),
              "fold_sizes": [len(f.val) for f in folds],
              "models": {name: {metric: summarize(v) for metric, v in m.items()} for name, m in per_model.items()}}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CV_FILE, json.dumps(result, indent=2))
    return result
