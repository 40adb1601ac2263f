"""``diagnose``: every check of the data doctor over one dataset, as one JSON-ready dict.

>>> report = diagnose("DATA", out="doctor")        # doctest: +SKIP
>>> report["summary"]                               # doctest: +SKIP
{'images': 2359, 'duplicate_groups': 212, 'cross_split': 90, 'conflicting_labels': 6, ...}
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from .._atomic import write_json
from ..data import DataSplits, load_data
from ..data.types import label_matrix
from ..errors import ConfigError, DataError
from ..models import get_recipe
from . import checks as _checks
from . import duplicates as _dups
from . import labels as _labels
from . import outliers as _outliers
from .embeddings import _input_size, compute_signals, resolve_amp
from .hashing import is_gray
from .html import write_html
from .render import DoctorReport

SPLIT_ORDER = ("train", "val", "test")
REPORT_VERSION = 1
#: most pairs kept per duplicate group in the report (a group of 50 copies has 1,225 pairs)
MAX_PAIRS_PER_GROUP = 30


def _load(data, *, val_ratio: float, seed: int, workers: int | None, progress: bool):
    if isinstance(data, DataSplits):
        if not data.scanned:
            raise ConfigError("diagnose needs scanned DataSplits (load_data(..., scan=True)): it uses each file's "
                              "hash, size and mode")
        return data
    if data is None or str(data).strip() == "":
        raise DataError("no dataset path given")
    with warnings.catch_warnings():  # load_data's notes are kept in splits.warnings and reported
        warnings.simplefilter("ignore")
        return load_data(data, val_ratio=val_ratio, seed=seed, scan=True, workers=workers, progress=progress)


def diagnose(data, *, backbone: str = "efficientnet_lite0", input_size: int | None = None,
             threshold: float = _dups.THRESHOLD, ratio: float | None = _dups.RATIO,
             hash_distance: tuple[int, int] | None = _dups.HASH_DISTANCE, folds: int = _labels.FOLDS,
             outlier_z: float = _outliers.Z, val_ratio: float = 0.2, seed: int = 0, amp: str = "auto",
             weights: str | None = None, cache: bool | str = True, workers: int | None = None,
             out: str | os.PathLike | None = None, html: bool = True, progress: bool = True) -> dict:
    """Find, rank and explain the problems of an image dataset; never touches its files.

    ``data``: a dataset path (class folders, train/test folders, CSV) or scanned
    :class:`~transferlab.data.DataSplits`. ``threshold``: cosine similarity of centred embeddings
    from which two images are near-duplicates; ``ratio``: the ratio test for datasets whose
    images all look alike to the backbone (None turns it off); ``hash_distance``: (pHash, dHash)
    bits. ``out``: a folder for ``doctor.json`` and (``html=True``) ``doctor.html``.

    Returns the report dict (what ``doctor.json`` holds): ``summary`` (counts), ``duplicates``
    (groups: kinds, files with label and split, the pairs with their signals and similarity),
    ``label_issues`` (given, suggested, score), ``outliers`` (reason, z-score, nearest image),
    ``warnings``, ``broken``, ``files`` (``[path, label, split, label quality]`` for every image),
    ``settings`` and ``timing``.
    """
    threshold, ratio, hash_distance, folds, outlier_z = _check_options(threshold, ratio, hash_distance, folds,
                                                                       outlier_z)
    _input_size(backbone, input_size), resolve_amp(amp)  # a bad backbone or size fails before the scan
    timing: dict[str, float] = {}
    with _timed(timing, "load"):
        splits = _load(data, val_ratio=val_ratio, seed=seed, workers=workers, progress=progress)
    ds = _Dataset.of(splits)
    with _timed(timing, "embed"):
        if input_size is None:  # the size training would use for this data (128 px for small photos)
            input_size = get_recipe(backbone).input_for(splits.typical_side())[0]
        sig = _signals(ds.groups_in, backbone=backbone, input_size=input_size, amp=amp, weights=weights,
                       cache=cache, workers=workers, progress=progress)
    with _timed(timing, "duplicates"):
        pairs = _dups.near_duplicate_pair_arrays(sig["features"], phash=sig["phash"], dhash=sig["dhash"],
                                                 sha1=ds.sha1, threshold=threshold, ratio=ratio,
                                                 hash_distance=hash_distance)
        comps = _dups.near_duplicate_groups(len(ds.paths), pairs)
        group_of = _group_ids(len(ds.paths), comps)
        duplicates = _duplicate_rows(ds, pairs, comps, group_of)
    with _timed(timing, "labels"):
        issues, label_note, quality, probs = _label_issues(sig["features"], ds, folds=folds, seed=seed)
    with _timed(timing, "outliers"):
        scores = _outliers.outlier_scores(sig["features"], ds.class_labels(), groups=group_of)
        flagged = _outliers.flag_outliers(scores, pixel_std=sig["pixel_std"], z=outlier_z)

    group_id = {f["path"]: d["id"] for d in duplicates for f in d["files"]}
    global_out, flagged = _outliers.split_flagged(flagged, scores, sig["pixel_std"], issues, outlier_z)
    label_rows, review_rows, rule = _label_rows(ds, issues, quality, probs, global_out, group_id)
    outlier_rows = [_outlier_row(ds, i, scores, sig["pixel_std"], group_id) for i in flagged]
    warn = _warnings(ds, splits, backbone, sig["color_spread"], label_note)

    report = {
        "version": REPORT_VERSION,
        "root": splits.root,
        "layout": splits.layout, "task": "multilabel" if ds.label_sets is not None else "single",  # labels "a;b"
        "classes": ds.classes,
        "counts": {s: int(sum(1 for x in ds.split_of if x == s)) for s in SPLIT_ORDER},
        "summary": _summary(ds, duplicates, label_rows, review_rows, rule, outlier_rows, warn),
        "duplicates": duplicates,
        "label_issues": label_rows,
        "label_review": review_rows,
        "label_rule": rule,
        "outliers": outlier_rows,
        "warnings": warn,
        "broken": [{"path": b.path, "reason": b.reason} for b in splits.broken],
        "load_warnings": list(splits.warnings),
        "files": ds.rows(quality),
        "settings": {"backbone": backbone, "input_size": sig["input_size"], "precision": sig["amp"],
                     "embedding_dims": int(sig["features"].shape[1]), "reduced_from": sig.get("reduced_from"),
                     **_dups.settings(threshold, ratio, hash_distance), "folds": folds, "outlier_z": outlier_z,
                     "val_ratio": val_ratio, "seed": seed},
        "timing": {**{k: round(v, 2) for k, v in timing.items()}, "embed_cached": bool(sig["cached"]),
                   "images_per_s": round(sig["images_per_s"], 1)},
    }
    report = DoctorReport(report)
    if out is not None:
        written = write_outputs(report, out, html=html)
        if "html" in written:
            report.page = str(written["html"])  # for the notebook view; not part of doctor.json
    return report


@contextlib.contextmanager
def _timed(timing: dict[str, float], step: str):
    """Add the seconds spent in the ``with`` block to ``timing[step]``."""
    t = time.perf_counter()
    try:
        yield
    finally:
        timing[step] = timing.get(step, 0.0) + time.perf_counter() - t


def _group_ids(n: int, comps: list[list[int]]) -> np.ndarray:
    """Each image's duplicate group index; singletons get ids no group uses (``n + i``)."""
    group_of = np.arange(n) + n
    for g, members in enumerate(comps):
        group_of[members] = g
    return group_of


