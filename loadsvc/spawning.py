"""Work paced over the loop's turns: a run's user starts and retirements, a budget a turn.

Making a user is 50-200 us of CPU (its objects, its compiled request templates, its
task), and the task's first step, a connect, about as much again. The runner used to
make a tick's new users all in the tick's turn (their *starts* spread over the tick by
timers, the objects and tasks not): 800 users at once, the market-open burst's size,
was one turn of 60-70 ms of CPU (``bench/spawn_turns.py``), and every open connection's
frames waited that long to be timed. Here each start is made only when it is due and
no more than ``per_turn`` are made in one turn; the tasks they create take their first
step in the next turn, beside the next batch. Retiring users goes the same way: a
cancelled user's teardown (its socket closed, its bookkeeping) runs in the turn after
its ``cancel()``, so cancelling hundreds at once is one long turn too.

The budget gives way to the shape's rate: an item more than ``late_s`` past its due time
is worked off at once, whatever the budget. A loop that gets few turns a second (a starved
process, a loop busy with frames) would otherwise make 8 a turn and fall behind the
shape: measured on the shared machine, 234 of 800 users made in the burst's first second.
Late, it makes them in larger batches, as long as it must and no longer.

Example (a run's starts, ``make(group)`` for each one when due)::

    starts = Paced(make, per_turn=8, late_s=0.1)
    starts.add(group, [now, now + 0.01, now + 0.02])
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

__all__ = ["PER_TURN", "Paced"]

# Starts (or retirements) a turn: a few hundred us of making and as much of first steps,
# well under the 10 ms trust limit of the loop's lag (loadsvc.lag) on a loaded machine.
# 800 users due at once are then made over 100 turns (~0.1-0.2 s), inside the tick.
PER_TURN = 8

K = TypeVar("K", bound=Hashable)


class Paced(Generic[K]):
    """Items (a key each, with when each is due) worked off at most ``per_turn`` a turn.

    ``work(key)`` runs once per item, in order of due time (the loop's clock,
    ``loop.time()``), never before it is due. When more are due than a turn may do,
    the rest wait for the next turn (the loop polls the network in between).
    ``per_turn=None``: no budget, every due item in one turn (a benchmark's "before").
    Items more than ``late_s`` past their due time are worked off whatever the budget.
    """

    def __init__(
        self,
        work: Callable[[K], object],
        per_turn: int | None = PER_TURN,
        late_s: float = float("inf"),
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if per_turn is not None and per_turn < 1:
            raise ValueError(f"per_turn must be at least 1, not {per_turn}")
        self._work = work
        self.per_turn = per_turn
        self.late_s = late_s
        self._loop = loop or asyncio.get_running_loop()
        self._queues: dict[K, deque[float]] = {}  # each key's due times, ascending
        self._handle: asyncio.Handle | None = None
        self._armed_at = float("inf")
        self.done = 0  # items worked off
        self.slices = 0  # turns that worked some
        self.most_in_a_slice = 0
        self.overdue = 0  # items worked off past the budget, being late_s late

    def add(self, key: K, dues: Iterable[float]) -> None:
        """Queue one item of ``key`` per due time (given in ascending order)."""
        queue = self._queues.setdefault(key, deque())
        queue.extend(dues)
        if not queue:
            del self._queues[key]
            return
        self._arm(min(queue[0], self._armed_at))

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
        dropped = min(n, len(queue))
        for _ in range(dropped):
            queue.pop()
        if not queue:
            del self._queues[key]
        return dropped

    def clear(self) -> None:
        """Forget every item (a run stopping: nothing more starts)."""
        self._queues.clear()
        self._disarm()

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
        if due <= self._loop.time():
            self._handle = self._loop.call_soon(self._slice)
        else:
            self._handle = self._loop.call_at(due, self._slice)

    def _next_due(self, now: float) -> K | None:
        """The key whose first item is the earliest due, if it is due by ``now``."""
        best: K | None = None
        best_due = now
        for key, queue in self._queues.items():
            if queue[0] <= best_due:
                best, best_due = key, queue[0]
        return best

    def _slice(self) -> None:
        self._handle = None
        self._armed_at = float("inf")
        now = self._loop.time()
        count = 0
        while True:
            key = self._next_due(now)
            if key is None:
                break
            queue = self._queues[key]
            if self.per_turn is not None and count >= self.per_turn:
                if queue[0] > now - self.late_s:
                    break  # the budget is spent and nothing due is late: the next turn
                self.overdue += 1
            queue.popleft()
            if not queue:
                del self._queues[key]
            count += 1
            try:
                self._work(key)
            except Exception as exc:  # one user's bug must not strand the others' starts
                self._loop.call_exception_handler({"message": "paced work", "exception": exc})
        if count:
            self.done += count
            self.slices += 1
            self.most_in_a_slice = max(self.most_in_a_slice, count)
        if self._queues:
            # Due ones left (the budget ran out): the next turn, after the network is polled.
            self._arm(min(q[0] for q in self._queues.values()))
