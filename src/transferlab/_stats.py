"""Small statistics shared by the stages (no heavy imports).

>>> lo, hi = wilson_interval(0.9, 40)
>>> round(lo, 2), round(hi, 2)
(0.77, 0.96)
"""
from __future__ import annotations

import math


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a proportion ``p`` measured on ``n`` items."""
    if n <= 0:
        return 0.0, 1.0
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
