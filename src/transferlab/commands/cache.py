"""``transferlab cache [--clear KIND ...] [--max-gb GB] [--json]``: list, size and clear the caches.

Lists what lives under ``$TRANSFERLAB_CACHE`` (default ``~/.cache/transferlab``): decoded images,
the doctor's embeddings, training features of phases in progress and the built-in samples, with
their disk use. ``--clear images`` (or ``features``, ``train-features``, ``samples``, ``all``)
removes them; ``--max-gb`` keeps the image cache to that size now, removing the least recently
used arrays (every build does so too, under ``TRANSFERLAB_CACHE_MAX_GB``, default 20 GB).
No torch import: it answers at once.
"""
from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from ..data.cache import (CACHE_KINDS, cache_usage, clear_caches, default_cache_dir, default_cache_root, disk_size, evict,
                          max_cache_bytes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clear", nargs="+", metavar="KIND", default=None,
                        help=f"remove these caches: {', '.join(CACHE_KINDS)}, or all")
    parser.add_argument("--max-gb", type=float, default=None, metavar="GB",
                        help="remove the least recently used image arrays until the image cache fits in GB")
    parser.add_argument("--json", action="store_true", help="print the listing as JSON")


def run(args: argparse.Namespace) -> int:
    console = Console()
    if args.clear:
        freed = clear_caches(args.clear)
        console.print(f"cleared {', '.join(args.clear)}: {disk_size(freed)} freed")
    if args.max_gb is not None:
        removed = evict(default_cache_dir(), max_cache_bytes(args.max_gb))
        console.print(f"image cache kept to {args.max_gb:g} GB: {len(removed)} array(s) removed")
    rows = cache_usage()
    if args.json:
        print(json.dumps({"root": str(default_cache_root()), "caches": rows,
                          "image_cache_max_bytes": max_cache_bytes()}, indent=2))
        return 0
    table = Table(title=f"transferlab caches in {default_cache_root()}")
    for col in ("cache", "entries", "disk", "last used", "what"):
        table.add_column(col, justify="right" if col in ("entries", "disk") else "left")
    for r in rows:
        table.add_row(r["kind"], str(r["entries"]), disk_size(r["bytes"]), r["last_used"] or "-", r["what"])
    console.print(table)
    console.print(f"total {disk_size(sum(r['bytes'] for r in rows))}; image cache limit {disk_size(max_cache_bytes())} "
                  "(TRANSFERLAB_CACHE_MAX_GB); clear with: transferlab cache --clear KIND|all")
    return 0
