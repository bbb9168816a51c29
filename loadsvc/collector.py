"""The cyclic garbage collector of a load generator's process: what survives is frozen.

A collection runs inside whichever callback allocated last, so its pause is the loop's
lag, and every latency timed meanwhile is late by as much (:mod:`loadsvc.lag`). A full
collection walks every tracked object it is not told to skip, and the heap of a loaded
generator is large: each connection is ~50 tracked objects that survive, and Python runs a
full collection once the old generation has grown by a quarter since the last one. At the
seed's full size (issue 20, docs/reliability.md) that was up to 285 ms of the process's
CPU per full collection, six in 150 s of steady streaming, and about one per restart of
500 clients.

So what survives a collection of the middle or the old generation is frozen
(:class:`FrozenSurvivors`, a ``gc.callbacks`` hook: ``gc.freeze()`` at the end of every
generation 1 and 2 collection): a full collection walks only what reached the old generation
since the last middle one, a fraction of a second's survivors. (Frozen at full collections
only, the old generation held what 10 s of the seed's burst had promoted, 35-50 k objects: a
full collection took 14-18 ms, 3.4 a minute over the 10 ms trust limit, and freed nothing in
any of them (``bench/soak_turns.py`` with ``SOAK_TURNS_FULL=1``); frozen at middle ones too,
none over it in a 12-minute soak, whose lag at restarts fell from 4-20 ms to 3-7.5; two
30-minute soaks still read 12.5-30 ms at 2 of 10 restarts each.) Start-up's heap (modules,
configuration: ~57,000 objects) is frozen the same way before the load (:func:`calm_collector`). A frozen
object that dies is still freed at once by reference counting; only a *cycle* among frozen
objects is not, and the service makes ~none per restart cycle
(``tests/users/test_restart_garbage.py``). That leak is bounded by a sweep: everything is
unfrozen, and the next full collection (on the clock, below) walks all of it (a
real pause, 100-200 ms at the seed's full size, in the loop's lag like any other; what it
frees is counted in ``loadsvc_python_cyclic_garbage``). Then its survivors are frozen again.
A full collection with 500 clients connected went from 102-119 ms of CPU to under 0.5 ms.

When to sweep (:class:`loadsvc.sweeps.HeapFloor`). Once :data:`SWEEP_EVERY_S` has passed since
the last, or once the live heap has grown ``SWEEP_GROWTH`` over the heap the last sweep left.
The heap at a full collection's end holds no young garbage and no free lists (a full collection
empties them), only what is alive and what died frozen; but what is alive swings with the load
in flight (bursts, storms, a restart's reconnects: 9-18 % from low to high in an accelerated
soak), so one reading against the one after the last sweep crossed 2 % on the swing alone: 4 of
12 full collections were sweeps there. A leak of frozen cycles differs from the swing in one way
the readings can see: it never goes back down. So the trigger judges the *floor* (the 10th
percentile of the readings) of the heap at full collections' ends over a trailing window
(``SWEEP_WINDOW_S``) against the floor of the first such window after the last sweep. A window
longer than the load's longest high phase (the seed's burst: 3 minutes) holds a moment of the
base load; the swing moves the peaks, not that floor, and a leak lifts every reading after it,
the floor too. A leak is swept once it has piled 2 % of the heap and the window has seen it: at
most 2 % plus one window of it. A fast leak, which the floor sees a window late, is then
measured by the sweep itself (the blocks it freed beyond an ordinary full collection, against
the heap before it: see below): the next sweep is due by time once that rate would pile 2 %
again (not sooner than :data:`SWEEP_SOONEST_S`), so from its second sweep on the leak is held
near 2 %; a sweep that finds nothing puts it back to the hour. What the floor does not see: a
leak hidden under a fall of the load for good (the floor drops as much as it leaks): the hour
bounds that. A load that steps up for good raises the floor once: one sweep, and the new level
is the baseline; so does a trough deeper than the base load's by over 2 %, over more than a
tenth of a window, that recurs less often than the window, when it falls in a baseline's window
(a restart's, its connections gone for a few seconds, is a few of a window's ~160 readings: as
the window's minimum it was such a step). The frozen objects' count (``gc.get_freeze_count()``)
is no better a signal: it swings with the load as the heap does and misses the buffers a cycle
holds (a bound on it let the soak's heap rise 6.6 %). Measured (docs/reliability.md): the soak's
recorded readings replayed through both triggers, with and without a leak
(``bench/sweep_trigger.py``).

A reading of the heap between sweeps holds whatever frozen garbage there is; a sweep's does
not. So the hook keeps the heap right after the last sweep (``loadsvc_python_heap_blocks_at_
sweep``) and what that sweep freed: the garbage, frozen and young, that the readings before it
held. What it freed is measured by the heap, in blocks: ``sys.getallocatedblocks()`` at the
collection's "start" callback minus at its "stop". The collector's own count (``info
["collected"]``, ``loadsvc_python_sweep_garbage``) misses every cycle that a finalizer breaks:
a cycle through a suspended generator or coroutine (a websockets parser holding its protocol,
issue 20) is finalized first (``gen.close()`` clears the frame, the cycle is broken) and
reference counting then frees the whole group before the collector counts what is left, so a
sweep that freed 100 k blocks of dead protocols counted 0-3 objects. But a full collection's
fall also holds what any full collection frees: the young garbage and the interpreter's free
lists, which a full collection empties (25-35 k blocks in the soak, next to a heap of ~350 k).
So the fall is read at every ordinary full collection too, and the sweep is judged against the
median of the last :data:`ORDINARY_FALLS` of those (there is always one: the full collection
that sets a sweep off is ordinary): what it freed beyond them
(``loadsvc_python_sweep_freed_blocks``, never below 0) is what died frozen, and what the next
sweep's date is set by; both falls are exported (``loadsvc_python_full_gc_freed_blocks``: the
median it was judged against). It is an estimate, not a count: the young garbage and the free
lists vary from one full collection to the next (25-35 k blocks in the soak), and a finalizer
runs Python code, during which another thread may take the GIL and allocate or free. So the
next sweep's date takes it as found only past that variation (over the largest of those
ordinary falls); within it, the sweep found nothing and the next is an hour away.

At the end of every sweep glibc's ``malloc_trim(0)`` returns the free pages of its heap
(:class:`loadsvc.sweeps.MallocTrim`: timed, counted, what it gave back read from RSS): a sweep is the one
moment after which the heap is as small as the load allows. Tried and not taken: a trim at a
full collection every 10 s as well. It gave back 4 MB each (0.6 ms), yet RSS's ceiling rose as
much (the next peak takes the pages again), and in a thread it cost the loop 10-40 ms: half
the soak's 5 s intervals read a lag p99 over 10 ms, against 3 of 64 without it
(docs/reliability.md). At the seed's full size 23-38 MB of RSS come back a trim, for 16.8 ms
(wall, a loaded machine). In another thread (ctypes lets go of the GIL) it would hold the loop
all the same: the trim holds the main arena's lock while it walks it, and the loop's next
buffer over tcache's size waits for it (``bench/trim_pause.py``, a 90 MB heap half free: the
loop's longest wait 16.8 ms with the trim in a thread against a 13.3 ms pause on the loop).

All three generations are collected on a clock (:class:`YoungCollections`, a thread: the
young one every :data:`YOUNG_EVERY_S`, the middle one every :data:`MIDDLE_EVERY` of those, the
old one every :data:`FULL_EVERY`). Python's own rule starts a full collection only from a
young one set off by an allocation, which the clock keeps from ever coming; the sweep, the
heap's floor and the trim are read at full collections' ends. Python starts a young collection when allocations
minus deallocations pass 700, and an old object's death counts: in a generator's steady state
old objects die as fast as new ones come, so the count hovers near zero while the young
generation fills (15,000-21,000 objects at the seed's full size, 6-13 ms; the middle one,
ten of those, 24-53 ms). Measured (issue 20, docs/reliability.md): at a restart of 500
clients the middle generation's largest pause went from 14-24 ms to 3 ms, but one full
collection (28-38 ms) now falls in the restart's window, since the new connections reach
the old generation sooner; in the steady state the collector's pauses over 10 ms went from
50 to 17 in 4.3 minutes (young ones <= 3.3 ms, middle ones 0.7 ms at the median), for twice
its CPU (1.2 % of a core).

Python's thresholds stay. Measured and not taken: (700, 3, 100) halved the collector's
largest pause at a restart (the middle generation collected a third as much at a time,
full collections ten times rarer), but what cyclic garbage the service's other work makes
then waited far longer for a full collection: the accelerated soak's RSS sat ~10 MB
higher and its heap after restart 40 read +6.7 % on restart 20 (docs/reliability.md).
Freezing survivors keeps each collection short; the clock keeps them coming.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator

from loadsvc.sweeps import (
    SWEEP_GROWTH,
    SWEEP_WINDOW_S,
    HeapFloor,
    MallocTrim,
)

__all__ = [
    "FREEZE_MIDDLE",
    "FULL_EVERY",
    "MIDDLE_EVERY",
    "ORDINARY_FALLS",
    "SWEEP_EVERY_S",
    "SWEEP_SOONEST_S",
    "YOUNG_EVERY_S",
    "FrozenSurvivors",
    "YoungCollections",
    "calm_collector",
    "frozen_survivors",
    "young_collections",
]

# An hour: a sweep walks the whole heap (the pause every full collection had before), so it
# must be rare next to the six a 150 s steady run had; what it bounds is the cycles among
# frozen objects, measured at ~0 per restart cycle, so an hour of them is small.
SWEEP_EVERY_S = 3600.0
# A sweep that freed frozen cycles measured how fast they pile up: the next one is due by
# time once that rate would pile SWEEP_GROWTH of the heap's blocks again (a fast leak, which
# the floor sees a window late), but not sooner than this after it.
SWEEP_SOONEST_S = 30.0
# Ordinary full collections whose median fall (blocks at start minus at stop: their young
# garbage and the free lists they empty) a sweep's fall is judged against.
ORDINARY_FALLS = 5
# What survives a middle collection is frozen too, not only what survives a full one: a full
# collection then walks what reached the old generation since the last middle collection
# (a fraction of a second's survivors), not since the last full one (module doc).
FREEZE_MIDDLE = True


class FrozenSurvivors:
    """A ``gc.callbacks`` hook: freezes what survives every middle and full collection, and unfreezes
    everything once a sweep is due (an hour, or the heap's floor grown: :class:`HeapFloor`) so
    that the next full collection walks all of it."""

    def __init__(
        self,
        sweep_every_s: float = SWEEP_EVERY_S,
        sweep_growth: float = SWEEP_GROWTH,
        clock: Callable[[], float] = time.monotonic,
        trim: MallocTrim | None = None,
        sweep_window_s: float = SWEEP_WINDOW_S,
        freeze_middle: bool = FREEZE_MIDDLE,
    ) -> None:
        self._every = sweep_every_s
        # Freeze at the end of every middle collection too (see FREEZE_MIDDLE).
        self.freeze_middle = freeze_middle
        self.middle_freezes = 0
        self.trim = trim  # run at the end of every sweep
        self._clock = clock
        self._last_sweep = clock()
        # The heap at full collections' ends since the last sweep, judged on its floor.
        self.floor = HeapFloor(sweep_window_s, sweep_growth)
        self.floor.restart(self._last_sweep)
        # The live heap (allocated blocks) right after the last sweep: the one reading of the
        # heap with no garbage in it at all, frozen or not
        # (``loadsvc_python_heap_blocks_at_sweep``). Blocks, not frozen objects: a frozen
        # cycle may hold buffers many times its size.
        self.swept_blocks = sys.getallocatedblocks()
        # The objects the last sweep counted as freed (``info["collected"]``,
        # ``loadsvc_python_sweep_garbage``): not the cycles a finalizer broke (module doc).
        self.sweep_garbage = 0
        # The heap at the start of the running full collection, and the falls (start minus
        # stop) of the last ordinary ones: what any full collection frees.
        self._started_blocks = 0
        self._falls: collections.deque[int] = collections.deque(maxlen=ORDINARY_FALLS)
        # The last sweep's fall beyond the median of those (``loadsvc_python_sweep_freed_
        # blocks``, never below 0): the frozen garbage it freed; and that median
        # (``loadsvc_python_full_gc_freed_blocks``).
        self.sweep_freed_blocks = 0
        self.ordinary_freed_blocks = 0
        self.sweeping = False  # unfrozen: the next full collection is a sweep
        self.sweeps = 0  # sweeps done
        self.grown_sweeps = 0  # of which the heap's floor started (the rest: the hour)
        self.freezes = 0  # full collections whose survivors were frozen (sweeps included)
        # Seconds from the last sweep to the next by time: the hour, or sooner when the last
        # sweep found what died frozen piling up fast (see SWEEP_SOONEST_S).
        self.due_s = sweep_every_s
        self._growth = sweep_growth

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        """The collector's callback: read the heap at the start of a generation 2 collection,
        and act at its end."""
        if info["generation"] != 2:
            middle_end = phase == "stop" and info["generation"] == 1
            if middle_end and self.freeze_middle and not self.sweeping:
                gc.freeze()  # not while a sweep is due: the sweep must walk everything
                self.middle_freezes += 1
            return
        blocks = sys.getallocatedblocks()
        if phase == "start":
            self._started_blocks = blocks
            return
        now = self._clock()
        fall = self._started_blocks - blocks
        swept = self.sweeping  # this collection walked everything: the sweep is done
        if not swept:
            self._falls.append(fall)
            grown = self.floor.read(now, blocks)
            if grown or now - self._last_sweep >= self.due_s:
                gc.unfreeze()  # cheap (lists spliced); the next full collection walks it all
                self.sweeping = True
                self.grown_sweeps += grown
                return
        gc.freeze()
        self.freezes += 1
        if swept:
            self.sweeping = False
            self.sweeps += 1
            falls = self._falls or collections.deque([0])
            ordinary = int(statistics.median(falls))
            found = max(0, fall - ordinary)
            # What the sweep freed piled up since the last one: its share of the heap before;
            # none, if no more than the ordinary falls themselves vary by above their median.
            piled = found if found > max(falls) - ordinary else 0
            share = piled / max(1, self._started_blocks)
            soonest = min(SWEEP_SOONEST_S, self._every)
            piling = (now - self._last_sweep) * self._growth / share if share else self._every
            self.due_s = min(self._every, max(soonest, piling))
            self._last_sweep = now
            self.swept_blocks = blocks
            self.floor.restart(now)
            self.floor.read(now, blocks)  # the sweep's own reading is the baseline's first
            self.sweep_garbage = info["collected"]
            self.sweep_freed_blocks = found
            self.ordinary_freed_blocks = ordinary
            if self.trim is not None:
                self.trim()


# The young generation is collected at least this often, and the middle one at least every
# MIDDLE_EVERY such collections: a young collection then holds at most this long's new
# objects that are still alive (see YoungCollections).
YOUNG_EVERY_S = 0.05
MIDDLE_EVERY = 3
# And a full collection every FULL_EVERY young ones (1.5 s), whatever Python's own rule says:
# with the middle collections' survivors frozen (FREEZE_MIDDLE) it walks a fraction of a
# second's survivors, and Python's own schedule, which starts only from an allocation past
# the young threshold that the clock keeps away, might never run one; the sweep, the heap's
# floor and the trim are read at full collections' ends.
FULL_EVERY = 30


class YoungCollections:
    """Collects the young generation every ``every_s``, and the middle one every
    ``middle_every`` of those, from a thread of its own: a bound on their size that
    Python's own schedule does not give a load generator.

    Python collects the young generation when allocations minus deallocations of tracked
    objects pass 700; but *every* deallocation counts, an old object's too. A generator in
    a steady state frees about as many old objects as it makes (each REST cycle's sleep,
    future, timer handle and context live ~2 s and die after being promoted), so the
    count hovers near zero while the young generation fills: the seed at full size
    (issue 20) held 15,000-21,000 young objects at a young collection (6-13 ms of CPU),
    and the middle generation, ten of those, 24-47 ms. Collected on a clock, the young
    generation holds what survived ``every_s`` at most. Python's own schedule still runs
    (what it collects is then small); full collections come every ``full_every`` of these
    (:data:`FULL_EVERY`), since Python's rule would start them from its own young ones only.
    """

    def __init__(
        self,
        every_s: float = YOUNG_EVERY_S,
        middle_every: int = MIDDLE_EVERY,
        full_every: int = FULL_EVERY,
    ) -> None:
        self.every_s = every_s
        self.middle_every = middle_every
        self.full_every = full_every  # 0: no full collection on the clock
        self.ticks = 0  # periods that have passed
        self.collections = 0  # young (and middle) collections made by this schedule
        self._stop = threading.Event()
        self._held = threading.Event()  # set: collect nothing (see held())
        self._thread = threading.Thread(target=self._run, name="young-collections", daemon=True)

    def start(self) -> YoungCollections:
        """Start the schedule (returns self)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the schedule and wait for its thread."""
        self._stop.set()
        self._thread.join()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """No collection by this schedule inside the block (a test of Python's own)."""
        self._held.set()
        try:
            yield
        finally:
            self._held.clear()

    def _run(self) -> None:
        # The collection runs in this thread, holding the GIL as one the loop's allocations
        # set off would: a pause of the loop like any other, and a short one. A collector
        # switched off (gc.disable()) is left off, as Python's own schedule leaves it.
        while not self._stop.wait(self.every_s):
            self.ticks += 1
            if self._held.is_set() or not gc.isenabled():
                continue
            self.collections += 1
            n = self.collections
            if self.full_every and n % self.full_every == 0:
                gc.collect(2)
            else:
                gc.collect(1 if n % self.middle_every == 0 else 0)


_HOOK: list[FrozenSurvivors] = []
_YOUNG: list[YoungCollections] = []


def young_collections() -> YoungCollections | None:
    """The process's young-generation schedule, if :func:`calm_collector` started it."""
    return _YOUNG[0] if _YOUNG else None


def frozen_survivors() -> FrozenSurvivors | None:
    """The process's hook, if :func:`calm_collector` installed it."""
    return _HOOK[0] if _HOOK else None


@functools.cache  # once a process: the hook must not be installed twice
def calm_collector() -> None:
    """Collect, freeze what start-up made and from then on what survives every full
    collection (call once, before the load)."""
    gc.collect()
    gc.freeze()
    _HOOK.append(FrozenSurvivors(trim=MallocTrim()))
    gc.callbacks.append(_HOOK[0])
    _YOUNG.append(YoungCollections().start())
