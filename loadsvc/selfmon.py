"""loadsvc watching its own health on long runs: asyncio tasks, open sockets and the live
Python heap (``loadsvc_python_heap_blocks``), per scrape.

The heap read at a scrape holds whatever cyclic garbage waits for the collector, so a
reading swings with the collector's schedule, not only with what is alive. The honest one
is taken where no garbage is left: right after a full (generation 2) collection, from a
``gc.callbacks`` hook (:class:`FullCollections`) that costs no extra collection
(``loadsvc_python_heap_blocks_after_full_gc``, ``loadsvc_python_full_collections``). The
same hook counts what every collection freed (``loadsvc_python_cyclic_garbage``): the
garbage the service makes, which a scrape's reading may hold at most.

A prometheus-client custom collector: nothing is counted on the hot path; each scrape reads
the event loop's task set and ``/proc/self/fd``. Counting the sockets is one ``readlink``
per descriptor: 5-12 ms of CPU for the seed's ~1,000 (issue 20), in one stretch that the
exposition's slices cannot cut, so ``serve`` counts them in a thread just before it builds
the exposition (:meth:`SelfHealthCollector.prepare`); a ``readlink`` lets go of the GIL,
and the loop runs meanwhile. Resident memory and open descriptors come
from prometheus-client's ``ProcessCollector`` (``process_resident_memory_bytes``,
``process_open_fds``), which ``serve`` registers too; event-loop lag is
``loadsvc_event_loop_lag_seconds``. The alert on a sustained rise of any of them is
``LoadsvcSelfResourceGrowing`` (``loadsvc.render.selfhealth``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from loadsvc.collector import FrozenSurvivors, frozen_survivors
from loadsvc.metrics import BY_FIELD

TASKS = BY_FIELD["asyncio_tasks"].name
SOCKETS = BY_FIELD["open_sockets"].name
HEAP_BLOCKS = BY_FIELD["python_heap_blocks"].name
HEAP_AFTER_GC = BY_FIELD["python_heap_blocks_after_full_gc"].name
FULL_COLLECTIONS = BY_FIELD["python_full_collections"].name
CYCLIC_GARBAGE = BY_FIELD["python_cyclic_garbage"].name
# What the frozen survivors' sweeps read (loadsvc.collector), where the hook is installed.
SWEEP_FIELDS = (
    "python_sweeps",
    "python_heap_blocks_at_sweep",
    "python_sweep_garbage",
    "python_sweep_freed_blocks",
    "python_full_gc_freed_blocks",
    "malloc_trims",
    "malloc_trim_seconds",
    "malloc_trim_released_bytes",
)
SWEEPS = BY_FIELD["python_sweeps"].name
HEAP_AT_SWEEP = BY_FIELD["python_heap_blocks_at_sweep"].name
SWEEP_GARBAGE = BY_FIELD["python_sweep_garbage"].name
SWEEP_FREED_BLOCKS = BY_FIELD["python_sweep_freed_blocks"].name
FULL_GC_FREED_BLOCKS = BY_FIELD["python_full_gc_freed_blocks"].name
_HELP_AFTER_GC = BY_FIELD["python_heap_blocks_after_full_gc"].help
_HELP_FULL = BY_FIELD["python_full_collections"].help
_HELP_GARBAGE = BY_FIELD["python_cyclic_garbage"].help
_FD_DIR = Path("/proc/self/fd")


def count_sockets(fd_dir: Path = _FD_DIR) -> int | None:
    """Open sockets of this process (TCP connections, listeners, pipes excluded); None if
    ``/proc`` is not there."""
    try:
        dir_fd = os.open(fd_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        sockets = 0
        readlink = os.readlink
        # Relative to the directory's descriptor: no path built per entry (half the CPU).
        for name in os.listdir(dir_fd):
            try:
                sockets += readlink(name, dir_fd=dir_fd).startswith("socket:")
            except OSError:
                continue  # closed between listdir and readlink (or the directory's own)
        return sockets
    finally:
        os.close(dir_fd)


class FullCollections:
    """The live heap (allocated blocks) at the end of every full collection, and the objects
    every collection freed, by a ``gc.callbacks`` hook: the process's one instance is
    :func:`full_collections`."""

    def __init__(self) -> None:
        self.count = 0  # full collections seen since the hook was installed
        self.blocks = 0  # sys.getallocatedblocks() right after the last of them
        self.garbage = 0  # objects freed by the collector, every generation

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        """The collector's callback: at the end of a generation 2 collection, read the heap."""
        if phase == "stop":
            self.garbage += info["collected"]
            if info["generation"] == 2:
                self.blocks = sys.getallocatedblocks()
                self.count += 1


