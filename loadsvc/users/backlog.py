"""Bytes read from the network but not yet judged, in arrival order: the loop's backlog.

What a WS connection on the loop's clock reads waits here to be parsed and judged
(:class:`loadsvc.users.wsconn.TimedConnection`); a connection whose reads the kernel stamps
judges them as they are read, and queues here only behind what it already has queued.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from array import array
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar

from loadsvc.users.readturns import ReadTurns

if TYPE_CHECKING:
    from loadsvc.users.wsconn import TimedConnection

__all__ = ["MAX_BACKLOG_BYTES", "SLICE_BEHIND_S", "SLICE_S", "ArrivalBacklog"]

# Judging is done in slices of this long, between which the loop reads the network again;
# while a broadcast's sockets wait for the coming turns' read budgets (ReadTurns.behind),
# slices of SLICE_BEHIND_S: reads first, so their stamp-to-read delay stays short.
SLICE_S = 0.002
SLICE_BEHIND_S = 0.0005
# Bytes read but not yet judged beyond which the generator is falling behind for good:
# then everything queued is judged at once (the loop stalls and the loop-lag monitor sees it).
MAX_BACKLOG_BYTES = 64 * 2**20

# Shared-read waits kept until the loop-lag monitor takes them (more are dropped).
MAX_PENDING_WAITS = 1 << 16

# What the backlog holds for a connection.
_DATA, _EOF, _LOST = range(3)


class ArrivalBacklog:
    """Bytes read from the network but not yet parsed and judged, in arrival order.

    Reading a socket is cheap; parsing and judging its frames is not. When a
    broadcast lands on thousands of connections at once, judging each frame as
    it is read would leave the other sockets unread, and their frames timed
    late, for as long as the earlier ones take, where the time of a read is the
    arrival time (the loop's clock). So such a read only notes the time and queues
    the bytes (:meth:`TimedConnection.data_received`), and the queue is worked
    off in slices of ``SLICE_S`` between which the loop reads again: frames are
    timed when they arrive, however long the judging takes.
    """

    _per_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ArrivalBacklog]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        # Parallel queues rather than a queue of tuples: a tuple holding a connection is
        # tracked by the cyclic GC, and thousands in flight would be promoted to the old
        # generation by the collections that happen during a burst, and make the next
        # full collection (a loop stall of 100s of ms at 5,000 connections) come sooner.
        self._conns: deque[TimedConnection] = deque()
        self._kinds: deque[int] = deque()
        self._payloads: deque[Any] = deque()
        self._arrivals: deque[float] = deque()
        self._bytes = 0
        self._scheduled = False
        # Data frames that shared their read with a later one, so were timed by the later
        # one's arrival (the kernel stamps a read, not a frame): a connection read less
        # often than its frames came, i.e. a generator that did not keep up.
        self.frames_sharing_a_read = 0
        # For each such frame, the longest it can have waited for its read: the read's stamp
        # minus the connection's previous read's (it arrived after that). Taken by the
        # loop-lag monitor (:meth:`take_shared_waits`); bounded like the stamp delays.
        self._shared_waits: array[float] = array("d")

    def shared(self, frames: int, wait_s: float) -> None:
        """``frames`` data frames were timed by a later frame's stamp, each off by <= ``wait_s``."""
        self.frames_sharing_a_read += frames
        if len(self._shared_waits) < MAX_PENDING_WAITS:
            self._shared_waits.extend([wait_s] * frames)

    def take_shared_waits(self) -> array[float]:
        """The waits of the frames that shared a read since the last call (see :meth:`shared`)."""
        taken, self._shared_waits = self._shared_waits, array("d")
        return taken

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> ArrivalBacklog:
        """The backlog of ``loop`` (one per loop)."""
        backlog = cls._per_loop.get(loop)
        if backlog is None:
            # The backlog must not refer to its loop: the loop is the weak key.
            backlog = cls._per_loop[loop] = cls()
        return backlog

    def push(self, conn: TimedConnection, kind: int, payload: Any, arrived: float) -> None:
        """Queue one event of ``conn``: bytes, end of stream or loss."""
        self._conns.append(conn)
        self._kinds.append(kind)
        self._payloads.append(payload)
        self._arrivals.append(arrived)
        conn.queued += 1
        if kind == _DATA:
            self._bytes += len(payload)
            if self._bytes > MAX_BACKLOG_BYTES:
                self._work(None)  # falling behind for good: stall rather than grow
                return
        if not self._scheduled:
            self._scheduled = True
            conn.loop.call_soon(self._slice, conn.loop)

    def _slice(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        behind = ReadTurns.of(loop).behind()
        self._work(time.perf_counter() + (SLICE_BEHIND_S if behind else SLICE_S))
        if self._conns and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._slice, loop)  # after the loop has polled the network again

    def _work(self, deadline: float | None) -> None:
        conns, kinds, payloads, arrivals = self._conns, self._kinds, self._payloads, self._arrivals
        clock = time.perf_counter
        while conns:
            conn, kind = conns.popleft(), kinds.popleft()
            payload, arrived = payloads.popleft(), arrivals.popleft()
            conn.queued -= 1
            if kind == _DATA:
                self._bytes -= len(payload)
            try:
                conn.replay(kind, payload, arrived)
            except Exception as exc:  # a bug in one connection must not stop the others
                conn.loop.call_exception_handler(
                    {"message": "error judging WS frames", "exception": exc}
                )
            if deadline is not None and clock() >= deadline:
                return
