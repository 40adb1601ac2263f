"""``load_data``: a dataset path -> scanned, split :class:`~transferlab.data.types.DataSplits`.

Rules (documented in the README):

* the layout is detected by :func:`~transferlab.data.layout.detect_layout`;
* every file is decoded once (the validation scan, :mod:`.scan`): broken files are skipped and
  listed with a reason;
* the split is stratified and deterministic (:func:`~transferlab.data.split.stratified_split`; a
  multi-label CSV, :mod:`.multilabel`: iterative stratification);
* a class with only 1 usable image goes to train, with a :class:`DataWarning` naming it;
* a class folder with no usable images is skipped with a :class:`DataWarning` naming it;
* a class that has images in val/test but none in train, a missing path, no classes or no
  readable images raise :class:`~transferlab.errors.DataError` (one clear line).

>>> splits = load_data("~/photos", val_ratio=0.2, seed=0)      # doctest: +SKIP
>>> splits.classes, len(splits.train), len(splits.val)          # doctest: +SKIP
(['cat', 'dog'], 160, 40)
"""
from __future__ import annotations

import os
import warnings
from collections import defaultdict
from pathlib import Path

from ..errors import DataError
from .layout import Entry, detect_layout
from .multilabel import LAYOUT as MULTILABEL_LAYOUT
from .multilabel import MultiEntry, check_classes, multilabel_split, read_multilabel_csv
from .scan import duplicate_groups, scan_files
from .split import check_val_ratio, stratified_split
from .types import IMAGE_EXTENSIONS, SPLITS, BrokenFile, DataSplits, DataWarning, ImageInfo, Sample, label_matrix


def existing_source(source) -> Path:
    """``source`` as a path that exists (``~`` expanded): the one check of a dataset path, made by
    :func:`load_data` and by the CLI before it loads PyTorch."""
    root = Path(source).expanduser()
    if not root.exists():
        raise DataError(f"dataset path not found: {source}")
    return root


def load_data(source: str | os.PathLike, *, val_ratio: float = 0.2, seed: int = 0, scan: bool = True,
              workers: int | None = None, progress: bool = True) -> DataSplits:
    """Resolve a dataset (class folders, train/test folders or a CSV) into train/val/test samples.

    With ``scan=True`` (default) every file is decoded once in parallel (``workers`` threads,
    default ``os.cpu_count()``): broken files are skipped and listed in ``.broken`` with a reason,
    per-file sizes/formats go to ``.info``, and same-content files in different splits are listed in
    ``.duplicates``. Warnings (:class:`DataWarning`) are issued and kept in ``.warnings``.

    >>> s = load_data("DATA", val_ratio=0.2, seed=0)   # doctest: +SKIP
    >>> s.counts()["val"]                               # doctest: +SKIP
    {'cat': 10, 'dog': 10}
    """
    if source is None or str(source).strip() == "":
        raise DataError("no dataset path given")
    val_ratio = check_val_ratio(val_ratio)
    root = _readable_root(source)
    notes: list[str] = []
    ignored: list[str] = []
    broken: list[BrokenFile] = []
    multi = read_multilabel_csv(root, broken) if root.is_file() and root.suffix.lower() == ".csv" else None
    if multi is not None:
        splits = _load_multilabel(root, *multi, broken, notes, val_ratio=val_ratio, seed=seed, scan=scan,
                                  workers=workers, progress=progress)
        return _finish(splits, notes, broken, scan)
    layout, entries = detect_layout(root, notes, ignored, broken)
    if not entries:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise DataError(f"no images found in {source} (looked for {exts})")
    info: dict[str, ImageInfo] = {}
    if scan:
        info, entries = _drop_unreadable(entries, broken, notes, source, workers=workers, progress=progress)
    classes, pool, fixed = _group(entries, source)
    tr, va = stratified_split(pool, val_ratio, seed, notes)
    splits = DataSplits(root=str(root), layout=layout, classes=classes,
                        train=_samples(classes, [tr, fixed["train"]]), val=_samples(classes, [va, fixed["val"]]),
                        test=_samples(classes, [fixed["test"]]), broken=broken, info=info, scanned=scan,
                        ignored=ignored, val_ratio=val_ratio, split_seed=int(seed))
    return _finish(splits, notes, broken, scan)


def _finish(splits: DataSplits, notes: list[str], broken: list[BrokenFile], scan: bool) -> DataSplits:
    """The leakage check (when scanned), the broken-file note, and the warnings said and kept."""
    if scan:
        _find_leaks(splits, notes)
    if broken:
        notes.append(f"skipped {len(broken)} broken file(s), e.g. {broken[0].path}: {broken[0].reason}")
    splits.warnings = notes
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=3)
    return splits


