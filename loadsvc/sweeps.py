"""When a sweep is due by the heap's growth, and what a sweep gives back to the system.

A sweep (:class:`loadsvc.collector.FrozenSurvivors`) unfreezes everything and walks the whole
heap: it frees the cycles that died frozen. :class:`HeapFloor` says when the live heap at full
collections' ends has grown enough since the last sweep to call one before the hourly one:
pure arithmetic over (time, blocks) readings, which a test or ``bench/sweep_trigger.py``
replays. :class:`MallocTrim` gives glibc's free pages back after it. The module doc of
:mod:`loadsvc.collector` says why (issue 20, docs/reliability.md).
"""

from __future__ import annotations

import collections
import ctypes
import os
import time
from collections.abc import Callable

__all__ = [
    "SWEEP_GROWTH",
    "SWEEP_READINGS",
    "SWEEP_WINDOW_S",
    "HeapFloor",
    "MallocTrim",
    "rss_bytes",
]

# A sweep is due before the hourly one (collector.SWEEP_EVERY_S) once the floor of the live
# heap at full collections' ends over a trailing SWEEP_WINDOW_S has grown by this share over
# the floor of the first window after the last sweep (HeapFloor): a leak of frozen cycles is
# then held to about what the soak allows the heap to grow by (2 %, restart N to 2N), plus up
# to two windows of it. Measured
# (docs/reliability.md): with the hourly sweep alone the accelerated soak's live heap rose
# +15.5 % from restart 20 to 40 (a leak since removed); with a 2 % bound on the frozen
# objects' count, +6.6 % (what leaked was a few objects a scenario run holding buffers).
SWEEP_GROWTH = 0.02
# Longer than the load's longest high phase (the seed's market-open burst: 3 minutes), so
# that every window holds a moment of the base load, whose heap is the floor.
SWEEP_WINDOW_S = 240.0
# A floor of fewer readings than this is a reading or two of the swing, not a floor: a window
# that holds fewer reaches back to this many (full collections are rare where the load is).
SWEEP_READINGS = 3


class HeapFloor:
    """Whether the live heap at full collections' ends has grown past a bound since the last
    sweep, judged on its floor: pure arithmetic over (time, blocks) readings, so that a test or
    a bench can replay any series (``bench/sweep_trigger.py`` replays the soak's).

    After :meth:`restart` (a sweep ended, or the process started) the readings of the first
    ``window_s`` (and at least ``least`` of them) make the baseline: their floor. From then
    on, a reading is judged with those of the ``window_s`` before it (or the ``least`` last,
    if the window holds fewer: a floor of one or two readings is the swing's): grown once their
    floor is over the baseline by ``growth``. A swing of the load moves
    some readings up and leaves the floor where the base load puts it; a leak lifts them all.

    >>> floor = HeapFloor(window_s=60.0, growth=0.02, least=3)
    >>> floor.restart(0.0)
    >>> [floor.read(t, b) for t, b in [(0, 100), (30, 110), (60, 100)]]  # the baseline: 100
    [False, False, False]
    >>> [floor.read(t, b) for t, b in [(90, 115), (120, 100), (150, 117), (180, 101)]]  # a swing
    [False, False, False, False]
    >>> [floor.read(t, b) for t, b in [(210, 104), (240, 112), (270, 104)]]  # a leak: +4
    [False, False, True]
    """

    def __init__(
        self,
        window_s: float = SWEEP_WINDOW_S,
        growth: float = SWEEP_GROWTH,
        least: int = SWEEP_READINGS,
    ) -> None:
        self.window_s = window_s
        self.growth = growth
        self.least = least
        self.baseline: int | None = None  # the first window's floor, once it is complete
        self._since = 0.0
        self._first: list[int] = []  # the first window's readings, until the baseline is set
        self._recent: collections.deque[tuple[float, int]] = collections.deque()

    def restart(self, now: float) -> None:
        """A sweep ended (or the process started) at ``now``: a new baseline from here."""
        self.baseline = None
        self._since = now
        self._first = []
        self._recent.clear()

    @property
    def floor(self) -> int | None:
        """The trailing window's floor (:func:`_low`; None before any reading)."""
        return _low([blocks for _, blocks in self._recent]) if self._recent else None

    def read(self, now: float, blocks: int) -> bool:
        """A full collection ended at ``now`` with ``blocks`` live: True once the floor of the
        trailing window (reaching back to the ``least``-th reading if the window holds fewer)
        has grown past the bound over the baseline."""
        recent = self._recent
        recent.append((now, blocks))
        while len(recent) > self.least and recent[0][0] < now - self.window_s:
            recent.popleft()
        if self.baseline is None:
            self._first.append(blocks)
            if now - self._since >= self.window_s and len(self._first) >= self.least:
                self.baseline = _low(self._first)
            return False
        return _low([b for _, b in recent]) > self.baseline * (1.0 + self.growth)


def _low(readings: list[int]) -> int:
    """The floor of a window's readings: its 10th percentile (the lowest of ten or fewer). Full
    collections come every 1.5 s (FULL_EVERY), so a window holds ~160 readings, and a moment's
    trough (a restart's: its connections gone for a few seconds, a few readings) is not the
    base load: a trough in the baseline's window that later windows miss would read as growth.
    The base load still holds more than a tenth of every window, and a leak lifts it all."""
    return sorted(readings)[len(readings) // 10]


class MallocTrim:
    """glibc's ``malloc_trim(0)``: the free memory its heap holds given back to the system,
    timed and counted (``loadsvc_malloc_trims``, ``_seconds``, ``_released_bytes``).

    Python's small objects live in pymalloc's 1 MiB arenas, which go back to the system
    when empty; everything larger (a connection's buffers, a big dict's table, a frame's
    text) is glibc's, whose freed chunks stay in its free lists: RSS keeps the high-water
    of what a storm or a burst held at once, and creeps as those lists fragment (issue 20,
    docs/reliability.md). A trim at a sweep returns them on the collector's rare schedule;
    where the C library has no ``malloc_trim`` (not glibc) it does nothing.
    """

    def __init__(self) -> None:
        self._fn: Callable[[int], int] | None = None
        try:
            fn = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            pass
        else:
            fn.argtypes = [ctypes.c_size_t]
            fn.restype = ctypes.c_int
            self._fn = fn
        self.trims = 0
        self.seconds = 0.0  # the loop's pause, every trim
        self.released_bytes = 0  # resident memory given back (RSS before - after), every trim

    @property
    def available(self) -> bool:
        """The C library has ``malloc_trim`` (glibc)."""
        return self._fn is not None

    def __call__(self) -> None:
        """Trim now (where there is a ``malloc_trim``), timed and counted."""
        if self._fn is None:
            return
        before = rss_bytes()
        started = time.perf_counter()
        self._fn(0)
        self.seconds += time.perf_counter() - started
        self.trims += 1
        self.released_bytes += max(0, before - rss_bytes())


_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident memory of this process (0 where ``/proc`` is not there)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0
