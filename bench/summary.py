"""Print every figure in bench/results/*.json as one table (figures and ratios)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def flatten(obj, prefix=""):
    """Yield (dotted key, value) for every number or short string in a nested JSON object."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            key = v.get("name") or v.get("model") or str(i) if isinstance(v, dict) else str(i)
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
