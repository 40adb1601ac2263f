"""The doctor at scale: approximate nearest neighbours (faiss) above EXACT_LIMIT agree with the exact
search, and large groups of identical files no longer make n^2 pairs."""
from __future__ import annotations

import numpy as np
import pytest

from transferlab.doctor import duplicates as dups
from transferlab.errors import ConfigError
from transferlab.doctor import outliers


def _data(n=3000, d=64, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, d))
    x = centres[rng.integers(0, 20, n)] + rng.normal(scale=0.6, size=(n, d))
    dup_of = rng.choice(n, 40, replace=False)
    x[:40] = x[dup_of] + rng.normal(scale=0.01, size=(40, d))  # 40 planted near-copies of other rows
    return x.astype(np.float32), dup_of


def test_approximate_neighbours_match_the_exact_ones(monkeypatch):
    x, _ = _data()
    z = dups.normalize(x)
    groups = np.arange(len(z))
    groups[[5, 6, 7]] = 5  # one group whose members must not count as each other's neighbours
    exact_i, exact_s = dups._neighbours(z, 10, groups)
    monkeypatch.setattr(dups, "EXACT_LIMIT", 1000)
    ann_i, ann_s = dups._neighbours(z, 10, groups)
    assert ann_i.shape == exact_i.shape == (3000, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ann_i, exact_i)])
    assert recall >= 0.95
    assert not set(ann_i[5]) & {5, 6, 7} and not (ann_i == np.arange(3000)[:, None]).any()
    assert np.all(np.diff(ann_s, axis=1) <= 1e-6)  # most similar first
    np.testing.assert_allclose(ann_s[:, 0], exact_s[:, 0], atol=1e-5)  # the nearest one is found


def test_near_duplicate_pairs_are_the_same_through_the_index(monkeypatch):
    x, dup_of = _data()
    exact = {(p["a"], p["b"]) for p in dups.near_duplicate_pairs(x, threshold=0.95, ratio=None)}
    monkeypatch.setattr(dups, "EXACT_LIMIT", 1000)
    approx = {(p["a"], p["b"]) for p in dups.near_duplicate_pairs(x, threshold=0.95, ratio=None)}
    planted = {(min(i, int(j)), max(i, int(j))) for i, j in enumerate(dup_of)}
    assert planted <= exact and planted <= approx
    assert len(approx & exact) >= 0.95 * len(exact)


def test_outlier_scores_agree_through_the_index(monkeypatch):
    x, _ = _data(seed=1)
    x[-1] = 50.0  # far from everything
    exact = outliers.outlier_scores(x, np.zeros(len(x), int), k=10)
    monkeypatch.setattr(dups, "EXACT_LIMIT", 1000)
    approx = outliers.outlier_scores(x, np.zeros(len(x), int), k=10)
    assert int(np.argmax(approx["score"])) == int(np.argmax(exact["score"])) == len(x) - 1
    assert np.corrcoef(approx["dataset_distance"], exact["dataset_distance"])[0, 1] > 0.99


def test_a_large_group_of_identical_files_is_one_group_without_quadratic_pairs():
    """640 copies of one file (a placeholder image) used to make 204,480 pairs and an error."""
    n = 700
    sha1 = ["same"] * 640 + [f"h{i}" for i in range(60)]
    pairs = dups.near_duplicate_pairs(sha1=sha1, max_pairs=1000)
    assert len(pairs) == 639
    groups = dups.near_duplicate_groups(n, pairs)
    assert groups == [list(range(640))]


@pytest.mark.parametrize("n", [1, 2])
def test_tiny_inputs_still_work_through_the_index(monkeypatch, n):
    monkeypatch.setattr(dups, "EXACT_LIMIT", 0)
    z = dups.normalize(np.eye(n, 4, dtype=np.float32))
    idx, sim = dups._neighbours(z, 5, None)
    assert idx.shape == (n, n - 1)


