"""Exact and near-duplicate images: pairs from three signals, grouped, then classified.

Signals (each pair records which ones flagged it):

``sha1``       identical file bytes (the validation scan's hash).
``hash``       perceptual hashes within ``hash_distance`` bits: pHash AND dHash (64 bits each) --
               re-encoded, resized or recoloured copies of one picture -- and, when embeddings
               are given, an embedding similarity ``>= hash_floor`` (:data:`HASH_FLOOR`) too: a
               hash match alone is not enough (different flower photos with the same dark layout
               matched at 0.34 and 0.44).
``embedding``  cosine similarity of centred backbone embeddings ``>= threshold`` (default
               :data:`THRESHOLD`) -- crops, resizes, small edits; OR, for datasets whose images all
               look alike to the backbone (e.g. 32 px CIFAR photos upscaled), a pair that is far
               closer to each other than to anything else: cosine ``>= floor`` (:data:`FLOOR`) and distance
               ``<= ratio x`` the distance of each image's ``reference``-th nearest neighbour
               (Lowe's ratio test), with pHash within ``RATIO_HASH`` bits when hashes are given
               (unrelated images are ~32 bits apart). Shifted copies of a 32x32 photo pass it; two
               different blurry photos of grass do not.

Pairs are joined into groups (connected components); :func:`classify_group` says whether a group
sits within one class, spans classes (conflicting labels) and/or spans splits (leakage).

>>> import numpy as np
>>> emb = np.array([[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0, 0, 1]], np.float32)
>>> pairs = near_duplicate_pairs(emb, threshold=0.9)
>>> [(p["a"], p["b"], p["signals"]) for p in pairs]
[(0, 1, ['embedding'])]
>>> near_duplicate_groups(4, pairs)
[[0, 1]]
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.scan import same_key_groups
from ..errors import ConfigError

#: default cosine similarity (centred embeddings) from which two images count as near-duplicates.
#: Measured on ../shared/data/cars: crops, resizes and overlays of one photo score 0.89-0.99,
#: different photos of one car model rarely pass 0.90.
THRESHOLD = 0.90
#: default ratio test: a pair's embedding distance at most this times each image's distance to
#: its REFERENCE-th nearest neighbour (with cosine >= FLOOR) counts as a near-duplicate.
RATIO = 0.5
REFERENCE = 5
#: least embedding similarity of a pair flagged by the ratio test: two
#: different birds of the CIFAR-10 sample reach 0.72 (pHash 12 bits apart), while a text overlay on
#: a deer photo scores 0.86 and the known shifted copy test/deer/0052 ~ train/deer/0520 0.76
#: (hash-matched copies in the planted sets: 0.87-0.94).
FLOOR = 0.75
#: least embedding similarity of a pair the perceptual hashes match (0-2 bits apart): recoloured
#: copies of grayscale hand photos and 32 px CIFAR photos score only 0.61-0.73, while different
#: flower photos with matching hashes scored 0.34 and 0.44.
HASH_FLOOR = 0.6
RATIO_HASH = 20
#: default Hamming distance (bits of 64) for both pHash and dHash.
HASH_DISTANCE = (4, 6)

_BLOCK = 1024


def check_threshold(threshold: float, name: str = "threshold", low: float = -1.0, high: float = 1.0) -> float:
    """Validate a similarity threshold (ConfigError with the allowed range)."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in ({low}, {high}], got {threshold!r}") from None
    if not low < value <= high or value != value:
        raise ConfigError(f"{name} must be in ({low}, {high}], got {threshold}")
    return value


#: fewer images than this are not centred (the mean of a handful of images is mostly the images)
MIN_CENTRED = 20


def normalize(embeddings: np.ndarray, *, center: bool = True) -> np.ndarray:
    """Centre the embeddings on their mean (from :data:`MIN_CENTRED` images on) and scale each to
    unit length (float32). Centring removes what every image of the dataset shares, so the cosine
    measures what sets two images apart (duplicates); uncentred, it also measures how typical an
    image is (outliers). An all-zero embedding stays zero (similarity 0 to everything)."""
    x = np.array(embeddings, dtype=np.float32)  # one copy, then worked on in place (a copy is N x F floats)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D [N, F], got shape {x.shape}")
    if center and len(x) >= MIN_CENTRED:
        x -= x.mean(0, keepdims=True)
    for start in range(0, len(x), 65536):
        part = x[start:start + 65536]
        part /= np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
    return x


#: above this many images, nearest neighbours come from an approximate index (faiss HNSW), whose
#: time grows as n log n, instead of the exact all-pairs search (n^2); below it exact is cheaper
EXACT_LIMIT = 20_000
#: extra neighbours fetched from the index to make up for rows left out (self, same group)
_SPARE = 16


