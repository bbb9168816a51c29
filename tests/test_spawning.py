"""Starts and retirements paced over the loop's turns: the runner against the real target."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import pytest

from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, ScenarioRun
from loadsvc.spawning import CATCH_UP_S, Paced, _Queue, start_offsets
from loadsvc.target.testing import RunningTarget
from loadsvc.users import Target
from loadsvc.users.timers import TIMER_GRAIN_S
from tests.support.loops import LOOP_KINDS, loop_runner
from tests.support.timing import scaled, wait_for_async
from tests.test_runner import scenario

BUDGET = 8
WS = "/ws/market"


def burst(users: int, duration: str = "30s") -> str:
    """``users`` at once (no spawn rate): 1 WS stream to 3 REST pollers."""
    return f"""
shape: {{kind: constant, users: {users}, duration: {duration}}}
users:
  - kind: ws_stream
    weight: 1
    path: /ws/market
  - kind: rest
    weight: 3
    pacing: 500ms
    tasks:
      - {{path: /api/market/snapshot}}
"""


@dataclass
class Turns:
    """A task that yields at every turn of the loop and reads ``count()`` at each."""

    count: object
    seen: list[int] = field(default_factory=list)
    on: bool = True

    async def run(self) -> None:
        """Step once a turn until ``on`` is cleared."""
        read = self.count
        assert callable(read)
        while self.on:
            self.seen.append(read())
            await asyncio.sleep(0)

    def steps(self) -> list[int]:
        """How many more each turn read than the turn before."""
        return [b - a for a, b in zip(self.seen, self.seen[1:], strict=False)]


class TickLog(Recorder):
    """A recorder that notes, at every tick, the run's counts beside what the shape asked."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(metrics)
        self.run: ScenarioRun | None = None
        self.ticks: list[tuple[int, int, int]] = []  # (counted, started, wanted)

    def users(self, scenario: str, running: int, target: int) -> None:
        """Note the tick, then record it as the recorder does."""
        assert self.run is not None
        self.ticks.append((running, self.run.started_count(), target))
        super().users(scenario, running, target)


async def test_a_burst_is_made_over_many_turns_within_the_budget(
    target: RunningTarget, metrics: Metrics
) -> None:
    """160 users due at once are made at most 8 a turn over 20+ turns, and every one starts."""
    users = 160
    # 10 s ticks: a start may be 1 s late before the budget gives way (a loaded machine).
    options = RunOptions(tick_s=10.0, seed=1, spread_starts=False, per_turn=BUDGET)
    run = ScenarioRun(scenario(burst(users)), Target(target.url), Recorder(metrics), options)
    turns = Turns(run.started_count)
    spinner = asyncio.create_task(turns.run())
    execution = asyncio.create_task(run.execute())
    try:
        await wait_for_async(lambda: run.started_count() == users, 10, "every user made")
        ws_users = users // 4
        await wait_for_async(
            lambda: target.runtime.stats()["connections"][WS] == ws_users, 10, "every WS connected"
        )
        await wait_for_async(
            lambda: target.runtime.stats()["rest_requests"]["/api/market/snapshot"] >= users // 2,
            10,
            "the REST pollers polling",
        )
    finally:
        run.stop()
        await asyncio.wait_for(execution, scaled(20))
        turns.on = False
        await spinner
    assert run.user_count() == 0
    starts = run._starts
    assert starts is not None
    # The pacer's own account: never more than the budget in one of its slices.
    assert starts.done == users and starts.most_in_a_slice == BUDGET and starts.caught_up == 0
    assert starts.slices >= users // BUDGET
    # Seen from the loop: between two steps of a task that runs every turn, at most two
    # slices' worth (one in the turn after its step, one in the next turn before it);
    # the old runner made all 160 in one.
    steps = turns.steps()
    assert max(steps) <= 2 * BUDGET, max(steps)
    assert sum(1 for s in steps if s > 0) >= users // (2 * BUDGET)


