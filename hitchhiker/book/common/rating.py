"""The book's one good/fair/poor rating: a number (smaller is better) against two thresholds.

Every rated column of the book's tables -- Table 1's five columns (:mod:`hitchhiker.book.table1.rules`)
and the non-Poisson chapter's generalizability -- goes through :func:`rate_value`. It lives here, below
every experiment, so that any of them can use it without importing another.

>>> [rate_value(v, 0.1, 1.0) for v in (0.05, 0.1, 0.5, 2.0, float("nan"))]
['good', 'good', 'fair', 'poor', 'n/a']
"""
from __future__ import annotations

import math

#: Ratings from worst to best; their index is the score.
RATING_LEVELS = ("poor", "fair", "good")
#: The rating of missing evidence.
MISSING = "n/a"


def rate_value(value: float, good: float, fair: float) -> str:
    """``"good"`` if ``value <= good``, ``"fair"`` if ``value <= fair``, else ``"poor"``; NaN is ``"n/a"``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if value <= good:
        return "good"
    if value <= fair:
        return "fair"
    return "poor"
