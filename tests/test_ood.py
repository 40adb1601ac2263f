""""None of these": the score and threshold functions, the rule evaluate chooses on the validation
split, evaluate --ood, and predict / serve / the export answering "unknown"."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from scipy.special import logsumexp
from sklearn.metrics import roc_auc_score

import transferlab
from transferlab import ood, runfolder
from transferlab.evaluation.calibration import calibrated_probs
from transferlab.predictor import Predictor


# -- arrays -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 7, 20, 101, 1000])
@pytest.mark.parametrize("rate", [0.5, 0.9, 0.95, 0.99, 1.0])
def test_the_threshold_accepts_at_least_the_rate_and_is_the_highest_that_does(n, rate):
    scores = np.random.default_rng(n).uniform(size=n)
    rule = ood.fit_rejection(scores, rate)
    accepted = scores >= rule["threshold"]
    assert accepted.mean() >= rate - 1e-12
    higher = scores[scores > rule["threshold"]]
    if len(higher):  # any higher threshold (the next score up) accepts too few
        assert (scores >= higher.min()).mean() < rate
    assert rule["score"] == "max_prob" and rule["images"] == n and len(rule["quantiles"]) == ood.QUANTILES


def test_ties_are_all_accepted_and_other_rates_come_from_the_quantiles():
    scores = np.array([0.2] * 10 + [0.9] * 90)
    rule = ood.fit_rejection(scores, 0.95)
    assert rule["threshold"] == 0.2 and (scores >= rule["threshold"]).all()
    assert ood.threshold_for(rule, 0.95) == 0.2
    uniform = ood.fit_rejection(np.linspace(0, 1, 1001), 0.95)
    assert ood.threshold_for(uniform, 0.8) == pytest.approx(0.2, abs=1e-3)
    assert ood.threshold_for(uniform, 1.0) == pytest.approx(0.0)


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "x", None, float("nan")])
def test_a_bad_accept_rate_is_refused(bad):
    with pytest.raises(ValueError, match="accept rate"):
        ood.check_accept_rate(bad)
    with pytest.raises(ValueError):
        ood.fit_rejection([0.5, 0.6], bad)


def test_scores_against_scipy():
    logits = np.random.default_rng(0).normal(scale=3, size=(50, 6))
    assert ood.energy_scores(logits, 2.0) == pytest.approx(2.0 * logsumexp(logits / 2.0, axis=1))
    views = np.stack([logits, logits[::-1]], axis=1)  # [N, 2, C]: the views' energies averaged
    assert ood.energy_scores(views) == pytest.approx((logsumexp(logits, 1) + logsumexp(logits[::-1], 1)) / 2)
    probs = calibrated_probs(logits, 1.5)
    assert ood.max_prob_scores(probs) == pytest.approx(probs.max(1))
    with pytest.raises(ValueError, match="unknown score"):
        ood.fit_rejection([0.5], score="mahalanobis")


# -- a trained run ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(digits_dir, tmp_path_factory):
    run = transferlab.train(digits_dir, model="cnn_base", epochs=3, input_size=32, batch_size=32,
                            run_dir=str(tmp_path_factory.mktemp("runs")), progress=False)
    return run.dir


@pytest.fixture(scope="module")
def strangers(tmp_path_factory):
    """Photos of none of the digits: colour noise and flat colours, plus one unreadable file."""
    d = tmp_path_factory.mktemp("strangers")
    rng = np.random.default_rng(0)
    for i in range(12):
        px = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) if i % 2 else np.full((32, 32, 3), 20 * i, np.uint8)
        Image.fromarray(px).save(d / f"s{i}.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return d


def test_evaluate_chooses_the_threshold_on_val_and_reports_the_ood_photos(run_dir, strangers):
    val = transferlab.evaluate(run_dir, plots=False, progress=False)
    stored = runfolder.read_calibration(run_dir)
    rule = stored["rejection"]
    assert rule["score"] == "max_prob" and rule["accept_rate"] == 0.95 and rule["images"] == 60  # 6 of 30 per digit
    assert val["rejection"]["threshold"] == rule["threshold"] and val["rejection"]["accepted"] >= 0.95
    # the same figure from predictions.csv's (uncalibrated) probabilities and the stored temperature
    import csv

    with (run_dir / "eval-val" / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    raw = np.array([[float(v) for k, v in r.items() if k.startswith("prob_")] for r in rows])
    cal = calibrated_probs(np.log(np.clip(raw, 1e-30, None)), stored["temperature"])
    assert val["rejection"]["accepted"] == pytest.approx((cal.max(1) >= rule["threshold"] - 1e-6).mean())

    m = transferlab.evaluate(run_dir, split="all", plots=False, progress=False, ood=strangers, accept_rate=0.9,
                             out=run_dir / "eval-ood")
    o = m["ood"]
    assert o["images"] == 12 and o["unreadable"] == 1 and set(o["auroc"]) == {"max_prob", "energy"}
    assert all(0.0 <= v <= 1.0 for v in o["auroc"].values()) and 0.0 <= o["rejected"] <= 1.0
    assert o["accept_rate"] == 0.9 and o["threshold"] == pytest.approx(ood.threshold_for(rule, 0.9))
    assert m["rejection"]["accept_rate"] == 0.9 and o["in_accepted"] == m["rejection"]["accepted"]
    assert runfolder.read_calibration(run_dir)["rejection"]["accept_rate"] == 0.95  # the stored rule is kept
    # the AUROC is scikit-learn's over this split's scores and the strangers'
    p = Predictor(run_dir, backend="torch")
    images = [str(f) for f in sorted(strangers.glob("s*.png"))]
    out_scores = p.predict_arrays(np.stack([p.preprocess.load(f) for f in images])).max(1)
    in_probs = p.predict_arrays(np.stack([p.preprocess.load(path) for path in _all(run_dir)]))
    truth = np.r_[np.ones(len(in_probs)), np.zeros(len(out_scores))]
    assert o["auroc"]["max_prob"] == pytest.approx(roc_auc_score(truth, np.r_[in_probs.max(1), out_scores]), abs=1e-3)
    assert o["rejected"] == pytest.approx((out_scores < o["threshold"]).mean())


def _all(run_dir):
    import csv

    with (run_dir / "eval-ood" / "predictions.csv").open() as f:
        return [r["path"] for r in csv.DictReader(f)]


def test_predict_answers_unknown_below_the_threshold(run_dir, digits_dir):
    if not (runfolder.read_calibration(run_dir) or {}).get("rejection"):
        transferlab.evaluate(run_dir, plots=False, progress=False)
    files = sorted(str(f) for f in (digits_dir / "4").glob("*.png"))[:6]
    strict = transferlab.predict(run_dir, files, topk=2, progress=False, accept_rate=0.01)   # almost nothing accepted
    loose = transferlab.predict(run_dir, files, topk=2, progress=False, accept_rate=1.0)
    never = transferlab.predict(run_dir, files, topk=2, progress=False, reject=False)
    p = Predictor(run_dir, accept_rate=0.01)
    for s, lo, nv in zip(strict, loose, never):
        assert s["score"] == pytest.approx(s["prob"]) and s["unknown"] == (s["score"] < p.rejection["threshold"])
        assert s["label"] == ("unknown" if s["unknown"] else s["top"][0]["class"])
        assert not nv["unknown"] and nv["label"] == nv["top"][0]["class"]
    assert sum(r["unknown"] for r in strict) >= 4 and sum(r["unknown"] for r in loose) <= 1
    assert p.info["rejection"]["accept_rate"] == 0.01
    assert Predictor(run_dir, reject=False).rejection is None


def test_the_export_carries_the_rule_to_a_folder_shipped_alone(run_dir, digits_dir, tmp_path):
    transferlab.evaluate(run_dir, plots=False, progress=False)
    transferlab.export(run_dir, format="onnx")
    meta = json.loads((run_dir / "export" / "model.json").read_text())
    stored = runfolder.read_calibration(run_dir)
    assert meta["calibration"]["temperature"] == stored["temperature"]
    assert meta["calibration"]["rejection"]["threshold"] == stored["rejection"]["threshold"]
    alone = tmp_path / "shipped"
    shutil.copytree(run_dir / "export", alone / "export")
    p = Predictor(alone, backend="onnx")
    assert p.temperature == stored["temperature"] and p.rejection["threshold"] == stored["rejection"]["threshold"]
    assert Predictor(alone, backend="onnx", calibrate=False).rejection is None


def test_serve_and_the_cli_answer_unknown(run_dir, digits_dir, strangers, capsys):
    from fastapi.testclient import TestClient

    from transferlab.cli import main
    from transferlab.serve import create_app

    transferlab.evaluate(run_dir, plots=False, progress=False)
    strict = Predictor(run_dir, accept_rate=0.01)
    files = sorted((digits_dir / "7").glob("*.png"))[:3]
    with TestClient(create_app(run_dir, predictor=strict)) as client:
        body = client.post("/predict", files=[("files", (f.name, f.read_bytes(), "image/png")) for f in files]).json()
        info = client.get("/model").json()
    rows = body["predictions"]
    assert all(set(r) >= {"label", "prob", "top", "score", "unknown"} for r in rows)
    assert all(r["label"] == ("unknown" if r["unknown"] else r["top"][0]["class"]) for r in rows)
    assert any(r["unknown"] for r in rows) and info["rejection"]["accept_rate"] == 0.01
    with TestClient(create_app(run_dir, reject=False)) as client:
        rows = client.post("/predict", files=[("files", (f.name, f.read_bytes(), "image/png")) for f in files]).json()
    assert not any(r["unknown"] for r in rows["predictions"])

    capsys.readouterr()
    assert main(["predict", str(run_dir), *map(str, files), "--accept-rate", "0.01", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "unknown" in out.out and " unknown" in out.err
    assert main(["evaluate", str(run_dir), "--ood", str(strangers / "nowhere"), "--no-progress"]) == 2
    assert "--ood" in capsys.readouterr().err
    assert main(["evaluate", str(run_dir), "--accept-rate", "1.5", "--no-progress"]) == 2
    assert "accept rate" in capsys.readouterr().err
    assert main(["predict", str(run_dir), str(files[0]), "--accept-rate", "0"]) == 2
    assert "accept rate" in capsys.readouterr().err
