"""Calibrated confidence: temperature scaling fitted on the validation split, ECE, reliability
diagram, and predict/serve applying the stored temperature."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import transferlab
from transferlab import runfolder
from transferlab.evaluation.calibration import (calibrated_probs, expected_calibration_error, fit_temperature,
                                                nll, reliability_bins)
from transferlab.predictor import Predictor
from transferlab.runtime import softmax


def _synthetic(n: int = 4000, classes: int = 10, seed: int = 0):
    """Logits whose labels are drawn from softmax(logits): calibrated at T = 1 by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, classes))
    p = calibrated_probs(logits)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return logits, labels


def test_over_confident_logits_get_a_temperature_above_one_that_lowers_nll_and_ece():
    logits, labels = _synthetic()
    sharp = 3.0 * logits  # the same model, three times too sure of itself
    t = fit_temperature(sharp, labels)
    assert t > 1 and t == pytest.approx(3.0, rel=0.1)
    before, after = calibrated_probs(sharp), calibrated_probs(sharp, t)
    assert nll(after, labels) < nll(before, labels)
    assert expected_calibration_error(after, labels) < expected_calibration_error(before, labels) / 3
    assert (after.argmax(1) == before.argmax(1)).all()  # scaling never changes the predicted class


def test_calibrated_logits_keep_a_temperature_of_about_one():
    logits, labels = _synthetic(seed=1)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.06)
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, int)) == 1.0


def test_a_validation_split_without_mistakes_keeps_a_temperature_of_one():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5]])
    # every image right: the NLL only falls as T -> 0, which would make the next mistake near-certain
    assert fit_temperature(logits, [0, 1, 2]) == 1.0
    assert fit_temperature(logits, [0, 1, 0]) != 1.0  # one mistake: fitted


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    labels = [0, 1, 0, 1]
    # 4 bins: (0.75, 1] holds 0.9 (right) and 0.8 (wrong): |0.5 - 0.85| = 0.35 for 2 of 4 images;
    # (0.5, 0.75] holds 0.6 and 0.7 (both right): |1 - 0.65| = 0.35 for the other 2
    assert expected_calibration_error(probs, labels, bins=4) == pytest.approx(0.35)
    bins = reliability_bins(probs, labels, bins=4)
    assert bins["count"] == [0, 0, 2, 2] and bins["accuracy"][:2] == [None, None]
    assert bins["confidence"][2:] == pytest.approx([0.65, 0.85]) and bins["accuracy"][2:] == [1.0, 0.5]
    # a confidence on a bin edge belongs to the bin below it (bins are (lower, upper])
    assert reliability_bins([[0.75, 0.25]], [0], bins=4)["count"] == [0, 0, 1, 0]
    # with views (test-time augmentation) the probabilities of the views are averaged
    two = calibrated_probs(np.array([[[2.0, 0.0], [0.0, 2.0]]]))
    assert two == pytest.approx(np.array([[0.5, 0.5]]))


@pytest.fixture(scope="module")
def tt_data(digits_dir, tmp_path_factory):
    """The digits on a train/test layout: 22 train (of which 20% validation) and 8 test images per class."""
    data = tmp_path_factory.mktemp("tt") / "digits"
    for cls_dir in sorted(p for p in digits_dir.iterdir() if p.is_dir()):
        files = sorted(cls_dir.glob("*.png"))
        for part, chunk in (("train", files[:22]), ("test", files[22:])):
            (data / part / cls_dir.name).mkdir(parents=True)
            for f in chunk:
                shutil.copy(f, data / part / cls_dir.name / f.name)
    return data


@pytest.fixture(scope="module")
def run_dir(tt_data, tmp_path_factory):
    run = transferlab.train(tt_data, model="cnn_base", epochs=2, input_size=32, batch_size=32,
                            run_dir=str(tmp_path_factory.mktemp("runs")), progress=False)
    return run.dir


def _set_temperature(run_dir, t: float) -> None:
    info = json.loads(runfolder.calibration_path(run_dir).read_text())
    runfolder.write_calibration(run_dir, {**info, "temperature": t})


def test_evaluate_fits_on_val_and_reuses_it_on_test(run_dir):
    m = transferlab.evaluate(run_dir, progress=False, gradcam=0, mistakes=0)
    stored = json.loads(runfolder.calibration_path(run_dir).read_text())
    assert stored["fitted_on"] == "val" and stored["images"] == 40 and stored["temperature"] > 0
    assert stored["checkpoint"] == "best.safetensors" and stored["nll_after"] <= stored["nll_before"] + 1e-9
    cal = m["calibration"]
    assert cal["temperature"] == pytest.approx(stored["temperature"]) and cal["fitted_on"] == "val"
    assert cal["ece_before"] == pytest.approx(stored["ece_before"]) and cal["ece_after"] == pytest.approx(stored["ece_after"])
    saved = json.loads((run_dir / "eval-val" / "metrics.json").read_text())
    assert set(saved["calibration"]) >= {"temperature", "fitted_on", "ece_before", "ece_after"}
    assert saved["plots"]["reliability"] == "reliability.png"
    assert (run_dir / "eval-val" / "reliability.png").read_bytes()[:4] == b"\x89PNG"

    # the test split uses the stored temperature: never fitted on the test labels
    _set_temperature(run_dir, 2.5)
    t = transferlab.evaluate(run_dir, split="test", plots=False, progress=False)
    assert t["calibration"]["temperature"] == 2.5 and t["calibration"]["fitted_on"] == "val"
    assert json.loads(runfolder.calibration_path(run_dir).read_text())["temperature"] == 2.5
    assert t["calibration"]["ece_before"] == pytest.approx(expected_calibration_error(
        _csv_probs(run_dir / "eval-test"), _csv_labels(run_dir / "eval-test")), abs=1e-4)

    # no calibration yet (or one for another checkpoint): fitted on the validation split first
    info = json.loads(runfolder.calibration_path(run_dir).read_text())
    runfolder.write_calibration(run_dir, {**info, "sha256": "0" * 64})
    assert runfolder.read_calibration(run_dir) is None
    t = transferlab.evaluate(run_dir, split="test", plots=False, progress=False)
    refit = json.loads(runfolder.calibration_path(run_dir).read_text())
    assert refit["fitted_on"] == "val" and refit["images"] == 40
    assert refit["temperature"] == pytest.approx(stored["temperature"], rel=1e-6)
    assert t["calibration"]["temperature"] == pytest.approx(stored["temperature"], rel=1e-6)


