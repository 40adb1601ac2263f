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

Array-level pieces: :func:`near_duplicate_pair_arrays` (or :func:`near_duplicate_pairs`, as dicts) /
:func:`near_duplicate_groups` (embeddings, hashes, SHA-1s), :func:`out_of_fold_probs` + :func:`label_issues` (labels, probabilities),
:func:`outlier_scores` (embeddings, labels), :func:`fingerprints` (pixels), :func:`wilson_interval`.
Embeddings are cached under ``$TRANSFERLAB_CACHE/features`` (:func:`compute_signals`).
"""
from __future__ import annotations

from .._lazy import lazy_exports

# Imported on first use: the CLI offers the doctor's thresholds (.duplicates, no torch) and must not
# load PyTorch through .core and .embeddings to build its parser (see transferlab/_lazy.py).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".core": ("diagnose", "write_outputs"),
    ".render": ("render_report", "summary"),
    ".html": ("write_html",),
    ".clean": ("write_clean", "plan_clean", "group_split"),
    ".duplicates": ("near_duplicate_pairs", "near_duplicate_pair_arrays", "near_duplicate_groups", "classify_group", "THRESHOLD", "RATIO",
                    "HASH_DISTANCE"),
    ".labels": ("out_of_fold_probs", "label_issues"),
    ".outliers": ("outlier_scores", "flag_outliers"),
    ".hashing": ("fingerprints", "hamming", "is_gray"),
    ".checks": ("dataset_checks", "wilson_interval"),
    ".embeddings": ("compute_signals", "features_cache_dir"),
})
