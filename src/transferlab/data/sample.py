"""The built-in sample dataset: scikit-learn's bundled handwritten digits as class folders.

``sklearn.datasets.load_digits`` ships with scikit-learn (no download): 1797 real 8x8 grayscale
scans of handwritten digits 0-9 (about 180 per class). :func:`write_sample` writes them as
``DIR/0/*.png`` .. ``DIR/9/*.png``, upscaled to ``size`` x ``size`` grayscale PNGs, which is the
``ROOT/CLASS/*.png`` layout that :func:`transferlab.data.load_data` reads.

Example::

    >>> from transferlab.data.sample import write_sample
    >>> root = write_sample("/tmp/digits", per_class=30, size=32)   # doctest: +SKIP
    >>> sorted(p.name for p in root.iterdir())                       # doctest: +SKIP
    ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError
from .cache import default_cache_root

_MARKER = ".transferlab-sample.json"


def write_sample(directory: str | Path, per_class: int | None = None, size: int = 32) -> Path:
    """Write the handwritten digits as ``directory/<digit>/<digit>_<n>.png`` and return the folder.

    ``per_class`` keeps at most that many images per digit (the first ones in scikit-learn's order,
    so the result is deterministic); ``None`` writes all 1797. ``size`` is the side of the square
    grayscale PNGs (the 8x8 scans are upscaled with bilinear interpolation; the 0-16 intensities
    are scaled to 0-255). Writing again with the same options is a no-op (a marker file records
    them); different options rewrite the folder's digit files.

    >>> write_sample("/tmp/d", per_class=2, size=16)  # doctest: +SKIP
    PosixPath('/tmp/d')
    """
    if per_class is not None and int(per_class) < 1:
        raise ConfigError(f"--per-class must be at least 1, got {per_class}")
    if int(size) < 8:
        raise ConfigError(f"--size must be at least 8 pixels, got {size}")
    root = Path(directory).expanduser()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"sample-data target is a file, not a folder: {root}")
    options = {"per_class": per_class, "size": int(size), "source": "sklearn.datasets.load_digits"}
    marker = root / _MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == options:
                return root
        except (OSError, ValueError):
            pass

    if root.exists():
        _write_digits(root, per_class, int(size), options)
        return root
    # A new folder is written next to its final place and renamed in, so a concurrent reader
    # (or a killed write) never sees a half-written sample.
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        _write_digits(tmp, per_class, int(size), options)
        os.rename(tmp, root)
    except OSError:
        if not (marker.is_file() and json.loads(marker.read_text()) == options):
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _write_digits(root: Path, per_class: int | None, size: int, options: dict) -> None:
    from sklearn.datasets import load_digits  # 1.3 s to import (measured): only when digits are written

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    counts: dict[int, int] = {}
    for d in range(10):
        cls_dir = root / str(d)
        cls_dir.mkdir(parents=True, exist_ok=True)
        for old in cls_dir.glob("*.png"):  # a previous write with other options
            old.unlink()
    for image, label in zip(images, digits.target):
        label = int(label)
        n = counts.get(label, 0)
        if per_class is not None and n >= per_class:
            continue
        counts[label] = n + 1
        img = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR)
        img.save(root / str(label) / f"{label}_{n:04d}.png")
    (root / _MARKER).write_text(json.dumps(options))


def sample_dir(per_class: int | None = None, size: int = 32) -> Path:
    """The default sample location (``~/.cache/transferlab/sample-digits``), written on first use.

    Commands run with no DATA argument use this folder.

    >>> sample_dir()  # doctest: +SKIP
    PosixPath('/home/me/.cache/transferlab/sample-digits')
    """
    name = "sample-digits" if per_class is None and size == 32 else f"sample-digits-{per_class or 'all'}-{size}"
    return write_sample(default_cache_root() / name, per_class=per_class, size=size)