_FULL: list[FullCollections] = []


def full_collections() -> FullCollections:
    """The hook of this process, installed in ``gc.callbacks`` on the first call."""
    if not _FULL:
        _FULL.append(FullCollections())
        gc.callbacks.append(_FULL[0])
    return _FULL[0]


class SelfHealthCollector(Collector):
    """Exports ``loadsvc_asyncio_tasks``, ``loadsvc_open_sockets``,
    ``loadsvc_python_heap_blocks`` and the heap after the last full collection when scraped."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        registry: CollectorRegistry | None = None,
        survivors: FrozenSurvivors | None = None,
    ) -> None:
        self._loop = loop
        self._full = full_collections()
        # The sweeps of the process's frozen-survivors hook (another, given: a test's).
        self._survivors = survivors
        self._sockets: list[int | None] = []  # counted by prepare() for the next collect()
        if registry is not None:
            registry.register(self)

    async def prepare(self) -> None:
        """Count the sockets in a thread for the next :meth:`collect` (on the loop, that
        count would hold it for milliseconds); a scrape that did not call this counts them
        itself."""
        self._sockets = [await asyncio.to_thread(count_sockets)]

    def collect(self) -> Iterator[Metric]:
        """One sample each; a scrape from another thread reads the loop's tasks all the same."""
        # all_tasks(loop) is safe off the loop's thread: it copies the weak set and retries
        # if the set changes meanwhile.
        tasks = len(asyncio.all_tasks(self._loop)) if not self._loop.is_closed() else 0
        yield GaugeMetricFamily(TASKS, BY_FIELD["asyncio_tasks"].help, tasks)
        sockets = self._sockets.pop() if self._sockets else count_sockets()
        if sockets is not None:
            yield GaugeMetricFamily(SOCKETS, BY_FIELD["open_sockets"].help, sockets)
        # A leak raises it; fragmentation and freed-but-kept arenas, which raise RSS, do not.
        blocks = sys.getallocatedblocks()
        yield GaugeMetricFamily(HEAP_BLOCKS, BY_FIELD["python_heap_blocks"].help, blocks)
        full = self._full
        yield GaugeMetricFamily(HEAP_AFTER_GC, _HELP_AFTER_GC, full.blocks)
        yield CounterMetricFamily(FULL_COLLECTIONS, _HELP_FULL, full.count)
        yield CounterMetricFamily(CYCLIC_GARBAGE, _HELP_GARBAGE, full.garbage)
        hook = self._survivors or frozen_survivors()
        if hook is not None:
            yield from sweep_metrics(hook)

    def describe(self) -> Iterator[Metric]:
        """The metric names, without reading anything (so registering costs nothing)."""
        yield GaugeMetricFamily(TASKS, BY_FIELD["asyncio_tasks"].help)
        yield GaugeMetricFamily(SOCKETS, BY_FIELD["open_sockets"].help)
        yield GaugeMetricFamily(HEAP_BLOCKS, BY_FIELD["python_heap_blocks"].help)
        yield GaugeMetricFamily(HEAP_AFTER_GC, _HELP_AFTER_GC)
        yield CounterMetricFamily(FULL_COLLECTIONS, _HELP_FULL)
        yield CounterMetricFamily(CYCLIC_GARBAGE, _HELP_GARBAGE)
        if (self._survivors or frozen_survivors()) is not None:
            for field in SWEEP_FIELDS:
                spec = BY_FIELD[field]
                family = CounterMetricFamily if spec.type == "counter" else GaugeMetricFamily
                yield family(spec.name, spec.help)


def sweep_metrics(hook: FrozenSurvivors) -> Iterator[Metric]:
    """The sweeps of the frozen survivors' hook: how many, the heap right after the last
    (no garbage in it, frozen or not), what it freed (the garbage readings before held: the
    objects the collector counted, and the blocks beyond an ordinary full collection's, with
    that), and the glibc trims that follow each sweep (0 without a trim)."""
    trim = hook.trim
    values: tuple[float, ...] = (
        hook.sweeps,
        hook.swept_blocks,
        hook.sweep_garbage,
        hook.sweep_freed_blocks,
        hook.ordinary_freed_blocks,
    )
    if trim is None:
        values += (0, 0.0, 0)
    else:
        values += (trim.trims, trim.seconds, trim.released_bytes)
    for field, value in zip(SWEEP_FIELDS, values, strict=True):
        spec = BY_FIELD[field]
        family = CounterMetricFamily if spec.type == "counter" else GaugeMetricFamily
        yield family(spec.name, spec.help, value)
