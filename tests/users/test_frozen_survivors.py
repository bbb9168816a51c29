"""Full collections under a live restart cycle walk only what is new (issue 20): what
survives a full collection is frozen (:class:`loadsvc.collector.FrozenSurvivors`), and a
cycle among frozen objects, which the collector then cannot see, is freed by the sweep, which
the heap's floor (:class:`loadsvc.sweeps.HeapFloor`) starts when such cycles pile up and the
load's swing does not (a clock the test moves).

Counted in objects the collector walks (``gc.get_objects()`` is exactly the generations a
full collection traverses; frozen ones are not in it), never in wall-clock time.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref
from collections.abc import Callable, Generator, Iterator

import pytest
from websockets.client import ClientProtocol
from websockets.uri import parse_uri

from loadsvc.collector import SWEEP_SOONEST_S, FrozenSurvivors
from loadsvc.metrics import Metrics
from loadsvc.selfmon import full_collections
from loadsvc.sweeps import HeapFloor
from loadsvc.users import Target, UserContext
from loadsvc.users.backoff import pace_handshakes
from tests.support.timing import wait_for_async
from tests.users.test_restart_garbage import REST_USERS, WS_USERS, Cycle, _end

SWEEP_EVERY_S = 3600.0


class Clock:
    """A clock the test moves: the sweep's interval passes when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Knot:
    """An object in a reference cycle with itself: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


class Parsing:
    """An object whose parser is a generator suspended in the object's own method: a cycle
    (object, generator, its frame, object) that the collector breaks by finalizing the
    generator, as websockets' parser held its protocol (issue 20)."""

    def __init__(self) -> None:
        self.buffers = [[i] for i in range(20)]  # what the cycle holds: ~40 blocks
        self.parser = self._parse()
        next(self.parser)

    def _parse(self) -> Generator[None, None, None]:
        while self.buffers:
            yield


@pytest.fixture
def frozen() -> Iterator[tuple[FrozenSurvivors, Clock]]:
    """Start-up's heap frozen and the hook installed, as ``loadsvc serve`` does; undone after."""
    clock = Clock()
    gc.collect()
    gc.freeze()
    # No growth trigger here: the test decides when the sweep is due, by the interval.
    hook = FrozenSurvivors(SWEEP_EVERY_S, sweep_growth=1e9, clock=clock)
    gc.callbacks.append(hook)
    try:
        yield hook, clock
    finally:
        gc.callbacks.remove(hook)
        gc.unfreeze()
        gc.collect()


def _walked() -> set[int]:
    """The ids of every object the next full collection will walk (frozen ones are not)."""
    return {id(o) for o in gc.get_objects()}


