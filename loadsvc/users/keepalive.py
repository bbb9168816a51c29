"""Keepalive pings of a loop's WS connections, sent in step: one timer for all, not a task each.

websockets pings every connection from a task of its own: it sleeps ``ping_interval``,
pings, and waits for the pong under a timeout, so each ping wakes the loop on its own
twice (its timer, then its pong), through a coroutine, a future and a timeout context.
Holding 2,000 idle connections that cost ~150-250 us of CPU a ping here, 100 pings a
second: a third of what those connections' frames cost at the seed's rate
(``bench/idle_cost.py``). Here one timer, ticking every ``TICK_S``, pings the
connections due in that tick together, in slices of ``SLICE_S`` a turn (a reconnect
storm makes thousands due at once), and their pongs come back together.

The contract is websockets' own (its defaults, which loadsvc has always used): the
first ping ``ping_interval`` after the handshake, the next ``ping_interval`` after
the last; no pong ``ping_timeout`` after a ping fails the connection with 1011
"keepalive ping timeout", as websockets does. Both are kept to within a tick. A
connection has one ping outstanding at most, and only a pong with that ping's
payload acknowledges it: an unsolicited pong, or one with other bytes, does not
keep a connection that stopped answering alive.
"""

from __future__ import annotations

import asyncio
import math
import random
import weakref
from collections import deque
from typing import ClassVar, Protocol

__all__ = ["SLICE_S", "TICK_S", "Keepalive", "Pinged"]

TICK_S = 1.0  # how often the loop's timer looks for connections due (the timing's grain)
# Pings sent per loop turn: endings.SLICE_S's budget, for the same reason (loadsvc.lag).
SLICE_S = 0.001
# uvloop fires a timer up to a millisecond early: a visit this close to due counts as due.
_EARLY_S = 0.01


class Pinged(Protocol):
    """A connection the keepalive pings: :class:`loadsvc.users.wsconn.TimedConnection`."""

    ping_interval: float | None
    ping_timeout: float | None

    def keepalive_ping(self, payload: bytes) -> bool:
        """Send a ping with ``payload``; False if the connection is no longer open."""

    def keepalive_timed_out(self) -> None:
        """No pong came in time: fail the connection (1011), as websockets does."""


class _State:
    """One connection's keepalive: its last ping, and whether the pong is still due."""

    __slots__ = ("outstanding", "sent_at", "tick")

    def __init__(self, sent_at: float) -> None:
        self.sent_at = sent_at  # the last ping (the handshake before the first)
        self.outstanding: bytes | None = None  # the payload of a ping not yet answered
        self.tick = 0  # the tick whose bucket holds the connection


