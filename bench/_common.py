"""What the benchmark scripts share (run as ``python bench/bench_NAME.py``: this folder is on sys.path)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def shared() -> Path:
    """``$TRANSFERLAB_SHARED``, else ``../shared`` beside the repository (real photos and weights);
    exits with a message when absent: nothing to measure."""
    for c in (os.environ.get("TRANSFERLAB_SHARED"), REPO.parent / "shared", REPO / "shared"):
        if c and (Path(c) / "data").is_dir():
            return Path(c)
    sys.exit("../shared/data is not present: nothing to measure")
