"""Compare several recipes side by side: train (or reuse) each on the same split and seed,
evaluate it, rank them in a leaderboard and write ``report.html`` (self-contained) and ``report.md``.

Example::

    import transferlab as tl
    rows = tl.compare("DATA", models=["cnn_base", "cnn_bn"], epochs=3, out="compare")
    rows[0]["model"], rows[0]["accuracy"]          # the best first
    tl.compare.write_report("compare", metric="f1_macro")   # re-rank / rewrite from existing runs
"""
from __future__ import annotations

from .._callable import make_callable
from .leaderboard import COLUMNS, METRICS, make_row, print_leaderboard, rank_rows, write_leaderboard
from .runner import PRESETS, collect_rows, compare, parse_models, read_state, write_report

__all__ = ["compare", "write_report", "collect_rows", "PRESETS", "COLUMNS", "METRICS", "make_row", "rank_rows",
           "print_leaderboard", "write_leaderboard", "parse_models", "read_state"]

make_callable(__name__, "compare")