def _check_options(threshold, ratio, hash_distance, folds, outlier_z) -> tuple:
    """The doctor's numeric options, validated (ConfigError naming the option)."""
    threshold = _dups.check_threshold(threshold)
    if ratio is not None:
        ratio = _dups.check_threshold(ratio, "ratio", 0.0, 1.0)
    if hash_distance is not None:
        try:
            hash_distance = (int(hash_distance[0]), int(hash_distance[1]))
        except (TypeError, ValueError, IndexError):
            raise ConfigError(f"hash_distance must be two bit counts (pHash, dHash), got {hash_distance!r}") from None
        if not all(0 <= h <= 64 for h in hash_distance):
            raise ConfigError(f"hash distances must be in 0..64 bits, got {hash_distance}")
    try:
        folds = int(folds)
        outlier_z = float(outlier_z)
    except (TypeError, ValueError):
        raise ConfigError(f"folds must be an integer and outlier_z a number, got {folds!r}, {outlier_z!r}") from None
    if folds < 2:
        raise ConfigError(f"folds must be at least 2, got {folds}")
    return threshold, ratio, hash_distance, folds, outlier_z


@dataclasses.dataclass
class _Dataset:
    """The images the doctor looks at, in one order (train, val, test): path, label, split, scan info."""
    groups_in: list
    paths: list[str]
    labels: np.ndarray
    split_of: list[str]
    classes: list[str]
    info: list
    sha1: list[str]
    label_sets: list[tuple[int, ...]] | None = None  # multi-label data: each image's classes

    @classmethod
    def of(cls, splits: DataSplits) -> _Dataset:
        groups_in = [list(splits.split(name)) for name in SPLIT_ORDER]
        paths = [p for g in groups_in for p, _ in g]
        if not paths:
            raise DataError(f"no readable images in {splits.root}")
        info = [splits.info.get(p) for p in paths]
        sets = [splits.label_sets[p] for p in paths] if splits.label_sets is not None else None
        return cls(groups_in, paths, np.array([y for g in groups_in for _, y in g], np.int64),
                   [name for name, g in zip(SPLIT_ORDER, groups_in) for _ in g], list(splits.classes), info,
                   [i.sha1 if i else "" for i in info], sets)

    def label_name(self, i: int) -> str:
        """Image ``i``'s class, or (multi-label) its classes joined with ``;``."""
        if self.label_sets is not None:
            return ";".join(self.classes[c] for c in self.label_sets[i])
        return self.classes[self.labels[i]]

    def class_labels(self) -> np.ndarray | None:
        """The class of each image for the per-class outlier check; None for multi-label data (an image
        of several classes is compared with the whole dataset only)."""
        return None if self.label_sets is not None else self.labels

    def label_keys(self) -> list:
        """What two images must share to carry the same labels: the class, or the set of classes."""
        return list(self.label_sets) if self.label_sets is not None else self.labels.tolist()

    def item(self, i: int) -> dict:
        return {"path": self.paths[i], "label": self.label_name(i), "split": self.split_of[i]}

    def rows(self, quality: np.ndarray) -> list[list]:
        """``[path, label, split, label quality]`` of every image (the report's ``files``)."""
        return [[self.paths[i], self.label_name(i), self.split_of[i],
                 None if np.isnan(quality[i]) else round(float(quality[i]), 4)] for i in range(len(self.paths))]


