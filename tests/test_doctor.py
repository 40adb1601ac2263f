"""The data doctor: array-level pieces, the planted-problem photo set, the clean CSV and the CLI."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_doctor_fixtures import planted  # noqa: F401
from transferlab.cli import main
from transferlab.doctor import (classify_group, dataset_checks, fingerprints, group_split, hamming, is_gray,
                                label_issues, near_duplicate_groups, near_duplicate_pairs, out_of_fold_probs,
                                outlier_scores, plan_clean, summary, wilson_interval, write_clean)
from transferlab.doctor.labels import SoftmaxRegression
from transferlab.doctor.outliers import flag_outliers


def _photo(seed: int, size: int = 64) -> np.ndarray:
    """A smooth random 'photo' (low-frequency noise), uint8 [size, size, 3]."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))


# ---------------------------------------------------------------- hashes and pixel statistics

def test_fingerprints_match_resized_copies_not_other_images():
    a = _photo(1, 96)
    a_small = np.asarray(Image.fromarray(a).resize((64, 64)).resize((96, 96)))
    others = np.stack([_photo(s, 96) for s in range(2, 12)])
    fp = fingerprints(np.stack([a, a_small, *others]))
    d_p, d_d = hamming(fp["phash"], fp["phash"]), hamming(fp["dhash"], fp["dhash"])
    assert d_p[0, 1] <= 4 and d_d[0, 1] <= 6                           # the resized copy
    assert d_p[0, 2:].min() > 8 and d_d[0, 2:].min() > 8                # unrelated images
    assert fp["phash"].dtype == np.uint64 and np.all(np.diag(d_p) == 0)


def test_fingerprints_gray_and_blank():
    gray = np.repeat(_photo(3)[..., :1], 3, axis=-1)
    tinted = gray.copy()
    tinted[:8, :8, 0] = 255                                              # a red corner makes it colour
    blank = np.full((64, 64, 3), 120, np.uint8)
    fp = fingerprints(np.stack([gray, tinted, _photo(4), blank]))
    assert is_gray(fp["color_spread"]).tolist() == [True, False, False, True]
    assert fp["pixel_std"][3] == 0 and fp["pixel_std"][0] > 10
    with pytest.raises(ValueError):
        fingerprints(np.zeros((2, 8, 8), np.uint8))


# ---------------------------------------------------------------- near-duplicates

def _cloud(n: int = 60, dim: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, dim)).astype(np.float32)


def test_pairs_threshold_and_signals():
    emb = _cloud()
    emb[1] = emb[0] + 0.05 * _cloud(1, seed=1)[0]                      # a near copy of image 0
    sha = [f"h{i}" for i in range(len(emb))]
    sha[7] = sha[3]                                                     # identical files
    rng = np.random.default_rng(5)                                      # random hashes: ~32 bits apart
    ph = rng.integers(0, np.iinfo(np.uint64).max, len(emb), dtype=np.uint64, endpoint=True)
    dh = rng.integers(0, np.iinfo(np.uint64).max, len(emb), dtype=np.uint64, endpoint=True)
    ph[9], dh[9] = ph[5], dh[5] ^ np.uint64(0b111)                     # 3 dHash bits apart
    emb[9] = emb[5] + 0.6 * _cloud(1, seed=2)[0]                        # and alike (~0.85) but under 0.9
    pairs = near_duplicate_pairs(emb, phash=ph, dhash=dh, sha1=sha, threshold=0.9, ratio=None)
    got = {(p["a"], p["b"]): p["signals"] for p in pairs}
    assert got[(0, 1)] == ["embedding"] and got[(3, 7)][0] == "sha1" and got[(5, 9)] == ["hash"]
    assert len(got) == 3
    sim01 = next(p["similarity"] for p in pairs if (p["a"], p["b"]) == (0, 1))
    assert 0.9 <= sim01 < 1.0
    # the threshold is what decides: above the pair's similarity it is gone
    higher = near_duplicate_pairs(emb, threshold=min(1.0, sim01 + 0.005), ratio=None)
    assert (0, 1) not in {(p["a"], p["b"]) for p in higher}
    assert (5, 9) not in {(p["a"], p["b"]) for p in near_duplicate_pairs(emb, phash=ph, dhash=dh,
                                                                         hash_distance=(4, 2), ratio=None)}


