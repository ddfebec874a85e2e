"""Small statistics every layer uses: a proportion's confidence interval, and when a share says nothing."""
from __future__ import annotations

import math

MIN_N = 10  # below this many reviewed nodes an agreement share says nothing
MAX_WIDTH = 0.5  # nor when its 95% interval is wider than this
Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); (nan, nan) when n is 0."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def too_small(n: int, low: float, high: float) -> bool:
    return n < MIN_N or not (high - low <= MAX_WIDTH)
