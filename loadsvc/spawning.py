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
pace turns come now (the time since the last turn), for the ones due now and the ones
that come due before that deadline: a loop descheduled for 100 ms with 0.5 s left makes
a fifth of them, and every one already past its deadline. (Counting only the ones due
now put the work off: a spread tick's starts waited until the first deadline neared, then
came in a heap; 2,000 users at 1,000/s in 40 ms turns were made 0.47 s late at the median,
the pacer simulation in ``bench/results.md``.)

A catch-up never makes more than ``CATCH_UP_S`` of work in one turn. When the process
itself cannot keep up (making users is what fills its turns), a longer turn makes no more
users a second; it only stalls the loop, and the next turn's pace asked for more still:
at 1.6 ms a user and 1,000/s, slices of 8, 60, 133, 344 then 634 users, a 0.5 s turn.

Example (a run's starts, ``make(group)`` for each one when due, each within 1 s)::

    starts = Paced(make, per_turn=8)
    starts.add(group, [now, now + 0.01, now + 0.02], within_s=1.0)
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterable, Iterator
from operator import itemgetter
from typing import Generic, TypeVar, cast

from loadsvc.users.timers import TIMER_GRAIN_S

__all__ = ["CATCH_UP_S", "PER_TURN", "Paced", "start_offsets"]

# Starts (or retirements) a turn: a few hundred us of making and as much of first steps,
# well under the 10 ms trust limit of the loop's lag (loadsvc.lag) on a loaded machine.
# 800 users due at once are then made over 100 turns (~0.1-0.2 s), inside the tick.
PER_TURN = 8
# The most a turn's catch-up works past the budget (its items' own time):
# their first steps take as long again in the next turn, so the loop's turns stay near the
# 10 ms trust limit however far behind the starts are.
CATCH_UP_S = 0.004

K = TypeVar("K", bound=Hashable)
_DUE, _DEADLINE = itemgetter(0), itemgetter(1)


class _Queue(Generic[K]):
    """One key's items, ``(due, deadline, item)`` in due order (and so in deadline order: a
    key's items share their ``within_s``), worked off from the front. A list and the index
    of its front, so that how many are due, or late, by a time is a bisection: a run's
    stop retires thousands of users under one key, and scanning them every turn was
    quadratic (4,000 retirements: 778 ms of CPU, turns of up to 200 ms)."""

    __slots__ = ("head", "items")

    def __init__(self) -> None:
        self.items: list[tuple[float, float, K]] = []
        self.head = 0

    def __len__(self) -> int:
        return len(self.items) - self.head

    def first(self) -> tuple[float, float, K]:
        return self.items[self.head]

    def popleft(self) -> tuple[float, float, K]:
        item = self.items[self.head]
        self.head += 1
        if self.head >= 64 and self.head * 2 >= len(self.items):
            del self.items[: self.head]  # the worked-off front, in amortised O(1)
            self.head = 0
        return item

    def pop(self) -> None:
        """Forget the latest item (never a worked-off one: ``drop`` takes at most ``len``)."""
        self.items.pop()

    def due_late(self, now: float) -> tuple[int, int]:
        """How many are due by ``now``, and of those how many are past their deadline."""
        due = bisect_right(self.items, now, lo=self.head, key=_DUE)
        late = bisect_right(self.items, now, lo=self.head, hi=due, key=_DEADLINE)
        return due - self.head, late - self.head

    def due_by(self, when: float) -> int:
        """How many are due by ``when``."""
        return bisect_right(self.items, when, lo=self.head, key=_DUE) - self.head


class Paced(Generic[K]):
    """Items (a key each, with when each is due) worked off at most ``per_turn`` a turn.

    ``work(key)`` runs once per item, in order of due time (the loop's clock,
    ``loop.time()``), never more than the timer's grain (1 ms) before it is due. When
    more are due than a turn may do, the rest wait for the next turn (the loop polls the
    network in between), unless their deadline needs more (see the module's docstring).
    ``per_turn=None``: no budget, every due item in one turn (a benchmark's "before").
    ``on_late(seconds)``: told, for each item worked past its deadline, how long after it
    was due (a run's late starts, :mod:`loadsvc.shortfall`).
    """

    def __init__(
        self,
        work: Callable[[K], object],
        per_turn: int | None = PER_TURN,
        loop: asyncio.AbstractEventLoop | None = None,
        on_late: Callable[[float], object] | None = None,
    ) -> None:
        if per_turn is not None and per_turn < 1:
            raise ValueError(f"per_turn must be at least 1, not {per_turn}")
        self._work = work
        self._on_late = on_late  # told how late each item worked past its deadline was
        self.per_turn = per_turn
        self._loop = loop or asyncio.get_running_loop()
        # Each key's items in the order added (due ascending).
        self._queues: dict[Hashable, _Queue[K]] = {}
        self._handle: asyncio.Handle | None = None
        self._armed_at = float("inf")
        self._last_slice = 0.0
        self._behind = False  # the last slice left due items for the next turn
        self.done = 0  # items worked off
        self.slices = 0  # turns that worked some
        self.most_in_a_slice = 0
        self.caught_up = 0  # items worked off past the budget, for their deadline

    def add(
        self, key: Hashable, dues: Iterable[float], within_s: float, item: K | None = None
    ) -> None:
        """Queue one item of ``key`` per due time (ascending, the loop's clock, and after the
        key's queued ones), each to be worked off within ``within_s`` of it (the same for
        every item of a key) whatever the budget: ``work(item)``, ``work(key)`` if no item."""
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue()
        payload = cast(K, key) if item is None else item
        queue.items.extend((due, due + within_s, payload) for due in dues)
        if not queue:
            del self._queues[key]
            return
        self._arm(min(queue.first()[0], self._armed_at))

    def pending(self, key: Hashable) -> int:
        """Items of ``key`` not yet worked off."""
        queue = self._queues.get(key)
        return len(queue) if queue else 0

    def total(self) -> int:
        """Items of every key not yet worked off."""
        return sum(len(q) for q in self._queues.values())

    def drop(self, key: Hashable, n: int) -> int:
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
        self._on_late = None

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

    def _next_due(self, now: float) -> Hashable | None:
        """The key whose first item is the earliest due, if it is due by ``now``."""
        best: Hashable | None = None
        best_due = now
        for key, queue in self._queues.items():
            due = queue.first()[0]
            if due <= best_due:
                best, best_due = key, due
        return best

    def _catch_up(self, now: float, turn_s: float, done: int) -> int:
        """This turn's budget once ``done`` (``per_turn``) are made: every item due past its
        deadline, and of the others what their earliest deadline needs at one turn every
        ``turn_s``, counting the ones that come due before it (none more if no pace is
        known yet: the first turn of a backlog)."""
        late = waiting = 0
        earliest = math.inf  # the earliest deadline of the due ones not yet late
        for q in self._queues.values():
            due, past = q.due_late(now)
            late += past
            waiting += due - past
            if due > past:
                earliest = min(earliest, q.items[q.head + past][1])
        share = 0  # of the waiting ones, beyond the ``done`` this turn already made
        if waiting and turn_s > 0.0:
            # The turns before that deadline also make the ones coming due in the meantime.
            coming = sum(q.due_by(earliest) for q in self._queues.values()) - late - waiting
            turns_left = max(1.0, (earliest - now) / turn_s)
            share = max(0, math.ceil((done + waiting + coming) / turns_left) - done)
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
        stop_at = math.inf  # when a catch-up's work must end (perf_counter)
        while (key := self._next_due(now)) is not None:
            if caught_up:
                if count >= budget or time.perf_counter() >= stop_at:
                    break
            elif count >= budget:
                caught_up, budget = True, self._catch_up(now, turn_s, count)
                stop_at = time.perf_counter() + CATCH_UP_S
                if count >= budget:
                    break
            queue = self._queues[key]
            due, deadline, item = queue.popleft()
            if not queue:
                del self._queues[key]
            count += 1
            if self._on_late is not None and now - TIMER_GRAIN_S > deadline:
                self._on_late(now - TIMER_GRAIN_S - due)
            try:
                self._work(item)
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
            self._arm(min(q.first()[0] for q in self._queues.values()))


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
