"""The statistical tests behind a regression: exact binomial and Poisson tails, histogram counts.

Pure functions, no numpy: the inputs are counts from a summary's compact histogram.
A tolerance alone would page on an unlucky handful of samples; these tests ask
whether the run's own samples say, beyond chance, that it crossed the limit.
"""

from __future__ import annotations

import math
from typing import Any

from loadsvc.latency import HISTOGRAM_SCHEME, bucket_lower_edge

# Stop summing a tail once a term adds less than this share of the total.
_NEGLIGIBLE = 1e-15


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how likely k or more "hits" are by chance.

    Exact (log-space terms summed from k up, until they vanish). When ``k`` is
    at or below the mean the answer is at least about a half: 1.0 is returned.
    """
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0 or k <= n * p:
        return 1.0
    log_term = (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    term = math.exp(log_term)
    total = term
    odds = p / (1.0 - p)
    for i in range(k, n):
        term *= (n - i) / (i + 1) * odds
        total += term
        if term < total * _NEGLIGIBLE:
            break
    return min(1.0, total)


def poisson_cdf(c: int, mean: float) -> float:
    """P(X <= c) for X ~ Poisson(mean): how likely so few events are by chance.

    Exact (terms summed from c down). At or above the mean: 1.0.
    """
    if c < 0:
        return 0.0
    if mean <= 0.0 or c >= mean:
        return 1.0
    term = math.exp(-mean + c * math.log(mean) - math.lgamma(c + 1))
    total = term
    for i in range(c, 0, -1):
        term *= i / mean
        total += term
        if term < total * _NEGLIGIBLE:
            break
    return min(1.0, total)


def count_above(histogram: Any, limit_s: float) -> tuple[int, int] | None:
    """(samples surely above ``limit_s``, all samples) of a summary's compact histogram.

    Only buckets that lie wholly above the limit count, so the test can only
    under-state a regression, never invent one. None when the histogram is
    missing, of another layout or malformed: no samples to test.
    """
    if not isinstance(histogram, dict) or histogram.get("scheme") != HISTOGRAM_SCHEME:
        return None
    start, counts = histogram.get("start"), histogram.get("counts")
    if not isinstance(start, int) or start < 0 or not isinstance(counts, list):
        return None
    if not all(isinstance(c, int) and c >= 0 for c in counts):
        return None
    above = sum(c for i, c in enumerate(counts, start) if bucket_lower_edge(i) > limit_s)
    return above, sum(counts)
