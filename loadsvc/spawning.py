"""Work paced over the loop's turns: a run's user starts and retirements, a budget a turn.

Making a user is 50-200 us of CPU (its objects, its compiled request templates, its
task), and the task's first step, a connect, about as much again. The runner used to
make a tick's new users all in the tick's turn (their *starts* spread over the tick by
timers, the objects and tasks not): 800 users at once, the market-open burst's size,
was one turn of 60-100 ms of CPU (``bench/spawn_turns.py``), and every open connection's
frames waited that long to be timed. Here each start is made only when it is due and
no more than ``per_turn`` are made in one turn; the tasks they create take their first
step in the next turn, beside the next batch. Retiring users goes the same way: a
cancelled user's teardown (its socket closed, its bookkeeping) runs in the turn after
its ``cancel()``, so cancelling hundreds at once is one long turn too.

The budget gives way to the shape's rate. Each item has a deadline, ``within_s`` after it
is due (the runner's: a tick, so the users started per second are the shape's to within
a tick). A loop that gets few turns a second (a starved process, a loop busy with frames)
would make 8 a turn and fall ever further behind: measured on the shared machine, 234 of
800 users made in the burst's 1 s tick. So when the budget is spent and items are still
due, the turn takes as many as the turns left before the earliest deadline need, at the
pace turns come now (the time since the last turn): a loop descheduled for 100 ms with
0.5 s left makes a fifth of what is due, and every one already past its deadline.

Example (a run's starts, ``make(group)`` for each one when due, each within 1 s)::

    starts = Paced(make, per_turn=8)
    starts.add(group, [now, now + 0.01, now + 0.02], within_s=1.0)
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Generic, TypeVar

from loadsvc.users.timers import TIMER_GRAIN_S

__all__ = ["PER_TURN", "Paced", "start_offsets"]

# Starts (or retirements) a turn: a few hundred us of making and as much of first steps,
# well under the 10 ms trust limit of the loop's lag (loadsvc.lag) on a loaded machine.
# 800 users due at once are then made over 100 turns (~0.1-0.2 s), inside the tick.
PER_TURN = 8

K = TypeVar("K", bound=Hashable)


class Paced(Generic[K]):
    """Items (a key each, with when each is due) worked off at most ``per_turn`` a turn.

    ``work(key)`` runs once per item, in order of due time (the loop's clock,
    ``loop.time()``), never more than the timer's grain (1 ms) before it is due. When
    more are due than a turn may do, the rest wait for the next turn (the loop polls the
    network in between), unless their deadline needs more (see the module's docstring).
    ``per_turn=None``: no budget, every due item in one turn (a benchmark's "before").
    """

    def __init__(
        self,
        work: Callable[[K], object],
        per_turn: int | None = PER_TURN,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if per_turn is not None and per_turn < 1:
            raise ValueError(f"per_turn must be at least 1, not {per_turn}")
        self._work = work
        self.per_turn = per_turn
        self._loop = loop or asyncio.get_running_loop()
        # Each key's items, (due, deadline), in the order added (due ascending).
        self._queues: dict[K, deque[tuple[float, float]]] = {}
        self._handle: asyncio.Handle | None = None
        self._armed_at = float("inf")
        self._last_slice = 0.0
        self._behind = False  # the last slice left due items for the next turn
        self.done = 0  # items worked off
        self.slices = 0  # turns that worked some
        self.most_in_a_slice = 0
        self.caught_up = 0  # items worked off past the budget, for their deadline

    def add(self, key: K, dues: Iterable[float], within_s: float) -> None:
        """Queue one item of ``key`` per due time (ascending, the loop's clock), each to be
        worked off within ``within_s`` of it whatever the budget."""
        queue = self._queues.setdefault(key, deque())
        queue.extend((due, due + within_s) for due in dues)
        if not queue:
            del self._queues[key]
            return
        self._arm(min(queue[0][0], self._armed_at))

    def pending(self, key: K) -> int:
        """Items of ``key`` not yet worked off."""
        queue = self._queues.get(key)
        return len(queue) if queue else 0

    def total(self) -> int:
        """Items of every key not yet worked off."""
        return sum(len(q) for q in self._queues.values())

    def drop(self, key: K, n: int) -> int:
        """Forget up to ``n`` of ``key``'s items, the latest due first; return how many."""
        queue = self._queues.get(key)
        if not queue:
            return 0
        dropped = min(max(n, 0), len(queue))
        for _ in range(dropped):
            queue.pop()
        if not queue:
            del self._queues[key]
        return dropped

    def clear(self) -> None:
        """Forget every item (a run stopping: nothing more starts)."""
        self._queues.clear()
        self._disarm()

    def close(self) -> None:
        """Forget every item and the work (a run's bound method: no reference cycle through
        it outlives the run, tests/test_run_garbage.py); the counters stay readable."""
        self.clear()
        self._work = _nothing

    def _disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_at = float("inf")

    def _arm(self, due: float) -> None:
        """Run a slice at ``due`` (at the next turn if it is past): one slice armed at most."""
        if self._handle is not None and self._armed_at <= due:
            return
        self._disarm()
        if self._loop.is_closed():
            return
        self._armed_at = due
        if due <= self._loop.time() + TIMER_GRAIN_S:  # due now (loadsvc.users.timers)
            self._handle = self._loop.call_soon(self._slice)
        else:
            self._handle = self._loop.call_at(due, self._slice)

    def _next_due(self, now: float) -> K | None:
        """The key whose first item is the earliest due, if it is due by ``now``."""
        best: K | None = None
        best_due = now
        for key, queue in self._queues.items():
            if queue[0][0] <= best_due:
                best, best_due = key, queue[0][0]
        return best

    def _catch_up(self, now: float, turn_s: float, done: int) -> int:
        """This turn's budget once ``done`` (``per_turn``) are made: every item due past its
        deadline, and of the others what their earliest deadline needs at one turn every
        ``turn_s`` (none more if no pace is known yet: the first turn of a backlog)."""
        deadlines = [
            d
            for q in self._queues.values()
            for _, d in itertools.takewhile(lambda i: i[0] <= now, q)
        ]
        late = sum(1 for d in deadlines if d <= now)
        waiting = [d for d in deadlines if d > now]
        share = 0  # of the waiting ones, beyond the ``done`` this turn already made
        if waiting and turn_s > 0.0:
            turns_left = max(1.0, (min(waiting) - now) / turn_s)
            share = max(0, math.ceil((done + len(waiting)) / turns_left) - done)
        return done + late + share

    def _slice(self) -> None:
        self._handle = None
        self._armed_at = float("inf")
        # Items due within the timer's grain are due now: a timer re-armed for them would run
        # in the next turn at the same clock reading (uvloop), a spin (loadsvc.users.timers).
        now = self._loop.time() + TIMER_GRAIN_S
        # How long a turn takes now: the time since the last slice, if it left items due.
        turn_s = now - self._last_slice if self._behind else 0.0
        self._last_slice = now
        budget = math.inf if self.per_turn is None else float(self.per_turn)
        count = 0
        caught_up = False
        while (key := self._next_due(now)) is not None:
            if count >= budget:
                if caught_up:
                    break
                caught_up, budget = True, self._catch_up(now, turn_s, count)
                if count >= budget:
                    break
            queue = self._queues[key]
            queue.popleft()
            if not queue:
                del self._queues[key]
            count += 1
            try:
                self._work(key)
            except Exception as exc:  # one user's bug must not strand the others' starts
                self._loop.call_exception_handler({"message": "paced work", "exception": exc})
        self._behind = self._next_due(now) is not None
        if count:
            self.done += count
            self.slices += 1
            self.most_in_a_slice = max(self.most_in_a_slice, count)
            if self.per_turn is not None:
                self.caught_up += max(0, count - self.per_turn)
        if self._queues:
            # Due ones left (the budget ran out): the next turn, after the network is polled.
            self._arm(min(q[0][0] for q in self._queues.values()))


def _nothing(_: object) -> None:
    """The work of a closed queue."""


def start_offsets(count: int, spread_s: float) -> Iterator[float]:
    """Delays that start ``count`` users evenly over ``spread_s`` seconds, the first at once.

    >>> [round(d, 3) for d in itertools.islice(start_offsets(4, 1.0), 4)]
    [0.0, 0.25, 0.5, 0.75]

    A spawn rate of 100/s adds 100 users a tick: started together, their connects and
    handshakes land in the same few turns of the loop, late-timing the frames of every
    connection already open. Beside 2,000 open (bench/spawn_calm.py, the collector off to
    see this alone, a loaded machine): loop lag p99 34-455 ms, median 176, in a burst;
    34-184 ms, median 49, spread, as 2,000-3,500 open alone (34-89). The runner takes
    ``count`` of them (the rest start at once). Each delay is when the start is *due*:
    the user is made then, within :class:`Paced`'s per-turn budget.
    """
    step = spread_s / count if count > 0 else 0.0
    for i in range(max(count, 0)):
        yield i * step
    yield from itertools.repeat(0.0)
