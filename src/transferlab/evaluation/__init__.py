"""Evaluate a trained run: metrics, plots, predictions, Grad-CAM.

Example::

    import transferlab as tl
    m = tl.evaluate("runs/cnn_base")                       # the run's validation split
    m = tl.evaluate("runs/cnn_base", split="test")         # its test split (train/test layouts)
    m = tl.evaluate("runs/cnn_base", data="other_photos")  # every image of another dataset
    print(m["accuracy"], m["macro_avg"]["f1"], m["roc_auc"]["macro"])

Modules: :mod:`.api` (``evaluate``), :mod:`.metrics` (array-level: ``compute_metrics(y_true, probs,
classes)``, ``roc_curves``), :mod:`.calibration` (temperature scaling and the expected calibration error),
:mod:`.plots` (PNG plots), :mod:`.gradcam` (Grad-CAM).
"""
from __future__ import annotations

from ..choices import EVAL_SPLITS as SPLITS
from .api import evaluate
from .metrics import compute_metrics, roc_curves

__all__ = ["evaluate", "compute_metrics", "roc_curves", "SPLITS"]
