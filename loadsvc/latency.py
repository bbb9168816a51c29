"""Latency samples of one window: every value kept exactly, and a cheap live histogram.

Latencies are kept exactly (every sample, in a compact array) so the reported
percentiles of a run are true values, not bucket estimates; a run that
outgrows ``MAX_SAMPLES`` keeps a uniform reservoir instead. A coarse
log-linear histogram (its layout is defined here, for every reader of it)
serves the cheap live view (progress line, /api/status) and the compact
histograms a summary keeps.

Exact quantiles are computed by numpy's partition, which releases the GIL, so
a big window can be read off the event loop (:func:`exact_quantiles`).
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Sequence

import numpy as np

MAX_SAMPLES = 2_000_000
# Live histogram: 1 % wide log buckets from 10 µs up; index 0 holds everything below.
_LOG_MIN = 1e-5
_LOG_K = 1.0 / math.log1p(0.01)
_LOG_BUCKETS = 2000
# A summary keeps its latency histogram in buckets of this many live buckets (~5 % wide):
# enough to test a regression on the run's own samples, small enough for the run history.
HISTOGRAM_WIDTH = 5

# Names the bucket layout in the summary JSON, so a reader never mixes two layouts.
HISTOGRAM_SCHEME = f"log1pct*{HISTOGRAM_WIDTH}@{_LOG_MIN:g}s"
# A compact histogram: (first bucket index, counts from it on), buckets HISTOGRAM_WIDTH wide.
CompactHistogram = tuple[int, tuple[int, ...]]


def bucket_lower_edge(index: int, width: int = HISTOGRAM_WIDTH) -> float:
    """The smallest latency (s) a compact bucket can hold: every sample in it is >= this."""
    live = index * width
    return 0.0 if live == 0 else _LOG_MIN * math.exp((live - 1) / _LOG_K)


LIVE_BUCKETS = _LOG_BUCKETS


def live_bucket_value(index: int) -> float:
    """The latency (seconds) a live-histogram bucket stands for: its geometric middle."""
    return _LOG_MIN if index == 0 else _LOG_MIN * math.exp((index - 0.5) / _LOG_K)


def nearest_rank(sorted_values: array[float] | list[float], q: float) -> float | None:
    """The ``q`` quantile by nearest rank: the smallest value with at least q of the data at or below it."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n - 1e-9))
    return sorted_values[min(rank, n) - 1]


def exact_quantiles(values: array[float], qs: Sequence[float]) -> dict[float, float | None]:
    """Nearest-rank quantiles of ``values`` without sorting them all.

    numpy's partition is O(n) and releases the GIL, so this is safe to run in a
    worker thread while the event loop goes on. ``values`` must not change meanwhile.
    """
    n = len(values)
    if n == 0:
        return dict.fromkeys(qs)
    index = {q: min(max(1, math.ceil(q * n - 1e-9)), n) - 1 for q in qs}
    view = np.frombuffer(values, dtype=np.float64)
    picked = np.partition(view, sorted(set(index.values())))
    del view  # release the buffer export at once: the array may grow again later
    return {q: float(picked[i]) for q, i in index.items()}


def _live_bucket(value: float) -> int:
    """The live-histogram bucket of one latency."""
    if not value > _LOG_MIN:
        return 0
    i = int(min(math.log(value / _LOG_MIN) * _LOG_K, _LOG_BUCKETS)) + 1
    return i if i < _LOG_BUCKETS else _LOG_BUCKETS - 1


def live_bucket_counts(values: np.ndarray) -> np.ndarray:
    """``values`` (seconds) counted in the live histogram's buckets at numpy's speed, each
    where ``_live_bucket`` puts it (below 10 µs and NaN in the first, infinite in the last)."""
    index = np.zeros(len(values), dtype=np.int64)
    above = values > _LOG_MIN
    # Clipped before the cast: an infinite latency (a hostile stamp) is the last bucket.
    scaled = np.minimum(np.log(values[above] / _LOG_MIN) * _LOG_K, _LOG_BUCKETS)
    index[above] = scaled.astype(np.int64) + 1
    np.minimum(index, _LOG_BUCKETS - 1, out=index)
    return np.bincount(index, minlength=_LOG_BUCKETS)


