"""Print every figure in bench/results/*.json as one table (figures and ratios)."""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


ID_FIELDS = ("protocol", "name", "model")  # what names a row of a list, e.g. accuracy's "cifar10/mobilenet_v2"


def labels(items: list) -> list[str]:
    """A key per list item: its identifying fields joined by "/" (else its index); an item whose key
    another item shares gets ``#index`` appended, so no two rows print under the same key."""
    keys = []
    for i, v in enumerate(items):
        parts = [str(v[f]) for f in ID_FIELDS if isinstance(v, dict) and v.get(f) not in (None, "")]
        keys.append("/".join(parts) or str(i))
    counts = Counter(keys)
    return [f"{k}#{i}" if counts[k] > 1 else k for i, k in enumerate(keys)]


def flatten(obj, prefix=""):
    """Yield (dotted key, value) for every number or short string in a nested JSON object.

    >>> dict(flatten({"rows": [{"protocol": "a", "model": "m", "acc": 0.5}, {"protocol": "b", "model": "m"},
    ...                        {"model": "x", "acc": 1}, {"model": "x"}]}))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'rows[a/m].protocol': 'a', 'rows[a/m].model': 'm', 'rows[a/m].acc': '0.5', 'rows[b/m].protocol': 'b',
     'rows[b/m].model': 'm', 'rows[x#2].model': 'x', 'rows[x#2].acc': '1', 'rows[x#3].model': 'x'}
    """
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for key, v in zip(labels(obj), obj):
            yield from flatten(v, f"{prefix}[{key}]")
    elif isinstance(obj, bool) or obj is None:
        yield prefix, str(obj)
    elif isinstance(obj, (int, float)):
        yield prefix, f"{obj:.4g}" if isinstance(obj, float) else str(obj)
    elif isinstance(obj, str) and len(obj) <= 60:
        yield prefix, obj


def main() -> int:
    files = sorted(RESULTS.glob("*.json"))
    if not files:
        print("no results yet: run bash bench/run_all")
        return 1
    for f in files:
        data = json.loads(f.read_text())
        rows = list(flatten(data))
        width = max((len(k) for k, _ in rows), default=10)
        print(f"\n## {f.stem}  ({f.relative_to(RESULTS.parent.parent)})")
        for k, v in rows:
            print(f"  {k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
