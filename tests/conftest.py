"""Shared fixtures: the ../shared folder (real weights and photos) and small real datasets."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_shared() -> Path | None:
    env = os.environ.get("TRANSFERLAB_SHARED")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared", REPO / "shared"]
    for c in candidates:
        if (c / "weights").is_dir() or (c / "data").is_dir():
            return c
    return None


SHARED = _find_shared()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder with real pretrained weights and photos; skips when absent."""
    if SHARED is None:
        pytest.skip("../shared (real weights and photos) is not present on this machine")
    return SHARED


@pytest.fixture(scope="session")
def photos_dir(shared_dir: Path) -> Path:
    d = shared_dir / "data" / "photos"
    if not d.is_dir():
        pytest.skip("../shared/data/photos is not present")
    return d


@pytest.fixture(scope="session")
def weights_dir(shared_dir: Path) -> Path:
    d = shared_dir / "weights"
    if not d.is_dir():
        pytest.skip("../shared/weights is not present")
    return d


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """The built-in sample (real handwritten digits), 30 images per class, 32x32 grayscale PNGs,
    written once per test session as ``DIR/0/*.png`` .. ``DIR/9/*.png``."""
    from transferlab.datasets import write_sample

    return write_sample(tmp_path_factory.mktemp("digits") / "digits", per_class=30, size=32)
