"""loadsvc watching its own health on long runs: asyncio tasks, open sockets and the live
Python heap (``loadsvc_python_heap_blocks``), per scrape.

A prometheus-client custom collector: nothing is counted on the hot path; each scrape reads
the event loop's task set and ``/proc/self/fd``. Resident memory and open descriptors come
from prometheus-client's ``ProcessCollector`` (``process_resident_memory_bytes``,
``process_open_fds``), which ``serve`` registers too; event-loop lag is
``loadsvc_event_loop_lag_seconds``. The alert on a sustained rise of any of them is
``LoadsvcSelfResourceGrowing`` (``loadsvc.render.selfhealth``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from loadsvc.metrics import BY_FIELD

TASKS = BY_FIELD["asyncio_tasks"].name
SOCKETS = BY_FIELD["open_sockets"].name
HEAP_BLOCKS = BY_FIELD["python_heap_blocks"].name
_FD_DIR = Path("/proc/self/fd")


def count_sockets(fd_dir: Path = _FD_DIR) -> int | None:
    """Open sockets of this process (TCP connections, listeners, pipes excluded); None if
    ``/proc`` is not there."""
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return None
    sockets = 0
    for name in names:
        try:
            sockets += os.readlink(fd_dir / name).startswith("socket:")
        except OSError:
            continue  # closed between listdir and readlink
    return sockets


class SelfHealthCollector(Collector):
    """Exports ``loadsvc_asyncio_tasks``, ``loadsvc_open_sockets`` and
    ``loadsvc_python_heap_blocks`` when scraped."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, registry: CollectorRegistry | None = None
    ) -> None:
        self._loop = loop
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One sample each; a scrape from another thread reads the loop's tasks all the same."""
        # all_tasks(loop) is safe off the loop's thread: it copies the weak set and retries
        # if the set changes meanwhile.
        tasks = len(asyncio.all_tasks(self._loop)) if not self._loop.is_closed() else 0
        yield GaugeMetricFamily(TASKS, BY_FIELD["asyncio_tasks"].help, tasks)
        sockets = count_sockets()
        if sockets is not None:
            yield GaugeMetricFamily(SOCKETS, BY_FIELD["open_sockets"].help, sockets)
        # A leak raises it; fragmentation and freed-but-kept arenas, which raise RSS, do not.
        blocks = sys.getallocatedblocks()
        yield GaugeMetricFamily(HEAP_BLOCKS, BY_FIELD["python_heap_blocks"].help, blocks)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The metric names, without reading anything (so registering costs nothing)."""
        yield GaugeMetricFamily(TASKS, BY_FIELD["asyncio_tasks"].help)
        yield GaugeMetricFamily(SOCKETS, BY_FIELD["open_sockets"].help)
        yield GaugeMetricFamily(HEAP_BLOCKS, BY_FIELD["python_heap_blocks"].help)