def _duplicate_rows(ds: _Dataset, pairs: dict[str, np.ndarray], comps: list[list[int]],
                    group_of: np.ndarray) -> list[dict]:
    """One report row per duplicate group, most serious first (conflicting labels, leakage, the
    rest; larger first): its kinds, files, signals, least similarity and strongest pairs."""
    # the pairs grouped (each pair's group is its first image's), strongest first within a group
    grp = group_of[pairs["a"]]
    order = np.argsort(grp, kind="stable")  # pairs come sorted by similarity: stable keeps that order
    cuts = np.searchsorted(grp[order], np.arange(len(comps) + 1))
    labels = ds.label_keys()
    duplicates: list[dict] = []
    for g, members in enumerate(comps):
        inside = order[cuts[g]:cuts[g + 1]]
        bits = int(np.bitwise_or.reduce(pairs["signals"][inside])) if len(inside) else 0
        sims = pairs["similarity"][inside]
        sims = sims[~np.isnan(sims)]
        exact = len({ds.sha1[i] for i in members}) == 1 and bool(ds.sha1[members[0]])
        shown = _dups.pair_dicts(pairs, inside[:MAX_PAIRS_PER_GROUP])
        duplicates.append({
            "id": g, "kinds": _dups.classify_group(members, labels, ds.split_of), "exact": exact,
            "signals": _dups.signal_names(bits), "size": len(members),
            "similarity": round(float(sims.min()), 4) if len(sims) else None,
            "files": [ds.item(i) for i in members],
            "classes": sorted({x for i in members for x in ds.label_name(i).split(";") if x}),
            "splits": [s for s in SPLIT_ORDER if any(ds.split_of[i] == s for i in members)],
            "pairs": [{**p, "a": ds.paths[p["a"]], "b": ds.paths[p["b"]]} for p in shown],
        })
    rank = {"conflicting-labels": 0, "cross-split": 1, "within-class": 2}
    duplicates.sort(key=lambda d: (min(rank[k] for k in d["kinds"]), -d["size"], d["files"][0]["path"]))
    for new_id, d in enumerate(duplicates):
        d["id"] = new_id
    return duplicates


