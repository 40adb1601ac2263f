"""Find the images and their labels in the layouts people have.

Layouts (detected in this order):

``csv``            a ``.csv`` file of ``path,label`` rows (paths relative to the CSV's folder or
                   absolute; a header row is allowed, and a header may name a ``split`` column with
                   ``train`` / ``val`` / ``test`` values).
``train-test``     ``ROOT/train/CLASS/*`` plus ``ROOT/test/CLASS/*`` and/or ``ROOT/val/CLASS/*``
                   (``valid`` / ``validation`` also work). With no val folder, val is split out of train.
``class-folders``  ``ROOT/CLASS/*`` (sub-folders inside a class folder count too): split train/val.

Image files are matched by lower-cased extension (:data:`IMAGE_EXTENSIONS`); hidden files and
folders (``.name``) and other extensions are ignored. :func:`detect_layout` returns the layout
name and ``(path, class, split or None)`` entries; :func:`transferlab.data.load_data` scans and
splits them.
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError
from .images import is_image_name
from .types import IMAGE_EXTENSIONS, BrokenFile

SPLIT_NAMES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}
_PATH_HEADERS = {"path", "file", "filename", "filepath", "file_path", "image", "image_path", "img"}
_LABEL_HEADERS = {"label", "class", "category", "target", "y", "class_name"}

# (absolute path, class name, split or None = "to be split into train/val")
Entry = tuple[str, str, "str | None"]


def list_images(folder: Path) -> tuple[list[str], list[str]]:
    """Image files under ``folder`` (recursive, sorted) and the other visible files that were ignored."""
    images: list[str] = []
    ignored: list[str] = []
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


def _from_class_folders(root: Path, split: str | None, notes: list[str], ignored: list[str]) -> list[Entry]:
    entries: list[Entry] = []
    where = f"{split}/" if split else ""
    for cdir in _class_dirs(root):
        images, other = list_images(cdir)
        ignored.extend(other)
        if not images:
            notes.append(f"class folder '{where}{cdir.name}' has no image files; skipped")
        entries += [(p, cdir.name, split) for p in images]
    return entries


def read_csv_rows(csv_path: Path) -> list[tuple[int, list[str]]]:
    """A dataset CSV's ``(line number, cells)`` rows, blank and ``#`` comment lines left out; a
    one-line DataError when it cannot be read or has no rows."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = [(i, r) for i, r in enumerate(csv.reader(f), start=1)
                    if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV {csv_path}: {exc}") from None
    if not rows:
        raise DataError(f"CSV has no rows: {csv_path} (expected 'path,label' lines)")
    return rows


def csv_split(cells: list[str], col_split: int | None, csv_path: Path, line: int) -> str | None:
    """The split a CSV row names in its ``split`` column (None: to be drawn)."""
    if col_split is None or len(cells) <= col_split or not cells[col_split]:
        return None
    split = SPLIT_NAMES.get(cells[col_split].lower())
    if split is None:
        raise DataError(f"{csv_path}: line {line}: unknown split {cells[col_split]!r} (use train, val or test)")
    return split


def csv_file_problem(path: str) -> str | None:
    """Why a path listed in a CSV cannot be used (None when it is an existing image file)."""
    if not os.path.isfile(path):
        return "file not found"
    if Path(path).suffix.lower() not in IMAGE_EXTENSIONS:
        return f"not an image file type ({Path(path).suffix or 'no extension'})"
    return None


def _from_csv(csv_path: Path, ignored: list[str], broken: list[BrokenFile]) -> list[Entry]:
    base = csv_path.parent
    rows = read_csv_rows(csv_path)
    col_path, col_label, col_split = 0, 1, None
    first = [c.strip().lower() for c in rows[0][1]]
    if first[0] in _PATH_HEADERS or (len(first) > 1 and first[1] in _LABEL_HEADERS):
        col_path = next((i for i, c in enumerate(first) if c in _PATH_HEADERS), 0)
        col_label = next((i for i, c in enumerate(first) if c in _LABEL_HEADERS), 1)
        col_split = next((i for i, c in enumerate(first) if c == "split"), None)
        rows = rows[1:]
    entries: list[Entry] = []
    labels_of: dict[str, str] = {}
    for line, row in rows:
        cells = [c.strip() for c in row]
        if len(cells) <= max(col_path, col_label) or not cells[col_path] or not cells[col_label]:
            raise DataError(f"{csv_path}: line {line}: expected 'path,label', got {','.join(row)!r}")
        raw, label = cells[col_path], cells[col_label]
        split = csv_split(cells, col_split, csv_path, line)
        path = os.path.abspath(base / Path(raw).expanduser())
        add_csv_row(entries, broken, labels_of, path, label, split, where=f"{csv_path}: line {line}: {raw}")
    return entries


def add_csv_row(entries: list, broken: list[BrokenFile], seen: dict, path: str, label, split: str | None, *,
                where: str) -> None:
    """One CSV row's image into ``entries`` (``(path, label, split)``), or into ``broken`` when the file
    cannot be used; a path listed again with another label is a DataError naming the row (``where``),
    with the same label it is skipped."""
    if path in seen:
        if seen[path] != label:
            raise DataError(f"{where} is listed with two labels: {seen[path]!r} and {label!r}")
        return
    seen[path] = label
    problem = csv_file_problem(path)
    if problem is not None:
        broken.append(BrokenFile(path, problem))
    else:
        entries.append((path, label, split))


def detect_layout(root: Path, notes: list[str], ignored: list[str], broken: list[BrokenFile]) -> tuple[str, list[Entry]]:
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
        entries: list[Entry] = []
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


def expand_paths(paths: Sequence[str | Path] | str | Path) -> tuple[list[str], list[dict]]:
    """Files, folders (recursive, image extensions only) and globs -> (image files, error rows).

    Explicitly named files are kept whatever their extension (they are reported if unreadable);
    a path that does not exist or a glob that matches nothing gives an error row.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[str] = []
    errors: list[dict] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        s = str(p)
        if s not in seen:
            seen.add(s)
            files.append(s)

    def add_dir(d: Path) -> None:
        for f in sorted(d.rglob("*")):
            if f.is_file() and is_image_name(f) and not any(part.startswith(".") for part in f.relative_to(d).parts):
                add(f)

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            add_dir(p)
        elif p.is_file():
            add(p)
        elif glob.has_magic(str(raw)):
            matches = sorted(glob.glob(str(raw), recursive=True))
            if not matches:
                errors.append({"path": str(raw), "error": "no files match this pattern"})
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    add_dir(mp)
                elif mp.is_file() and is_image_name(mp):
                    add(mp)
        else:
            errors.append({"path": str(raw), "error": "file not found"})
    return files, errors
