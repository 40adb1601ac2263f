"""compute_metrics / roc_curves against values computed by hand on small fixed predictions."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from transferlab.errors import ConfigError
from transferlab.evaluation import compute_metrics, roc_curves

# 3 classes; class "c" is never predicted (argmax is a, b, b, b, a)
Y3 = [0, 0, 1, 1, 2]
P3 = np.array([
    [0.7, 0.2, 0.1],
    [0.4, 0.5, 0.1],
    [0.1, 0.8, 0.1],
    [0.3, 0.6, 0.1],
    [0.5, 0.4, 0.1],
])


def test_three_classes_with_a_class_never_predicted():
    m = compute_metrics(Y3, P3, ["a", "b", "c"])
    # predictions: a, b, b, b, a -> 3 of 5 right
    assert m["accuracy"] == pytest.approx(3 / 5)
    # a: predicted twice (1 right) of 2 true; b: predicted 3 times (2 right) of 2 true; c: never predicted
    a, b, c = (m["per_class"][k] for k in "abc")
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == pytest.approx((0.5, 0.5, 0.5, 2))
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == pytest.approx((2 / 3, 1.0, 0.8, 2))
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == (0.0, 0.0, 0.0, 1)  # zero_division=0
    assert m["macro_avg"]["precision"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    assert m["macro_avg"]["recall"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["macro_avg"]["f1"] == pytest.approx((0.5 + 0.8 + 0) / 3)
    assert m["weighted_avg"]["f1"] == pytest.approx((2 * 0.5 + 2 * 0.8 + 1 * 0) / 5)
    assert m["weighted_avg"]["support"] == 5
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["confusion_matrix_normalized"] == [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    # log loss: mean of -log p(true)
    expected = -np.mean(np.log([0.7, 0.4, 0.8, 0.6, 0.1]))
    assert m["log_loss"] == pytest.approx(expected)
    # AUC a: positives (0.7, 0.4) vs negatives (0.1, 0.3, 0.5): 5 of 6 pairs ranked right
    assert m["roc_auc"]["per_class"]["a"] == pytest.approx(5 / 6)
    assert m["roc_auc"]["per_class"]["b"] == pytest.approx(1.0)   # (0.8, 0.6) above (0.2, 0.5, 0.4)
    assert m["roc_auc"]["per_class"]["c"] == pytest.approx(0.5)   # all scores tied
    assert m["roc_auc"]["macro"] == pytest.approx((5 / 6 + 1.0 + 0.5) / 3)
    # micro: every (image, class) score pooled into one binary problem, as scikit-learn computes it
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import label_binarize

    micro = roc_auc_score(label_binarize(Y3, classes=[0, 1, 2]), P3, average="micro")
    assert m["roc_auc"]["micro"] == pytest.approx(micro) and m["roc_auc"]["micro"] != m["roc_auc"]["macro"]
    assert m["top_k_accuracy"] == {}  # k=3 is not < 3 classes
    assert "macro avg" in m["classification_report"]
    json.dumps(m, allow_nan=False)  # strictly JSON-serialisable


def test_binary_task():
    y = [0, 1, 1, 0, 1]
    p1 = np.array([0.2, 0.9, 0.4, 0.6, 0.8])
    probs = np.stack([1 - p1, p1], axis=1)
    m = compute_metrics(y, probs, ["neg", "pos"])
    # predicted: neg, pos, neg, pos, pos -> right: 0, 1, 4 -> 3/5
    assert m["accuracy"] == pytest.approx(0.6)
    pos = m["per_class"]["pos"]
    assert pos["precision"] == pytest.approx(2 / 3) and pos["recall"] == pytest.approx(2 / 3)
    neg = m["per_class"]["neg"]
    assert neg["precision"] == pytest.approx(1 / 2) and neg["recall"] == pytest.approx(1 / 2)
    # AUC: positives (0.9, 0.4, 0.8) vs negatives (0.2, 0.6): pairs right = 2 + 1 + 2 = 5 of 6
    assert m["roc_auc"]["per_class"]["pos"] == pytest.approx(5 / 6)
    assert m["roc_auc"]["per_class"]["neg"] == pytest.approx(5 / 6)
    assert m["roc_auc"]["macro"] == pytest.approx(5 / 6)
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.9, 0.4, 0.4, 0.8])))


def test_class_absent_from_y_true_gives_no_auc_not_a_crash():
    y = [0, 0, 1, 1]
    probs = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]])
    m = compute_metrics(y, probs, ["a", "b", "c"])
    assert m["roc_auc"]["per_class"]["c"] is None
    assert m["per_class"]["c"]["support"] == 0
    assert m["per_class"]["c"]["auc"] is None
    assert m["roc_auc"]["per_class"]["a"] == pytest.approx(1.0)
    # b: positives (0.7, 0.3) vs negatives (0.1, 0.6): 2 + 1 = 3 of 4 pairs ranked right
    assert m["roc_auc"]["per_class"]["b"] == pytest.approx(3 / 4)
    assert m["roc_auc"]["macro"] == pytest.approx((1.0 + 0.75) / 2)  # defined classes only
    assert m["confusion_matrix_normalized"][2] == [0.0, 0.0, 0.0]
    curves = roc_curves(y, probs, ["a", "b", "c"])
    assert curves["c"]["fpr"] is None and curves["a"]["fpr"] is not None


def test_top_k_accuracy_with_many_classes():
    rng = np.random.default_rng(0)
    probs = rng.random((6, 6))
    probs /= probs.sum(axis=1, keepdims=True)
    y = np.array([0, 1, 2, 3, 4, 5])
    m = compute_metrics(y, probs, list("abcdef"))
    ranks = [(probs[i] > probs[i, y[i]]).sum() for i in range(6)]  # 0 = top-1
    assert m["top_k_accuracy"]["3"] == pytest.approx(np.mean([r < 3 for r in ranks]))
    assert m["top_k_accuracy"]["5"] == pytest.approx(np.mean([r < 5 for r in ranks]))
    assert m["accuracy"] == pytest.approx(np.mean([r == 0 for r in ranks]))


def test_float32_softmax_rows_are_accepted():
    import torch

    logits = torch.randn(20, 4, generator=torch.Generator().manual_seed(1))
    probs = torch.softmax(logits, dim=1).numpy()  # float32 rows sum to 1 only approximately
    y = np.arange(20) % 4
    m = compute_metrics(y, probs, ["w", "x", "y", "z"])
    assert math.isfinite(m["log_loss"]) and m["num_samples"] == 20


@pytest.mark.parametrize("y, probs, classes", [
    ([0, 1], np.ones((3, 2)) / 2, ["a", "b"]),          # rows != labels
    ([0, 1], np.ones((2, 3)) / 3, ["a", "b"]),          # columns != classes
    ([0, 2], np.ones((2, 2)) / 2, ["a", "b"]),          # label out of range
    ([0], np.ones((1, 1)), ["a"]),                      # one class
])
def test_bad_inputs_raise_a_clear_error(y, probs, classes):
    with pytest.raises(ConfigError):
        compute_metrics(y, probs, classes)
