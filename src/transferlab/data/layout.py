"""Find the images and labels in the layouts people have, scan them, and split them.

Layouts (detected in this order):

``csv``            a ``.csv`` file of ``path,label`` rows (paths relative to the CSV's folder or
                   absolute; a header row is allowed, and a header may name a ``split`` column with
                   ``train`` / ``val`` / ``test`` values).
``train-test``     ``ROOT/train/CLASS/*`` plus ``ROOT/test/CLASS/*`` and/or ``ROOT/val/CLASS/*``
                   (``valid`` / ``validation`` also work). With no val folder, val is split out of train.
``class-folders``  ``ROOT/CLASS/*`` (sub-folders inside a class folder count too): split train/val.

Rules (documented in the README):

* image files are matched by lower-cased extension (:data:`IMAGE_EXTENSIONS`); hidden files and
  folders (``.name``) and other extensions are ignored;
* the split is stratified and deterministic: each class is shuffled with a generator seeded by
  ``(seed, class name)`` and ``round(n * val_ratio)`` of its images (at least 1, at most ``n - 1``)
  go to val; classes and samples are listed in sorted order;
* a class with only 1 usable image goes to train, with a :class:`DataWarning` naming it;
* a class folder with no usable images is skipped with a :class:`DataWarning` naming it;
* a class that has images in val/test but none in train, a missing path, no classes or no
  readable images raise :class:`~transferlab.errors.DataError` (one clear line).

>>> splits = load_data("~/photos", val_ratio=0.2, seed=0)      # doctest: +SKIP
>>> splits.classes, len(splits.train), len(splits.val)          # doctest: +SKIP
(['cat', 'dog'], 160, 40)
"""
from __future__ import annotations

import csv
import math
import os
import warnings
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .images import is_image_name
from .scan import duplicate_groups, scan_files
from .splits import IMAGE_EXTENSIONS, BrokenFile, DataSplits, DataWarning, Sample

SPLIT_NAMES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}
_PATH_HEADERS = {"path", "file", "filename", "filepath", "file_path", "image", "image_path", "img"}
_LABEL_HEADERS = {"label", "class", "category", "target", "y", "class_name"}

# (absolute path, class name, split or None = "to be split into train/val")
_Entry = tuple[str, str, "str | None"]


def list_images(folder: Path) -> tuple[list[str], list[str]]:
    """Image files under ``folder`` (recursive, sorted) and the other visible files that were ignored."""
    images, ignored = [], []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = os.path.abspath(os.path.join(dirpath, name))
            (images if is_image_name(name) else ignored).append(path)
    return images, ignored


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


def _from_class_folders(root: Path, split: str | None, notes: list[str], ignored: list[str]) -> list[_Entry]:
    entries: list[_Entry] = []
    where = f"{split}/" if split else ""
    for cdir in _class_dirs(root):
        images, other = list_images(cdir)
        ignored.extend(other)
        if not images:
            notes.append(f"class folder '{where}{cdir.name}' has no image files; skipped")
        entries += [(p, cdir.name, split) for p in images]
    return entries


