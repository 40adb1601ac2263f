"""The benchmark scripts' bookkeeping (no benchmark runs here): the summary table's keys and
bench_accuracy's merging of one protocol's rows into the results of the others."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_summary_prints_every_row_under_its_own_key(tmp_path, monkeypatch, capsys):
    summary = _load("summary")
    (tmp_path / "accuracy.json").write_text(json.dumps({"rows": [
        {"protocol": "cifar10", "model": "mobilenet_v2", "accuracy": 0.81},
        {"protocol": "cars", "model": "mobilenet_v2", "accuracy": 0.9},
        {"protocol": "cars", "model": "mobilenet_v2", "accuracy": 0.91},
        {"threads": 2}]}))
    monkeypatch.setattr(summary, "RESULTS", tmp_path)
    assert summary.main() == 0
    keys = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert len(keys) == len(set(keys)) == 3 * 3 + 1
    assert "rows[cifar10/mobilenet_v2].accuracy" in keys and "rows[cars/mobilenet_v2#2].accuracy" in keys
    assert "rows[3].threads" in keys


def test_bench_accuracy_one_protocol_keeps_the_others(tmp_path, monkeypatch):
    acc = _load("bench_accuracy")
    results = tmp_path / "accuracy.json"
    protocols = list(acc.PROTOCOLS)
    first, other = protocols[0], protocols[1]
    results.write_text(json.dumps({"protocols": {
        first: {"date": "2026-01-01", "quick": False, "rows": [{"protocol": first, "model": "old", "status": "ok",
                                                                 "accuracy": 0.5, "accuracy_tta": 0.5}]},
        other: {"date": "2026-01-01", "quick": False, "rows": [{"protocol": other, "model": "kept", "status": "ok",
                                                                 "accuracy": 0.7, "accuracy_tta": 0.7}]}}}))
    monkeypatch.setattr(acc, "RESULTS", results)
    row = {"model": "new", "accuracy": 0.99, "accuracy_tta": 0.99, "f1_macro": 0.9, "seed_accuracy": 0.5,
           "beats_seed": True, "train_seconds": 1.0, "train_images_per_s": 10.0, "status": "ok"}
    monkeypatch.setattr(acc, "run_protocol", lambda protocol, quick, work: ([{"protocol": protocol, **row}], 12.0))
    assert acc.main(["--protocol", first, "--quick", "--work", str(tmp_path / "w")]) == 0
    saved = json.loads(results.read_text())["protocols"]
    assert list(saved) == [first, other]                                    # the protocols' own order
    assert [r["model"] for r in saved[first]["rows"]] == ["new"]
    assert saved[first]["quick"] is True and saved[first]["date"] != "2026-01-01"  # when each was measured
    assert saved[first]["target_met"] is True and saved[first]["within_30_min"] is True
    assert saved[other]["rows"][0]["model"] == "kept" and saved[other]["date"] == "2026-01-01"
