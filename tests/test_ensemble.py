"""Ensembles: greedy selection on validation, the one-graph export, the leaderboard row, predict and serve."""
from __future__ import annotations

import json
from itertools import combinations_with_replacement

import numpy as np
import pytest
import torch

import transferlab
from transferlab import runfolder
from transferlab.comparison import ensemble
from transferlab.comparison.runner import compare
from transferlab.evaluation.calibration import nll
from transferlab.models import create_model
from transferlab.predictor import Predictor


def _noisy(labels, classes, strength, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(labels), classes))
    logits[np.arange(len(labels)), labels] += strength
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_greedy_selection_never_does_worse_than_the_best_model_and_matches_a_search():
    labels = np.random.default_rng(0).integers(0, 4, 300)
    probs = [_noisy(labels, 4, s, seed) for seed, s in enumerate((2.0, 2.0, 2.0, 0.2))]
    counts = ensemble.greedy_selection(probs, labels, rounds=3)
    avg = sum(c * p for c, p in zip(counts, probs)) / sum(counts)
    assert nll(avg, labels) <= min(nll(p, labels) for p in probs)
    assert sum(counts) <= 3 and counts[int(np.argmin([nll(p, labels) for p in probs]))] >= 1
    # independent errors: averaging helps, so more than one model is kept
    assert sum(1 for c in counts if c) >= 2
    # greedy is a heuristic; on this problem it is within 1% of the best multiset of 3 picks
    best = min(nll(sum(probs[i] for i in combo) / 3, labels)
               for combo in combinations_with_replacement(range(4), 3))
    assert nll(avg, labels) <= best * 1.01
    # one model far better than the rest: kept alone
    strong = [_noisy(labels, 4, 9.0, 9), probs[3]]
    assert ensemble.greedy_selection(strong, labels) == [1, 0]


