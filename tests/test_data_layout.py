"""Layouts, stratified split, determinism and clear errors of transferlab.data.load_data."""
from __future__ import annotations

import os
import shutil
import itertools
import warnings
from pathlib import Path

import pytest
from PIL import Image

from transferlab.data import IMAGE_EXTENSIONS, DataWarning, load_data
from transferlab.errors import ConfigError, DataError


def _img(path: Path, color=(200, 30, 30), size=(12, 10), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


_UNIQUE = itertools.count()


def _class_tree(root: Path, counts: dict[str, int]) -> Path:
    """Class folders of small PNGs, every file different (also across trees)."""
    for cls, n in counts.items():
        for i in range(n):
            k = next(_UNIQUE)
            _img(root / cls / f"{i:03d}.png", color=(k % 256, k // 256 % 256, 77))
    return root


def test_digits_stratified_80_20(digits_dir):
    s = load_data(digits_dir, progress=False)
    assert s.layout == "class-folders"
    assert s.classes == [str(d) for d in range(10)]
    counts = s.counts()
    assert counts["train"] == {str(d): 24 for d in range(10)}
    assert counts["val"] == {str(d): 6 for d in range(10)}
    assert s.test == [] and s.broken == [] and s.duplicates == []
    # absolute paths, labels match their folder, no overlap
    for p, y in s.train + s.val:
        assert os.path.isabs(p) and Path(p).parent.name == s.classes[y]
    assert not {p for p, _ in s.train} & {p for p, _ in s.val}
    assert len(s.info) == 300 and s.info[s.train[0][0]].width == 32


def test_split_is_deterministic_and_seeded(digits_dir):
    a = load_data(digits_dir, seed=3, scan=False)
    b = load_data(digits_dir, seed=3, scan=False)
    c = load_data(digits_dir, seed=4, scan=False)
    assert a.train == b.train and a.val == b.val
    assert a.val != c.val
    assert c.counts()["val"] == a.counts()["val"]  # still stratified


def test_val_ratio_configurable(digits_dir):
    s = load_data(digits_dir, val_ratio=0.5, scan=False)
    assert set(s.counts()["val"].values()) == {15}
    s0 = load_data(digits_dir, val_ratio=0.0, scan=False)
    assert len(s0.val) == 0 and len(s0.train) == 300
    with pytest.raises(ConfigError, match="val ratio"):
        load_data(digits_dir, val_ratio=1.0)


def test_uneven_classes_rounding_and_one_image_class(tmp_path):
    # round(n * 0.2) half up, at least 1, at most n - 1: 8 -> 2 (1.6; truncating would give 1), 11 -> 2 (2.2)
    root = _class_tree(tmp_path / "d", {"a": 11, "b": 3, "c": 2, "e": 8, "solo": 1})
    with pytest.warns(DataWarning, match="class 'solo' has only 1 image"):
        s = load_data(root, progress=False)
    val = s.counts()["val"]
    train = s.counts()["train"]
    assert val == {"a": 2, "b": 1, "c": 1, "e": 2, "solo": 0}
    assert train == {"a": 9, "b": 2, "c": 1, "e": 6, "solo": 1}
    assert any("solo" in w for w in s.warnings)


def test_extensions_any_case_hidden_and_other_files_ignored(tmp_path):
    root = tmp_path / "d"
    exts = sorted(IMAGE_EXTENSIONS)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF",
           ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
    for i, ext in enumerate(exts):
        _img(root / "x" / f"img{i}{ext.upper() if i % 2 else ext}", color=(i * 25, 0, 0), fmt=fmt[ext])
        _img(root / "y" / f"img{i}{ext}", color=(0, 0, i * 25), fmt=fmt[ext])
    _img(root / "x" / ".hidden.jpg")
    _img(root / ".cache" / "z.jpg")  # hidden folder: not a class
    (root / "x" / "notes.txt").write_text("hello")
    (root / "x" / "Thumbs.db").write_bytes(b"\0")
    _img(root / "y" / "nested" / "deep.png", color=(1, 2, 3))  # sub-folders of a class count
    s = load_data(root, progress=False)
    assert s.classes == ["x", "y"]
    assert sum(s.counts()["train"].values()) + len(s.val) == 2 * len(exts) + 1
    assert s.broken == []
    assert sorted(Path(p).name for p in s.ignored) == ["Thumbs.db", "notes.txt"]
    assert set(s.info[p].format for p in s.info) == {"JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF"}


def test_train_test_layout_without_val_splits_train(tmp_path):
    root = tmp_path / "d"
    _class_tree(root / "train", {"cat": 10, "dog": 5})
    _class_tree(root / "test", {"cat": 3, "dog": 2})
    s = load_data(root, seed=1, progress=False)
    assert s.layout == "train-test"
    assert s.counts() == {"train": {"cat": 8, "dog": 4}, "val": {"cat": 2, "dog": 1}, "test": {"cat": 3, "dog": 2}}
    assert all("/train/" in p for p, _ in s.train + s.val)
    assert all("/test/" in p for p, _ in s.test)


@pytest.mark.parametrize("val_name", ["val", "valid", "Validation"])
def test_train_test_layout_with_val_folder(tmp_path, val_name):
    root = tmp_path / "d"
    _class_tree(root / "train", {"cat": 6, "dog": 6})
    _class_tree(root / val_name, {"cat": 2, "dog": 1})
    _class_tree(root / "test", {"cat": 1, "dog": 1})
    s = load_data(root, progress=False)
    assert s.counts() == {"train": {"cat": 6, "dog": 6}, "val": {"cat": 2, "dog": 1}, "test": {"cat": 1, "dog": 1}}
    assert s.split("val") is s.val


def test_class_only_in_test_is_an_error(tmp_path):
    root = tmp_path / "d"
    _class_tree(root / "train", {"cat": 4, "dog": 4})
    _class_tree(root / "test", {"cat": 1, "fox": 1})
    with pytest.raises(DataError, match="'fox'"):
        load_data(root, progress=False)


def test_csv_layout_header_relative_absolute_and_split_column(tmp_path):
    root = _class_tree(tmp_path / "imgs", {"a": 5, "b": 5})
    rows = ["path,label"]
    for p in sorted(root.rglob("*.png")):
        rel = p.relative_to(tmp_path)
        rows.append(f"{p if p.stem.endswith('0') else rel},{p.parent.name}")
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    s = load_data(csv_file, progress=False)
    assert s.layout == "csv" and s.classes == ["a", "b"]
    assert s.counts()["train"] == {"a": 4, "b": 4} and s.counts()["val"] == {"a": 1, "b": 1}

    # no header, a missing file (reported, skipped) and an explicit split column
    no_header = tmp_path / "plain.csv"
    no_header.write_text("\n".join(rows[1:] + ["imgs/a/missing.png,a"]) + "\n")
    with pytest.warns(DataWarning, match="missing.png: file not found"):
        s2 = load_data(no_header, progress=False)
    assert len(s2.train) + len(s2.val) == 10
    assert [(Path(b.path).name, b.reason) for b in s2.broken] == [("missing.png", "file not found")]

    with_split = tmp_path / "split.csv"
    lines = ["file,class,split"] + [f"{r},{'test' if i < 2 else 'train'}" for i, r in enumerate(rows[1:])]
    with_split.write_text("\n".join(lines) + "\n")
    s3 = load_data(with_split, progress=False)
    assert len(s3.test) == 2 and len(s3.train) + len(s3.val) == 8


def test_csv_bad_row_is_one_line_error(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("path,label\nonlyonecolumn\n")
    with pytest.raises(DataError, match="line 2: expected 'path,label'"):
        load_data(f)


@pytest.mark.parametrize("make, message", [
    (lambda t: t / "nope", "dataset path not found"),
    (lambda t: _class_tree(t / "one", {"only": 3}), "only one class"),
    (lambda t: (_img(t / "loose" / "a.png").parent), "no class folders"),
    (lambda t: (t / "empty").mkdir() or t / "empty", "no class folders and no images"),
    (lambda t: _img(t / "file.png"), "must be a folder or a .csv"),
    (lambda t: (t / "dirs" / "a").mkdir(parents=True) or (t / "dirs" / "b").mkdir() or t / "dirs", "no images found"),
])
def test_bad_inputs_raise_one_line_data_errors(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DataError, match=message) as info:
        load_data(path, progress=False)
    assert "\n" not in str(info.value)


def test_empty_class_folder_is_skipped_with_warning(tmp_path):
    root = _class_tree(tmp_path / "d", {"a": 3, "b": 3})
    (root / "empty").mkdir()
    with pytest.warns(DataWarning, match="'empty' has no image files"):
        s = load_data(root, progress=False)
    assert s.classes == ["a", "b"]


def test_class_with_only_broken_files_is_skipped(tmp_path):
    root = _class_tree(tmp_path / "d", {"a": 3, "b": 3})
    (root / "c").mkdir()
    (root / "c" / "x.jpg").write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = load_data(root, progress=False)
    assert s.classes == ["a", "b"]
    assert any("'c' has no readable images" in str(w.message) for w in caught)
    shutil.rmtree(root / "c")
