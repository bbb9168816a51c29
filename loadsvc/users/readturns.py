"""Reads of a broadcast spread over the loop's turns: ``BUDGET_S`` of socket reading a turn.

When the target publishes to every connection at once, hundreds of sockets
become readable in one poll and the loop would read (and decrypt, and queue)
every one of them in the same turn: ~6 ms of CPU at 500 connections, during
which every timer due (pacing, the lag monitor, other users' sends) fires late.
A read of a kernel-stamped socket (:mod:`loadsvc.users.arrival`) can wait: its
bytes keep the kernel's receive stamp however late they are read. So once a
turn has spent ``BUDGET_S`` reading, a stamped socket found readable is left
for later: queued here, and read from the queue in the following turns,
``BUDGET_S`` a turn, first in first out, with the network polled in between (as
:mod:`loadsvc.users.endings` spreads a restart's teardowns). Behind a non-empty
queue every stamped socket queues, so none is overtaken twice.

A queued socket stays registered with the loop at first (taking it off the poll
and back costs about 9 wasted wake-ups on uvloop, 7 on asyncio); its readiness
reports, while it is queued, return at once. But the loop's poll is
level-triggered: a queued socket is reported ready again every turn until the
queue reads it, and when the generator falls behind
(2,000 connections, a queue thousands long) those wasted wake-ups can be most of
the loop's work and keep it behind (``bench/queued_wakes.py``, 2026-12-04: 6 times
the wake-ups, the backlog of a 1 s stall read up to 3.4 times later). On
uvloop it is worse than one wake-up a turn: libuv polls again at once while
``epoll_wait`` fills its 1,024 events (up to 48 times a turn), so past 1,024 ready
sockets each is woken 12-33 times a turn. So a
socket woken while queued more than its loop's break-even number of times (a
wasted wake-up against a remove plus an add of the reader, ``BREAK_EVEN``,
``bench/poll_costs.py``) is taken off the poll, and put back on it when the queue
has read it, if it still reads (``set_unpoll_after``). A short wait in the queue
costs a few wake-ups; a long one at most the break-even, then one remove and add.

It is the queue that reads a queued socket, not the next report: uvloop stops
polling a socket whose error (a reset) arrives after a report was left
unanswered, and a socket off the poll gets no report at all, so a read that
waited for the next report could wait for ever. The queue's read finds the
reset, or the end of the stream, as an immediate read would have; a socket left
idle by a reset that came after that read is found by
:mod:`loadsvc.users.resetwatch`, whether on the poll or off it (it asks the
socket, not the loop). A transport closed while off the poll removes no reader
(it has none registered), and the queue's read of it puts none back.

Only a socket whose every read so far was stamped is left for later: on the
loop's clock (no stamp) the time of the read IS the arrival time. What a budget
costs is read delay (stamp to read, ``take_read_delays``): the last sockets of
a broadcast are read a few turns later; the frames' stamps, order and content
are unchanged.

A turn ends when a ``call_soon`` callback scheduled by its first read runs: on
uvloop after the turn's readiness callbacks, on asyncio before the next turn's;
a callback it schedules runs after the loop has polled the network again.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from typing import Literal, Protocol

__all__ = ["BREAK_EVEN", "BUDGET_S", "Leavable", "ReadTurns", "set_budget", "set_unpoll_after"]

# Reading per turn. Small against the trust limit of the loop's lag (10 ms for the seed,
# loadsvc.lag): with the judging slice (backlog.SLICE_S) a turn stays well under it.
BUDGET_S = 0.0015
_budget_s: float | None = BUDGET_S


def set_budget(seconds: float | None) -> None:
    """Read at most ``seconds`` of stamped sockets a turn; None reads every socket when ready.

    For benchmarks and tests that compare the two in one process; a service keeps
    ``BUDGET_S``.
    """
    global _budget_s
    _budget_s = seconds


# Wake-ups of a queued socket that cost as much as taking it off the poll and putting it
# back (one remove_reader + one add_reader), per loop kind (bench/poll_costs.py,
# 2026-12-04: uvloop 8.8-10 at 1,000-4,000 ready sockets, 13.5 at 500; asyncio 7.3-9);
# a loop of another kind takes asyncio's.
BREAK_EVEN = {"uvloop": 9, "asyncio": 7}
_BREAK_EVEN = -1  # _unpoll_after: each loop's BREAK_EVEN
_unpoll_after: int | None = _BREAK_EVEN


def set_unpoll_after(wakes: int | Literal["break-even"] | None = "break-even") -> None:
    """Take a queued socket off the poll once woken more than ``wakes`` times while queued;
    None never does (every wake-up until the queue reads it); ``"break-even"`` (the
    default): ``BREAK_EVEN`` of its loop's kind.

    For benchmarks and tests that compare the two in one process; a service keeps the
    default.
    """
    global _unpoll_after
    if wakes is not None and wakes != "break-even" and wakes < 0:
        raise ValueError(f"wakes must be >= 0, not {wakes!r}")
    _unpoll_after = _BREAK_EVEN if wakes == "break-even" else wakes


def _loop_kind(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.partition(".")[0] == "uvloop" else "asyncio"


class Leavable(Protocol):
    """A transport whose read can wait: :class:`loadsvc.users.arrival.StampedTransport`."""

    def _read_left(self) -> None:
        """Read now, what was left for later (and whatever came since); back on the poll
        after it if :meth:`ReadTurns.woken` took it off and it still reads."""


class ReadTurns:
    """One loop's budget of reading per turn, and its queue of sockets left past it.

    Example (a stamped transport's readiness callback)::

        if self._left:  # queued already: the queue reads it
            self._wakes += 1
            if self._polled and self._turns.woken(self._wakes):
                ...  # off the poll (remove_reader) until the queue has read it
            return
        if self._turns.leave(self):
            self._left = True
            return
        ...  # read now
    """

    _per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReadTurns] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # the loop is this object's key in _per_loop
        self._queue: deque[Leavable] = deque()
        self._deadline = 0.0  # the end of this turn's budget; 0.0: no read yet this turn
        self._turn_over_scheduled = False
        self._drain_scheduled = False
        self._break_even = BREAK_EVEN[_loop_kind(loop)]
        self.left = 0  # reads left to a later turn (for benchmarks and tests)
        self.drains = 0  # turns that read from the queue
        self.wakes = 0  # readiness reports of queued sockets (each one wasted)
        self.unpolled = 0  # queued sockets taken off the poll

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> ReadTurns:
        """The budget and queue of ``loop`` (one per loop)."""
        found = cls._per_loop.get(loop)
        if found is None:
            found = cls._per_loop[loop] = cls(loop)
        return found

    def __len__(self) -> int:
        return len(self._queue)

    def behind(self) -> bool:
        """Whether sockets wait for the coming turns' budgets: work that can wait (the
        judging of what was read, :class:`loadsvc.users.wsconn.ArrivalBacklog`) should."""
        return bool(self._queue)

    def leave(self, transport: Leavable) -> bool:
        """Whether ``transport``'s read goes to a later turn (True: it is queued, and read
        by the queue, :meth:`Leavable._read_left`), else the caller reads now."""
        budget = _budget_s
        if budget is None:
            return False
        if not self._queue:
            now = time.perf_counter()
            if not self._deadline:  # this turn's first read starts its budget
                self._deadline = now + budget
                self._schedule_turn_over()
                return False
            if now < self._deadline:
                return False
        self._queue.append(transport)
        self.left += 1
        if not self._drain_scheduled:
            self._schedule_turn_over()
        return True

    def woken(self, wakes: int) -> bool:
        """A queued socket was reported ready, its ``wakes``-th time while queued: whether
        it comes off the poll now (True: the caller removes its reader, and adds it back
        once the queue has read it)."""
        self.wakes += 1
        limit = _unpoll_after
        if limit is None:
            return False
        if limit < 0:
            limit = self._break_even
        if wakes > limit:
            self.unpolled += 1
            return True
        return False

    def _schedule_turn_over(self) -> None:
        # From a readiness callback, call_soon runs after this turn's reads (uvloop: in this
        # turn; asyncio: first in the next, before its reads).
        loop = self._loop()
        if not self._turn_over_scheduled and loop is not None and not loop.is_closed():
            self._turn_over_scheduled = True
            loop.call_soon(self._turn_over)

    def _schedule_drain(self) -> None:
        # From a ready callback, call_soon runs after the loop has polled the network again.
        loop = self._loop()
        if not self._drain_scheduled and loop is not None and not loop.is_closed():
            self._drain_scheduled = True
            loop.call_soon(self._drain)

    def _turn_over(self) -> None:
        """After a turn's reads: the next turn's budget is whole; the queue is read then."""
        self._turn_over_scheduled = False
        self._deadline = 0.0
        if self._queue:
            self._schedule_drain()  # from a ready callback: after the next poll

    def _drain(self) -> None:
        """Read queued sockets, first in first out, until this turn's budget is spent."""
        self._drain_scheduled = False
        queue = self._queue
        if not queue:
            return
        self.drains += 1
        clock = time.perf_counter
        budget = _budget_s
        self._deadline = deadline = clock() + (budget or 0.0)
        while queue:
            transport = queue.popleft()
            try:
                transport._read_left()
            except Exception as exc:  # one connection's bug must not strand the others
                loop = self._loop()
                if loop is not None:
                    loop.call_exception_handler(
                        {"message": "error reading a socket left for later", "exception": exc}
                    )
            if budget is not None and clock() >= deadline:
                break
        if queue:  # the budget stays spent: fresh reads queue behind these
            self._schedule_drain()
        else:
            self._deadline = 0.0
