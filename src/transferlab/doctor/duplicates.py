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


#: the signals, in report order; a pair's ``signals`` array holds their bits (1 << index)
SIGNALS = ("sha1", "hash", "embedding")
#: most pairs per image before the doctor stops (the threshold is then far too low for the data):
#: near-duplicate pairs grow with the images, not with their square (a set composed of 20
#: variants of each photo has ~10 pairs per image)
PAIRS_PER_IMAGE = 50
#: pairs the limit allows however few the images
MIN_PAIR_LIMIT = 200_000


class _PairCollector:
    """Pairs ``a < b`` gathered as array chunks with one signal bit each, merged once at the end
    (a pair flagged by two signals gets both bits): ~21 bytes per pair, no dict per pair."""

    def __init__(self, n: int, max_pairs: int, threshold: float) -> None:
        self.n, self.max_pairs, self.threshold = n, max_pairs, threshold
        self.chunks: list[tuple[np.ndarray, np.ndarray, int]] = []
        self.raw = 0

    def add(self, a: np.ndarray, b: np.ndarray, signal: str) -> None:
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        keep = a != b
        a, b = a[keep], b[keep]
        if not len(a):
            return
        self.chunks.append((np.minimum(a, b), np.maximum(a, b), 1 << SIGNALS.index(signal)))
        self.raw += len(a)
        if self.raw > len(SIGNALS) * self.max_pairs:  # before merging: each pair at most once per signal
            self._too_many()

    def _too_many(self) -> None:
        raise ConfigError(f"more than {self.max_pairs:,} near-duplicate pairs: the threshold ({self.threshold}) is "
                          f"far too low for this data; raise it")

    def merged(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(a, b, signal bits)`` of every distinct pair, ordered by ``(a, b)``."""
        if not self.chunks:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8)
        key = np.concatenate([a * self.n + b for a, b, _ in self.chunks])
        bits = np.concatenate([np.full(len(a), bit, np.uint8) for a, _, bit in self.chunks])
        self.chunks = []
        uniq, inverse = np.unique(key, return_inverse=True)
        if len(uniq) > self.max_pairs:
            self._too_many()
        out = np.zeros(len(uniq), np.uint8)
        np.bitwise_or.at(out, inverse, bits)
        return uniq // self.n, uniq % self.n, out


def pair_limit(n: int) -> int:
    """The most near-duplicate pairs accepted for ``n`` images (:data:`PAIRS_PER_IMAGE` each, at
    least :data:`MIN_PAIR_LIMIT`)."""
    return max(MIN_PAIR_LIMIT, PAIRS_PER_IMAGE * n)


def near_duplicate_pair_arrays(embeddings: np.ndarray | None = None, *, phash: np.ndarray | None = None,
                               dhash: np.ndarray | None = None, sha1: Sequence[str] | None = None,
                               threshold: float = THRESHOLD, ratio: float | None = RATIO,
                               reference: int = REFERENCE, floor: float = FLOOR,
                               hash_distance: tuple[int, int] | None = HASH_DISTANCE,
                               hash_floor: float = HASH_FLOOR, max_pairs: int | None = None) -> dict[str, np.ndarray]:
    """Every pair ``a < b`` flagged by at least one signal, as arrays: ``a``, ``b`` (int64),
    ``signals`` (uint8 bits of :data:`SIGNALS`), ``similarity`` (float32 cosine, NaN without
    embeddings) and ``hash_distance`` (int16 ``[P, 2]`` pHash/dHash bits, -1 without hashes),
    sorted by similarity (highest first), then ``a``, ``b``. Give any subset of the signals'
    inputs. More than ``max_pairs`` (default :func:`pair_limit`) is a ConfigError.

    >>> import numpy as np
    >>> emb = np.array([[1, 0, 0], [0.99, 0.1, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    >>> p = near_duplicate_pair_arrays(emb, threshold=0.9)
    >>> p["a"].tolist(), p["b"].tolist(), p["signals"].tolist()
    ([0], [1], [4])
    """
    threshold = check_threshold(threshold)
    n = next((len(x) for x in (embeddings, phash, sha1) if x is not None), 0)
    found = _PairCollector(n, pair_limit(n) if max_pairs is None else int(max_pairs), threshold)
    z = normalize(embeddings) if embeddings is not None and n > 1 else None
    ph = np.asarray(phash, np.uint64) if phash is not None else None
    dh = np.asarray(dhash, np.uint64) if dhash is not None else None
    # the hash signal's inputs, when all of them are given
    hashes = (ph, dh, hash_distance) if ph is not None and dh is not None and hash_distance is not None and n > 1 \
        else None

    if sha1 is not None:
        for members in same_key_groups(sha1):  # a chain joins the group: n - 1 pairs, not n^2 / 2 for n copies
            found.add(np.asarray(members[:-1]), np.asarray(members[1:]), "sha1")
    if z is not None and n > EXACT_LIMIT:  # candidates from an approximate neighbour index: linear-ish time
        ca, cb, cs = _candidate_pairs(z, CANDIDATES, _exact_ids(sha1, n))
        if hashes is not None:
            hp, hd, (max_p, max_d) = hashes
            ok = ((np.bitwise_count(hp[ca] ^ hp[cb]) <= max_p)
                  & (np.bitwise_count(hd[ca] ^ hd[cb]) <= max_d) & (cs >= hash_floor))
            found.add(ca[ok], cb[ok], "hash")
        ok = cs >= threshold
        found.add(ca[ok], cb[ok], "embedding")
    else:
        if hashes is not None:
            hp, hd, distance = hashes
            _exact_hash_pairs(found, hp, hd, z, distance, hash_floor)
        if z is not None:
            for start in range(0, n, _BLOCK):
                block = z[start:start + _BLOCK] @ z.T
                i, j = np.nonzero(block >= threshold)
                keep = start + i < j
                found.add(start + i[keep], j[keep], "embedding")
    if z is not None and ratio is not None and n > reference:
        _ratio_pairs(found, z, ph, sha1, ratio=ratio, reference=reference, floor=floor)
    return _pair_table(*found.merged(), z=z, phash=ph, dhash=dh)


def _exact_hash_pairs(found: _PairCollector, ph: np.ndarray, dh: np.ndarray, z: np.ndarray | None,
                      hash_distance: tuple[int, int], hash_floor: float) -> None:
    """All pairs whose pHash and dHash are within ``hash_distance`` (and, with embeddings, whose
    similarity reaches ``hash_floor``), in blocks of rows."""
    for start in range(0, len(ph), _BLOCK):
        dp = np.bitwise_count(ph[start:start + _BLOCK, None] ^ ph[None, :])
        dd = np.bitwise_count(dh[start:start + _BLOCK, None] ^ dh[None, :])
        i, j = np.nonzero((dp <= hash_distance[0]) & (dd <= hash_distance[1]))
        keep = start + i < j
        i, j = start + i[keep], j[keep]
        if z is not None:  # both signals: the embeddings must agree too
            ok = np.einsum("ij,ij->i", z[i], z[j]) >= hash_floor
            i, j = i[ok], j[ok]
        found.add(i, j, "hash")


def _ratio_pairs(found: _PairCollector, z: np.ndarray, ph: np.ndarray | None, sha1: Sequence[str] | None, *,
                 ratio: float, reference: int, floor: float) -> None:
    """Lowe's ratio test over each image's ``reference`` nearest neighbours (exact copies collapsed)."""
    n = len(z)
    nbr, sim = _neighbours(z, reference, _exact_ids(sha1, n))
    ref_dist = 1.0 - sim[:, -1]  # distance to the reference-th neighbour
    for rank in range(reference - 1):
        a, b, s = np.arange(n), nbr[:, rank], sim[:, rank]
        d = 1.0 - s
        ok = (s >= floor) & (d <= ratio * ref_dist) & (d <= ratio * ref_dist[b])
        if ph is not None:  # the layout must agree too
            ok &= np.bitwise_count(ph[a] ^ ph[b]) <= RATIO_HASH
        found.add(a[ok], b[ok], "embedding")


def _pair_table(a: np.ndarray, b: np.ndarray, bits: np.ndarray, *, z: np.ndarray | None,
                phash: np.ndarray | None, dhash: np.ndarray | None) -> dict[str, np.ndarray]:
    """The pairs' similarity and hash distances, computed in chunks, and their report order."""
    sim = np.full(len(a), np.nan, np.float32)
    dist = np.full((len(a), 2), -1, np.int16)
    for start in range(0, len(a), 65536):
        i, j = a[start:start + 65536], b[start:start + 65536]
        if z is not None:
            sim[start:start + 65536] = np.einsum("ij,ij->i", z[i], z[j])
        if phash is not None and dhash is not None:
            dist[start:start + 65536, 0] = np.bitwise_count(phash[i] ^ phash[j])
            dist[start:start + 65536, 1] = np.bitwise_count(dhash[i] ^ dhash[j])
    rounded = np.round(sim.astype(np.float64), 4)
    order = np.lexsort((b, a, -np.where(np.isnan(rounded), 2.0, rounded)))
    return {"a": a[order], "b": b[order], "signals": bits[order], "similarity": sim[order],
            "hash_distance": dist[order]}


def settings(threshold: float, ratio: float | None, hash_distance: tuple[int, int] | None) -> dict:
    """The near-duplicate settings as the doctor's report records them."""
    return {"threshold": threshold, "ratio": ratio, "ratio_reference": REFERENCE, "ratio_floor": FLOOR,
            "hash_floor": HASH_FLOOR, "hash_distance": list(hash_distance) if hash_distance else None}


def signal_names(bits: int) -> list[str]:
    """The names of a pair's signal bits, in :data:`SIGNALS` order.

    >>> signal_names(5)
    ['sha1', 'embedding']
    """
    return [name for k, name in enumerate(SIGNALS) if int(bits) >> k & 1]


def pair_dicts(pairs: dict[str, np.ndarray], rows: np.ndarray | None = None) -> list[dict]:
    """Pairs (from :func:`near_duplicate_pair_arrays`) as dicts ``{"a", "b", "signals",
    "similarity", "hash_distance"}``; only ``rows`` when given."""
    rows = np.arange(len(pairs["a"])) if rows is None else rows
    out = []
    for r in rows.tolist():
        s, h = pairs["similarity"][r], pairs["hash_distance"][r]
        out.append({"a": int(pairs["a"][r]), "b": int(pairs["b"][r]), "signals": signal_names(pairs["signals"][r]),
                    "similarity": None if np.isnan(s) else round(float(s), 4),
                    "hash_distance": None if h[0] < 0 else [int(h[0]), int(h[1])]})
    return out


def near_duplicate_pairs(embeddings: np.ndarray | None = None, **options) -> list[dict]:
    """:func:`near_duplicate_pair_arrays` as a list of dicts ``{"a", "b", "signals": [...],
    "similarity": cosine or None, "hash_distance": [phash, dhash] bits or None}`` (for a few
    thousand images; the doctor itself keeps the arrays)."""
    return pair_dicts(near_duplicate_pair_arrays(embeddings, **options))


def _exact_ids(sha1: Sequence[str] | None, n: int) -> np.ndarray | None:
    """One id per row, shared by identical files (same content hash)."""
    if sha1 is None:
        return None
    ids = np.arange(n, dtype=np.int64)
    for group in same_key_groups(sha1):
        ids[group] = group[0]
    return ids


def near_duplicate_groups(n: int, pairs: Sequence[dict] | dict[str, np.ndarray]) -> list[list[int]]:
    """Connected components (of 2+ items) of the pair graph over ``n`` items, each sorted, the
    largest first. ``pairs``: the arrays of :func:`near_duplicate_pair_arrays` or a list of dicts."""
    if isinstance(pairs, dict):
        a, b = np.asarray(pairs["a"], np.int64), np.asarray(pairs["b"], np.int64)
    else:
        a = np.array([p["a"] for p in pairs], np.int64)
        b = np.array([p["b"] for p in pairs], np.int64)
    labels = component_ids(n, a, b)
    sizes = np.bincount(labels, minlength=n) if n else np.zeros(0, np.int64)
    in_group = np.flatnonzero(sizes[labels] > 1)
    order = in_group[np.argsort(labels[in_group], kind="stable")]
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    groups = [g.tolist() for g in np.split(order, cuts)] if len(order) else []
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def component_ids(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected component of each of ``n`` items under the edges ``a``-``b`` (scipy's sparse graph)."""
    # (scipy.sparse is imported here: 0.45 s that the CLI, which reads this module's thresholds, must not pay)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


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
