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


def test_bench_peers_compares_time_to_the_accuracy_both_reach():
    """The plain script's time is read off its per-epoch curve at the first epoch reaching the
    accuracy both tools reach; 'ahead' needs accuracy >= the peer's at no more wall time."""
    peers = _load("bench_peers")
    plain = {"status": "ok", "tool": "plain PyTorch", "what": "loop", "test_accuracy": 0.80, "wall_s": 300.0,
             "cpu_s": 500.0, "peak_rss_mb": 1000,
             "curve": [{"epoch": 1, "train_s": 100.0, "train_cpu_s": 150.0, "test_accuracy": 0.70},
                       {"epoch": 2, "train_s": 200.0, "train_cpu_s": 300.0, "test_accuracy": 0.78},
                       {"epoch": 3, "train_s": 300.0, "train_cpu_s": 450.0, "test_accuracy": 0.80}]}
    tl = {"status": "ok", "tool": "transferlab", "what": "transferlab train --model mobilenet_v2", "test_accuracy": 0.75,
          "wall_s": 90.0, "cpu_s": 120.0, "peak_rss_mb": 1500, "train_s": 70.0, "train_cpu_s": 90.0,
          "eval_s": 10.0, "eval_cpu_s": 10.0}
    rows = {r["comparison"]: r for r in peers.compare({"plain_cars": plain, "tl_frozen_cars": tl,
                                                       "plain_cifar": plain, "tl_frozen30_cifar": {**tl, "test_accuracy": 0.81}})}
    frozen = next(r for r in rows.values() if r["transferlab"] == "tl_frozen_cars")
    assert frozen["target_accuracy"] == 0.75 and frozen["peer_time_to_target_s"] == 200.0   # epoch 2: 0.78 >= 0.75
    assert frozen["transferlab_time_to_target_s"] == 80.0 and frozen["time_to_accuracy_ratio"] == 2.5
    assert frozen["cpu_to_accuracy_ratio"] == 3.0 and frozen["transferlab_ahead"] is False      # less accurate
    thirty = next(r for r in rows.values() if r["transferlab"] == "tl_frozen30_cifar")
    assert thirty["transferlab_ahead"] is True and thirty["wall_time_ratio_peer_over_transferlab"] == 3.33
    assert all(r["status"] == "not run" for r in rows.values() if r["transferlab"] not in ("tl_frozen_cars", "tl_frozen30_cifar"))
    table = peers.markdown({"jobs": {"plain_cars": plain, "tl_frozen_cars": tl}, "comparisons": [frozen]})
    assert "**2.5x** to 0.7500" in table and "0.8000 | 300 s | 500 s | 1,000 MB" in table


def test_bench_budget_judges_each_set_against_its_probe_and_across_modes(tmp_path, monkeypatch, capsys):
    bb = _load("bench_budget")
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))  # main() sets it only when unset
    results = tmp_path / "budget.json"
    monkeypatch.setattr(bb, "RESULTS", results)
    monkeypatch.setattr(bb, "shared", lambda: tmp_path)
    monkeypatch.setattr(bb, "data_path", lambda name, work: tmp_path / name)
    monkeypatch.setattr(bb, "linear_probe", lambda data, weights: {"best": "mobilenet_v2", "test_accuracy": 0.90})
    runs = {("fingers", False): ("efficientnet_lite0", 0.95), ("fingers", True): ("efficientnet_lite0", 0.93),
            ("cars", False): ("efficientnet_lite0", 0.95), ("cars", True): ("efficientnet_lite0-frozen", 0.89)}

    def fake_run(data, out, budget, weights, busy):
        choice, acc = runs[(Path(data).name, busy)]
        return {"status": "ok", "choice": choice, "test_accuracy": acc, "wall_seconds": 480.0, "peak_rss_mb": 900}

    monkeypatch.setattr(bb, "budget_run", fake_run)
    assert bb.main(["--sets", "fingers,cars", "--work", str(tmp_path / "w")]) == 0
    saved = json.loads(results.read_text())["sets"]
    assert saved["fingers"]["same_choice"] is True and saved["fingers"]["beats_probe"] is True
    assert saved["cars"]["same_choice"] is False and saved["cars"]["beats_probe"] is False  # busy fell below 0.90
    table = capsys.readouterr().out
    assert "| fingers | mobilenet_v2 0.9 | efficientnet_lite0, 0.95" in table


def test_bench_scale_builds_distinct_balanced_files_and_nested_sizes(tmp_path):
    """The scale folders: distinct files (SHA-1) composed from a tiny source, class-balanced, 32x32;
    a size is hard links to the first files of each class; a second build reuses the master set."""
    import hashlib
    import os

    import numpy as np
    from PIL import Image

    scale = _load("bench_scale")
    rng = np.random.default_rng(0)
    for split, k in (("train", 3), ("test", 1)):
        for c in ("cat", "dog"):
            (tmp_path / "src" / split / c).mkdir(parents=True)
            for i in range(k):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    tmp_path / "src" / split / c / f"{i:04d}.jpg", quality=90)
    root = tmp_path / "scale"
    marker = scale.build_master(tmp_path / "src", root, 40, log=lambda *a: None)
    files = sorted((root / "master").rglob("*.jpg"))
    assert marker["files"] == len(files) == 40 and marker["variants_per_photo"] == 5
    assert {c: sum(f.parent.name == c for f in files) for c in ("cat", "dog")} == {"cat": 20, "dog": 20}
    assert len({hashlib.sha1(f.read_bytes()).hexdigest() for f in files}) == 40
    assert {Image.open(f).size for f in files} == {(32, 32)}
    folder = scale.build_size(root, 11, log=lambda *a: None)
    got = {c: sorted(p.name for p in (folder / c).iterdir()) for c in ("cat", "dog")}
    assert [len(v) for v in got.values()] == [6, 5]                       # 11 split 6 / 5
    assert got["dog"] == sorted(p.name for p in (root / "master" / "dog").iterdir())[:5]
    assert os.path.samefile(folder / "cat" / got["cat"][0], root / "master" / "cat" / got["cat"][0])
    again = scale.build_master(tmp_path / "src", root, 30, log=lambda *a: None)
    assert again["build_id"] == marker["build_id"]                         # reused, not rebuilt
    assert scale.build_size(root, 11, log=lambda *a: None) == folder