def _from_csv(csv_path: Path, ignored: list[str], broken: list[BrokenFile]) -> list[_Entry]:
    base = csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = [(i, r) for i, r in enumerate(csv.reader(f), start=1)
                    if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV {csv_path}: {exc}") from None
    if not rows:
        raise DataError(f"CSV has no rows: {csv_path} (expected 'path,label' lines)")
    col_path, col_label, col_split = 0, 1, None
    first = [c.strip().lower() for c in rows[0][1]]
    if first[0] in _PATH_HEADERS or (len(first) > 1 and first[1] in _LABEL_HEADERS):
        col_path = next((i for i, c in enumerate(first) if c in _PATH_HEADERS), 0)
        col_label = next((i for i, c in enumerate(first) if c in _LABEL_HEADERS), 1)
        col_split = next((i for i, c in enumerate(first) if c == "split"), None)
        rows = rows[1:]
    entries: list[_Entry] = []
    labels_of: dict[str, str] = {}
    for line, row in rows:
        cells = [c.strip() for c in row]
        if len(cells) <= max(col_path, col_label) or not cells[col_path] or not cells[col_label]:
            raise DataError(f"{csv_path}: line {line}: expected 'path,label', got {','.join(row)!r}")
        raw, label = cells[col_path], cells[col_label]
        split = None
        if col_split is not None and len(cells) > col_split and cells[col_split]:
            split = SPLIT_NAMES.get(cells[col_split].lower())
            if split is None:
                raise DataError(f"{csv_path}: line {line}: unknown split {cells[col_split]!r} (use train, val or test)")
        path = os.path.abspath(base / Path(raw).expanduser())
        if path in labels_of:
            if labels_of[path] != label:
                raise DataError(f"{csv_path}: line {line}: {raw} is listed with two labels: "
                                f"{labels_of[path]!r} and {label!r}")
            continue
        labels_of[path] = label
        if not os.path.isfile(path):
            broken.append(BrokenFile(path, "file not found"))
        elif Path(path).suffix.lower() not in IMAGE_EXTENSIONS:
            broken.append(BrokenFile(path, f"not an image file type ({Path(path).suffix or 'no extension'})"))
        else:
            entries.append((path, label, split))
    return entries


def _detect(root: Path, notes: list[str], ignored: list[str], broken: list[BrokenFile]) -> tuple[str, list[_Entry]]:
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DataError(f"dataset must be a folder or a .csv file, got a file: {root}")
        return "csv", _from_csv(root, ignored, broken)
    subdirs = _class_dirs(root)
    split_dirs: dict[str, Path] = {}
    for d in subdirs:
        key = SPLIT_NAMES.get(d.name.lower())
        if key is None:
            continue
        if key in split_dirs:
            raise DataError(f"both {split_dirs[key].name}/ and {d.name}/ found in {root}; keep one")
        split_dirs[key] = d
    if "train" in split_dirs:
        others = [d.name for d in subdirs if d.name.lower() not in SPLIT_NAMES]
        if others:
            notes.append(f"folders next to train/ ignored: {', '.join(others)}")
        entries: list[_Entry] = []
        for key in ("train", "val", "test"):
            if key in split_dirs:
                entries += _from_class_folders(split_dirs[key], key, notes, ignored)
        return "train-test", entries
    if split_dirs and "train" not in split_dirs:
        raise DataError(f"found {'/'.join(sorted(d.name for d in split_dirs.values()))}/ but no train/ folder in {root}")
    if not subdirs:
        loose = list_images(root)[0]
        if loose:
            raise DataError(f"no class folders in {root}: put the images in one sub-folder per class "
                            f"(ROOT/CLASS/*.jpg), or use a CSV of path,label")
        raise DataError(f"no class folders and no images in {root}")
    return "class-folders", _from_class_folders(root, None, notes, ignored)


def stratified_split(pool: dict[str, list[str]], val_ratio: float, seed: int,
                     notes: list[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Split each class's paths into (train, val) deterministically.

    Each class is shuffled by ``numpy.random.default_rng([seed, crc32(class name)])`` so the split
    of one class does not change when other classes are added. ``round(n * val_ratio)`` images
    (at least 1, at most ``n - 1``) go to val; a class with 1 image stays in train (with a note).

    >>> tr, va = stratified_split({"a": [f"a{i}" for i in range(10)]}, 0.2, seed=0, notes=[])
    >>> len(tr["a"]), len(va["a"])
    (8, 2)
    """
    train: dict[str, list[str]] = {}
    val: dict[str, list[str]] = {}
    for name in sorted(pool):
        paths = sorted(pool[name])
        n = len(paths)
        if val_ratio <= 0 or n == 0:
            n_val = 0
        elif n == 1:
            n_val = 0
            notes.append(f"class '{name}' has only 1 image: it goes to train and val has none of it")
        else:
            n_val = min(n - 1, max(1, math.floor(n * val_ratio + 0.5)))
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode("utf-8"))])
        order = rng.permutation(n)
        chosen = set(order[:n_val].tolist())
        val[name] = [p for i, p in enumerate(paths) if i in chosen]
        train[name] = [p for i, p in enumerate(paths) if i not in chosen]
    return train, val


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
    try:
        val_ratio = float(val_ratio)
    except (TypeError, ValueError):
        raise ConfigError(f"val ratio must be a number in [0, 1), got {val_ratio!r}") from None
    if not 0.0 <= val_ratio < 1.0:
        raise ConfigError(f"val ratio must be in [0, 1), got {val_ratio}")
    root = Path(source).expanduser()
    if not root.exists():
        raise DataError(f"dataset path not found: {source}")
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise DataError(f"dataset folder is not readable: {source}")
    root = Path(os.path.abspath(root))

    notes: list[str] = []
    ignored: list[str] = []
    broken: list[BrokenFile] = []
    layout, entries = _detect(root, notes, ignored, broken)
    if not entries:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise DataError(f"no images found in {source} (looked for {exts})")

    info = {}
    if scan:
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

    # Group per split and class.
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

    tr, va = stratified_split(pool, val_ratio, seed, notes)
    index = {c: i for i, c in enumerate(classes)}

    def samples(groups: list[dict[str, list[str]]]) -> list[Sample]:
        out: list[Sample] = []
        for cls in classes:
            paths = sorted(p for g in groups for p in g.get(cls, []))
            out += [(p, index[cls]) for p in paths]
        return out

    splits = DataSplits(root=str(root), layout=layout, classes=classes,
                        train=samples([tr, fixed["train"]]), val=samples([va, fixed["val"]]),
                        test=samples([fixed["test"]]), broken=broken, info=info, scanned=scan,
                        ignored=ignored)
    if scan:
        split_of = {p: name for name in ("train", "val", "test") for p, _ in splits.split(name)}
        splits.duplicates = [g for g in duplicate_groups(info, split_of)
                             if len({split_of[p] for p in g}) > 1]
        if splits.duplicates:
            notes.append(f"{len(splits.duplicates)} group(s) of identical files sit in different splits "
                         f"(leakage), e.g. {', '.join(splits.duplicates[0][:2])}")
    if broken:
        notes.append(f"skipped {len(broken)} broken file(s), e.g. {broken[0].path}: {broken[0].reason}")
    splits.warnings = notes
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=2)
    return splits