def _csv_probs(ev):
    import csv

    with (ev / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(v) for k, v in r.items() if k.startswith("prob_")] for r in rows])


def _csv_labels(ev):
    import csv

    with (ev / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    classes = [k[len("prob_"):] for k in rows[0] if k.startswith("prob_")]
    return np.array([classes.index(r["true"]) for r in rows])


def test_predict_returns_softmax_of_logits_over_the_stored_temperature(run_dir, tt_data):
    if runfolder.read_calibration(run_dir) is None:
        transferlab.evaluate(run_dir, plots=False, progress=False)
    _set_temperature(run_dir, 2.5)
    batch = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    for backend in ("torch", "onnx"):
        if backend == "onnx":
            transferlab.export(run_dir, format="onnx")
        p = Predictor(run_dir, backend=backend)
        assert p.temperature == 2.5 and p.info["temperature"] == 2.5 and p.info["calibrated_on"] == "val"
        logits = p.logits(batch)
        assert p.predict_arrays(batch) == pytest.approx(softmax(logits / 2.5), abs=1e-6)
        mirrored = p.logits(np.ascontiguousarray(batch[..., ::-1]))
        assert p.predict_arrays(batch, tta=True) == pytest.approx(
            calibrated_probs(np.stack([logits, mirrored], axis=1), 2.5), abs=1e-5)
        raw = Predictor(run_dir, backend=backend, calibrate=False)
        assert raw.temperature == 1.0 and raw.predict_arrays(batch) == pytest.approx(softmax(logits), abs=1e-6)

    # files through predict(): the top probability is that of softmax(logits / T)
    files = sorted(str(f) for f in (tt_data / "test" / "3").glob("*.png"))[:3]
    rows = transferlab.predict(run_dir, files, topk=1, progress=False)
    p = Predictor(run_dir)
    expected = softmax(p.logits(np.stack([p.preprocess.load(f) for f in files])) / 2.5).max(axis=1)
    assert [r["prob"] for r in rows] == pytest.approx(expected.tolist(), abs=1e-6)

    # a calibration fitted on another checkpoint is not applied
    info = json.loads(runfolder.calibration_path(run_dir).read_text())
    runfolder.write_calibration(run_dir, {**info, "sha256": "0" * 64})
    assert Predictor(run_dir).temperature == 1.0



def test_cli_predict_and_serve_say_and_apply_the_temperature(run_dir, tt_data, capsys):
    from fastapi.testclient import TestClient

    from transferlab.cli import main
    from transferlab.serve import create_app

    transferlab.evaluate(run_dir, plots=False, progress=False)  # fits (again) for the current checkpoint
    _set_temperature(run_dir, 3.0)
    files = sorted(str(f) for f in (tt_data / "test" / "5").glob("*.png"))[:2]
    probs = {}
    for flag in ([], ["--no-calibration"]):
        capsys.readouterr()
        assert main(["predict", str(run_dir), *files, "--format", "json", "--topk", "10", "--no-progress", *flag]) == 0
        rows = json.loads(capsys.readouterr().out)
        probs[bool(flag)] = np.array([[t["prob"] for t in sorted(r["top"], key=lambda t: t["index"])] for r in rows])
    # softmax(z / 3) is softmax(z) ** (1/3), renormalised
    raw = probs[True] ** (1 / 3)
    assert probs[False] == pytest.approx(raw / raw.sum(1, keepdims=True), abs=1e-5)
    with TestClient(create_app(run_dir)) as client:
        info = client.get("/model").json()
    assert info["temperature"] == 3.0 and info["calibrated_on"] == "val"


def test_evaluate_tta_averages_the_probabilities_of_each_image_and_its_mirror(run_dir, tmp_path):
    """evaluate collects logits per view: with --tta its probabilities are predict's mirrored average."""
    import csv

    m = transferlab.evaluate(run_dir, tta=True, plots=False, progress=False, out=tmp_path / "tta")
    with (tmp_path / "tta" / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    got = _csv_probs(tmp_path / "tta")
    p = Predictor(run_dir, backend="torch", calibrate=False)
    want = p.predict_arrays(np.stack([p.preprocess.load(r["path"]) for r in rows]), tta=True)
    assert got == pytest.approx(want, abs=1e-4)
    assert m["tta"] and m["calibration"]["fitted_on"] == "val" and m["calibration"]["ece_after"] is not None