class Keepalive:
    """The keepalive of one loop's connections (see the module)."""

    _per_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Keepalive]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop_ref = weakref.ref(loop)  # the loop is this object's key in _per_loop
        self._tick_s = TICK_S
        self._states: dict[Pinged, _State] = {}
        self._due: dict[int, set[Pinged]] = {}  # tick -> connections to look at then
        self._next_tick = 0  # the first tick not looked at yet
        self._timer: asyncio.TimerHandle | None = None
        self._timer_tick = 0  # the tick the timer is set for (with _timer)
        self._visiting: deque[Pinged] = deque()  # due, not looked at yet (a slice ran out)
        self._slice_scheduled = False
        self._rng = random.Random()
        self.pings = 0  # pings sent (for tests and benchmarks)
        self.pongs = 0  # pings acknowledged
        self.timeouts = 0  # connections failed for want of a pong
        self.slices = 0  # turns that sent pings

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Keepalive:
        """The keepalive of ``loop`` (one per loop)."""
        found = cls._per_loop.get(loop)
        if found is None:
            found = cls._per_loop[loop] = cls(loop)
        return found

    def __len__(self) -> int:
        return len(self._states)

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop_ref()
        assert loop is not None  # used by its connections and its timer, which hold it
        return loop

    def add(self, conn: Pinged) -> None:
        """Ping ``conn`` from now on (its ``ping_interval``; none if that is None)."""
        if conn.ping_interval is None or conn in self._states:
            return
        state = self._states[conn] = _State(self._loop.time())
        self._schedule(conn, state, state.sent_at + conn.ping_interval)

    def discard(self, conn: Pinged) -> None:
        """Stop pinging ``conn`` (it is closing or closed)."""
        state = self._states.pop(conn, None)
        if state is not None:
            self._unschedule(conn, state)

    def pong(self, conn: Pinged, payload: bytes) -> bool:
        """A pong came on ``conn``: whether it answered the ping outstanding there."""
        state = self._states.get(conn)
        if state is None or state.outstanding is None or payload != state.outstanding:
            return False
        state.outstanding = None
        self.pongs += 1
        # Looked at when the ping would have timed out: the next ping is due sooner.
        interval = conn.ping_interval or 0.0
        if math.ceil((state.sent_at + interval) / self._tick_s) < state.tick:
            self._unschedule(conn, state)
            self._schedule(conn, state, max(state.sent_at + interval, self._loop.time()))
        return True

    def _unschedule(self, conn: Pinged, state: _State) -> None:
        bucket = self._due.get(state.tick)
        if bucket is not None:
            bucket.discard(conn)
            if not bucket:
                del self._due[state.tick]

    def _schedule(self, conn: Pinged, state: _State, at: float) -> None:
        tick = max(math.ceil(at / self._tick_s), self._next_tick)
        state.tick = tick
        bucket = self._due.get(tick)
        if bucket is None:
            bucket = self._due[tick] = set()
        bucket.add(conn)
        # While due connections are looked at, the timer is set when they have been.
        if not self._visiting and (self._timer is None or tick < self._timer_tick):
            self._arm()

    def _arm(self) -> None:
        """The timer at the first tick that has connections due (none if none has)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._due and not self._loop.is_closed():
            self._timer_tick = first = min(self._due)
            self._timer = self._loop.call_at(first * self._tick_s, self._on_tick)

    def _on_tick(self) -> None:
        self._timer = None
        now_tick = math.floor((self._loop.time() + _EARLY_S) / self._tick_s)
        for tick in sorted(t for t in self._due if t <= now_tick):
            self._visiting.extend(self._due.pop(tick))
        self._next_tick = now_tick + 1
        if not self._slice_scheduled:
            self._slice()

    def _slice(self) -> None:
        """Look at the due connections until ``SLICE_S`` is spent; the rest next turn."""
        self._slice_scheduled = False
        self.slices += 1
        loop = self._loop
        deadline = loop.time() + SLICE_S
        visiting = self._visiting
        while visiting:
            conn = visiting.popleft()
            state = self._states.get(conn)
            if state is not None:
                try:
                    self._visit(conn, state)
                except Exception as exc:  # one connection's bug must not stop the others
                    self.discard(conn)
                    loop.call_exception_handler(
                        {"message": "error in a keepalive ping", "exception": exc}
                    )
            if visiting and loop.time() >= deadline:
                self._slice_scheduled = True
                loop.call_soon(self._slice)  # after the loop has polled the network
                return
        self._arm()

    def _visit(self, conn: Pinged, state: _State) -> None:
        now = self._loop.time() + _EARLY_S
        timeout = conn.ping_timeout
        if state.outstanding is not None:
            if timeout is not None and now >= state.sent_at + timeout:
                self.timeouts += 1
                self.discard(conn)
                conn.keepalive_timed_out()
                return
            # Still within its timeout: looked at again when it runs out (the ping after
            # this one waits for the pong, as websockets' does).
            at = state.sent_at + (timeout if timeout is not None else conn.ping_interval or 0.0)
            self._schedule(conn, state, at)
            return
        interval = conn.ping_interval or 0.0
        if now < state.sent_at + interval:
            self._schedule(conn, state, state.sent_at + interval)
            return
        payload = self._rng.getrandbits(32).to_bytes(4, "big")
        if not conn.keepalive_ping(payload):
            self.discard(conn)
            return
        self.pings += 1
        state.sent_at = self._loop.time()
        state.outstanding = payload
        wait = interval if timeout is None else min(interval, timeout)
        self._schedule(conn, state, state.sent_at + wait)
