"""Imbalanced classes: ``--sampler balanced``, ``--loss focal``, and the evaluation's headline
(macro F1 and balanced accuracy) when the training classes are imbalanced."""
from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from transferlab.cli import main
from transferlab.errors import ConfigError
from transferlab.evaluation.metrics import headline
from transferlab.training import Callback, train
from transferlab.training.config import TrainConfig
from transferlab.training.distributed import DistInfo
from transferlab.training.features import FeatureViews
from transferlab.training.losses import FocalLoss, make_criterion
from transferlab.training.sampling import BalancedSampler, train_loader

FAST = dict(input_size=32, batch_size=32, progress=False, cache=True)
LABELS = [0] * 400 + [1] * 20  # 20:1


def drawn_classes(keys, labels=LABELS) -> Counter:
    return Counter(labels[i] for _, i in keys)


def test_balanced_sampler_draws_classes_about_equally_and_reproducibly():
    s = BalancedSampler(LABELS, seed=3)
    s.set_epoch(4)
    first = list(s)
    assert len(first) == len(s) == len(LABELS)  # as many draws per epoch as images
    assert all(epoch == 4 for epoch, _ in first)
    counts = drawn_classes(first)
    assert abs(counts[1] - 210) < 50, counts  # a fair coin per draw: sd ~10 draws
    again = BalancedSampler(LABELS, seed=3)
    again.set_epoch(4)
    assert list(again) == first  # a function of (seed, epoch) alone: the same after --resume
    again.set_epoch(5)
    assert list(again) != first
    other = BalancedSampler(LABELS, seed=4)
    other.set_epoch(4)
    assert list(other) != first
    # many epochs: the rare class's images are all drawn, each about 10 times per epoch
    seen = Counter(i for e in range(1, 11) for _, i in (s.set_epoch(e), list(s))[1])
    assert set(range(400, 420)) <= set(seen)