def test_ratio_test_finds_a_distinct_pair_below_the_threshold():
    """Images that all look alike (cosine ~0.5 to each other): an altered copy at cosine ~0.75 is
    not above 0.9, but far closer than any other image -- the ratio test flags it, and only it."""
    rng = np.random.default_rng(0)
    common = rng.normal(0, 1, 64)
    emb = common + rng.normal(0, 1, (80, 64))
    emb[1] = emb[0] + 0.6 * rng.normal(0, 1, 64)
    plain = near_duplicate_pairs(emb, threshold=0.9, ratio=None)
    with_ratio = near_duplicate_pairs(emb, threshold=0.9, ratio=0.4)
    assert plain == []
    assert [(p["a"], p["b"]) for p in with_ratio] == [(0, 1)]
    assert 0.6 <= with_ratio[0]["similarity"] < 0.9
    # with hashes, the pair must also keep its layout (pHash within 20 of 64 bits)
    ph = np.zeros(80, np.uint64)
    assert [(p["a"], p["b"]) for p in near_duplicate_pairs(emb, phash=ph, threshold=0.9)] == [(0, 1)]
    ph[1] = np.uint64(2**32 - 1)                                         # 32 bits apart
    assert near_duplicate_pairs(emb, phash=ph, threshold=0.9) == []


def test_groups_and_kinds():
    pairs = [{"a": 0, "b": 1}, {"a": 1, "b": 4}, {"a": 2, "b": 3}]
    assert near_duplicate_groups(6, pairs) == [[0, 1, 4], [2, 3]]
    assert classify_group([0, 1], [2, 2], ["train", "train"]) == ["within-class"]
    assert classify_group([0, 1], [2, 2], ["train", "test"]) == ["cross-split"]
    assert classify_group([0, 1], [1, 2], ["val", "test"]) == ["cross-split", "conflicting-labels"]


def test_bad_threshold_is_a_config_error():
    from transferlab.errors import ConfigError

    for bad in (1.5, -2, float("nan"), "x"):
        with pytest.raises(ConfigError):
            near_duplicate_pairs(_cloud(), threshold=bad)


# ---------------------------------------------------------------- label errors

def _clusters(n_per: int = 40, k: int = 4, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (k, dim))
    y = np.repeat(np.arange(k), n_per)
    x = centres[y] + rng.normal(0, 1, (len(y), dim))
    return x.astype(np.float32), y


def test_label_issues_rank_flipped_labels_first():
    x, y = _clusters()
    noisy = y.copy()
    flipped = [3, 50, 95, 130, 150]
    for i in flipped:
        noisy[i] = (y[i] + 1) % 4
    probs = out_of_fold_probs(x, noisy, folds=5, seed=0)
    assert probs.shape == (160, 4) and np.allclose(probs.sum(1), 1, atol=1e-5)
    issues = label_issues(noisy, probs)
    top = [it["index"] for it in issues[:len(flipped)]]
    assert sorted(top) == flipped
    first = issues[0]
    assert first["suggested"] == y[first["index"]] and first["given"] == noisy[first["index"]]
    assert first["score"] == pytest.approx(first["p_given"], abs=1e-3) and first["p_suggested"] > first["p_given"]


def test_softmax_regression_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _clusters(30, 3, 12, seed=1)
    ours = SoftmaxRegression(C=0.05, max_iter=200).fit(x, y).predict_proba(x)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=1000)).fit(x, y).predict_proba(x)
    assert np.abs(ours - ref).max() < 0.01


def test_out_of_fold_needs_two_images_per_class():
    from transferlab.errors import ConfigError

    x, y = _clusters(5, 3)
    y[-1] = 3  # a class with one image
    with pytest.raises(ConfigError):
        out_of_fold_probs(x, y)


# ---------------------------------------------------------------- outliers