async def test_a_restart_cycle_walks_only_what_it_made_and_the_sweep_frees_frozen_cycles(
    metrics: Metrics, frozen: tuple[FrozenSurvivors, Clock]
) -> None:
    """30 WS and 30 REST users connected, a full collection freezes them; the target killed
    and restarted, the next full collection walks none of the users that lived through it
    and a fraction of the heap made since start-up; a cycle that died frozen survives full
    collections until the sweep is due, then the sweep frees it and counts it."""
    hook, clock = frozen
    full = full_collections()
    pace_handshakes(1000.0, 50)
    startup = gc.get_freeze_count()
    cycle = Cycle(metrics)
    await cycle.start_target()
    loop = asyncio.get_running_loop()
    streams_ctx = UserContext("s", Target(cycle.url), asyncio.Event(), started_at=loop.time())
    pollers_ctx = UserContext("s", Target(cycle.url), asyncio.Event(), started_at=loop.time())
    streams = cycle.users(streams_ctx, True, WS_USERS)
    pollers = cycle.users(pollers_ctx, False, REST_USERS)
    try:
        await wait_for_async(cycle.all_streaming, 20, "every stream connected")
        knot = Knot()
        dead = weakref.ref(knot)
        gc.collect()  # its survivors, the users and the knot among them, are frozen
        assert hook.freezes >= 1 and not hook.sweeping
        assert id(streams[0]) not in _walked() and id(knot) not in _walked()

        await cycle.kill_target()
        await asyncio.sleep(0.3)  # the outage itself: refused connects, not a wait
        await cycle.start_target()
        await wait_for_async(cycle.all_streaming, 30, "every stream back after the restart")

        walked = _walked()
        kept_out = gc.get_freeze_count() - startup  # made under load, survived, not walked
        assert not walked & {id(t) for t in streams + pollers}  # lived through it: not walked
        # The users' state (tens of tracked objects each) stays out of the walk; the restart's
        # new connections and handshakes are what it walks. Without the hook kept_out is 0.
        assert kept_out > 20 * (WS_USERS + REST_USERS), (kept_out, len(walked))
        made_since_startup = len(walked) + kept_out
        gc.collect()
        assert len(_walked()) < len(walked) / 4  # and the restart's survivors frozen too

        del knot  # a cycle among frozen objects: reference counting cannot free it
        gc.collect()
        assert dead() is not None  # the leak the sweep bounds is real
        garbage = full.garbage
        clock.now += SWEEP_EVERY_S  # an hour passes
        gc.collect()  # ends with everything unfrozen: the sweep is due
        assert hook.sweeping and gc.get_freeze_count() == 0
        gc.collect()  # the sweep: a full collection over the whole heap
        assert dead() is None
        assert full.garbage > garbage  # what it freed is counted
        assert hook.sweeps == 1 and not hook.sweeping
        assert gc.get_freeze_count() > made_since_startup  # frozen again after the sweep
        assert id(streams[0]) not in _walked()
    finally:
        await _end(streams_ctx, streams)
        await _end(pollers_ctx, pollers)
        if cycle.proc is not None:
            await asyncio.to_thread(cycle.proc.stop)


