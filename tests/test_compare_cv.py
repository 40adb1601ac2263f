"""compare --cv K: stratified folds that keep copies together, one compare per fold, mean +- sd."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from transferlab.comparison.cv import compare_cv, copy_groups, cv_folds, summarize
from transferlab.data import load_data
from transferlab.errors import ConfigError, DataError

# the fixture's copies leak across load_data's random split: that is what the folds are checked against
pytestmark = pytest.mark.filterwarnings("ignore::transferlab.data.DataWarning")


@pytest.fixture(scope="module")
def with_copies(digits_dir, tmp_path_factory):
    """The digits plus, per class, two byte-identical copies of its first image (a group of 3)."""
    root = tmp_path_factory.mktemp("cv") / "digits"
    shutil.copytree(digits_dir, root)
    for cls in sorted(p for p in root.iterdir() if p.is_dir()):
        first = sorted(cls.glob("*.png"))[0]
        for i in range(2):
            shutil.copy(first, cls / f"copy{i}.png")
    return root


def test_folds_are_stratified_disjoint_cover_the_pool_and_keep_copies_together(with_copies):
    splits = load_data(with_copies, val_ratio=0.2, seed=0, progress=False)
    folds = cv_folds(splits, 4, seed=1)
    pool = sorted(p for p, _ in splits.train + splits.val)
    vals = [sorted(p for p, _ in f.val) for f in folds]
    assert sorted(p for v in vals for p in v) == pool  # every image validates exactly once
    for f in folds:
        assert not {p for p, _ in f.train} & {p for p, _ in f.val} and f.test == splits.test and not f.duplicates
        assert sorted(p for p, _ in f.train + f.val) == pool
        counts = np.bincount([y for _, y in f.val], minlength=10)
        assert counts.min() >= 6 and counts.max() <= 10  # 32 a class over 4 folds, copies kept together
    groups = [g for g in splits.duplicates] or None
    for cls in sorted(p for p in with_copies.iterdir() if p.is_dir()):
        trio = {str(cls / "copy0.png"), str(cls / "copy1.png"), str(sorted(cls.glob("*_*.png"))[0])}
        homes = {i for i, v in enumerate(vals) for p in v if p in trio}
        assert len(homes) == 1, (cls.name, homes, groups)
    # the same seed gives the same folds
    assert [sorted(p for p, _ in f.val) for f in cv_folds(splits, 4, seed=1)] == vals


def test_doctor_groups_join_the_identical_ones():
    class S:
        info: dict = {}

    paths = ["a", "b", "c", "d", "e"]
    assert copy_groups(paths, S()).tolist() == [0, 1, 2, 3, 4]
    g = copy_groups(paths, S(), doctor_groups=[["a", "c"], ["c", "e"], ["x", "b"]])
    assert g[0] == g[2] == g[4] and len({g[0], g[1], g[3]}) == 3


def test_bad_fold_counts_are_one_line(with_copies):
    splits = load_data(with_copies, val_ratio=0.2, seed=0, progress=False)
    with pytest.raises(ConfigError, match="at least 2 folds"):
        cv_folds(splits, 1)
    with pytest.raises(DataError, match="smallest class has 32"):
        cv_folds(splits, 40)
    assert summarize([None, 0.5])["mean"] == 0.5 and summarize([1.0])["sd"] == 0.0


def test_compare_cv_writes_each_fold_and_the_mean_and_sd(with_copies, tmp_path, capsys):
    from transferlab.cli import main

    assert main(["compare", str(with_copies), "--models", "cnn_base", "--epochs", "1", "--input-size", "32",
                 "--cv", "3", "--out", str(tmp_path / "cv"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "3-fold cross-validation" in out and "cnn_base" in out and "+-" in out
    result = json.loads((tmp_path / "cv" / "cv.json").read_text())
    acc = result["models"]["cnn_base"]["accuracy"]
    folds = [json.loads((tmp_path / "cv" / f"fold-{i}" / "leaderboard.json").read_text()) for i in (1, 2, 3)]
    per_fold = [next(r for r in (f["rows"] if isinstance(f, dict) else f) if r["model"] == "cnn_base")["accuracy"]
                for f in folds]
    assert acc["folds"] == pytest.approx(per_fold) and acc["mean"] == pytest.approx(np.mean(per_fold), abs=1e-6)
    assert acc["sd"] == pytest.approx(np.std(per_fold, ddof=1), abs=1e-6)
    assert sum(result["fold_sizes"]) == 320 and result["grouping"] == "identical files"
    with pytest.raises(ConfigError, match="does not take 'split'"):
        compare_cv(with_copies, 3, split="test")
    assert main(["compare", str(with_copies), "--cv-groups", "x.json"]) == 2
