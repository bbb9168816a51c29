"""Calm reconnects: full jitter over the backoff window, and one pace of handshakes per loop.

When the backend restarts, every WS client of the generator loses its connection at
the same instant. Left alone they come back together, and hundreds of handshakes
completing in the same few loop iterations stall the event loop for hundreds of
milliseconds: every latency timed meanwhile is the generator's, not the backend's
(:mod:`loadsvc.lag`). Two things keep the loop calm:

- **Full jitter** (:class:`ReconnectBackoff`): each wait is uniform over
  ``[0, window]``, the window growing by ``multiplier`` up to ``max``, so a crowd
  spreads over the whole window instead of bunching at its end.
- **A handshake pace** (:class:`HandshakePacer`): every connection attempt of a WS
  user takes a turn from the loop's one pacer, at most ``rate`` a second with a
  small burst: a user's first connect, the attempts after a loss or a failure, and
  the reconnect storm's deliberate reconnect on its cycle boundary. What the loop
  pays per second for handshakes is bounded, whatever the number of clients and
  whatever coincides (a restart's recovery, a burst's arrivals and a storm at once
  made 75-100 ms turns unpaced, issue 20); a backend that comes back finds them
  arriving at that pace, so recovery takes about ``clients / rate`` seconds.

The storm stays the load it is meant to be: all its users still reconnect on every
boundary, spread over about ``users / rate`` seconds (100 users: 0.5 s of a 10 s
cycle), and their connect and reconnect times run from the turn, so the pace is
never reported as the target's time.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections import deque

from loadsvc.config.spec import WsBackoffSpec
from loadsvc.users.timers import TIMER_GRAIN_S

__all__ = [
    "BURST",
    "HANDSHAKES_PER_S",
    "HandshakePacer",
    "ReconnectBackoff",
    "full_jitter",
    "pace_handshakes",
    "pacer",
]

# Attempts a second a loop may start. Measured (bench/reconnect_calm.py, 500 clients): a
# client's whole way back (the loss, refused attempts, the handshake) costs the loop ~1.0 ms of
# CPU (1.6 ms while the dispatcher spun, 2.4 ms before the teardowns were sliced), so this pace
# keeps reconnecting under a third of a core, and the 900 WS clients of the seed's peak (the
# streams, the burst's and the storm's) are back ~3 s after the backend is.
HANDSHAKES_PER_S = 300.0
# Turns that may be taken back to back before the pace applies (a few clients lost at
# once, the everyday case, reconnect without waiting).
BURST = 4


def full_jitter(window_s: float, rng: random.Random) -> float:
    """A wait uniform over ``[0, window_s]``: a crowd spreads over the whole window."""
    return rng.uniform(0.0, window_s)


class ReconnectBackoff:
    """One user's waits between connection attempts: full jitter over a growing window."""

    def __init__(self, spec: WsBackoffSpec, rng: random.Random) -> None:
        self._spec = spec
        self._rng = rng
        self._window = spec.initial_s

    def next_wait(self) -> float:
        """The wait before the next attempt; the window then grows, up to ``max``."""
        wait = full_jitter(self._window, self._rng)
        self._window = min(self._window * self._spec.multiplier, self._spec.max_s)
        return wait

    async def wait(self) -> None:
        """Wait out the jittered backoff (the attempt then takes its handshake turn)."""
        await asyncio.sleep(self.next_wait())


class HandshakePacer:
    """Hands out handshake turns at most ``rate`` a second, ``burst`` back to back.

    The generic cell rate algorithm: each turn is due one interval after the previous
    one, and may be taken up to ``burst - 1`` intervals early, so over any span of ``t``
    seconds at most ``burst + rate * t`` turns are taken. Waiters queue in order and one
    dispatcher task releases them, judging the pace by the clock when it releases: after
    the loop stalls, ``burst`` waiters go at once, not every one whose time has passed
    (timers that all fired late together would be the very crowd this is for). A waiter
    cancelled while queued (the run ended) is skipped.
    """

    def __init__(self, rate: float = HANDSHAKES_PER_S, burst: int = BURST) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a pace needs rate > 0 and burst >= 1, not {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self._interval = 1.0 / rate
        self._due = float("-inf")  # when the next turn is due, on the loop's clock
        # Waiters in order, each with its run's stop: a run that stops skips the queue.
        self._queue: deque[tuple[asyncio.Future[None], asyncio.Event | None]] = deque()
        self._dispatcher: asyncio.Task[None] | None = None
        self.turns = 0
        self.waited_s = 0.0  # summed over turns: what the pace added to reconnect times

    def earliest(self, now: float) -> float:
        """When the next turn may be taken, asked at ``now`` (never before ``now``)."""
        return max(now, self._due - (self.burst - 1) * self._interval)

    def take(self, at: float) -> None:
        """Record a turn taken at ``at`` (at or after :meth:`earliest`)."""
        self._due = max(self._due, at) + self._interval
        self.turns += 1

    def reserve(self, now: float) -> float:
        """Take the next turn for a caller at ``now``; the time it may start."""
        start = self.earliest(now)
        self.take(start)
        self.waited_s += start - now
        return start

    async def turn(self, stopping: asyncio.Event | None = None) -> None:
        """Wait for a turn on the running loop.

        A waiter whose ``stopping`` is set when it reaches the head of the queue is let go
        at once and takes no turn: it is not going to connect, and a stopping run must not
        wait ``queued / rate`` seconds to end (the caller checks ``stopping`` after).
        """
        loop = asyncio.get_running_loop()
        asked = loop.time()
        if not self._queue and self.earliest(asked) <= asked:
            self.take(asked)  # the everyday case: nobody waiting, the pace allows it
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._queue.append((waiter, stopping))
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = loop.create_task(self._dispatch(), name="handshake-pacer")
        await waiter
        self.waited_s += loop.time() - asked

    async def _dispatch(self) -> None:
        """Release queued waiters at the pace until none is left."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        while queue:
            waiter, stopping = queue[0]
            if waiter.done():  # cancelled while it waited
                queue.popleft()
                continue
            if stopping is not None and stopping.is_set():
                queue.popleft()
                waiter.set_result(None)  # no turn taken: it will not connect
                continue
            now = loop.time()
            start = self.earliest(now)
            if start > now + TIMER_GRAIN_S:
                await asyncio.sleep(start - now)
                continue
            # Due within the timer's grain (loadsvc.users.timers): released now, the turn
            # taken at its due time, so the pace holds on average.
            queue.popleft()
            self.take(max(now, start))
            waiter.set_result(None)


# The pace belongs to the loop, the resource it protects: every scenario's users on one
# loop share it. Weak keys: a loop that is closed and dropped takes its pacer with it.
_PACERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HandshakePacer] = (
    weakref.WeakKeyDictionary()
)


def pacer() -> HandshakePacer:
    """The running loop's handshake pacer (made with the default pace on first use)."""
    loop = asyncio.get_running_loop()
    found = _PACERS.get(loop)
    if found is None:
        found = _PACERS[loop] = HandshakePacer()
    return found


def pace_handshakes(rate: float = HANDSHAKES_PER_S, burst: int = BURST) -> HandshakePacer:
    """Give the running loop a pacer of ``rate`` and ``burst`` (a test's, a benchmark's)."""
    made = _PACERS[asyncio.get_running_loop()] = HandshakePacer(rate, burst)
    return made