def test_outliers_far_point_and_group_masking():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 24) + 4
    emb = base + rng.normal(0, 0.5, (60, 24))
    odd = -base + rng.normal(0, 0.5, 24)
    emb = np.vstack([emb] + [odd + 0.01 * i for i in range(6)])      # six copies of one odd image
    labels = np.r_[np.zeros(30, int), np.ones(30, int), np.zeros(6, int)]
    # without groups the copies vouch for each other; as one duplicate group they do not
    loose = outlier_scores(emb, labels, k=5)
    grouped = outlier_scores(emb, labels, k=5, groups=np.r_[np.arange(60), np.full(6, 60)])
    assert loose["score"][60:].max() < 4
    assert grouped["score"][60:].min() > 100 > 10 > grouped["score"][:60].max()
    assert set(flag_outliers(grouped, z=10)) == set(range(60, 66))
    assert grouped["nearest"][60] < 60                               # the nearest outside its group
    std = np.full(66, 40.0)
    std[5] = 0.5                                                     # a blank frame comes first
    assert flag_outliers(grouped, pixel_std=std, z=10)[0] == 5


# ---------------------------------------------------------------- checks

def test_wilson_interval_and_warnings():
    lo, hi = wilson_interval(0.9, 40)
    assert (round(lo, 2), round(hi, 2)) == (0.77, 0.96)
    lo, hi = wilson_interval(0.9, 10_000)
    assert hi - lo < 0.013
    labels = [0] * 50 + [1] * 6 + [2] * 10
    splits = ["train"] * 46 + ["val"] * 20
    gray = [False] * 60 + [True] * 6
    w = {x["kind"]: x for x in dataset_checks(classes=["a", "b", "c"], labels=labels, splits=splits,
                                              sizes=[(32, 32)] * 66, gray=gray, input_size=224)}
    assert w["small-eval-split"]["interval"] == [pytest.approx(0.699, abs=1e-3), pytest.approx(0.972, abs=1e-3)]
    assert "0.70-0.97" in w["small-eval-split"]["message"]
    assert w["small-classes"]["classes"] == {"b": 6}
    assert w["imbalance"]["ratio"] == pytest.approx(50 / 6, abs=0.01)
    assert w["small-images"]["median_side"] == 32
    assert w["mixed-color"]["grayscale"] == 6 and "concentrated" in w["mixed-color"]["message"]
    ok = dataset_checks(classes=["a", "b"], labels=[0, 1] * 300, splits=["train"] * 200 + ["val"] * 400,
                        sizes=[(300, 200)] * 600, gray=[False] * 600, input_size=224)
    assert [x["severity"] for x in ok] == ["info"]


# ---------------------------------------------------------------- the clean CSV

def _report(files, duplicates=(), issues=(), outliers=()):
    return {"files": [list(f) for f in files], "duplicates": list(duplicates), "label_issues": list(issues),
            "outliers": list(outliers), "settings": {"val_ratio": 0.25, "seed": 0}}


def _group(i, files, kinds, exact=True, pairs=()):
    return {"id": i, "kinds": kinds, "exact": exact, "classes": sorted({f[1] for f in files}),
            "files": [{"path": p, "label": y, "split": s} for p, y, s in files], "pairs": list(pairs)}


def test_plan_clean_defaults_and_options():
    files = [("/d/a1", "a", "train"), ("/d/a2", "a", "test"), ("/d/a3", "a", "train"), ("/d/a4", "a", "train"),
             ("/d/b1", "b", "train"), ("/d/x1", "a", "train"), ("/d/x2", "b", "val"), ("/d/b2", "b", "train"),
             ("/d/b3", "b", "val")]
    dups = [_group(0, files[0:2], ["cross-split"]), _group(1, files[2:4], ["within-class"]),
            _group(2, files[5:7], ["cross-split", "conflicting-labels"])]
    issues = [{"path": "/d/b2", "given": "b", "suggested": "a", "score": 0.01}]
    outliers = [{"path": "/d/b3", "reason": "blank frame"}]
    rows = {r["path"]: r for r in plan_clean(_report(files, dups, issues, outliers))}
    assert rows["/d/a2"]["action"] == "drop" and rows["/d/a1"]["action"] == "keep"    # test copy of a train image
    assert [rows[p]["action"] for p in ("/d/a3", "/d/a4")] == ["keep", "drop"]       # one of identical files
    assert rows["/d/x1"]["action"] == rows["/d/x2"]["action"] == "drop"               # conflicting labels
    assert rows["/d/b2"]["action"] == rows["/d/b3"]["action"] == "keep"               # only when asked
    rows = {r["path"]: r for r in plan_clean(_report(files, dups, issues, outliers), drop_leaks=False,
                                             drop_conflicts=False, dedupe="none", relabel=1, drop_outliers=-1)}
    assert all(rows[p]["action"] == "keep" for p in ("/d/a2", "/d/a4", "/d/x1", "/d/x2"))
    assert rows["/d/b2"]["action"] == "relabel" and rows["/d/b2"]["label"] == "a"
    assert rows["/d/b3"]["action"] == "drop"
    from transferlab.errors import ConfigError

    with pytest.raises(ConfigError):
        plan_clean(_report(files), dedupe="some")
    with pytest.raises(ConfigError):
        plan_clean(_report(files), drop_outliers=-5)


