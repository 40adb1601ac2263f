"""Plain data types shared by the data layer: samples, broken files, per-file info, splits.

>>> s = DataSplits(root="/d", layout="class-folders", classes=["cat", "dog"],
...                train=[("/d/cat/1.jpg", 0)], val=[("/d/dog/2.jpg", 1)], test=[])
>>> s.split("val")
[('/d/dog/2.jpg', 1)]
>>> s.counts()["train"]
{'cat': 1, 'dog': 0}
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError

#: Image file extensions that are listed (lower-cased suffix match; ``.JPG`` counts).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

#: ``(absolute path, class index)``
Sample = tuple[str, int]

SPLITS = ("train", "val", "test")


def label_matrix(label_sets, num_classes: int) -> np.ndarray:
    """The multi-hot ``float32 [N, C]`` matrix of per-image class-index sets.

    >>> label_matrix([(0, 2), ()], 3).tolist()
    [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    """
    out = np.zeros((len(label_sets), num_classes), np.float32)
    for i, labels in enumerate(label_sets):
        out[i, list(labels)] = 1.0
    return out


class DataWarning(UserWarning):
    """Something in the dataset was skipped or looks wrong, but loading can go on."""


@dataclass
class BrokenFile:
    """A file skipped by the validation scan, with a short human reason
    (``"zero bytes"``, ``"truncated image"``, ``"not an image"``, ``"decompression bomb (...)"``)."""

    path: str
    reason: str


@dataclass
class ImageInfo:
    """What the validation scan learned about one readable image (size after EXIF rotation)."""

    width: int
    height: int
    format: str  # PIL format name: "JPEG", "PNG", ...
    mode: str  # PIL mode before conversion: "RGB", "L", "P", "RGBA", "CMYK", "I;16", ...
    bytes: int
    sha1: str  # content hash of the file's bytes (duplicate detection)


@dataclass
class DataSplits:
    """A dataset resolved into train / val / test sample lists.

    ``duplicates`` holds groups of same-content files that sit in different splits (leakage);
    ``info`` maps each readable path to its :class:`ImageInfo` when the data was scanned;
    ``warnings`` repeats the :class:`DataWarning` messages issued while loading; ``ignored`` lists
    visible files skipped for their extension; ``scanned`` says whether the validation scan ran.
    """

    root: str
    layout: str  # "class-folders" | "train-test" | "csv" | "csv-multilabel"
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    broken: list[BrokenFile] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    info: dict[str, ImageInfo] = field(default_factory=dict, repr=False)
    warnings: list[str] = field(default_factory=list, repr=False)
    ignored: list[str] = field(default_factory=list, repr=False)  # visible non-image files skipped silently
    scanned: bool = False
    val_ratio: float | None = None  # how load_data drew val from the pool (None: built otherwise)
    split_seed: int | None = None
    # multi-label data (:mod:`.multilabel`): each path's class indices; a sample's int label is then its
    # first class (0 for none), which only order-keeping code may read: use :meth:`label_matrix`
    label_sets: dict[str, tuple[int, ...]] | None = field(default=None, repr=False)

    @property
    def multilabel(self) -> bool:
        """True when each image carries a set of labels (``label_sets``)."""
        return self.label_sets is not None

    def label_matrix(self, samples: list[Sample]) -> np.ndarray:
        """The multi-hot ``float32 [N, C]`` labels of ``samples`` (one-hot for single-label data)."""
        sets = self.label_sets
        return label_matrix([sets[p] if sets is not None else (y,) for p, y in samples], len(self.classes))

    def split(self, name: str) -> list[Sample]:
        """The samples of split ``name`` (``"train"``, ``"val"`` or ``"test"``)."""
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; choose one of: {', '.join(SPLITS)}")
        return getattr(self, name)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class for each split: ``{"train": {"cat": 40, ...}, "val": {...}, "test": {...}}``
        (multi-label: the images showing each class)."""
        out: dict[str, dict[str, int]] = {}
        for name in SPLITS:
            c = dict.fromkeys(self.classes, 0)
            for path, label in self.split(name):
                for k in (self.label_sets[path] if self.label_sets is not None else (label,)):
                    c[self.classes[k]] += 1
            out[name] = c
        return out

    def typical_side(self, split: str = "train") -> float | None:
        """The median shorter side (px) of a split's images, from the scan (None when not scanned)."""
        sides = sorted(min(i.width, i.height) for i in (self.info.get(p) for p, _ in self.split(split)) if i)
        return float(sides[len(sides) // 2]) if sides else None

    def __repr__(self) -> str:
        return (
            f"DataSplits(root={self.root!r}, layout={self.layout!r}, classes={len(self.classes)}, "
            f"train={len(self.train)}, val={len(self.val)}, test={len(self.test)}, "
            f"broken={len(self.broken)}, duplicates={len(self.duplicates)})"
        )