def test_a_swing_of_the_heap_does_not_sweep_and_a_leak_under_it_does_within_a_bound(
    frozen: tuple[FrozenSurvivors, Clock],
) -> None:
    """Live load swinging 0 to 12 % of the heap at full collections' ends (six times the 2 %
    growth bound) starts no sweep over five windows; frozen cycles then piling 0.5 % of the heap
    every 10 s under the same swing do, before the pile passes 2 % plus a window of it; the
    sweep frees them all and, having found them, brings the next sweep by time forward."""
    hook, _ = frozen
    gc.callbacks.remove(hook)
    clock = Clock()
    window = 60.0
    swinging = FrozenSurvivors(SWEEP_EVERY_S, sweep_growth=0.02, clock=clock, sweep_window_s=window)
    gc.callbacks.append(swinging)
    gc.disable()  # only the test's collections: which one sweeps is then certain
    load: list[list[object]] = []
    try:
        gc.collect()
        heap = sys.getallocatedblocks()
        swing = [0, 12, 4, 9, 1, 12, 6, 0, 10, 3]  # per cent of the heap: up and down
        step = 10.0
        for k in range(5 * int(window / step)):
            clock.now += step
            load = [[] for _ in range(heap * swing[k % len(swing)] // 100)]
            gc.collect()  # a full collection's end with that much load in flight
            assert not swinging.sweeping, (k, swinging.floor.baseline, swinging.floor.floor)
        assert swinging.sweeps == 0 and swinging.floor.baseline is not None

        leaked: list[weakref.ref[Knot]] = []
        per_step = heap // 400  # knots of two blocks each: 0.5 % of the heap
        pile = step_blocks = 0  # blocks of frozen cycles since the sweep; the most in a step
        for k in range(6 * int(window / step)):
            clock.now += step
            load = [[] for _ in range(heap * swing[k % len(swing)] // 100)]
            before = sys.getallocatedblocks()
            knots = [Knot() for _ in range(per_step)]
            step_blocks = max(step_blocks, sys.getallocatedblocks() - before)
            pile += sys.getallocatedblocks() - before
            leaked.append(weakref.ref(knots[-1]))
            gc.collect()  # the knots survive it: frozen (or it found the sweep due)
            del knots  # now cycles among frozen objects
            if swinging.sweeping:
                break
        assert swinging.sweeping and swinging.grown_sweeps == 1
        # 2 % over the baseline's floor, plus what a window's readings and one more step add.
        bound = 0.02 * heap + (window / step + 1) * step_blocks
        assert 0.02 * heap < pile <= bound, (pile, bound, heap)
        gc.collect()  # the sweep
        assert all(ref() is None for ref in leaked) and swinging.sweeps == 1
        assert swinging.sweep_garbage >= len(leaked) * per_step
        assert swinging.sweep_freed_blocks >= 0.9 * pile  # by the heap too
        assert SWEEP_SOONEST_S <= swinging.due_s < SWEEP_EVERY_S / 10  # a leak found: sooner
    finally:
        del load
        gc.enable()
        gc.callbacks.remove(swinging)
        gc.callbacks.append(hook)


def test_a_sweep_that_finds_nothing_puts_the_next_back_to_the_hour(
    frozen: tuple[FrozenSurvivors, Clock],
) -> None:
    """A sweep that freed a pile of frozen cycles brings the next one by time forward; the
    next, due then, finds none, and the one after is an hour away again."""
    hook, _ = frozen
    gc.callbacks.remove(hook)
    clock = Clock()
    paced = FrozenSurvivors(SWEEP_EVERY_S, sweep_growth=0.02, clock=clock)
    gc.callbacks.append(paced)
    gc.disable()
    try:
        gc.collect()
        knots = [Knot() for _ in range(sys.getallocatedblocks() // 20)]
        gc.collect()  # frozen
        del knots
        clock.now += SWEEP_EVERY_S
        gc.collect()  # the hour: unfrozen
        gc.collect()  # the sweep finds them
        assert paced.sweeps == 1 and paced.due_s < SWEEP_EVERY_S
        clock.now += paced.due_s + 1.0
        gc.collect()  # due by time: unfrozen
        assert paced.sweeping and paced.grown_sweeps == 0
        gc.collect()  # the sweep finds nothing piled
        assert paced.sweeps == 2 and paced.due_s == SWEEP_EVERY_S
    finally:
        gc.enable()
        gc.callbacks.remove(paced)
        gc.callbacks.append(hook)


@pytest.fixture
def paced(frozen: tuple[FrozenSurvivors, Clock]) -> Iterator[tuple[FrozenSurvivors, Clock]]:
    """A hook with the piling rule (the floor's bound 2 %) in place of the fixture's, and only
    the test's collections (which one sweeps is then certain); undone after."""
    hook, _ = frozen
    gc.callbacks.remove(hook)
    clock = Clock()
    paced = FrozenSurvivors(SWEEP_EVERY_S, sweep_growth=0.02, clock=clock)
    gc.callbacks.append(paced)
    gc.disable()
    try:
        yield paced, clock
    finally:
        gc.enable()
        gc.callbacks.remove(paced)
        gc.callbacks.append(hook)


def _websockets_protocol() -> object:
    """websockets' own client protocol, never connected: its parser (``parse()``, started in
    the constructor) is suspended holding it, as after ``discard()`` (issue 20)."""
    return ClientProtocol(parse_uri("ws://127.0.0.1:9/"))


@pytest.mark.parametrize("make", [Parsing, _websockets_protocol], ids=["parsing", "websockets"])
def test_a_sweep_measures_cycles_a_generators_finalizer_breaks_which_collected_misses(
    paced: tuple[FrozenSurvivors, Clock], make: Callable[[], object]
) -> None:
    """Objects each in a cycle through a generator suspended in their own method die frozen
    (a tenth to a fifth of the heap); the sweep frees them all, but the collector counts almost
    none (the generator's finalizer broke each cycle, and reference counting freed the rest
    before it counted): the heap's fall beyond an ordinary full collection's measures them,
    and brings the next sweep by time forward by their rate."""
    hook, clock = paced
    gc.collect()
    gc.collect()  # ordinary full collections: what one frees, without frozen garbage
    heap = sys.getallocatedblocks()
    count = heap // 200
    before = sys.getallocatedblocks()
    parsing = [make() for _ in range(count)]
    made = sys.getallocatedblocks() - before
    dead = [weakref.ref(p) for p in parsing[:: count // 10]]
    gc.collect()  # they survive it: frozen
    del parsing  # now cycles among frozen objects
    gc.collect()
    assert all(ref() is not None for ref in dead)  # no full collection frees them
    clock.now += SWEEP_EVERY_S  # an hour of piling: the sweep is due
    gc.collect()  # unfreezes
    assert hook.sweeping
    gc.collect()  # the sweep
    assert hook.sweeps == 1 and all(ref() is None for ref in dead)
    # The fact the measure is for: the collector's count misses them.
    assert hook.sweep_garbage < count / 100, (hook.sweep_garbage, count)
    assert 0.9 * made <= hook.sweep_freed_blocks <= 1.1 * made, (hook.sweep_freed_blocks, made)
    # Their rate (a tenth to a fifth of the heap an hour) would pile 2 % again far sooner.
    share = made / (heap + made)
    assert SWEEP_SOONEST_S <= hook.due_s <= 1.2 * SWEEP_EVERY_S * 0.02 / share, (hook.due_s, share)


def _young_cycles(knots: int) -> None:
    """``knots`` cycles of two blocks each, dead at once: young garbage, which any full
    collection frees."""
    made = [Knot() for _ in range(knots)]
    del made


def test_young_garbage_every_full_collection_frees_is_not_a_sweeps(
    paced: tuple[FrozenSurvivors, Clock],
) -> None:
    """Every full collection, the sweep too, frees the same young cycles (a tenth of the heap,
    five times the growth bound) and nothing died frozen: the sweep reports that fall as an
    ordinary one's and nothing freed beyond it, and the next sweep stays an hour away (without
    the ordinary fall taken off, the young garbage would bring it forward)."""
    hook, clock = paced
    gc.collect()
    per_collection = sys.getallocatedblocks() // 20  # knots of two blocks: a tenth of the heap
    for _ in range(4):
        _young_cycles(per_collection)
        gc.collect()
    clock.now += SWEEP_EVERY_S
    _young_cycles(per_collection)
    gc.collect()  # the hour: unfrozen
    assert hook.sweeping
    _young_cycles(per_collection)
    gc.collect()  # the sweep
    assert hook.sweeps == 1 and hook.sweep_garbage >= per_collection  # counted: young ones
    assert hook.ordinary_freed_blocks >= 1.8 * per_collection, hook.ordinary_freed_blocks
    assert hook.sweep_freed_blocks < 0.1 * per_collection, hook.sweep_freed_blocks
    assert hook.due_s == SWEEP_EVERY_S


def test_a_sweeps_fall_within_what_ordinary_ones_vary_by_is_no_pile(
    paced: tuple[FrozenSurvivors, Clock],
) -> None:
    """Ordinary full collections free 5 to 15 % of the heap in young cycles, and the sweep
    (nothing died frozen) 12.5 %: it reads 2.5 % freed beyond their median (10 %), but less
    than the largest of them freed, so it found no pile and the next sweep stays an hour away
    (the median alone would have brought it forward: 2.5 % in an hour, over the 2 % bound)."""
    hook, clock = paced
    gc.collect()
    tenth = sys.getallocatedblocks() // 20  # knots of two blocks: a tenth of the heap
    for share in (0.5, 1.5, 1.0, 0.5):
        _young_cycles(int(tenth * share))
        gc.collect()
    clock.now += SWEEP_EVERY_S
    _young_cycles(int(tenth * 1.5))
    gc.collect()  # the hour: unfrozen
    assert hook.sweeping
    _young_cycles(int(tenth * 1.25))
    gc.collect()  # the sweep
    assert hook.sweeps == 1
    assert 0.4 * tenth <= hook.sweep_freed_blocks <= 0.6 * tenth, (hook.sweep_freed_blocks, tenth)
    assert hook.due_s == SWEEP_EVERY_S


def test_the_floor_judges_only_a_whole_window_of_enough_readings() -> None:
    """No verdict before the first window after the sweep has passed with three readings (a
    high first reading is no growth); a trailing window of fewer readings reaches back to three,
    so a single high reading among sparse ones is no growth either."""
    floor = HeapFloor(window_s=60.0, growth=0.02, least=3)
    floor.restart(0.0)
    assert not floor.read(0.0, 100)
    assert not floor.read(70.0, 200)  # the window has passed, but two readings only
    assert not floor.read(80.0, 100) and floor.baseline == 100
    assert not floor.read(300.0, 150)  # sparse: judged with the two before it, 100 among them
    assert not floor.read(400.0, 150)  # 200, 100, 150, 150 back to three: 100 still in
    assert floor.read(500.0, 150)  # the last three all at 150: grown
    floor.restart(500.0)
    assert floor.baseline is None and floor.floor is None


def test_the_floor_replays_a_soaks_swing_without_a_sweep_and_bounds_a_leak_on_it() -> None:
    """The heap at full collections' ends as an accelerated soak recorded it (a cycle of 32 s,
    11-19 % from low to high) played for an hour: never grown; with 1 % of the heap a minute of
    frozen cycles on top, grown each time before the pile passes 2 % plus a window of it."""
    # A soak's readings (bench/soak.py --accelerated, thousands of blocks), 8-11 s apart.
    soak = [356, 367, 332, 337, 361, 340, 323, 367, 368, 341, 333, 372, 362, 335, 350, 353]
    period = 10.0
    window = 240.0
    floor = HeapFloor(window_s=window, growth=0.02, least=3)
    floor.restart(0.0)
    for i in range(360):  # an hour
        assert not floor.read(i * period, soak[i % len(soak)] * 1000)
    leak = 0.01 * 350_000 / 60.0  # blocks a second
    floor.restart(0.0)
    since, piles = 0.0, []
    for i in range(360):
        now = i * period
        pile = leak * (now - since)
        if floor.read(now, soak[i % len(soak)] * 1000 + round(pile)):
            piles.append(pile)
            since = now + period  # the next full collection sweeps: nothing piled from there
            floor.restart(since)
    assert len(piles) >= 6  # a sweep every few windows, the hour through
    # 2 % plus a window of it, and the readings the floor's 10th percentile waits for (the
    # lowest tenth of a window's 24 readings: the oldest ones, once the leak is rising).
    assert max(piles) <= 0.02 * 400_000 + leak * (window + 3 * period), max(piles)


def test_what_survives_a_middle_collection_is_frozen_unless_a_sweep_is_due(
    paced: tuple[FrozenSurvivors, Clock],
) -> None:
    """The survivors of a middle collection are frozen at once (a full collection then walks
    only what came since: the soak's walked 35-50 k objects, 14-18 ms, without it); without
    the rule they wait in the old generation; and once a sweep is due nothing is frozen until
    the sweep has walked it all."""
    hook, clock = paced
    kept = [[i] for i in range(5_000)]
    gc.collect(1)
    assert hook.middle_freezes == 1
    assert not {id(o) for o in kept} & _walked()

    hook.freeze_middle = False
    unfrozen = [[i] for i in range(5_000)]
    gc.collect(1)
    assert hook.middle_freezes == 1
    assert {id(o) for o in unfrozen} <= {id(o) for o in gc.get_objects(2)}

    hook.freeze_middle = True
    clock.now += SWEEP_EVERY_S
    gc.collect()  # the hour: everything unfrozen, the next full collection is the sweep
    assert hook.sweeping
    gc.collect(1)
    assert hook.middle_freezes == 1 and gc.get_freeze_count() == 0
    gc.collect()  # the sweep, then frozen again
    assert hook.sweeps == 1 and not {id(o) for o in kept + unfrozen} & _walked()


def test_a_restarts_trough_in_the_baseline_is_no_growth_after_it() -> None:
    """Readings every 1.5 s (full collections on the clock): a restart's trough (its
    connections gone, the heap 10 % lower for three readings) in the baseline's window and
    none after it is not growth; the base load 3 % higher for a whole window is."""
    floor = HeapFloor(window_s=240.0, growth=0.02, least=3)
    floor.restart(0.0)
    t, grown = 0.0, []
    for i in range(480):  # 12 minutes
        blocks = 90_000 if 100 <= i < 103 else 100_000
        grown.append(floor.read(t, blocks))
        t += 1.5
    assert floor.baseline == 100_000 and not any(grown)
    for _ in range(170):
        grown.append(floor.read(t, 103_000))
        t += 1.5
    assert grown[-1]
