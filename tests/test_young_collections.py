"""The young generation collected on a clock (:class:`loadsvc.collector.YoungCollections`).

Python starts a young collection when allocations minus deallocations of tracked objects pass
its threshold, and an old object's deallocation counts too: a steady load whose old objects
die as fast as new ones are made never reaches it, and the young generation fills (issue 20:
15,000-21,000 objects a young collection in ``serve`` at the seed's full size). Counted in
objects in each generation (``gc.get_objects(generation)``), never in time.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

import pytest

from loadsvc.collector import YoungCollections, young_collections
from tests.support.timing import wait_for

CHURN = 20_000


@pytest.fixture
def churned() -> Iterator[list[list[object]]]:
    """CHURN new tracked objects made while as many old ones died: Python collected none
    (the process's own schedule, if an in-process CLI test started one, held meanwhile)."""
    running = young_collections()
    with running.held() if running is not None else contextlib.nullcontext():
        yield from _churn()


def _churn() -> Iterator[list[list[object]]]:
    gc.collect()
    old: list[list[object]] = [[] for _ in range(CHURN)]
    gc.collect()  # now in the old generation
    new: list[list[object]] = []
    for _ in range(CHURN):
        new.append([])  # one more tracked object...
        old.pop()  # ...and one old one freed: the count Python schedules by stays put
    yield new
    new.clear()


def test_churn_keeps_pythons_young_collections_away(churned: list[list[object]]) -> None:
    """The premise: after old objects died as fast as new ones came, the young generation
    holds most of the 20,000 new ones; Python's own schedule did not collect them."""
    assert len(gc.get_objects(0)) >= CHURN * 3 // 4


def test_the_clock_empties_the_young_and_middle_generations(churned: list[list[object]]) -> None:
    """With the schedule running, a young collection moves the 20,000 out of the young
    generation, and a middle collection (every third here) out of the middle one."""
    schedule = YoungCollections(every_s=0.01, middle_every=3).start()
    try:
        wait_for(lambda: schedule.collections >= 4, 10, "four collections on the clock")
        young, middle = len(gc.get_objects(0)), len(gc.get_objects(1))
    finally:
        schedule.stop()
    assert young < CHURN // 4
    assert middle < CHURN // 4
    assert all(gc.is_tracked(obj) for obj in churned[:10])  # alive and tracked, now old


def test_a_disabled_collector_is_left_off() -> None:
    """After gc.disable() the schedule collects nothing (as Python's own would not)."""
    gc.disable()
    schedule = YoungCollections(every_s=0.01).start()
    try:
        wait_for(lambda: schedule.ticks >= 5, 10, "five periods")
        assert schedule.collections == 0
    finally:
        gc.enable()
        schedule.stop()


def test_stop_ends_the_thread() -> None:
    """stop() ends the schedule: no collection is counted after it returns."""
    schedule = YoungCollections(every_s=0.01).start()
    wait_for(lambda: schedule.collections >= 1, 10, "a collection on the clock")
    schedule.stop()
    done = schedule.collections
    assert not schedule._thread.is_alive()
    assert schedule.collections == done


def test_the_clock_runs_a_full_collection_every_full_every() -> None:
    """Every ``full_every``-th collection on the clock is a full one (the frozen survivors'
    hook reads the heap and trims there, and Python's own rule may never start one: see
    FULL_EVERY); with ``full_every=0`` none is."""
    fulls: list[str] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            fulls.append(threading.current_thread().name)

    gc.callbacks.append(count)
    try:
        for full_every, least in ((2, 3), (0, 0)):
            fulls.clear()
            schedule = YoungCollections(every_s=0.01, middle_every=3, full_every=full_every)
            schedule.start()
            try:
                wait_for(lambda s=schedule: s.collections >= 8, 10, "eight collections")
            finally:
                schedule.stop()
            on_clock = fulls.count("young-collections")
            assert on_clock >= least if full_every else on_clock == 0, (full_every, fulls)
    finally:
        gc.callbacks.remove(count)
