"""Compare several recipes side by side: train (or reuse) each on the same split and seed,
evaluate it, rank them in a leaderboard and write ``report.html`` (self-contained) and ``report.md``.

Example::

    import transferlab as tl
    rows = tl.compare("DATA", models=["cnn_base", "cnn_bn"], epochs=3, out="compare")
    rows[0]["model"], rows[0]["accuracy"]          # the best first
    tl.comparison.write_report("compare", metric="f1_macro")   # re-rank / rewrite from existing runs
"""
from __future__ import annotations

from .._lazy import lazy_exports

# Imported on first use: the CLI offers the leaderboard's metrics (.leaderboard, no torch) and must
# not load PyTorch through .runner to build its parser (see transferlab/_lazy.py).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".runner": ("compare", "write_report", "collect_rows", "PRESETS", "parse_models", "read_state"),
    ".leaderboard": ("COLUMNS", "METRICS", "make_row", "rank_rows", "print_leaderboard", "write_leaderboard"),
})