def _label_rows(ds: _Dataset, issues: list[dict], quality: np.ndarray, probs: np.ndarray, global_out: set[int],
                group_id: dict[str, int]) -> tuple[list[dict], list[dict], dict]:
    """Likely label errors and those to review, and the rule that split them.

    Ranked by cleanlab's label quality; flagged (the default list) only below the threshold whose
    estimated precision reaches labels.FLAG_PRECISION, the rest of cleanlab's issues "to review".
    Multi-label data: :func:`_multilabel_rows`."""
    if ds.label_sets is not None:
        return _multilabel_rows(ds, issues, quality, probs, global_out, group_id)
    labels = ds.labels
    checked = ~np.isnan(quality)
    disagree = int((checked & (np.nan_to_num(probs).argmax(1) != labels)).sum()) if checked.any() else 0
    rule_scores = quality.copy()
    rule_scores[sorted(global_out)] = np.nan
    rule = _labels.flag_rule(rule_scores, disagree, images=int(checked.sum()))
    t = rule["threshold"]
    flag_set = set(np.flatnonzero(rule_scores < t).tolist()) if t is not None else set()
    candidates = sorted((flag_set | {it["index"] for it in issues}) - global_out,
                        key=lambda i: (quality[i], ds.paths[i]))
    label_rows: list[dict] = []
    review_rows: list[dict] = []
    for i in candidates:
        sug = int(np.argmax(probs[i]))
        row = {**ds.item(i), "given": ds.classes[labels[i]], "suggested": ds.classes[sug],
               "score": round(float(quality[i]), 4), "p_given": round(float(probs[i, labels[i]]), 4),
               "p_suggested": round(float(probs[i, sug]), 4), "group": group_id.get(ds.paths[i])}
        (label_rows if i in flag_set else review_rows).append(row)
    summary = {"threshold": t, "estimated_precision": rule["estimated_precision"],
               "expected_false": rule["expected_false"], "disagreements": disagree, "images": int(checked.sum()),
               "target_precision": _labels.FLAG_PRECISION}
    return label_rows, review_rows, summary


