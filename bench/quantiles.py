"""Exact nearest-rank quantiles, for the bench's own clients and probes (kept independent of loadsvc)."""

from __future__ import annotations

import math
from collections.abc import Iterable


def nearest_rank(values: Iterable[float], q: float) -> float | None:
    """The smallest value with at least ``q`` of the values at or below it; None if empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered) - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def latency_doc(seconds: list[float]) -> dict[str, float | int | None]:
    """Count, p50, p99 and max of latencies given in seconds, reported in ms."""

    def ms(q: float) -> float | None:
        v = nearest_rank(seconds, q)
        return None if v is None else round(v * 1000, 3)

    return {"count": len(seconds), "p50_ms": ms(0.5), "p99_ms": ms(0.99), "max_ms": ms(1.0)}