async def test_the_users_made_follow_the_shape_at_every_tick(
    target: RunningTarget, metrics: Metrics
) -> None:
    """Up 0 -> 24 and down to 0 in 1 s ticks: at every tick the users made are what the shape
    asks for then; a rising tick's starts were spread over the tick before it (spread over
    its own tick, they came a tick late: 0, 0, 6, 12, 18 made for 0, 6, 12, 18, 24)."""
    spec = scenario(
        """
shape: {kind: ramping, stages: [{duration: 4s, target: 24}, {duration: 2s, target: 0}]}
users:
  - kind: ws_stream
    path: /ws/market
  - kind: rest
    pacing: 500ms
    tasks:
      - {path: /api/market/snapshot}
"""
    )
    log = TickLog(metrics)
    run = ScenarioRun(spec, Target(target.url), log, RunOptions(tick_s=1.0, seed=1, per_turn=2))
    log.run = run
    result = await run.execute()
    wanted = [w for _, _, w in log.ticks]
    # The ramp went up and came down (a tick a little late, on a busy machine, reads the
    # peak already falling: 22 or 23 rather than 24).
    assert max(wanted) >= 18 and wanted[-1] < max(wanted), wanted
    # Each tick's starts, 4-6 of them, fall in the ~0.8 s before the next, 2 a turn at most.
    assert all(started == w for _, started, w in log.ticks), log.ticks
    assert all(counted == started for counted, started, _ in log.ticks), log.ticks  # the gauge
    ws = next(e for e in result.endpoints if e.endpoint == WS)
    assert ws.connects is not None and ws.connects >= max(wanted) // 2