def _outlier_row(ds: _Dataset, i: int, scores: dict, pixel_std: np.ndarray, group_id: dict[str, int]) -> dict:
    """One outlier's report row: why it stands out, how far, and its nearest image."""
    near = int(scores["nearest"][i])
    if float(pixel_std[i]) < _outliers.BLANK_STD:
        reason = f"blank frame (pixel std {float(pixel_std[i]):.1f} of 255)"
    elif scores["dataset_z"][i] >= scores["class_z"][i]:
        reason = "unlike anything in the dataset"
    else:
        reason = f"unlike the rest of class '{ds.classes[ds.labels[i]]}'"
    return {**ds.item(i), "score": round(float(scores["score"][i]), 2), "reason": reason,
            "dataset_z": round(float(scores["dataset_z"][i]), 2),
            "class_z": round(float(scores["class_z"][i]), 2),
            "nearest": ds.paths[near] if near >= 0 else None,
            "nearest_similarity": round(1.0 - float(scores["dataset_distance"][i]), 4)
            if np.isfinite(scores["dataset_distance"][i]) else None,
            "group": group_id.get(ds.paths[i])}


def _warnings(ds: _Dataset, splits: DataSplits, backbone: str, color_spread: np.ndarray,
              label_note: str | None) -> list[dict]:
    """The dataset-level checks (balance, sizes, gray images, broken files) and the label-check note."""
    gray = [bool(g) or (i is not None and i.mode in _checks.GRAY_MODES) for g, i in zip(is_gray(color_spread), ds.info)]
    sizes = [(i.width, i.height) if i else None for i in ds.info]
    broken = [{"path": b.path, "reason": b.reason} for b in splits.broken]
    # per class its images (multi-label: every label an image carries counts)
    occurrences = [c for s in ds.label_sets for c in s] if ds.label_sets is not None else ds.labels.tolist()
    warn = _checks.dataset_checks(classes=ds.classes, labels=occurrences, splits=ds.split_of, sizes=sizes,
                                  gray=gray, input_size=get_recipe(backbone).input_size, broken=broken)
    if label_note:
        warn.append({"kind": "label-check", "severity": "info", "message": label_note})
    return warn


def _summary(ds: _Dataset, duplicates: list[dict], label_rows: list[dict], review_rows: list[dict], rule: dict,
             outlier_rows: list[dict], warn: list[dict]) -> dict:
    return {
        "images": len(ds.paths),
        "duplicate_groups": len(duplicates),
        "exact_groups": sum(d["exact"] for d in duplicates),
        "cross_split": sum("cross-split" in d["kinds"] for d in duplicates),
        "conflicting_labels": sum("conflicting-labels" in d["kinds"] for d in duplicates),
        "duplicate_images": sum(d["size"] for d in duplicates),
        "label_issues": len(label_rows),
        "label_review": len(review_rows),
        "label_precision": rule["estimated_precision"] if label_rows else None,
        "outliers": len(outlier_rows),
        "warnings": sum(w["severity"] == "warning" for w in warn),
    }


def _signals(groups_in, **kwargs) -> dict:
    return compute_signals([g for g in groups_in], **kwargs)


def _label_issues(features: np.ndarray, ds: _Dataset, *, folds: int,
                  seed: int) -> tuple[list[dict], str | None, np.ndarray, np.ndarray]:
    """cleanlab's label issues over the classes with enough images, a note when some are left
    out, every image's label quality and its out-of-fold class probabilities (NaN where not
    checked). Multi-label data: :func:`_multilabel_issues`."""
    if ds.label_sets is not None:
        return _multilabel_issues(features, ds, folds=folds, seed=seed)
    labels = ds.labels
    counts = Counter(labels.tolist())
    need = 2
    keep_classes = {c for c, n in counts.items() if n >= need}
    if len(keep_classes) < 2:
        return ([], "label errors not checked: fewer than 2 classes have 2 or more images", np.full(len(labels), np.nan),
                np.full((len(labels), int(labels.max(initial=0)) + 1), np.nan))
    keep = np.flatnonzero(np.isin(labels, list(keep_classes)))
    note = None
    if len(keep) < len(labels):
        skipped = sorted(c for c in counts if c not in keep_classes)
        note = f"label errors not checked in {len(skipped)} class(es) with a single image"
    y = labels[keep]
    # Plain stratified folds: a copy of an image in another fold vouches for its label. That is
    # what catches a photo filed under the wrong class while its twin sits in the right one, and
    # spares correctly labelled photos that have twins (measured on 3% planted errors in the cars:
    # 80% of them in the top 1.5k of the ranking vs 73% with near-duplicate groups kept in one
    # fold). Copies that share one wrong label are listed as duplicates instead.
    probs = _labels.out_of_fold_probs(features[keep], y, folds=folds, seed=seed)
    issues = _labels.label_issues(y, probs)
    quality = np.full(len(labels), np.nan)
    quality[keep] = _labels.label_scores(y, probs)
    for it in issues:
        it["index"] = int(keep[it["index"]])
    full = np.full((len(labels), probs.shape[1]), np.nan)
    full[keep] = probs
    return issues, note, quality, full


