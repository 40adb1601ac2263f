"""The built-in samples, written out in layouts :func:`transferlab.data.load_data` reads.

``cifar10`` (the default sample of ``transferlab run``, ``inspect``, ``train``, ``compare``):
    2,400 real 32x32 photos of CIFAR-10 (A. Krizhevsky, "Learning Multiple Layers of Features from
    Tiny Images", 2009), shipped inside the package (``samples/cifar10-sample.zip``, 2.5 MB): the
    first 200 training and 40 test images of each of the 10 classes, as ``DIR/train/CLASS/*.jpg``
    and ``DIR/test/CLASS/*.jpg``. ``tools/make_cifar_sample.py`` rebuilds the archive.
``digits``:
    scikit-learn's bundled handwritten digits (no download): 1,797 real 8x8 grayscale scans,
    upscaled to ``size`` x ``size`` PNGs as ``DIR/0/*.png`` .. ``DIR/9/*.png``.

Writing is atomic (a new folder is filled next to its place and renamed in) and idempotent (a
marker file records the options; the same options again are a no-op).

>>> root = write_sample("/tmp/photos")                         # doctest: +SKIP
>>> sorted(p.name for p in (root / "train").iterdir())[:3]    # doctest: +SKIP
['airplane', 'automobile', 'bird']
>>> write_sample("/tmp/digits", "digits", per_class=30)       # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError
from .cache import default_cache_root

SAMPLES = ("cifar10", "digits")
CIFAR10_ARCHIVE = Path(__file__).parent / "samples" / "cifar10-sample.zip"
CIFAR10_CITATION = 'A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009'
_MARKER = ".transferlab-sample.json"


def write_sample(directory: str | Path, name: str = "cifar10", *, per_class: int | None = None,
                 size: int = 32) -> Path:
    """Write the built-in sample ``name`` (``cifar10`` or ``digits``) into ``directory``; returns it.

    ``per_class`` keeps at most that many (training) images per class, the first ones, so the
    result is deterministic; ``size`` is the side of the digits' PNGs (the photos stay 32x32).
    """
    if name not in SAMPLES:
        raise ConfigError(f"unknown sample {name!r}; choose one of: {', '.join(SAMPLES)}")
    if name == "digits":
        return write_digits(directory, per_class=per_class, size=size)
    return write_cifar10(directory, per_class=per_class)


def write_cifar10(directory: str | Path, per_class: int | None = None) -> Path:
    """The CIFAR-10 photo sample as ``directory/{train,test}/CLASS/*.jpg`` (files copied byte for byte)."""
    _check_per_class(per_class)
    options = {"per_class": per_class, "source": CIFAR10_ARCHIVE.name, "citation": CIFAR10_CITATION}

    def fill(root: Path) -> None:
        counts: dict[str, int] = {}
        with zipfile.ZipFile(CIFAR10_ARCHIVE) as z:
            for entry in sorted(z.namelist()):
                split, cls, fname = entry.split("/")
                key = f"{split}/{cls}"
                if not fname or (split == "train" and per_class is not None and counts.get(key, 0) >= per_class):
                    continue
                counts[key] = counts.get(key, 0) + 1
                (root / split / cls).mkdir(parents=True, exist_ok=True)
                (root / split / cls / fname).write_bytes(z.read(entry))

    return _write_once(directory, options, fill)


def write_digits(directory: str | Path, per_class: int | None = None, size: int = 32) -> Path:
    """The handwritten digits as ``directory/<digit>/<digit>_<n>.png`` (``per_class`` first ones of
    each digit; ``size`` x ``size`` grayscale, upscaled bilinearly, 0-16 scaled to 0-255)."""
    _check_per_class(per_class)
    if int(size) < 8:
        raise ConfigError(f"--size must be at least 8 pixels, got {size}")
    size = int(size)
    options = {"per_class": per_class, "size": size, "source": "sklearn.datasets.load_digits"}

    def fill(root: Path) -> None:
        from sklearn.datasets import load_digits  # 1.3 s to import (measured): only when digits are written

        digits = load_digits()
        images = (digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
        counts: dict[int, int] = {}
        for image, label in zip(images, digits.target):
            label = int(label)
            n = counts.get(label, 0)
            if per_class is not None and n >= per_class:
                continue
            counts[label] = n + 1
            (root / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR).save(
                root / str(label) / f"{label}_{n:04d}.png")

    return _write_once(directory, options, fill)


def sample_dir(name: str = "cifar10", per_class: int | None = None, size: int = 32) -> Path:
    """The sample's default location (``$TRANSFERLAB_CACHE/sample-<name>``, default under
    ``~/.cache/transferlab``), written on first use. Commands run with no DATA argument use it.

    >>> sample_dir()  # doctest: +SKIP
    PosixPath('/home/me/.cache/transferlab/sample-cifar10')
    """
    folder = f"sample-{name}" if per_class is None and size == 32 else f"sample-{name}-{per_class or 'all'}-{size}"
    return write_sample(default_cache_root() / folder, name, per_class=per_class, size=size)


def _check_per_class(per_class: int | None) -> None:
    if per_class is not None and int(per_class) < 1:
        raise ConfigError(f"--per-class must be at least 1, got {per_class}")


def _write_once(directory: str | Path, options: dict, fill: Callable[[Path], None]) -> Path:
    """``fill`` a fresh folder and rename it to ``directory`` (replacing an earlier sample written
    with other options); a no-op when ``directory`` already holds this sample."""
    root = Path(directory).expanduser()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"sample-data target is a file, not a folder: {root}")
    marker = root / _MARKER
    if _marker_options(marker) == options:
        return root
    if root.exists() and any(root.iterdir()) and not marker.is_file():
        raise ConfigError(f"{root} already holds other files; write the sample to an empty or new folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        fill(tmp)
        (tmp / _MARKER).write_text(json.dumps(options))
        if root.exists():  # an earlier sample with other options
            shutil.rmtree(root)
        os.rename(tmp, root)
    except OSError:
        if _marker_options(marker) != options:  # not a concurrent writer that got there first
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _marker_options(marker: Path) -> dict | None:
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
