"""Ground truth of delivery latency: when the target wrote each frame, minus its publish stamp.

One `DeliveryRecord` per WS channel. Every sender task adds one observation per data frame
and connection, right after the frame's bytes were handed to the connection's transport
(after the drop-oldest queue, so queueing and fan-out order are in it). Observations go into
fixed bins (0.1 ms up to 100 ms, then 1 ms up to 10 s, then one overflow bin): one index
computation and one list increment per write, so the target stays cheap at 5,000 clients,
and quantiles are exact to the bin width. `reset()` starts a new window, so a benchmark
reads only its own.
"""

from __future__ import annotations

import math
import time
from typing import Any

_FINE_MS = 0.1
_FINE_LIMIT_MS = 100.0
_COARSE_MS = 1.0
_COARSE_LIMIT_MS = 10_000.0
_FINE_BINS = round(_FINE_LIMIT_MS / _FINE_MS)
_COARSE_BINS = round((_COARSE_LIMIT_MS - _FINE_LIMIT_MS) / _COARSE_MS)
_OVERFLOW = _FINE_BINS + _COARSE_BINS
QUANTILES = {"p50_ms": 0.5, "p90_ms": 0.9, "p99_ms": 0.99, "p999_ms": 0.999}


def _bin_of(ms: float) -> int:
    if ms < _FINE_LIMIT_MS:
        return max(0, int(ms / _FINE_MS))
    if ms < _COARSE_LIMIT_MS:
        return _FINE_BINS + int((ms - _FINE_LIMIT_MS) / _COARSE_MS)
    return _OVERFLOW


def _upper_ms(index: int) -> float:
    """The upper edge of bin `index` (the overflow bin reports the largest value seen)."""
    if index < _FINE_BINS:
        return (index + 1) * _FINE_MS
    return _FINE_LIMIT_MS + (index - _FINE_BINS + 1) * _COARSE_MS


class DeliveryRecord:
    """The distribution of (write time - publish stamp) on one channel since the last reset."""

    def __init__(self) -> None:
        self._bins = [0] * (_OVERFLOW + 1)
        self.count = 0
        self.max_ms = 0.0
        # Writes after which bytes were still in the transport's buffer (the client reads
        # slower than we send): for those the observation is when the write was accepted,
        # not when it reached the kernel, so it is a lower bound.
        self.buffered = 0
        self.since = time.time()

    def observe(self, published_at: float, written_at: float, buffered: bool) -> None:
        """Record one frame written to one connection."""
        ms = (written_at - published_at) * 1000.0
        self._bins[_bin_of(ms)] += 1
        self.count += 1
        if ms > self.max_ms:
            self.max_ms = ms
        if buffered:
            self.buffered += 1

    def reset(self) -> None:
        """Forget every observation: a new window starts now."""
        self._bins = [0] * (_OVERFLOW + 1)
        self.count = 0
        self.max_ms = 0.0
        self.buffered = 0
        self.since = time.time()

    def quantiles_ms(self) -> dict[str, float | None]:
        """p50/p90/p99/p999 in ms, each the upper edge of its bin, in one pass over the bins."""
        if self.count == 0:
            return dict.fromkeys(QUANTILES)
        # Nearest rank (1-based): the smallest value with at least q * count at or below it.
        wanted = sorted(
            (max(1, math.ceil(q * self.count - 1e-9)), key) for key, q in QUANTILES.items()
        )
        out: dict[str, float | None] = {}
        seen = 0
        pending = iter(wanted)
        rank, key = next(pending)
        for index, n in enumerate(self._bins):
            if not n:
                continue
            seen += n
            while seen >= rank:
                edge = self.max_ms if index == _OVERFLOW else min(_upper_ms(index), self.max_ms)
                out[key] = round(edge, 3)
                step = next(pending, None)
                if step is None:
                    return out
                rank, key = step
        return out  # pragma: no cover - the counts always add up to count

    def to_json(self) -> dict[str, Any]:
        """Count, window start, p50/p90/p99/p999 and max in ms, and buffered writes."""
        return {
            "count": self.count,
            "since": self.since,
            "buffered": self.buffered,
            "max_ms": round(self.max_ms, 3) if self.count else None,
            **self.quantiles_ms(),
        }