def test_group_split_keeps_groups_together_and_is_stratified():
    rows = [{"path": f"/d/{c}{i}", "label": c, "split": "train", "action": "keep"} for c in "ab" for i in range(40)]
    rows.append({"path": "/d/t", "label": "a", "split": "test", "action": "keep"})
    groups = [[f"/d/a{i}" for i in range(0, 6)], [f"/d/b{i}" for i in range(10, 14)], ["/d/a7", "/d/t"]]
    group_split(rows, groups, val_ratio=0.25, seed=3)
    side = {r["path"]: r["split"] for r in rows}
    for g in groups[:2]:
        assert len({side[p] for p in g}) == 1
    assert side["/d/t"] == "test"
    for c in "ab":
        n_val = sum(1 for r in rows if r["label"] == c and r["split"] == "val")
        assert 8 <= n_val <= 12                                                       # ~25% of 40


def _tiny_dataset(root: Path, per_class: int = 8) -> Path:
    for c, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        for i in range(per_class):
            p = root / c / f"{c}{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            arr = _photo(i + (100 if c == "blue" else 0), 40).astype(np.int16) // 3 + np.array(colour) // 2
            Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(p)
    return root


def test_clean_csv_round_trip_through_load_data(tmp_path):
    from transferlab.data import load_data

    root = _tiny_dataset(tmp_path / "data")
    splits = load_data(root, val_ratio=0.25, seed=0, progress=False)
    files = [(p, splits.classes[y], s) for s in ("train", "val", "test") for p, y in splits.split(s)]
    red = [f for f in files if f[1] == "red" and f[2] == "train"]
    wrong = next(f for f in files if f[1] == "blue" and f[2] == "val")
    a, b = red[0][0], red[1][0]                                       # two red train images: one group
    report = _report(files, [_group(0, red[:2], ["within-class"], exact=False)],
                     [{"path": wrong[0], "given": "blue", "suggested": "red", "score": 0.0}])
    out = tmp_path / "sub" / "clean.csv"
    done = write_clean(report, out, split_by_group=True, relabel=1, relative=True)
    assert done["rows"] == len(files) and done["relabelled"] == 1
    rows = list(csv.DictReader(out.open()))
    assert rows[0].keys() == {"path", "label", "split"} and not Path(rows[0]["path"]).is_absolute()
    back = load_data(out, progress=False)
    assert back.layout == "csv"
    want = {(str(Path(out.parent, r["path"]).resolve()), r["label"], r["split"]) for r in rows}
    got = {(p, back.classes[y], s) for s in ("train", "val", "test") for p, y in back.split(s)}
    assert {(str(Path(p).resolve()), y, s) for p, y, s in got} == want
    side = {p: s for p, _, s in got}
    assert side[a] == side[b]
    assert next(y for p, y, _ in got if p == wrong[0]) == "red"                  # relabelled
    with pytest.raises(Exception, match="csv"):
        write_clean(report, tmp_path / "clean.txt")


# ---------------------------------------------------------------- the planted photo set (real photos)

