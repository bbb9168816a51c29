"""Connections that ended, torn down in slices: a backend restart is not one long loop turn.

When a backend dies, every connection the generator holds to it ends in the same
instant, and the loop learns of them all in one poll. Torn down at once (the
socket closed, the protocol told, its waiters woken, each user's bookkeeping
and backoff started) that is ~100 us of work per connection in one turn of the
loop: turns of 10-28 ms for 500 clients on a loaded 2-core machine (issue 20,
``bench/reconnect_calm.py``), and every timer due meanwhile (the lag monitor,
other users' sends) fires that late. So a transport's ending is queued here
and worked off in slices of ``SLICE_S``, between which the loop polls the
network again; the tasks woken by one slice run in the next turn, so they too
come in proportion to a slice, not all together.

A single connection that ends waits for nothing: the queue is empty, its slice
runs in the very next turn, as ``call_soon`` would have run it.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["SLICE_S", "Endings"]

# Teardown work per loop turn. Small against the trust limit of the loop's lag (10 ms for
# the seed, loadsvc.lag): a slice and the tasks it wakes stay well under it.
SLICE_S = 0.001


class Endings:
    """One loop's queue of connection endings, run in order, ``SLICE_S`` of them a turn.

    Example (a transport whose connection is over)::

        Endings.of(loop).push(self._connection_lost, exc)
    """

    _per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Endings] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # A weak reference: the loop is this queue's key in _per_loop.
        self._loop = weakref.ref(loop)
        self._queue: deque[tuple[Callable[[Any], object], Any]] = deque()
        self._scheduled = False
        self.slices = 0  # turns that ran endings (a restart's spread, for benchmarks)

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Endings:
        """The queue of ``loop`` (one per loop)."""
        found = cls._per_loop.get(loop)
        if found is None:
            found = cls._per_loop[loop] = cls(loop)
        return found

    def push(self, callback: Callable[[Any], object], arg: Any) -> None:
        """Run ``callback(arg)`` in a coming slice, after the endings queued before it."""
        self._queue.append((callback, arg))
        if not self._scheduled:
            self._schedule()

    def __len__(self) -> int:
        return len(self._queue)

    def _schedule(self) -> None:
        loop = self._loop()
        if loop is not None and not loop.is_closed():
            self._scheduled = True
            loop.call_soon(self._slice)

    def _slice(self) -> None:
        self._scheduled = False
        self.slices += 1
        queue = self._queue
        deadline = time.perf_counter() + SLICE_S
        while queue:
            callback, arg = queue.popleft()
            try:
                callback(arg)
            except Exception as exc:  # one connection's bug must not strand the others
                loop = self._loop()
                if loop is not None:
                    loop.call_exception_handler(
                        {"message": "error ending a connection", "exception": exc}
                    )
            if time.perf_counter() >= deadline:
                break
        if queue:
            self._schedule()  # after the loop has polled the network again
