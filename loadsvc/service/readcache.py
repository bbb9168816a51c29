"""Reads of the service's own API that cannot starve the generator.

The event loop that answers ``/metrics``, ``/api/*`` and ``/`` is the one that
times every frame: a read that holds it for milliseconds is a lag that every
latency measured meanwhile carries. Forty readers rebuilding the series JSON and
the exposition on each request pushed the loop lag p99 of ``serve`` to ~100 ms.
Two bounds keep reads cheap whatever the readers do:

- :class:`Snapshots`: a read's body is built at most once per ``max_age_s`` per
  key (the path and its query) and every reader in that second gets the same
  bytes; concurrent readers of a stale key wait for one build, not one each.
- :func:`exposition_in_slices`: the Prometheus exposition (~6 ms of the loop for
  the seed's continuous scenarios) written family by family, giving the loop
  back every millisecond, so no timer waits behind the whole of it.
- :class:`ReadPacer`: reads are admitted one after another, ``1 / per_second``
  apart after a small burst, so their work is spread over time instead of
  arriving as one long stretch of the loop; beyond ``max_wait_s`` of queue a read
  is refused at once (503, ``Retry-After``) rather than held.

Health checks and the control endpoints are not paced: they are small, rare,
and must answer when readers crowd the API.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

Clock = Callable[[], float]

MAX_AGE_S = 1.0  # how stale a read may be: the status page and Prometheus poll far slower
MAX_KEYS = 64  # distinct reads kept (scenario x query); the oldest is dropped beyond it
READS_PER_S = 100.0  # admitted reads per second, all readers together: ~60 page viewers
BURST = 20  # reads admitted back to back before the pacing starts
MAX_WAIT_S = 2.0  # beyond this much queue a read is refused (503) instead of held
SLICE_S = 0.001  # the longest stretch an exposition holds the loop between families


class _Family:
    """One metric family as a registry of its own, for prometheus_client's encoder."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterable[Metric]:
        return (self._family,)


async def exposition_in_slices(registry: Collector, slice_s: float = SLICE_S) -> bytes:
    """``generate_latest(registry)``, yielding to the loop every ``slice_s`` of work.

    Each family is collected whole (a histogram's buckets agree with its count); the
    families are not one instant, which Prometheus's scrape never promised either.
    """
    parts: list[bytes] = []
    began = time.perf_counter()
    for family in registry.collect():
        parts.append(generate_latest(_Family(family)))
        if time.perf_counter() - began >= slice_s:
            await asyncio.sleep(0)
            began = time.perf_counter()
    return b"".join(parts)


@dataclass(frozen=True)
class Body:
    """A built response: status, bytes and content type (errors are cached like answers)."""

    status: int
    body: bytes
    content_type: str


class Snapshots:
    """Response bodies by key, each rebuilt at most once per ``max_age_s``.

    >>> snapshots = Snapshots()
    >>> # body = await snapshots.get("/metrics", build_exposition)
    """

    def __init__(
        self, max_age_s: float = MAX_AGE_S, max_keys: int = MAX_KEYS, clock: Clock = time.monotonic
    ) -> None:
        self._max_age_s = max_age_s
        self._max_keys = max_keys
        self._clock = clock
        self._built: OrderedDict[str, tuple[float, asyncio.Task[Body]]] = OrderedDict()
        self.builds = 0  # how many times a body was built (the rest were served from a snapshot)

    def clear(self) -> None:
        """Forget every snapshot: after a control action, the next read sees its effect."""
        self._built.clear()

    async def get(self, key: str, build: Callable[[], Coroutine[Any, Any, Body]]) -> Body:
        """The body of ``key``: the snapshot if fresh, else one build shared by every caller.

        The build is a task of its own: a reader that goes away does not cancel it for
        the others. A failed build is forgotten, so the next read tries again.
        """
        now = self._clock()
        found = self._built.get(key)
        if found is not None and now - found[0] <= self._max_age_s:
            self._built.move_to_end(key)
            return await asyncio.shield(found[1])
        task: asyncio.Task[Body] = asyncio.get_running_loop().create_task(build())
        task.add_done_callback(lambda done: self._forget_failed(key, done))
        self._built[key] = (now, task)
        self._built.move_to_end(key)
        while len(self._built) > self._max_keys:
            self._built.popitem(last=False)
        self.builds += 1
        return await asyncio.shield(task)

    def _forget_failed(self, key: str, task: asyncio.Task[Body]) -> None:
        failed = task.cancelled() or task.exception() is not None  # retrieved: no warning
        if failed and self._built.get(key, (0.0, None))[1] is task:
            del self._built[key]


class Overloaded(Exception):
    """More reads are queued than ``max_wait_s`` of pacing: refuse this one now."""


class ReadPacer:
    """Admits reads ``1 / per_second`` apart after a burst of ``burst`` (a token bucket)."""

    def __init__(
        self,
        per_second: float = READS_PER_S,
        burst: int = BURST,
        max_wait_s: float = MAX_WAIT_S,
        clock: Clock = time.monotonic,
    ) -> None:
        self._gap_s = 1.0 / per_second
        self._burst_s = burst * self._gap_s
        self._max_wait_s = max_wait_s
        self._clock = clock
        self._next = 0.0  # the earliest time the next read may start
        self.refused = 0

    async def admit(self) -> None:
        """Wait for this read's turn; Overloaded when the queue is longer than ``max_wait_s``."""
        now = self._clock()
        # An idle pacer lets ``burst`` reads through at once, then one per gap.
        turn = max(self._next, now - self._burst_s + self._gap_s)
        wait = turn - now
        if wait > self._max_wait_s:
            self.refused += 1
            raise Overloaded
        self._next = turn + self._gap_s
        if wait > 0:
            await asyncio.sleep(wait)