class LatencySamples:
    """Every latency of a window (seconds), plus a cheap histogram for live quantiles.

    ``within`` counts the samples at or below ``limit`` (the latency threshold's
    max): the exact verdict of the window without a sort.

    ``add`` only appends (it runs per frame); the live histogram and ``within`` take in
    the samples appended since they were last read, all at once with numpy, when one
    of them is read (once a second by the sampler). Once the window holds
    ``MAX_SAMPLES`` and becomes a reservoir, samples are binned as they come, since a
    kept one may replace another.
    """

    __slots__ = ("_binned", "_live", "_rng", "_within", "count", "limit", "samples")

    def __init__(self, rng: random.Random | None = None, limit: float = math.inf) -> None:
        self.samples: array[float] = array("d")
        self.count = 0
        self.limit = limit
        self._within = 0
        self._binned = 0  # samples[:_binned] are in the live histogram and ``_within``
        self._live = [0] * _LOG_BUCKETS
        self._rng = rng or random.Random(0)

    def add(self, value: float) -> None:
        """Record one latency."""
        self.count += 1
        samples = self.samples
        if len(samples) < MAX_SAMPLES:
            samples.append(value)
            return
        self._catch_up()
        # Algorithm R keeps the reservoir a uniform sample of everything seen.
        j = self._rng.randrange(self.count)
        if j < MAX_SAMPLES:
            samples[j] = value
        if value <= self.limit:
            self._within += 1
        self._live[_live_bucket(value)] += 1

    def _catch_up(self) -> None:
        """Bin the samples appended since the last read (as ``_live_bucket`` bins one)."""
        start, end = self._binned, len(self.samples)
        if start == end:
            return
        view = np.frombuffer(self.samples, dtype=np.float64)
        new = view[start:end].copy()
        del view  # release the buffer export at once: the array grows again
        self._binned = end
        self._within += int(np.count_nonzero(new <= self.limit))
        added = live_bucket_counts(new).tolist()
        self._live = [a + b for a, b in zip(self._live, added, strict=True)]

    @property
    def within(self) -> int:
        """How many samples were at or below ``limit``."""
        self._catch_up()
        return self._within

    def live_quantile(self, q: float) -> float | None:
        """An estimate (within 1 %) of the q quantile, cheap enough to call every second."""
        self._catch_up()
        total = sum(self._live)
        if total == 0:
            return None
        need = max(1, math.ceil(q * total - 1e-9))
        seen = 0
        for i, c in enumerate(self._live):
            seen += c
            if seen >= need:
                return live_bucket_value(i)
        return None

    @property
    def live_counts(self) -> list[int]:
        """The live histogram's bucket counts (not a copy: read, never change)."""
        self._catch_up()
        return self._live

    def histogram(self, width: int = HISTOGRAM_WIDTH) -> CompactHistogram:
        """Every latency seen (not just the reservoir), in buckets ``width`` live buckets wide."""
        self._catch_up()
        merged = [sum(self._live[i : i + width]) for i in range(0, _LOG_BUCKETS, width)]
        used = [i for i, c in enumerate(merged) if c]
        if not used:
            return (0, ())
        return (used[0], tuple(merged[used[0] : used[-1] + 1]))

    def quantiles(self, qs: tuple[float, ...]) -> dict[float, float | None]:
        """Exact nearest-rank quantiles of the window (O(n); off the loop for big windows)."""
        return exact_quantiles(self.samples, qs)

    def count_at_or_below(self, limit: float) -> int:
        """How many samples were <= ``limit``: kept as they came when ``limit`` is ``self.limit``."""
        if limit == self.limit:
            return self.within
        # Another limit: counted over the kept samples, scaled when they are a reservoir.
        kept = len(self.samples)
        below = sum(1 for v in self.samples if v <= limit)
        return below if kept == self.count else round(below * self.count / kept)

    def fraction_at_or_below(self, limit: float) -> float | None:
        """The share of samples <= ``limit``: the exact test of a quantile threshold."""
        if not self.count:
            return None
        return self.count_at_or_below(limit) / self.count


def rank_shift(samples: LatencySamples, ranks: int, quantile: float) -> float:
    """How far ``quantile`` of ``samples`` falls if ``ranks`` of them were truly lower: were
    all of them above it, it would be the value ``ranks`` ranks below, nothing lower
    (0 once they could be all the samples up to it). Frames that shared a read, timed by a
    later frame's arrival (:class:`loadsvc.lag.ReadTiming`), can move a quantile no more.

    >>> flat = LatencySamples(); _ = [flat.add(0.3) for _ in range(1000)]
    >>> rank_shift(flat, 2, 0.99)   # two samples cannot move a flat p99
    0.0
    >>> spread = LatencySamples(); _ = [spread.add(i / 1000) for i in range(1, 1001)]
    >>> round(rank_shift(spread, 2, 0.99), 3)   # p99 0.990 s, two ranks below 0.988 s
    0.002
    """
    n = samples.count
    if ranks <= 0 or n == 0:
        return 0.0
    low = quantile - ranks / n
    values = exact_quantiles(samples.samples, (quantile, low) if low > 0 else (quantile,))
    top = values[quantile]
    floor = values[low] if low > 0 else 0.0  # every sample up to it could be below it
    return 0.0 if top is None or floor is None else max(0.0, top - floor)
