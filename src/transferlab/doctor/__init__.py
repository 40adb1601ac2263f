"""The data doctor: find, rank and explain the problems of an image dataset, without touching it.

* **duplicates** -- identical files (SHA-1), near-duplicates by perceptual hash (pHash + dHash)
  and by cosine similarity of pretrained-backbone embeddings; each group classified as within a
  class, conflicting labels (across classes) or leakage (across train/val/test);
* **likely label errors** -- out-of-fold probabilities of a logistic regression on the
  embeddings, ranked by ``cleanlab``;
* **outliers** -- images unlike anything in the dataset or their class (kNN distance), blank frames;
* **checks** -- a validation split too small to trust (Wilson interval), tiny or imbalanced
  classes, images far below the model input, grayscale mixed with colour.

>>> from transferlab.doctor import diagnose, summary, write_html, write_clean
>>> report = diagnose("DATA", out="doctor")            # doctor.json + doctor.html   # doctest: +SKIP
>>> print("\\n".join(summary(report)))                                                # doctest: +SKIP
>>> write_clean(report, "clean.csv", split_by_group=True)                            # doctest: +SKIP

Array-level pieces: :func:`near_duplicate_pairs` / :func:`near_duplicate_groups` (embeddings,
hashes, SHA-1s), :func:`out_of_fold_probs` + :func:`label_issues` (labels, probabilities),
:func:`outlier_scores` (embeddings, labels), :func:`fingerprints` (pixels), :func:`wilson_interval`.
Embeddings are cached under ``$TRANSFERLAB_CACHE/features`` (:func:`compute_signals`).
"""
from __future__ import annotations

from .checks import dataset_checks, wilson_interval
from .clean import group_split, plan_clean, write_clean
from .core import diagnose, write_outputs
from .duplicates import HASH_DISTANCE, RATIO, THRESHOLD, classify_group, near_duplicate_groups, near_duplicate_pairs
from .embeddings import compute_signals, features_cache_dir
from .hashing import fingerprints, hamming, is_gray
from .html import write_html
from .labels import label_issues, out_of_fold_probs
from .outliers import flag_outliers, outlier_scores
from .render import render_report, summary

__all__ = [
    "diagnose", "summary", "render_report", "write_html", "write_outputs", "write_clean", "plan_clean", "group_split",
    "near_duplicate_pairs", "near_duplicate_groups", "classify_group", "THRESHOLD", "RATIO", "HASH_DISTANCE",
    "out_of_fold_probs", "label_issues", "outlier_scores", "flag_outliers", "fingerprints", "hamming", "is_gray",
    "dataset_checks", "wilson_interval", "compute_signals", "features_cache_dir",
]
