"""Metric updates of the per-frame path, counted in plain numbers and added to Prometheus in batches.

A WS broadcast at 2,000 connections is thousands of frames in a few turns of the event
loop, and prometheus_client's ``Histogram.observe`` walks the bucket bounds in Python
and takes a lock twice per call (a counter's ``inc`` once): about a fifth of a frame's
cost. The recorder's sinks count here instead — a bucket index found by bisection,
a sum, a counter's integer — and :class:`MetricBatches` adds what accumulated to the
real children at most ``FLUSH_S`` later (one ``inc`` per touched bucket), so the cost
of adding is per batch, not per frame.

What a scrape sees stays exact:

- a read on the loop's thread (``loadsvc serve`` builds ``/metrics`` there; a test's
  ``get_sample_value``) adds everything pending first: each batched family's
  ``collect`` is wrapped to do so (:meth:`MetricBatches.watch`);
- a read from another thread (``loadsvc run --metrics-port``'s HTTP thread) sees every
  update older than ``FLUSH_S``, each batch whole: a histogram's sum, count and buckets
  agree (a scrape racing per-frame ``observe`` calls could see them disagree).

Without a running loop (a synchronous caller) every update is added at once.
"""

from __future__ import annotations

import asyncio
import threading
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Histogram

__all__ = ["FLUSH_S", "MetricBatches", "PendingCounter", "PendingHistogram"]

# The longest an update waits to be added to Prometheus (seen by a scrape off the loop).
FLUSH_S = 0.02


class PendingCounter:
    """Increments of one counter child, not yet added to it."""

    __slots__ = ("_child", "n")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self.n = 0

    def inc(self, amount: int = 1) -> None:
        """Count ``amount`` more (added to the child at the end of the loop turn)."""
        self.n += amount

    def flush(self) -> None:
        """Add what is pending to the child."""
        if self.n:
            n, self.n = self.n, 0
            self._child.inc(n)


class PendingHistogram:
    """Observations of one histogram child, counted per bucket and not yet added to it.

    The bucket of a value is the first whose upper bound is at or above it, as
    prometheus_client's ``observe`` picks it (``bisect_left`` over the same bounds).
    """

    __slots__ = ("_buckets", "_sum", "bounds", "counts", "total")

    def __init__(self, child: Histogram) -> None:
        # prometheus_client's own fields of a histogram child (tests/test_metricbatch.py
        # checks that a batched exposition is the one ``observe`` gives).
        self.bounds: list[float] = list(child._upper_bounds)
        self._buckets: list[Any] = child._buckets
        self._sum: Any = child._sum
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """One observation (added to the child at the end of the loop turn)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def flush(self) -> None:
        """Add what is pending to the child: the sum, then one increment per touched bucket."""
        counts = self.counts
        if not any(counts):
            return
        self._sum.inc(self.total)
        self.total = 0.0
        buckets = self._buckets
        for i, c in enumerate(counts):
            if c:
                counts[i] = 0
                buckets[i].inc(c)


Pending = PendingCounter | PendingHistogram


class MetricBatch:
    """The pending updates of one sink; ``due`` once something is pending."""

    __slots__ = ("_owner", "_parts", "due")

    def __init__(self, owner: MetricBatches) -> None:
        self._owner = owner
        self._parts: list[Pending] = []
        self.due = False

    def counter(self, child: Counter) -> PendingCounter:
        """A batched view of ``child``."""
        part = PendingCounter(child)
        self._parts.append(part)
        return part

    def histogram(self, child: Histogram) -> PendingHistogram:
        """A batched view of ``child``."""
        part = PendingHistogram(child)
        self._parts.append(part)
        return part

    def touched(self) -> None:
        """Something was counted: have it added within ``FLUSH_S``."""
        if not self.due:
            self.due = True
            self._owner.schedule(self)

    def flush(self) -> None:
        """Add everything pending to the real children."""
        self.due = False
        for part in self._parts:
            part.flush()


class MetricBatches:
    """The batches of one recorder: flushed together, ``FLUSH_S`` after the first update.

    >>> batches = MetricBatches()
    >>> # batch = batches.batch(); latency = batch.histogram(child)
    >>> # latency.observe(0.004); batch.touched()
    """

    def __init__(self) -> None:
        self._due: list[MetricBatch] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = threading.get_ident()  # the loop's thread, once one schedules

    def batch(self) -> MetricBatch:
        """A new sink's batch."""
        return MetricBatch(self)

    def watch(self, families: Iterable[Counter | Histogram]) -> None:
        """Make each family's ``collect`` add what is pending first, when called on the loop's thread."""
        for family in families:
            collect = family.collect

            def collect_flushed(collect: Any = collect) -> Any:
                if self._due and threading.get_ident() == self._loop_thread:
                    self.flush()
                return collect()

            family.collect = collect_flushed  # type: ignore[method-assign]

    def schedule(self, batch: MetricBatch) -> None:
        """``batch`` has updates: flush them within ``FLUSH_S`` (now, without a loop)."""
        self._due.append(batch)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()  # also what a loop that ended before its flush ran left pending
            return
        if self._timer is not None and self._timer_loop is loop:
            return
        self._loop_thread = threading.get_ident()
        self._timer_loop = loop
        self._timer = loop.call_later(FLUSH_S, self.flush)

    def flush(self) -> None:
        """Add every batch's pending updates to its children."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_loop = None
        due, self._due = self._due, []
        for batch in due:
            batch.flush()