def test_the_module_averages_the_members_calibrated_probabilities():
    torch.manual_seed(0)
    a, b = create_model("cnn_base", 3, input_size=32).eval(), create_model("cnn_base", 3, input_size=48).eval()
    cfgs = [{"input_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}, {"input_size": 48, "mean": [0.4] * 3, "std": [0.2] * 3}]
    module = ensemble.EnsembleModule([a, b], cfgs, [2.0, 0.5], [3, 1], input_size=48).eval()
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        got = torch.exp(module(x))
        small = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        pa = torch.softmax(a((small - 0.5) / 0.25) / 2.0, 1)
        pb = torch.softmax(b((x - 0.4) / 0.2) / 0.5, 1)
    assert got.numpy() == pytest.approx((0.75 * pa + 0.25 * pb).numpy(), abs=1e-6)
    # a member with test-time augmentation: its image's and mirror image's probabilities averaged
    tta = ensemble.EnsembleModule([a, b], cfgs, [2.0, 0.5], [3, 1], input_size=48, mirrors=[True, False]).eval()
    with torch.no_grad():
        pa_mirror = torch.softmax(a((small.flip(-1) - 0.5) / 0.25) / 2.0, 1)
        got = torch.exp(tta(x))
    assert got.numpy() == pytest.approx((0.75 * (pa + pa_mirror) / 2 + 0.25 * pb).numpy(), abs=1e-6)
    assert ensemble.ensemble_data_cfg(cfgs)["input_size"] == 48
    assert ensemble.ensemble_data_cfg(cfgs)["mean"] == [0.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def compared(digits_dir, tmp_path_factory):
    """Two recipes compared, with the selection forced to keep both (what it does when they help each other)."""
    out = tmp_path_factory.mktemp("cmp") / "cmp"
    real = ensemble.greedy_selection
    # the candidates come as (model, model with TTA) pairs: keep each model as it is
    ensemble.greedy_selection = lambda probs, labels, rounds=10: [1, 0] * (len(probs) // 2)
    try:
        rows = compare(digits_dir, models="cnn_base,cnn_bn", epochs=2, input_size=32, out=out, progress=False)
    finally:
        ensemble.greedy_selection = real
    return out, rows


def test_compare_adds_an_ensemble_row_evaluated_through_its_graph(compared, digits_dir):
    out, rows = compared
    by = {r["model"]: r for r in rows}
    assert set(by) == {"cnn_base", "cnn_bn", "ensemble"} and by["ensemble"]["status"] == "ok"
    ens = out / "runs" / "ensemble"
    meta = json.loads((ens / "export" / "model.json").read_text())
    assert [m["model"] for m in meta["members"]] == ["cnn_base", "cnn_bn"] and meta["exports"]["onnx"]["parity"]["ok"]
    assert meta["calibration"]["temperature"] > 0 and meta["calibration"]["rejection"]["accept_rate"] == 0.95
    metrics = json.loads((ens / "eval-val" / "metrics.json").read_text())
    assert metrics["num_samples"] == 60 and by["ensemble"]["ms_per_image"] > 0
    assert any("optimistic" in n for n in metrics["notes"])  # chosen and scored on val: said so
    assert by["ensemble"]["params"] == by["cnn_base"]["params"] + by["cnn_bn"]["params"]
    # the leaderboard's statistics treat it like a model (McNemar against the best, or the reference)
    assert by["ensemble"]["verdict"] is not None and by["ensemble"]["accuracy_ci_low"] is not None
    state = json.loads((out / "state.json").read_text())
    assert state["models"]["ensemble"]["members"] == {"cnn_base": 1, "cnn_bn": 1}
    # its accuracy is the one of its graph's predictions (predictions.csv), as predict gives them
    preds, _ = runfolder.read_predictions(ens, "val")
    assert metrics["accuracy"] == pytest.approx(np.mean([t == p for t, p in zip(preds["true"], preds["predicted"])]))
    files = preds["paths"][:8]
    rows = transferlab.predict(ens, files, topk=1, progress=False, reject=False, calibrate=False)
    assert [r["label"] for r in rows] == preds["predicted"][:8]


def test_the_ensemble_is_served_like_a_run(compared, digits_dir):
    from fastapi.testclient import TestClient

    from transferlab.serve import create_app

    out, _ = compared
    p = Predictor(out / "runs" / "ensemble")
    assert p.backend == "onnx" and p.temperature == json.loads(
        (out / "runs" / "ensemble" / "export" / "model.json").read_text())["calibration"]["temperature"]
    f = sorted((digits_dir / "1").glob("*.png"))[0]
    with TestClient(create_app(out / "runs" / "ensemble")) as client:
        body = client.post("/predict", files=[("files", (f.name, f.read_bytes(), "image/png"))]).json()
        info = client.get("/model").json()
    assert body["predictions"][0]["top"][0]["class"] in [str(i) for i in range(10)]
    assert info["recipe"].startswith("ensemble of cnn_base x1, cnn_bn x1")


def test_no_row_when_one_model_is_kept_or_when_asked(digits_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(ensemble, "greedy_selection", lambda probs, labels, rounds=10: [1] + [0] * (len(probs) - 1))
    rows = compare(digits_dir, models="cnn_base,cnn_bn", epochs=1, input_size=32, out=tmp_path / "a", progress=False)
    assert "ensemble" not in {r["model"] for r in rows} and not (tmp_path / "a" / "runs" / "ensemble").exists()
    called = []
    monkeypatch.setattr(ensemble, "build_ensemble", lambda *a, **k: called.append(1))
    rows = compare(digits_dir, models="cnn_base,cnn_bn", epochs=1, input_size=32, out=tmp_path / "a", progress=False,
                   ensemble=False)
    assert not called and "ensemble" not in {r["model"] for r in rows}


def test_evaluate_and_export_say_what_an_ensemble_folder_is(compared):
    from transferlab.errors import TransferlabError

    out, _ = compared
    for stage in (transferlab.evaluate, transferlab.export):
        with pytest.raises(TransferlabError, match="is an ensemble: it has no checkpoint"):
            stage(out / "runs" / "ensemble")


def test_run_serves_the_ensemble_when_it_wins_and_exports_the_best_model_for_other_formats(monkeypatch, tmp_path):
    from transferlab import pipeline

    calls = []
    monkeypatch.setattr(pipeline.export_stage, "export", lambda run, format, splits: calls.append((run, format))
                        or tmp_path / "model.pt")
    monkeypatch.setattr(pipeline, "log_export", lambda run, path: None)
    ranked = [{"model": "ensemble", "run_dir": str(tmp_path / "ensemble")}, {"model": "cnn_bn", "run_dir": "r/cnn_bn"}]
    best, path = pipeline._export_best(ranked, "onnx", None)
    assert best["model"] == "ensemble" and path == tmp_path / "ensemble" / "export" / "model.onnx" and not calls
    best, path = pipeline._export_best(ranked, "torchscript", None)
    assert best["model"] == "cnn_bn" and calls == [("r/cnn_bn", "torchscript")]


def test_a_member_with_test_time_augmentation_is_built_into_the_graph(compared, digits_dir, tmp_path, monkeypatch):
    out, _ = compared
    runs = {n: out / "runs" / n for n in ("cnn_base", "cnn_bn")}
    seen = []

    def pick(probs, labels, rounds=10):  # candidates: cnn_base, cnn_base+tta, cnn_bn, cnn_bn+tta
        seen.append(probs)
        return [0, 2, 1, 0]

    monkeypatch.setattr(ensemble, "greedy_selection", pick)
    splits = transferlab.load_data(digits_dir, progress=False)
    entry = ensemble.build_ensemble(runs, splits, tmp_path, "val")
    assert entry["members"] == {"cnn_base+tta": 2, "cnn_bn": 1}
    # the TTA candidate's probabilities are the mean of the image's and the mirror image's, calibrated
    model, meta = transferlab.Run.load(runs["cnn_base"]).load_model()
    t = json.loads((runs["cnn_base"] / "calibration.json").read_text())["temperature"]
    x = torch.stack([transferlab.data.ImageDataset(splits.val[:4], dict(meta["data_cfg"]))[i][0] for i in range(4)])
    with torch.no_grad():
        expected = (torch.softmax(model(x) / t, 1) + torch.softmax(model(x.flip(-1)) / t, 1)) / 2
    assert seen[0][1][:4] == pytest.approx(expected.numpy(), abs=1e-5)
    meta_json = json.loads((tmp_path / "ensemble" / "export" / "model.json").read_text())
    assert [(m["model"], m["tta"]) for m in meta_json["members"]] == [("cnn_base", True), ("cnn_bn", False)]
    assert meta_json["exports"]["onnx"]["parity"]["ok"] and "cnn_base+tta x2" in meta_json["recipe"]
