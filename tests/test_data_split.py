"""The stratified, seeded split (transferlab.data.split.stratified_split) as a pure function: counts
per class size and ratio, determinism, independence of classes, and the one-image note."""
from __future__ import annotations

import numpy as np
import pytest

from transferlab.data.split import stratified_split


def _pool(**sizes: int) -> dict[str, list[str]]:
    return {name: [f"/d/{name}/{i:03d}.png" for i in range(n)] for name, n in sizes.items()}


def _counts(part: dict[str, list[str]]) -> dict[str, int]:
    return {k: len(v) for k, v in part.items()}


# (class size, ratio, images in val): round(n * ratio) half up, at least 1, at most n - 1
@pytest.mark.parametrize("n, ratio, n_val", [
    (8, 0.2, 2),     # 1.6 rounds up: truncation would give 1
    (13, 0.2, 3),    # 2.6
    (7, 0.2, 1),     # 1.4 rounds down
    (11, 0.2, 2),    # 2.2
    (5, 0.5, 3),     # 2.5: half up (Python's round() would give 2)
    (10, 0.25, 3),   # 2.5
    (3, 0.2, 1),     # 0.6 -> 1
    (2, 0.2, 1),     # 0.4 -> 0, raised to at least 1
    (4, 0.1, 1),     # 0.4 -> 0, raised to at least 1
    (2, 0.9, 1),     # 1.8 -> 2, capped at n - 1
    (10, 0.99, 9),   # 9.9 -> 10, capped at n - 1
    (300, 0.2, 60),
])
def test_val_count_rounds_half_up_within_one_and_n_minus_one(n, ratio, n_val):
    train, val = stratified_split(_pool(a=n), ratio, seed=0, notes=[])
    assert len(val["a"]) == n_val and len(train["a"]) == n - n_val
    assert sorted(train["a"] + val["a"]) == _pool(a=n)["a"]  # a partition: nothing lost or repeated


def test_one_image_class_stays_in_train_with_a_note_and_zero_ratio_keeps_all():
    notes: list[str] = []
    train, val = stratified_split(_pool(solo=1, a=6), 0.2, seed=0, notes=notes)
    assert _counts(val) == {"a": 1, "solo": 0} and _counts(train) == {"a": 5, "solo": 1}
    assert notes == ["class 'solo' has only 1 image: it goes to train and val has none of it"]
    notes = []
    train, val = stratified_split(_pool(a=6, b=0), 0.0, seed=0, notes=notes)
    assert _counts(val) == {"a": 0, "b": 0} and _counts(train) == {"a": 6, "b": 0} and notes == []
    train, val = stratified_split(_pool(a=6), -0.5, seed=0, notes=[])
    assert _counts(val) == {"a": 0}


def test_seeded_deterministic_and_each_class_independent_of_the_others():
    pool = _pool(cat=20, dog=20)
    a = stratified_split(pool, 0.25, seed=1, notes=[])
    assert stratified_split(pool, 0.25, seed=1, notes=[]) == a
    # the input order does not matter (paths are sorted first)
    shuffled = {k: list(reversed(v)) for k, v in pool.items()}
    assert stratified_split(shuffled, 0.25, seed=1, notes=[]) == a
    # adding a class leaves the split of the others as it was
    more = stratified_split({**pool, "fox": _pool(fox=9)["fox"]}, 0.25, seed=1, notes=[])
    assert more[1]["cat"] == a[1]["cat"] and more[1]["dog"] == a[1]["dog"]
    # another seed draws other images, in the same numbers
    b = stratified_split(pool, 0.25, seed=2, notes=[])
    assert b[1]["cat"] != a[1]["cat"] and _counts(b[1]) == _counts(a[1]) == {"cat": 5, "dog": 5}
    # two classes of the same size are not split alike (the class name is part of the seed)
    idx = {k: sorted(int(p[-7:-4]) for p in v) for k, v in a[1].items()}
    assert idx["cat"] != idx["dog"]


def test_the_draw_is_a_seeded_permutation_not_the_first_files():
    pool = _pool(a=100)
    _, val = stratified_split(pool, 0.2, seed=0, notes=[])
    picked = sorted(int(p[-7:-4]) for p in val["a"])
    assert picked != list(range(20)) and picked != list(range(80, 100))
    # spread over the whole class, as a uniform draw would be
    assert np.mean(picked) == pytest.approx(49.5, abs=15)
    assert val["a"] == sorted(val["a"])  # val keeps the sorted file order