def _neighbours(z: np.ndarray, k: int, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine neighbours of every row (self and same-``exclude``-id rows left out):
    ``(indices [N, k], similarities [N, k])``, most similar first (``-inf`` where fewer than ``k``
    remain). Exact up to :data:`EXACT_LIMIT` rows, approximate (faiss HNSW) above."""
    n = len(z)
    k = max(0, min(k, n - 1))
    if k == 0:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
    if n > EXACT_LIMIT:
        return _ann_neighbours(z, k, exclude)
    idx = np.zeros((n, k), np.int64)
    sim = np.zeros((n, k), np.float32)
    for start in range(0, n, _BLOCK):
        block = z[start:start + _BLOCK] @ z.T
        rows = np.arange(block.shape[0])
        block[rows, start + rows] = -np.inf
        if exclude is not None:
            block[exclude[start:start + _BLOCK, None] == exclude[None, :]] = -np.inf
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(block, part, 1)
        order = np.argsort(-vals, axis=1)
        idx[start:start + _BLOCK] = np.take_along_axis(part, order, 1)
        sim[start:start + _BLOCK] = np.take_along_axis(vals, order, 1)
    return idx, sim


def _ann_neighbours(z: np.ndarray, k: int, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_neighbours` through a faiss HNSW index on inner products (``z`` has unit rows).
    Rows with identical ``exclude`` ids and identical vectors (exact copies) are indexed once."""
    import faiss  # (a compiled library of ~30 MB: loaded only for large datasets)

    n = len(z)
    x = np.ascontiguousarray(z, dtype=np.float32)
    ids = np.asarray(exclude, np.int64) if exclude is not None else np.arange(n, dtype=np.int64)
    biggest = int(np.bincount(ids - ids.min()).max()) if n else 1
    fetch = min(n, k + min(biggest, _SPARE) + 1)
    index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 64
    index.hnsw.efSearch = max(64, 2 * fetch)
    for start in range(0, n, 65536):
        index.add(x[start:start + 65536])
    idx = np.zeros((n, k), np.int64)
    sim = np.full((n, k), -np.inf, np.float32)
    for start in range(0, n, 16384):
        s, i = index.search(x[start:start + 16384], fetch)
        rows = np.arange(start, start + len(i))
        bad = (i < 0) | (i == rows[:, None]) | (ids[np.maximum(i, 0)] == ids[rows][:, None])
        s = np.where(bad, -np.inf, s)
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        idx[rows] = np.take_along_axis(np.maximum(i, 0), order, 1)
        sim[rows] = np.take_along_axis(s, order, 1)
    return idx, sim


def _candidate_pairs(z: np.ndarray, k: int, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, similarity)`` of every row's ``k`` nearest neighbours (``a < b``, each pair once)."""
    nbr, sim = _neighbours(z, k, exclude)
    a = np.repeat(np.arange(len(z)), nbr.shape[1])
    b, s = nbr.ravel(), sim.ravel()
    ok = np.isfinite(s)
    a, b, s = np.minimum(a, b)[ok], np.maximum(a, b)[ok], s[ok]
    _, first = np.unique(a * len(z) + b, return_index=True)
    return a[first], b[first], s[first]


#: neighbours per image checked for near-duplicates above EXACT_LIMIT (a larger group is still
#: found whole: its members chain through each other's neighbours)
CANDIDATES = 20


def near_duplicate_pairs(embeddings: np.ndarray | None = None, *, phash: np.ndarray | None = None,
                         dhash: np.ndarray | None = None, sha1: Sequence[str] | None = None,
                         threshold: float = THRESHOLD, ratio: float | None = RATIO, reference: int = REFERENCE,
                         floor: float = FLOOR, hash_distance: tuple[int, int] | None = HASH_DISTANCE,
                         hash_floor: float = HASH_FLOOR,
                         max_pairs: int = 200_000) -> list[dict]:
    """Every pair ``a < b`` flagged by at least one signal, as dicts ``{"a", "b", "signals":
    [...], "similarity": cosine or None, "hash_distance": [phash, dhash] bits or None}``,
    sorted by similarity (highest first). Give any subset of the signals' inputs."""
    threshold = check_threshold(threshold)
    n = next((len(x) for x in (embeddings, phash, sha1) if x is not None), 0)
    found: dict[tuple[int, int], set[str]] = {}
    z = normalize(embeddings) if embeddings is not None and n > 1 else None

    def add(a: np.ndarray, b: np.ndarray, signal: str) -> None:
        for i, j in zip(a.tolist(), b.tolist()):
            if i != j:
                found.setdefault((min(i, j), max(i, j)), set()).add(signal)
        if len(found) > max_pairs:
            raise ConfigError(f"more than {max_pairs} near-duplicate pairs: the threshold ({threshold}) is far too "
                              f"low for this data; raise it")

    if sha1 is not None:
        for members in same_key_groups(sha1):  # a chain joins the group: n - 1 pairs, not n^2 / 2 for n copies
            for x, y in zip(members, members[1:]):
                found.setdefault((x, y), set()).add("sha1")
    large = z is not None and n > EXACT_LIMIT
    if large:  # candidates from an approximate neighbour index: linear-ish time, not all pairs
        ca, cb, cs = _candidate_pairs(z, CANDIDATES, _exact_ids(sha1, n))
    if phash is not None and dhash is not None and hash_distance is not None and n > 1 and large:
        ph, dh = np.asarray(phash, np.uint64), np.asarray(dhash, np.uint64)
        ok = ((np.bitwise_count(ph[ca] ^ ph[cb]) <= hash_distance[0]) & (np.bitwise_count(dh[ca] ^ dh[cb]) <= hash_distance[1])
              & (cs >= hash_floor))
        add(ca[ok], cb[ok], "hash")
    elif phash is not None and dhash is not None and hash_distance is not None and n > 1:
        ph, dh = np.asarray(phash, np.uint64), np.asarray(dhash, np.uint64)
        for start in range(0, n, _BLOCK):
            dp = np.bitwise_count(ph[start:start + _BLOCK, None] ^ ph[None, :])
            dd = np.bitwise_count(dh[start:start + _BLOCK, None] ^ dh[None, :])
            i, j = np.nonzero((dp <= hash_distance[0]) & (dd <= hash_distance[1]))
            keep = start + i < j
            i, j = start + i[keep], j[keep]
            if z is not None:  # both signals: the embeddings must agree too
                ok = np.einsum("ij,ij->i", z[i], z[j]) >= hash_floor
                i, j = i[ok], j[ok]
            add(i, j, "hash")
    if large:
        ok = cs >= threshold
        add(ca[ok], cb[ok], "embedding")
    if z is not None:
        for start in range(0, n if not large else 0, _BLOCK):
            block = z[start:start + _BLOCK] @ z.T
            i, j = np.nonzero(block >= threshold)
            keep = start + i < j
            add(start + i[keep], j[keep], "embedding")
        if ratio is not None and n > reference:
            groups = _exact_ids(sha1, n)
            nbr, sim = _neighbours(z, reference, groups)
            ref_dist = 1.0 - sim[:, -1]  # distance to the reference-th neighbour (exact copies collapsed)
            for rank in range(reference - 1):
                a, b, s = np.arange(n), nbr[:, rank], sim[:, rank]
                d = 1.0 - s
                ok = (s >= floor) & (d <= ratio * ref_dist) & (d <= ratio * ref_dist[b])
                if phash is not None:  # the layout must agree too
                    ph = np.asarray(phash, np.uint64)
                    ok &= np.bitwise_count(ph[a] ^ ph[b]) <= RATIO_HASH
                add(a[ok], b[ok], "embedding")
    out = []
    for (a, b), signals in found.items():
        item = {"a": a, "b": b, "signals": sorted(signals, key=["sha1", "hash", "embedding"].index),
                "similarity": round(float(z[a] @ z[b]), 4) if z is not None else None,
                "hash_distance": None}
        if phash is not None and dhash is not None:
            item["hash_distance"] = [int(np.bitwise_count(np.uint64(phash[a]) ^ np.uint64(phash[b]))),
                                     int(np.bitwise_count(np.uint64(dhash[a]) ^ np.uint64(dhash[b])))]
        out.append(item)
    out.sort(key=lambda p: (-(p["similarity"] if p["similarity"] is not None else 2.0), p["a"], p["b"]))
    return out


def _exact_ids(sha1: Sequence[str] | None, n: int) -> np.ndarray | None:
    """One id per row, shared by identical files (same content hash)."""
    if sha1 is None:
        return None
    ids = np.arange(n, dtype=np.int64)
    for group in same_key_groups(sha1):
        ids[group] = group[0]
    return ids


def near_duplicate_groups(n: int, pairs: Sequence[dict]) -> list[list[int]]:
    """Connected components (of 2+ items) of the pair graph over ``n`` items, each sorted, the
    largest first."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p in pairs:
        ra, rb = find(p["a"]), find(p["b"])
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    comps: dict[int, list[int]] = {}
    for i in range(n):
        comps.setdefault(find(i), []).append(i)
    groups = [sorted(c) for c in comps.values() if len(c) > 1]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def classify_group(members: Sequence[int], labels: Sequence[int], splits: Sequence[str]) -> list[str]:
    """Kinds of a group: ``"cross-split"`` (leakage) when it spans splits, ``"conflicting-labels"``
    when it spans classes, ``"within-class"`` otherwise.

    >>> classify_group([0, 1], [3, 3], ["train", "test"])
    ['cross-split']
    >>> classify_group([0, 1, 2], [0, 1, 1], ["train", "train", "train"])
    ['conflicting-labels']
    """
    kinds = []
    if len({splits[i] for i in members}) > 1:
        kinds.append("cross-split")
    if len({labels[i] for i in members}) > 1:
        kinds.append("conflicting-labels")
    return kinds or ["within-class"]