def _load_multilabel(root: Path, entries: list[MultiEntry], classes: list[str], broken: list[BrokenFile],
                     notes: list[str], *, val_ratio: float, seed: int, scan: bool, workers: int | None,
                     progress: bool) -> DataSplits:
    """A multi-label CSV's entries scanned and split (:mod:`.multilabel`: iterative stratification of
    the files without a fixed split)."""
    if not entries:
        raise DataError(f"no images found in {root}")
    info: dict[str, ImageInfo] = {}
    if scan:
        info, scan_broken = scan_files([e[0] for e in entries], workers=workers, progress=progress)
        broken += scan_broken
        bad = {b.path for b in scan_broken}
        entries = [e for e in entries if e[0] not in bad]
        if not entries:
            raise DataError(f"no readable images in {root}: all {len(scan_broken)} files are broken")
    index = {c: i for i, c in enumerate(classes)}
    sets = {p: tuple(index[x] for x in labels) for p, labels, _ in entries}
    has_val = any(s == "val" for _, _, s in entries)
    pool = sorted(p for p, _, s in entries if s is None or (s == "train" and not has_val))
    fixed = {k: sorted(p for p, _, s in entries if s == k and not (k == "train" and not has_val)) for k in SPLITS}
    tr, va = multilabel_split(label_matrix([sets[p] for p in pool], len(classes)), val_ratio, seed)
    train, val = [pool[i] for i in tr] + fixed["train"], [pool[i] for i in va] + fixed["val"]
    check_classes(classes, [sets[p] for p in train], root)

    def samples(paths: list[str]) -> list[Sample]:
        return [(p, sets[p][0] if sets[p] else 0) for p in paths]

    return DataSplits(root=str(root), layout=MULTILABEL_LAYOUT, classes=classes, train=samples(train),
                      val=samples(val), test=samples(fixed["test"]), broken=broken, info=info, scanned=scan,
                      val_ratio=val_ratio, split_seed=int(seed), label_sets=sets)


def _readable_root(source) -> Path:
    """The dataset path, existing and (a folder) readable, made absolute."""
    root = existing_source(source)
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise DataError(f"dataset folder is not readable: {source}")
    return Path(os.path.abspath(root))


def _drop_unreadable(entries: list[Entry], broken: list[BrokenFile], notes: list[str], source, *,
                     workers: int | None, progress: bool) -> tuple[dict[str, ImageInfo], list[Entry]]:
    """The validation scan: every file decoded once. Returns the per-file info and the entries
    without the broken files (added to ``broken``); a class left without images is noted."""
    info, scan_broken = scan_files([e[0] for e in entries], workers=workers, progress=progress)
    broken += scan_broken
    bad = {b.path for b in scan_broken}
    before = {e[1] for e in entries}
    entries = [e for e in entries if e[0] not in bad]
    for cls in sorted(before - {e[1] for e in entries}):
        notes.append(f"class '{cls}' has no readable images (all broken); skipped")
    if not entries:
        first = scan_broken[0]
        raise DataError(f"no readable images in {source}: all {len(scan_broken)} files are broken "
                        f"(e.g. {first.path}: {first.reason})")
    return info, entries


def _group(entries: list[Entry], source) -> tuple[list[str], dict[str, list[str]], dict[str, dict[str, list[str]]]]:
    """``(classes, pool, fixed)``: the sorted class names, the paths to split per class (no split
    given, or train/ without a val/) and those whose folder fixes their split, per split and class.
    A DataError when a class has no training images, or there are fewer than 2 classes."""
    fixed: dict[str, dict[str, list[str]]] = {"train": defaultdict(list), "val": defaultdict(list), "test": defaultdict(list)}
    pool: dict[str, list[str]] = defaultdict(list)
    has_val = any(e[2] == "val" for e in entries)
    for path, cls, split in entries:
        if split is None or (split == "train" and not has_val):
            pool[cls].append(path)
        else:
            fixed[split][cls].append(path)
    classes = sorted({e[1] for e in entries})
    in_train = set(pool) | set(fixed["train"])
    missing = [c for c in classes if c not in in_train]
    if missing:
        where = ", ".join(f"'{c}'" for c in missing)
        raise DataError(f"class {where} has images in val/test but no usable training images "
                        f"(a model cannot learn a class it never sees)")
    if len(classes) < 2:
        raise DataError(f"found only one class ({classes[0]!r}) in {source}; a classifier needs at least 2 classes")
    return classes, pool, fixed


def _samples(classes: list[str], groups: list[dict[str, list[str]]]) -> list[Sample]:
    """The samples of ``groups`` (class -> paths), class by class, each class's paths sorted."""
    out: list[Sample] = []
    for label, cls in enumerate(classes):
        paths = sorted(p for g in groups for p in g.get(cls, []))
        out += [(p, label) for p in paths]
    return out


def _find_leaks(splits: DataSplits, notes: list[str]) -> None:
    """``splits.duplicates``: groups of same-content files that sit in different splits (noted)."""
    split_of = {p: name for name in ("train", "val", "test") for p, _ in splits.split(name)}
    splits.duplicates = [g for g in duplicate_groups(splits.info, split_of)
                         if len({split_of[p] for p in g}) > 1]
    if splits.duplicates:
        notes.append(f"{len(splits.duplicates)} group(s) of identical files sit in different splits "
                     f"(leakage), e.g. {', '.join(splits.duplicates[0][:2])}")
