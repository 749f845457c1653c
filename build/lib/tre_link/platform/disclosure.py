"""Statistical disclosure control: every count that leaves the linkage zone goes through here.

Rules
-----
* A count below 10 is suppressed (None).
* Any other count is rounded to the nearest multiple of 5. Counts are integers and 5 is odd,
  so there is never an exact half-way case: remainders 0, 1, 2 round down and 3, 4 round up
  (12 -> 10, 13 -> 15, 17 -> 15, 18 -> 20).
* Rates are computed only from released (suppressed and rounded) counts, never from raw ones,
  so a rate cannot be used to recover a raw count. A rate is None when either count is
  suppressed or the released denominator is 0.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

SUPPRESS_BELOW = 10
ROUND_TO = 5


def _as_count(n: Any) -> int:
    if isinstance(n, bool):
        raise TypeError("counts must be integers, got bool")
    try:
        n = operator.index(n)  # int, numpy integers; refuses floats
    except TypeError:
        raise TypeError(f"counts must be integers, got {type(n).__name__}") from None
    if n < 0:
        raise ValueError("counts cannot be negative")
    return n


def release_count(n: int | None) -> int | None:
    """The releasable form of a count: None when under 10 (or None), else rounded to the nearest 5."""
    if n is None:
        return None
    n = _as_count(n)
    if n < SUPPRESS_BELOW:
        return None
    return ((n + ROUND_TO // 2) // ROUND_TO) * ROUND_TO


def release_rate(numerator: int | None, denominator: int | None) -> float | None:
    """numerator / denominator computed from the released counts; None if either is suppressed or the denominator is 0."""
    num, den = release_count(numerator), release_count(denominator)
    if num is None or den is None or den == 0:
        return None
    return num / den


def release_counts(mapping: Mapping[str, int | None]) -> dict[str, int | None]:
    """Apply release_count to every value of a mapping of labelled counts."""
    return {label: release_count(n) for label, n in mapping.items()}