def test_balanced_sampler_on_cached_features_and_per_rank_shard():
    labels = torch.as_tensor(LABELS)
    feats = FeatureViews([torch.randn(len(LABELS), 3)], labels)
    loader = train_loader(feats, batch_size=64, seed=0, dist=DistInfo(), seeded=False, workers=0, sampler="balanced")
    assert isinstance(loader.sampler, BalancedSampler)
    loader.sampler.set_epoch(1)
    ys = torch.cat([y for _, y in loader])
    assert len(ys) == len(LABELS)
    assert abs(int((ys == 1).sum()) - 210) < 50
    # the default keeps the plain shuffle: each image once
    plain = train_loader(feats, batch_size=64, seed=0, dist=DistInfo(), seeded=False, workers=0)
    assert sorted(i for _, i in plain.sampler) == list(range(len(LABELS)))
    # under DDP: this rank's shard, padded to the ranks' common number of steps
    shard = FeatureViews([torch.randn(len(LABELS) // 2, 3)], labels[::2], shard_total=len(LABELS) + 1)
    ranked = train_loader(shard, batch_size=64, seed=0, dist=DistInfo(world_size=2, rank=0), seeded=False, workers=0,
                          sampler="balanced")
    assert len(ranked.sampler) == math.ceil((len(LABELS) + 1) / 2)


def test_focal_loss_is_cross_entropy_at_gamma_zero_and_smaller_when_well_classified():
    torch.manual_seed(0)
    x, y = torch.randn(16, 5), torch.randint(0, 5, (16,))
    w = torch.rand(5) + 0.1
    for smoothing in (0.0, 0.1):
        assert torch.allclose(FocalLoss(0.0, label_smoothing=smoothing)(x, y),
                              F.cross_entropy(x, y, label_smoothing=smoothing), atol=1e-6)
        assert torch.allclose(FocalLoss(0.0, weight=w, label_smoothing=smoothing)(x, y),
                              F.cross_entropy(x, y, weight=w, label_smoothing=smoothing), atol=1e-6)
    confident = torch.tensor([[4.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    target = torch.tensor([0, 1])
    assert FocalLoss(2.0)(confident, target) < 0.01 * F.cross_entropy(confident, target)
    # by hand: logits (2, 0), class 0: p = e^2 / (e^2 + 1); loss = -(1 - p)^2 log p
    p = math.exp(2) / (math.exp(2) + 1)
    assert float(FocalLoss(2.0)(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))) == pytest.approx(
        -(1 - p) ** 2 * math.log(p), rel=1e-5)
    assert isinstance(make_criterion("ce"), torch.nn.CrossEntropyLoss)
    assert isinstance(make_criterion("focal", gamma=1.0), FocalLoss)


@pytest.fixture(scope="module")
def imbalanced(digits_dir):
    """The digits with classes 0-4 cut to 4 training images each (classes 5-9 keep 24): 6:1."""
    from transferlab.data import load_data

    splits = load_data(digits_dir, val_ratio=0.2, seed=0, progress=False)
    seen: Counter = Counter()
    train_samples = []
    for p, y in splits.train:
        seen[y] += 1
        if y >= 5 or seen[y] <= 4:
            train_samples.append((p, y))
    return dataclasses.replace(splits, train=train_samples)


def test_train_balanced_focal_records_options_and_evaluate_leads_with_macro_f1(imbalanced, tmp_path, capsys):
    run = train(imbalanced, model="cnn_base", epochs=2, sampler="balanced", loss="focal", focal_gamma=1.5,
                class_weights="auto", run_dir=tmp_path, **FAST)
    assert len(run.history) == 2 and all(math.isfinite(r["train_loss"]) for r in run.history)
    assert (run.config["sampler"], run.config["loss"], run.config["focal_gamma"]) == ("balanced", "focal", 1.5)
    counts = run.config["train_class_counts"]
    assert counts == [4] * 5 + [24] * 5

    rc = main(["evaluate", str(run.dir), "--no-plots", "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    metrics = json.loads((run.dir / "eval-val" / "metrics.json").read_text())
    from sklearn.metrics import balanced_accuracy_score

    import csv
    rows = list(csv.DictReader(open(run.dir / "eval-val" / "predictions.csv")))
    assert metrics["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score([r["true"] for r in rows], [r["predicted"] for r in rows]))
    assert metrics["train_imbalance_ratio"] == pytest.approx(6.0)
    lead = metrics["headline"]
    assert lead["metrics"] == ["macro_f1", "balanced_accuracy"]
    assert lead["macro_f1"] == metrics["macro_avg"]["f1"] and lead["balanced_accuracy"] == metrics["balanced_accuracy"]
    assert out.index("read these first") < out.index("│ macro F1") < out.index("│ accuracy")


class Kill(Callback):
    """A killed process: raises at the start of epoch ``at``."""

    def __init__(self, at):
        self.at = at

    def on_epoch_begin(self, trainer, epoch):
        if epoch == self.at:
            raise KeyboardInterrupt


def test_kill_and_resume_with_balanced_sampler_gives_the_uninterrupted_history(imbalanced, tmp_path):
    kw = dict(model="cnn_bn", epochs=3, augment="light", sampler="balanced", loss="focal", run_dir=tmp_path, **FAST)
    full = train(imbalanced, name="full", **kw)
    with pytest.raises(KeyboardInterrupt):
        train(imbalanced, name="killed", callbacks=[Kill(3)], **kw)
    resumed = train(imbalanced, name="killed", resume=True, **kw)
    strip = [[{k: v for k, v in r.items() if k != "seconds"} for r in h] for h in (resumed.history, full.history)]
    assert strip[0] == strip[1]


def test_balanced_sampler_trains_on_cached_features(imbalanced, tmp_path):
    run = train(imbalanced, model="mobilenet_v1_025_tf", pretrained=False, freeze="frozen", augment="none", epochs=1,
                sampler="balanced", run_dir=tmp_path, **FAST)
    assert "on cached features" in (run.dir / "train.log").read_text()
    assert run.config["sampler"] == "balanced" and run.config["loss"] == "ce"


def test_no_headline_for_balanced_training_classes():
    m = {"macro_avg": {"f1": 0.5}, "balanced_accuracy": 0.5}
    assert headline(m, [10, 10, 3]) is None  # 3.3x: accuracy still leads
    assert headline(m, None) is None
    assert headline(m, [10, 2])["imbalance_ratio"] == 5.0


@pytest.mark.parametrize("args, needle", [(["--sampler", "random"], "--sampler"), (["--loss", "hinge"], "--loss"),
                                          (["--focal-gamma", "-1"], "--focal-gamma"),
                                          (["--focal-gamma", "x"], "--focal-gamma")])
def test_bad_values_are_one_line_errors(digits_dir, tmp_path, capsys, args, needle):
    rc = main(["train", str(digits_dir), "--model", "cnn_base", "--run-dir", str(tmp_path), "--no-progress", *args])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and needle in err
    with pytest.raises(ConfigError):
        TrainConfig(sampler="random")
    assert np.isclose(TrainConfig().focal_gamma, 2.0) and TrainConfig().sampler == "shuffle" and TrainConfig().loss == "ce"


def test_torchrun_balanced_sampler_per_rank_shard(digits_dir, tmp_path):
    """Under DDP each rank balances its own shard (cached features in the head phase, images after)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("torchrun")
    launcher = [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFERLAB_CACHE": str(tmp_path / "cache")}
    runs = tmp_path / "runs"
    cmd = [*launcher, "--nproc_per_node", "2", "--standalone", "-m", "transferlab", "train", str(digits_dir),
           "--model", "cnn_base", "--freeze", "frozen", "--epochs", "1", "--fine-tune", "1", "--sampler", "balanced",
           "--loss", "focal", "--input-size", "32", "--batch-size", "16", "--run-dir", str(runs), "--name", "ddp",
           "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "on cached features" in proc.stdout and proc.stdout.count("epoch 2/2") == 1
    cfg = json.loads((runs / "ddp" / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["sampler"] == "balanced" and cfg["loss"] == "focal"