def _multilabel_issues(features: np.ndarray, ds: _Dataset, *, folds: int,
                       seed: int) -> tuple[list[dict], str | None, np.ndarray, np.ndarray]:
    """Multi-label: cleanlab's label issues on out-of-fold per-class probabilities (see
    :func:`transferlab.doctor.labels.multilabel_out_of_fold_probs`), every image's label quality and
    those probabilities; a note when there are too few images to check."""
    assert ds.label_sets is not None
    targets = label_matrix(ds.label_sets, len(ds.classes))
    if len(ds.paths) < 2 * max(2, folds):
        return [], "label errors not checked: too few images", np.full(len(ds.paths), np.nan), targets * np.nan
    probs = _labels.multilabel_out_of_fold_probs(features, targets, folds=folds, seed=seed)
    ranked, quality = _labels.multilabel_label_issues(targets, probs)
    note = ("multi-label label checks (cleanlab.multilabel_classification) are listed to review: the flag rule's "
            "precision is measured on single-label sets")
    return [{"index": i} for i in ranked], note, quality, probs


def _multilabel_rows(ds: _Dataset, issues: list[dict], quality: np.ndarray, probs: np.ndarray, global_out: set[int],
                     group_id: dict[str, int]) -> tuple[list[dict], list[dict], dict]:
    """Multi-label: cleanlab's issues, worst first, all "to review" (none flagged): per image its given
    labels, the labels the out-of-fold model suggests (probability >= 1/2), the least probable given
    label's probability and the most probable missing one's."""
    assert ds.label_sets is not None
    predicted = probs >= 0.5
    review: list[dict] = []
    for i in sorted({it["index"] for it in issues} - global_out, key=lambda i: (quality[i], ds.paths[i])):
        given = list(ds.label_sets[i])
        missing = [c for c in range(len(ds.classes)) if c not in given]
        review.append({**ds.item(i), "given": ds.label_name(i),
                       "suggested": ";".join(ds.classes[c] for c in np.flatnonzero(predicted[i])),
                       "score": round(float(quality[i]), 4),
                       "p_given": round(float(probs[i, given].min()), 4) if given else None,
                       "p_suggested": round(float(probs[i, missing].max()), 4) if missing else None,
                       "group": group_id.get(ds.paths[i])})
    targets = label_matrix(ds.label_sets, len(ds.classes)) > 0.5
    checked = ~np.isnan(quality)
    rule = {"threshold": None, "estimated_precision": None, "expected_false": None,
            "disagreements": int((checked & (predicted != targets).any(1)).sum()), "images": int(checked.sum()),
            "target_precision": _labels.FLAG_PRECISION}
    return [], review, rule


def write_outputs(report: dict, out: str | os.PathLike, *, html: bool = True) -> dict[str, Path]:
    """Write ``doctor.json`` (and ``doctor.html``) into the folder ``out``; returns their paths."""
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {folder}: {exc.strerror or exc}") from None
    if not folder.is_dir():
        raise ConfigError(f"output path is not a folder: {folder}")
    written = {"json": folder / "doctor.json"}
    write_json(written["json"], report)
    if html:
        written["html"] = write_html(report, folder / "doctor.html")
    return written
