"""Full collections under a live restart cycle walk only what is new (issue 20): what
survives a full collection is frozen (:class:`loadsvc.collector.FrozenSurvivors`), and a
cycle among frozen objects, which the collector then cannot see, is freed by the sweep.

Counted in objects the collector walks (``gc.get_objects()`` is exactly the generations a
full collection traverses; frozen ones are not in it), never in wall-clock time.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref
from collections.abc import Iterator

import pytest

from loadsvc.collector import FrozenSurvivors
from loadsvc.metrics import Metrics
from loadsvc.selfmon import full_collections
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


def test_the_heap_growing_by_a_quarter_starts_a_sweep(
    frozen: tuple[FrozenSurvivors, Clock],
) -> None:
    """With no time passed, frozen cycles piling up past the growth bound (a quarter of the
    heap here) unfreeze it, and the sweep frees them all: the leak is held to a share of the
    heap, however fast it comes."""
    hook, _ = frozen
    gc.callbacks.remove(hook)
    bounded = FrozenSurvivors(SWEEP_EVERY_S, sweep_growth=0.25, clock=Clock())
    gc.callbacks.append(bounded)
    gc.disable()  # only the test's collections: which one sweeps is then certain
    try:
        gc.collect()
        leaked: list[weakref.ref[Knot]] = []
        for _ in range(8):  # a tenth of the heap at a time: a sweep within 4 batches
            knots = [Knot() for _ in range(sys.getallocatedblocks() // 10)]
            leaked.append(weakref.ref(knots[-1]))
            gc.collect()  # the knots survive it: frozen
            del knots  # now frozen cycles (unless that collection found a sweep due)
            if bounded.sweeping:
                break
            gc.collect()
            assert all(ref() is not None for ref in leaked)  # no sweep yet: all leaked
        assert bounded.sweeping and len(leaked) <= 4, len(leaked)
        gc.collect()  # the sweep
        assert all(ref() is None for ref in leaked) and bounded.sweeps == 1
        gc.collect()  # the heap is back near its size after the sweep: no other sweep due
        assert not bounded.sweeping
    finally:
        gc.enable()
        gc.callbacks.remove(bounded)
        gc.callbacks.append(hook)
