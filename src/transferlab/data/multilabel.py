"""Multi-label data: a CSV whose images each carry a set of labels, and its stratified split.

Two CSV forms, each with a header row (and optionally a ``split`` column of train / val / test):

``path,labels``             ``labels`` a ``;``-separated list (``beach;sunset``; empty: none of the
                            classes). A ``label`` column whose cells hold a ``;`` counts too.
``path,beach,sunset,...``   one column per class: ``1`` (or true / yes / x) when the image shows it,
                            ``0`` (false / no / empty) when not.

The classes are the labels' names, sorted. Images without a fixed split are split with iterative
stratification (Sechidis et al., 2011: ``MultilabelStratifiedShuffleSplit`` of the
``iterative-stratification`` package), which keeps every label's share of the images close in train
and val, with the files sorted first so the split does not depend on the CSV's row order.

>>> multilabel_columns(["path", "labels"]), multilabel_columns(["file", "beach", "sunset", "split"])
(('list', 0, [1]), ('onehot', 0, [1, 2]))
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .layout import _LABEL_HEADERS, _PATH_HEADERS, add_csv_row, csv_split, read_csv_rows
from .types import BrokenFile

LAYOUT = "csv-multilabel"
SEPARATOR = ";"
_TRUE = {"1", "1.0", "true", "yes", "y", "x"}
_FALSE = {"0", "0.0", "false", "no", "n", ""}

#: ``(absolute path, its labels, split or None)``
MultiEntry = tuple[str, tuple[str, ...], "str | None"]


def multilabel_columns(header: list[str]) -> tuple[str, int, list[int]] | None:
    """How a CSV header reads as multi-label: ``("list", path column, [labels column])`` for a
    ``labels`` column, ``("onehot", path column, class columns)`` for a path column and two or more
    other (non-split) columns; None when it is no multi-label header (a ``label`` column is decided by
    its cells, see :func:`read_multilabel_csv`)."""
    low = [c.strip().lower() for c in header]
    col_path = next((i for i, c in enumerate(low) if c in _PATH_HEADERS), None)
    if col_path is None:
        return None
    if "labels" in low:
        return "list", col_path, [low.index("labels")]
    if any(c in _LABEL_HEADERS for c in low):
        return None
    others = [i for i, c in enumerate(low) if i != col_path and c != "split"]
    return ("onehot", col_path, others) if len(others) >= 2 else None


def read_multilabel_csv(csv_path: Path, broken: list[BrokenFile]) -> tuple[list[MultiEntry], list[str]] | None:
    """``(entries, classes)`` of a multi-label CSV (files that cannot be used go to ``broken``), or
    None when the CSV is a single-label ``path,label`` one."""
    rows = read_csv_rows(csv_path)
    header = [c.strip() for c in rows[0][1]]
    low = [c.lower() for c in header]
    form = multilabel_columns(header)
    if form is None:  # a 'label' column holding ';'-separated lists is the list form too
        col_label = next((i for i, c in enumerate(low) if c in _LABEL_HEADERS), None)
        col_path = next((i for i, c in enumerate(low) if c in _PATH_HEADERS), None)
        if col_label is None or col_path is None or not any(
                len(r) > col_label and SEPARATOR in r[col_label] for _, r in rows[1:]):
            return None
        form = ("list", col_path, [col_label])
    kind, col_path, cols = form
    col_split = low.index("split") if "split" in low else None
    if kind == "onehot" and not all(c.strip().lower() in _TRUE | _FALSE
                                    for _, r in rows[1:] for c in (r[i] if i < len(r) else "" for i in cols)):
        return None  # not 0/1 columns: the single-label reader says what is wrong
    base = csv_path.parent
    entries: list[MultiEntry] = []
    seen: dict[str, tuple[str, ...]] = {}
    for line, row in rows[1:]:
        cells = [c.strip() for c in row]
        if len(cells) <= col_path or not cells[col_path]:
            raise DataError(f"{csv_path}: line {line}: no image path")
        if kind == "list":
            cell = cells[cols[0]] if cols[0] < len(cells) else ""
            labels = tuple(sorted({x.strip() for x in cell.split(SEPARATOR) if x.strip()}))
        else:
            labels = tuple(sorted(header[i] for i in cols if i < len(cells) and cells[i].lower() in _TRUE))
        path = os.path.abspath(base / Path(cells[col_path]).expanduser())
        split = csv_split(cells, col_split, csv_path, line)
        add_csv_row(entries, broken, seen, path, labels, split, where=f"{csv_path}: line {line}: {cells[col_path]}")
    names = {header[i] for i in cols} if kind == "onehot" else {x for _, labels, _ in entries for x in labels}
    return entries, sorted(names)


def multilabel_split(matrix: np.ndarray, val_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train rows, val rows)`` of a multi-hot ``matrix`` by iterative stratification, seeded; every
    row to train for a ratio of 0 or fewer than 2 rows."""
    # imported here: it loads scikit-learn, SciPy and pandas, which the lean ONNX server (it imports this
    # module through runfolder -> load) must not pay: 85 -> 230 MB of RSS at import, measured
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    n = len(matrix)
    if val_ratio <= 0 or n < 2:
        return np.arange(n), np.arange(0)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=val_ratio, random_state=int(seed))
    train, val = next(splitter.split(np.zeros((n, 1)), matrix))
    return np.sort(train), np.sort(val)


def check_classes(classes: list[str], train_sets: list[tuple[int, ...]], source) -> None:
    """A DataError when fewer than 2 classes, or a class that no training image shows."""
    if len(classes) < 2:
        raise DataError(f"{source}: a multi-label dataset needs at least 2 labels, found {classes}")
    seen = {c for labels in train_sets for c in labels}
    missing = [classes[c] for c in range(len(classes)) if c not in seen]
    if missing:
        raise DataError(f"label {', '.join(repr(m) for m in missing)} is on no training image "
                        f"(a model cannot learn a label it never sees)")