def test_planted_problems_rank_near_the_top(planted):
    root, truth, report, _ = planted
    n = report["summary"]["images"]
    ranked = report["label_issues"] + report["label_review"]            # flagged first, then to review
    issues = [r["path"] for r in ranked]
    ranks = [issues.index(p) if p in issues else n for p in truth["mislabel"]]
    print("planted label errors ranked", ranks, "of", len(issues), "issues among", n, "images;",
          report["summary"]["label_issues"], "flagged", report["label_rule"])
    # 5 of 129 images; a random ranking would put their median at ~64
    assert sorted(ranks)[2] <= 15 and max(ranks) < 0.2 * n
    assert [r["score"] for r in ranked] == sorted(r["score"] for r in ranked)
    assert report["summary"]["label_issues"] <= len(truth["mislabel"])  # a weak probe on 129 images: few flagged
    assert not set(truth["outlier"]) & set(issues)                      # outliers are not label errors
    planted_issue = next(r for r in ranked if r["path"] == truth["mislabel"][0])
    assert planted_issue["given"] == "daisy" and planted_issue["suggested"] == "sunflower"

    outliers = [r["path"] for r in report["outliers"]]
    assert set(outliers[:3]) == set(truth["outlier"]), outliers[:5]
    blank = next(r for r in report["outliers"] if r["path"].endswith("blank.png"))
    assert blank["reason"].startswith("blank frame")

    group = next(d for d in report["duplicates"] if set(truth["duplicate"]) <= {f["path"] for f in d["files"]})
    assert "cross-split" in group["kinds"] and not group["exact"] and "embedding" in group["signals"]
    assert report["settings"]["threshold"] == 0.9 and report["summary"]["cross_split"] >= 1