async def test_stop_during_a_spread_stops_everything(
    target: RunningTarget, metrics: Metrics
) -> None:
    """stop() a third into a tick spreading 200 starts: no start comes after it, all users end."""
    users = 200
    options = RunOptions(tick_s=1.0, seed=1)  # spread over the tick: one every 5 ms
    run = ScenarioRun(scenario(burst(users)), Target(target.url), Recorder(metrics), options)
    execution = asyncio.create_task(run.execute())
    await wait_for_async(lambda: run.started_count() >= users // 5, 10, "some users made")
    run.stop()
    made = run.started_count()
    assert made < users  # stopped within the spread
    await asyncio.wait_for(execution, scaled(20))
    assert run.user_count() == 0 and run.started_count() == 0
    starts = run._starts
    assert starts is not None and starts.total() == 0
    handshakes = target.runtime.stats()["handshakes"][WS]
    # Past every start the stopped tick had left (it would have ended 1 s after its start):
    # none of them is made late.
    await asyncio.sleep(scaled(1.0))
    assert starts.done == made
    assert target.runtime.stats()["handshakes"][WS] == handshakes <= made
    await wait_for_async(
        lambda: target.runtime.stats()["connections"][WS] == 0, 10, "every WS closed"
    )


async def test_retirements_are_paced_too(target: RunningTarget, metrics: Metrics) -> None:
    """120 idle users at stop() are cancelled at most 8 a turn, and every one ends."""
    users = 120
    options = RunOptions(tick_s=10.0, seed=1, spread_starts=False, per_turn=BUDGET)
    spec = scenario(burst(users).replace("pacing: 500ms", "pacing: 5s"))  # idle at the stop
    run = ScenarioRun(spec, Target(target.url), Recorder(metrics), options)
    execution = asyncio.create_task(run.execute())
    await wait_for_async(
        lambda: target.runtime.stats()["connections"][WS] == users // 4, 10, "every WS connected"
    )
    await wait_for_async(
        lambda: target.runtime.stats()["rest_requests"]["/api/market/snapshot"] >= users * 3 // 4,
        10,
        "every poller polled once",
    )
    run.stop()
    await asyncio.wait_for(execution, scaled(20))
    retirements = run._retirements
    assert retirements is not None
    assert retirements.most_in_a_slice <= BUDGET
    assert retirements.done >= users * 3 // 4  # at least the idle pollers, paced
    assert retirements.slices >= retirements.done // BUDGET
    await wait_for_async(
        lambda: target.runtime.stats()["connections"][WS] == 0, 10, "every WS closed"
    )


async def test_starts_a_stall_made_more_than_a_tick_late_are_made_at_once(
    target: RunningTarget, metrics: Metrics
) -> None:
    """The loop blocked 1.5 s in a 1 s tick: its late starts are made at once, before the next tick."""
    users = 100
    log = TickLog(metrics)
    options = RunOptions(tick_s=1.0, seed=1, per_turn=BUDGET)  # spread: one every 9 ms
    run = ScenarioRun(scenario(burst(users)), Target(target.url), log, options)
    log.run = run
    loop = asyncio.get_running_loop()
    # A hostile stall: 1.5 s in which the loop runs nothing (a long callback).
    loop.call_later(0.2, time.sleep, 1.5)
    execution = asyncio.create_task(run.execute())
    await wait_for_async(lambda: len(log.ticks) >= 2, 10, "the second tick")
    run.stop()
    await asyncio.wait_for(execution, scaled(20))
    # By the second tick every start of the first was made (none more than a tick late) ...
    assert log.ticks[1][1] == users, log.ticks
    starts = run._starts
    assert starts is not None
    # ... the ones the stall made late in one go, past the budget (not 8 a turn after it,
    # which would have put them into the next tick).
    # Due 0.2-0.7 s, stalled until 1.7 s: ~55 more than a tick late.
    assert starts.caught_up >= users // 4 and starts.most_in_a_slice > users // 4


# -- the pacer itself ---------------------------------------------------------------------


async def test_paced_work_runs_in_due_order_never_early_a_budget_a_turn() -> None:
    """Items run by due time, none before it is due (within the timer's grain), at most
    per_turn in one turn."""
    loop = asyncio.get_running_loop()
    done: list[tuple[str, float]] = []
    paced: Paced[str] = Paced(lambda key: done.append((key, loop.time())), per_turn=3)
    now = loop.time()
    paced.add("late", [now + 0.2, now + 0.25], 10)
    paced.add("now", [now] * 7, 10)
    assert paced.pending("now") == 7 and paced.total() == 9
    await wait_for_async(lambda: paced.total() == 0, 5, "all worked off")
    assert [k for k, _ in done] == ["now"] * 7 + ["late"] * 2
    assert paced.most_in_a_slice == 3 and paced.slices >= 3 + 1
    early = TIMER_GRAIN_S  # a millisecond early at most (loadsvc.users.timers)
    assert done[7][1] >= now + 0.2 - early and done[8][1] >= now + 0.25 - early


async def test_items_of_one_key_carry_their_own_work_in_the_order_queued() -> None:
    """A run's retirements: one key, each item a task of its own, worked in the order queued,
    a budget a turn; the late and waiting counts are bisected (a stop's thousands)."""
    loop = asyncio.get_running_loop()
    done: list[int] = []
    paced: Paced[int] = Paced(done.append, per_turn=4)
    now = loop.time()
    for i in range(10):
        paced.add("retiring", (now,), 10, i)
    paced.add("retiring", (now + 0.05,), 10, 10)
    assert paced.pending("retiring") == 11 and paced.total() == 11
    await wait_for_async(lambda: paced.total() == 0, 5, "all worked off")
    assert done == list(range(11)) and paced.most_in_a_slice == 4
    queue = _Queue[str]()
    queue.items.extend([(1.0, 2.0, "a"), (1.5, 2.5, "b"), (3.0, 4.0, "c"), (5.0, 6.0, "d")])
    assert queue.due_late(0.5) == (0, 0) and queue.due_late(2.2) == (2, 1)
    assert queue.due_late(10.0) == (4, 4) and queue.popleft()[2] == "a"
    assert queue.due_late(2.2) == (1, 0) and len(queue) == 3


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_paced_work_takes_a_turn_an_item_not_a_spin_to_its_due_time(kind: str) -> None:
    """Items spread over a second each take about one turn: a timer re-armed for an item
    due within uvloop's millisecond grain ran in the next turn at the same clock reading,
    and starting 100 users over a second took 15 k turns."""
    slices = 0

    async def body() -> None:
        nonlocal slices
        loop = asyncio.get_running_loop()
        done: list[float] = []
        paced: Paced[str] = Paced(lambda _: done.append(loop.time()))
        real = paced._slice

        def counted() -> None:
            nonlocal slices
            slices += 1
            real()

        paced._slice = counted  # type: ignore[method-assign]
        now = loop.time()
        paced.add("a", [now + i * 0.0103 for i in range(100)], within_s=1.0)
        await wait_for_async(lambda: paced.total() == 0, 10, "all worked off")
        assert len(done) == 100

    loop_runner(kind)(body())
    assert slices <= 2 * 100, slices


async def test_paced_drop_forgets_the_latest_and_clear_forgets_all() -> None:
    """drop() takes the latest due first; clear() leaves nothing to run."""
    loop = asyncio.get_running_loop()
    done: list[float] = []
    paced: Paced[str] = Paced(lambda key: done.append(loop.time()), per_turn=None)
    now = loop.time()
    paced.add("a", [now + 0.05, now + 0.1, now + 10], 20)
    assert paced.drop("a", 1) == 1 and paced.drop("b", 5) == 0
    await wait_for_async(lambda: len(done) == 2, 5, "the two kept")
    assert paced.total() == 0
    paced.add("a", [now + 0.05], 20)
    paced.clear()
    await asyncio.sleep(0.1)  # past its due time: it must not run
    assert len(done) == 2


async def test_a_failing_item_does_not_strand_the_rest() -> None:
    """An exception from one item is reported to the loop; the others still run."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    ran: list[int] = []

    def work(key: int) -> None:
        if key == 1:
            raise RuntimeError("a bug in one user")
        ran.append(key)

    paced: Paced[int] = Paced(work, per_turn=2)
    for key in range(4):
        paced.add(key, [loop.time()], 10)
    await wait_for_async(lambda: paced.total() == 0, 5, "all worked off")
    assert ran == [0, 2, 3] and len(errors) == 1
    with pytest.raises(ValueError, match="per_turn"):
        Paced(work, per_turn=0)


async def test_slow_turns_take_more_a_turn_to_meet_the_deadline_and_no_more() -> None:
    """400 due at once, 1 s to go, 40 ms turns: more than 8 a turn, all by the deadline, not in one."""
    loop = asyncio.get_running_loop()
    done: list[float] = []
    paced: Paced[str] = Paced(lambda key: done.append(loop.time()), per_turn=BUDGET)
    hogging = True

    def hog() -> None:  # every turn of the loop takes 40 ms: a starved or busy loop
        time.sleep(0.04)
        if hogging:
            loop.call_soon(hog)

    loop.call_soon(hog)
    now = loop.time()
    paced.add("a", [now] * 400, 1.0)
    try:
        await wait_for_async(lambda: paced.total() == 0, 10, "all worked off")
    finally:
        hogging = False
    # 8 a turn would take 50 turns, 2 s at this pace: the deadline needed ~16 a turn.
    assert done[-1] <= now + 1.0 + scaled(0.3)  # by the deadline (a few turns of slack)
    assert BUDGET < paced.most_in_a_slice < 200 and paced.slices >= 4


async def test_slow_turns_make_a_spread_ticks_starts_as_they_come_not_in_a_heap() -> None:
    """1,000 due over 1 s, 1 s each, 40 ms turns: the catch-up counts the ones coming due
    before the earliest deadline, so the first ones are not put off until it nears (they
    were 0.34 s late at the median, then came in a heap)."""
    loop = asyncio.get_running_loop()
    made: list[float] = []
    paced: Paced[str] = Paced(lambda key: made.append(loop.time()), per_turn=BUDGET)
    hogging = True

    def hog() -> None:  # every turn of the loop takes 40 ms
        time.sleep(0.04)
        if hogging:
            loop.call_soon(hog)

    loop.call_soon(hog)
    now = loop.time()
    dues = [now + i * 0.001 for i in range(1000)]
    paced.add("a", dues, 1.0)
    try:
        await wait_for_async(lambda: paced.total() == 0, 10, "all worked off")
    finally:
        hogging = False
    late = sorted(m - d for m, d in zip(made[:300], dues[:300], strict=True))
    assert late[150] < 0.2, late[150]  # ~0.06 s: a turn or two
    assert made[-1] <= dues[-1] + 1.0 + scaled(0.3)  # and all by their deadline


async def test_a_catch_up_works_no_longer_than_its_cap_however_far_behind() -> None:
    """200 items of 1 ms each, all past their deadline: a turn works the budget and then
    CATCH_UP_S of them, not all 200 (a 0.2 s turn, and at a ramp past what the process can
    make, a pace that asked for ever more: slices of 8, 60, 133, 344, 634)."""
    loop = asyncio.get_running_loop()

    def work(_: str) -> None:
        until = time.perf_counter() + 0.001
        while time.perf_counter() < until:
            pass

    paced: Paced[str] = Paced(work, per_turn=BUDGET)
    paced.add("a", [loop.time() - 1.0] * 200, within_s=0.1)
    await wait_for_async(lambda: paced.total() == 0, 10, "all worked off")
    most = BUDGET + round(CATCH_UP_S / 0.001) + 1  # the cap is checked before each item
    assert BUDGET < paced.most_in_a_slice <= most, paced.most_in_a_slice
    assert paced.done == 200 and paced.slices >= 200 // most


def test_start_offsets_spread_a_ticks_users_evenly_first_at_once() -> None:
    """A tick's new users start evenly over the tick, the first at once; none left over."""
    offsets = list(itertools.islice(start_offsets(5, 1.0), 7))
    assert offsets == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 0.0, 0.0])
    assert next(start_offsets(0, 1.0)) == 0.0
    assert next(start_offsets(-3, 1.0)) == 0.0  # cancelling users: nothing to spread
