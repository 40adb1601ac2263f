"""Distillation: the loss, soft targets through every training input path, the teacher's cached
probabilities, and ``transferlab distill`` end to end on the digits."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import transferlab
from transferlab import distillation as distill_mod
from transferlab import runfolder
from transferlab.cli import main
from transferlab.data import ImageDataset, data_config, load_data
from transferlab.data.batches import CachedBatches
from transferlab.data.dataset import hard_labels, soft_target_rows
from transferlab.predictor import Predictor
from transferlab.training import train
from transferlab.training.features import FeatureViews
from transferlab.training.losses import Distillation, DistillationLoss


def test_the_loss_is_hintons_kl_at_temperature_plus_the_hard_loss():
    torch.manual_seed(0)
    logits, teacher_logits = torch.randn(5, 4), torch.randn(5, 4)
    labels = torch.tensor([0, 1, 2, 3, 1])
    probs = torch.softmax(teacher_logits, 1)
    y = soft_target_rows(labels, probs.numpy())
    t, a = 3.0, 0.7
    # by hand: the teacher softened at T is softmax(z / T); KL(q || p) = sum q (log q - log p)
    q = torch.softmax(teacher_logits / t, 1)
    p = torch.log_softmax(logits / t, 1)
    kl = (q * (q.log() - p)).sum(1).mean()
    expected = a * t * t * kl + (1 - a) * F.cross_entropy(logits, labels)
    assert float(DistillationLoss(t, a)(logits, y)) == pytest.approx(float(expected), rel=1e-5)
    # alpha 0: the hard loss alone (here with label smoothing, the run's own criterion)
    hard = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    assert float(DistillationLoss(t, 0.0, hard=hard)(logits, y)) == pytest.approx(float(hard(logits, labels)))
    # plain class labels (validation batches) take the hard loss
    assert float(DistillationLoss(t, a)(logits, labels)) == pytest.approx(float(F.cross_entropy(logits, labels)))
    # a student that copies the teacher has no soft loss, at any temperature
    assert float(DistillationLoss(2.0, 1.0)(teacher_logits, y)) == pytest.approx(0.0, abs=1e-6)
    for bad in ({"temperature": 0.0}, {"alpha": 1.5}):
        with pytest.raises(ValueError):
            DistillationLoss(**bad)


def test_packed_rows_carry_the_class_and_the_distribution():
    rows = soft_target_rows(torch.tensor([2, 0]), np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]], np.float32))
    assert rows.shape == (2, 4) and hard_labels(rows).tolist() == [2, 0]
    assert rows[:, 1:].numpy() == pytest.approx(np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]]))
    assert hard_labels(torch.tensor([3, 1])).tolist() == [3, 1]


@pytest.fixture(scope="module")
def splits(digits_dir):
    return load_data(digits_dir, val_ratio=0.2, seed=0, progress=False)


def _shifted(splits) -> np.ndarray:
    """A 'teacher' that is sure every image is the next class: (label + 1) % 10."""
    labels = np.array([y for _, y in splits.train])
    return np.eye(10, dtype=np.float32)[(labels + 1) % 10]


def test_soft_targets_reach_the_batches_of_every_input_path(splits, tmp_path):
    cfg = data_config(32, (0.5,) * 3, (0.25,) * 3)
    probs = _shifted(splits)
    plain = ImageDataset(splits.train, cfg, soft_targets=probs)
    x, y = plain[3]
    assert y.shape == (11,) and int(y[0]) == splits.train[3][1] and int(y[1:].argmax()) == (splits.train[3][1] + 1) % 10
    cached = ImageDataset(splits.train, cfg, cache_dir=tmp_path, soft_targets=probs, progress=False)
    _, yb = next(iter(CachedBatches(cached, [(1, i) for i in (5, 0, 7)], batch_size=3)))
    assert hard_labels(yb).tolist() == [splits.train[i][1] for i in (5, 0, 7)]
    assert yb[:, 1:].numpy() == pytest.approx(probs[[5, 0, 7]])
    views = FeatureViews([torch.randn(len(splits.train), 4)], torch.as_tensor(cached.targets), targets=cached)
    got = views.__getitems__([(1, 2), (1, 9)])
    assert [int(r[0]) for _, r in got] == [splits.train[2][1], splits.train[9][1]]
    assert torch.stack([r for _, r in got])[:, 1:].numpy() == pytest.approx(probs[[2, 9]])
    with pytest.raises(ValueError, match="soft target rows"):
        ImageDataset(splits.train, cfg, soft_targets=probs[:3])


@pytest.mark.parametrize("model, extra", [("cnn_bn", {}), ("efficientnet_lite0", {"pretrained": False})])
def test_the_student_learns_the_teachers_labels_not_the_folders(splits, tmp_path, model, extra):
    """alpha 1: only the teacher speaks. A teacher that names the next class is what the student
    learns on images (cnn_bn) and on cached frozen-backbone features (efficientnet_lite0, frozen)."""
    run = train(splits, model=model, epochs=12, batch_size=16, input_size=32, lr=0.01 if model == "cnn_bn" else 0.05,
                run_dir=tmp_path, progress=False, augment="none", early_stopping=None,
                distillation=Distillation(_shifted(splits), temperature=1.0, alpha=1.0, record={"teacher": "t"}),
                **extra)
    model_, _ = run.load_model("last")
    images = ImageDataset(splits.train, dict(model_.data_cfg))
    with torch.no_grad():
        pred = torch.cat([model_(x).argmax(1) for x, _ in torch.utils.data.DataLoader(images, batch_size=64)]).numpy()
    labels = np.array([y for _, y in splits.train])
    assert np.mean(pred == (labels + 1) % 10) > 0.6 > np.mean(pred == labels)
    assert run.config["distillation"] == {"teacher": "t"}
    assert run.history[-1]["train_acc"] < 0.4  # counted against the true labels


@pytest.fixture(scope="module")
def teacher(digits_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    return train(digits_dir, model="cnn_bn", epochs=3, input_size=32, run_dir=root, progress=False).dir


def test_teacher_probabilities_are_the_predictors_and_are_computed_once(teacher, splits, tmp_path, monkeypatch):
    predictor = Predictor(teacher, reject=False)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    samples = splits.train[:20] + [(str(bad), 4)]
    rows, summary = distill_mod.teacher_probabilities(predictor, samples, cache_dir=tmp_path / "c", progress=False)
    expected = predictor.predict_arrays(np.stack([predictor.preprocess.load(p) for p, _ in samples[:20]]))
    got = rows.take(np.arange(21))
    assert got[:20] == pytest.approx(expected, abs=1e-6) and got[20].tolist() == np.eye(10)[4].tolist()
    assert summary["unreadable"] == 1 and summary["images"] == 21
    assert summary["agreement"] == pytest.approx(np.mean(expected.argmax(1) == [y for _, y in samples[:20]]))
    monkeypatch.setattr(predictor, "predict_arrays", lambda *a, **k: pytest.fail("the teacher ran twice"))
    again, _ = distill_mod.teacher_probabilities(predictor, samples, cache_dir=tmp_path / "c", progress=False)
    assert again.path == rows.path
    # another teacher setting (TTA) is another file
    monkeypatch.undo()
    tta, _ = distill_mod.teacher_probabilities(predictor, samples, tta=True, cache_dir=tmp_path / "c", progress=False)
    assert tta.path != rows.path


def test_distill_trains_a_student_on_the_teachers_split(teacher, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))
    run = transferlab.distill(teacher, student="cnn_base", epochs=2, input_size=32, run_dir=tmp_path / "runs",
                              progress=False, temperature=2.0, alpha=0.5)
    assert run.dir == tmp_path / "runs" / "cnn_base-distilled"
    record = run.config["distillation"]
    assert record["teacher"] == str(teacher) and record["temperature"] == 2.0 and record["alpha"] == 0.5
    assert record["images"] == run.config["split_counts"]["train"]
    teacher_cfg = runfolder.read_config(teacher)
    # the teacher's split: the student validates on the images the teacher did not train on
    assert (run.config["val_ratio"], run.config["split_seed"]) == (teacher_cfg["val_ratio"], teacher_cfg["split_seed"])
    assert run.config["split_counts"] == teacher_cfg["split_counts"]
    metrics = transferlab.evaluate(run, progress=False)
    assert 0.0 <= metrics["accuracy"] <= 1.0


def test_the_cli_distills_and_says_bad_values_in_one_line(teacher, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))
    code = main(["distill", str(teacher), "--student", "cnn_base", "--epochs", "1", "--input-size", "32",
                 "--run-dir", str(tmp_path / "r"), "--no-progress", "--alpha", "0.8"])
    out = capsys.readouterr().out
    assert code == 0 and "student:" in out and "transferlab evaluate" in out
    config = json.loads((tmp_path / "r" / "cnn_base-distilled" / "config.json").read_text())
    assert config["model"] == "cnn_base" and config["distillation"]["alpha"] == 0.8
    for argv, message in (([str(tmp_path / "nope")], "run not found"),
                          ([str(teacher), "--alpha", "2"], "--alpha must be"),
                          ([str(teacher), "--temperature", "0"], "--temperature must be")):
        assert main(["distill", *argv, "--no-progress"]) != 0
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_a_teacher_of_other_classes_is_refused(teacher, tmp_path):
    from transferlab.data.sample import write_digits
    from transferlab.errors import ConfigError

    other = write_digits(tmp_path / "d", per_class=6, size=32)
    (other / "9").rename(other / "nine")
    with pytest.raises(ConfigError, match="teacher's classes"):
        transferlab.distill(teacher, other, student="cnn_base", epochs=1, run_dir=tmp_path, progress=False)