def test_planted_report_files_summary_and_cache(planted):
    root, truth, report, again = planted
    out = root.parent / "doctor"
    on_disk = json.loads((out / "doctor.json").read_text())
    assert on_disk["summary"] == report["summary"] and len(on_disk["files"]) == report["summary"]["images"]
    assert again["timing"]["embed_cached"] and not report["timing"]["embed_cached"]
    assert again["summary"] == report["summary"]
    lines = summary(report)
    assert lines[0].startswith(f"data doctor: {report['summary']['images']} images;") and "leakage:" in lines[1]
    page = (out / "doctor.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    shown = {f["path"] for d in report["duplicates"] for f in d["files"]} | {r["path"] for r in report["outliers"]}
    assert page.count('src="data:image/jpeg;base64,') >= len(shown)
    assert "copy_of_a_train_rose.jpg" in page and "suggested" in page


def test_planted_clean_csv_split_by_group(planted, tmp_path):
    from transferlab.data import load_data

    root, truth, report, _ = planted
    done = write_clean(report, tmp_path / "clean.csv", split_by_group=True, drop_outliers=3)
    back = load_data(tmp_path / "clean.csv", progress=False)
    kept = {p: s for s in ("train", "val", "test") for p, _ in back.split(s)}
    assert not set(truth["outlier"]) & set(kept)                            # the 3 planted outliers dropped
    assert truth["duplicate"][0] in kept and truth["duplicate"][1] not in kept   # the test copy dropped
    for d in report["duplicates"]:
        sides = {kept[f["path"]] for f in d["files"] if f["path"] in kept and kept[f["path"]] != "test"}
        assert len(sides) <= 1                                                # groups on one side
    assert done["counts"]["val"] == len(back.val) > 0
    assert sorted(back.classes) == sorted(report["classes"])


# ---------------------------------------------------------------- the command line

def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("args, words", [
    (["{tmp}/missing"], "not found"),
    (["{tmp}/empty"], "no class folders"),
    (["{tmp}/one"], "only one class"),
    (["{tmp}/one", "--threshold", "1.5"], "threshold"),
    (["{tmp}/one", "--threshold", "nan"], "threshold"),
    (["{tmp}/one", "--ratio", "2"], "ratio"),
    (["{tmp}/one", "--folds", "1"], "folds"),
    (["{tmp}/one", "--split-by-group"], "--write-clean"),
    (["{tmp}/one", "--write-clean", "x.txt"], ".csv"),
    (["{tmp}/two", "--backbone", "no_such_model"], "no_such_model"),
    (["{tmp}/two", "--backbone", "cnn_base"], "pretrained backbone"),
    (["{tmp}/two", "--input-size", "8"], "at least 32"),
])
def test_cli_bad_input_is_one_error_line(tmp_path, capsys, args, words):
    (tmp_path / "empty").mkdir()
    for name, classes in (("one", ["cat"]), ("two", ["cat", "dog"])):
        for c in classes:
            (tmp_path / name / c).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(_photo(i + 10 * len(c), 16)).save(tmp_path / name / c / f"{i}.png")
    argv = ["doctor", *[a.format(tmp=tmp_path) for a in args], "--no-progress", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert words in _error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_cli_end_to_end_on_a_tiny_set_with_a_broken_file_and_a_leak(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    _tiny_dataset(root / "train", per_class=10)
    (root / "test" / "red").mkdir(parents=True)
    (root / "test" / "blue").mkdir(parents=True)
    (root / "test" / "red" / "leak.png").write_bytes((root / "train" / "red" / "red0.png").read_bytes())
    (root / "test" / "blue" / "b.png").write_bytes((root / "train" / "blue" / "blue3.png").read_bytes())
    (root / "train" / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    before = sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*"))
    out, clean = tmp_path / "doc", tmp_path / "clean.csv"
    code = main(["doctor", str(root), "--out", str(out), "--input-size", "64", "--no-progress",
                 "--write-clean", str(clean), "--split-by-group", "--threshold", "0.95"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "duplicates across splits" in text and "similarity >= 0.95" in text and "clean:" in text
    report = json.loads((out / "doctor.json").read_text())
    assert report["settings"]["threshold"] == 0.95 and report["settings"]["input_size"] == 64
    assert [b["path"] for b in report["broken"]] == [str(root / "train" / "red" / "broken.jpg")]
    assert any(w["kind"] == "broken-files" for w in report["warnings"])
    leaks = [d for d in report["duplicates"] if "cross-split" in d["kinds"] and d["exact"]]
    assert {Path(f["path"]).name for d in leaks for f in d["files"]} >= {"leak.png", "red0.png", "b.png", "blue3.png"}
    assert (out / "doctor.html").stat().st_size > 1000
    rows = list(csv.DictReader(clean.open()))
    assert not {"leak.png", "b.png", "broken.jpg"} & {Path(r["path"]).name for r in rows}
    assert sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*")) == before  # the data is untouched


def test_cli_without_data_uses_the_built_in_sample(monkeypatch, tmp_path):
    import transferlab.doctor as doctor
    from transferlab.data.sample import sample_dir

    from transferlab.errors import ConfigError

    seen = {}

    def stop(source, **kwargs):
        seen["source"] = source
        raise ConfigError("stop here")

    monkeypatch.setattr(doctor, "diagnose", stop)
    monkeypatch.setattr("transferlab.data.sample.sample_dir", lambda: tmp_path / "sample")
    assert main(["doctor", "--no-progress", "--out", str(tmp_path / "o")]) == 2
    assert seen["source"] == tmp_path / "sample" and callable(sample_dir)


# ---------------------------------------------------------------- the real data sets (slow)

@pytest.mark.slow
def test_cars_leakage_and_flowers_conflicts_are_all_reported(shared_dir):
    from collections import defaultdict

    from transferlab.data import load_data
    from transferlab.doctor import diagnose

    for name in ("cars", "flowers"):
        if not (shared_dir / "data" / name).is_dir():
            pytest.skip(f"../shared/data/{name} is not present")
    cars = load_data(shared_dir / "data" / "cars", progress=False)
    report = diagnose(cars, progress=False)
    member = {f["path"]: d for d in report["duplicates"] for f in d["files"]}
    by = defaultdict(list)
    for p, i in cars.info.items():
        by[i.sha1].append(p)
    leaks = [g for g in by.values() if any("/train/" in p for p in g) and any("/test/" in p for p in g)]
    assert len(leaks) == 76
    for g in leaks:
        assert all(p in member for p in g) and len({member[p]["id"] for p in g}) == 1
        assert "cross-split" in member[g[0]]["kinds"]

    report = diagnose(shared_dir / "data" / "flowers", progress=False)
    conflicts = [d for d in report["duplicates"] if "conflicting-labels" in d["kinds"]]
    names = {(f["label"], Path(f["path"]).name) for d in conflicts for f in d["files"]}
    for photo in ("15922772266_1167a06620.jpg", "17104364030_ee31ee279b_n.jpg", "17291451621_0e39f08b9e_n.jpg",
                  "17291930305_79deae6a90_n.jpg"):
        assert ("rose", photo) in names and ("tulip", photo) in names