def test_large_sets_work_on_principal_components_read_a_chunk_at_a_time(monkeypatch, tmp_path):
    from transferlab._rows import RowFile, RowWriter
    from transferlab.doctor import embeddings

    rng = np.random.default_rng(0)
    basis = rng.normal(size=(8, 64))
    x = (rng.normal(size=(3000, 8)) @ basis + rng.normal(scale=0.05, size=(3000, 64))).astype(np.float32)
    with RowWriter(tmp_path / "f.npy", n=3000, row_shape=(64,)) as w:
        w.write(x)
    rows = RowFile(tmp_path / "f.npy")
    full, reduced_from = embeddings._features(rows)  # small: every feature, as computed
    assert reduced_from is None and np.array_equal(full, x)
    monkeypatch.setattr(embeddings, "REDUCE_ABOVE", 1000)
    monkeypatch.setattr(embeddings, "REDUCED_DIMS", 8)
    monkeypatch.setattr(embeddings, "PCA_SAMPLE", 500)
    small, reduced_from = embeddings._features(rows)
    assert small.shape == (3000, 8) and small.dtype == np.float32 and reduced_from == 64
    # the same neighbours: the projection keeps the directions the images differ in
    a, _ = dups._neighbours(dups.normalize(x), 5, None)
    b, _ = dups._neighbours(dups.normalize(small), 5, None)
    assert np.mean([len(set(p) & set(q)) / 5 for p, q in zip(a, b)]) > 0.9


def test_pairs_are_arrays_and_their_limit_grows_with_the_images():
    """A set composed of ~20 variants of each photo has ~10 genuine pairs per image: 240,000 photos
    made 2.4M pairs and stopped on a fixed 200,000-pair limit. The limit is per image now."""
    assert dups.pair_limit(1000) == dups.MIN_PAIR_LIMIT
    assert dups.pair_limit(240_000) == 240_000 * dups.PAIRS_PER_IMAGE > 2_400_000
    # 3,000 images in 150 chains of 20 identical files: 2,850 pairs, well under the default limit
    sha1 = [f"h{i // 20}" for i in range(3000)]
    p = dups.near_duplicate_pair_arrays(sha1=sha1)
    assert set(p) == {"a", "b", "signals", "similarity", "hash_distance"}
    assert p["a"].dtype == np.int64 and len(p["a"]) == 2850 and (p["a"] < p["b"]).all()
    assert (p["signals"] == 1).all() and np.isnan(p["similarity"]).all() and (p["hash_distance"] == -1).all()
    assert len(dups.near_duplicate_groups(3000, p)) == 150
    with pytest.raises(ConfigError, match="more than 2,000 near-duplicate pairs"):
        dups.near_duplicate_pair_arrays(sha1=sha1, max_pairs=2000)


def test_a_pair_flagged_by_two_signals_is_one_pair_with_both():
    emb = np.array([[1, 0, 0], [1, 0.01, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    p = dups.near_duplicate_pair_arrays(emb, sha1=["x", "x", "y", "z"], threshold=0.9, ratio=None)
    assert p["a"].tolist() == [0] and p["b"].tolist() == [1]
    assert dups.signal_names(p["signals"][0]) == ["sha1", "embedding"]
    [d] = dups.near_duplicate_pairs(emb, sha1=["x", "x", "y", "z"], threshold=0.9, ratio=None)
    assert d["signals"] == ["sha1", "embedding"] and d["similarity"] > 0.99 and d["hash_distance"] is None


def test_a_group_of_many_images_is_reported_with_its_strongest_pairs_only():
    """A chain of 5,000 copies is one group; the report keeps MAX_PAIRS_PER_GROUP of its pairs
    (the old per-group loop over member pairs was quadratic in the group's size)."""
    from transferlab.doctor import core

    n = 5000
    p = dups.near_duplicate_pair_arrays(sha1=["same"] * n)
    comps = dups.near_duplicate_groups(n, p)
    group_of = np.zeros(n, np.int64)
    ds = core._Dataset([], [f"f{i}.jpg" for i in range(n)], np.zeros(n, np.int64), ["train"] * n, ["a"],
                       [None] * n, ["same"] * n)
    [row] = core._duplicate_rows(ds, p, comps, group_of)
    assert row["size"] == n and row["exact"] and row["signals"] == ["sha1"]
    assert len(row["pairs"]) == core.MAX_PAIRS_PER_GROUP and row["pairs"][0]["a"] == "f0.jpg"
