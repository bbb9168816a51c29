"""loadsvc's own health collector: asyncio tasks and open sockets, read when scraped."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loadsvc import selfmon
from loadsvc.collector import FrozenSurvivors
from loadsvc.config import parse_config
from loadsvc.selfmon import (
    CYCLIC_GARBAGE,
    FULL_COLLECTIONS,
    FULL_GC_FREED_BLOCKS,
    HEAP_AFTER_GC,
    HEAP_AT_SWEEP,
    HEAP_BLOCKS,
    SOCKETS,
    SWEEP_FREED_BLOCKS,
    SWEEP_GARBAGE,
    SWEEPS,
    TASKS,
    SelfHealthCollector,
)
from loadsvc.service.app import SoakService
from loadsvc.service.settings import ServeSettings
from loadsvc.sweeps import MallocTrim
from loadsvc.target.testing import RunningTarget
from loadsvc.users import Target


async def test_tasks_are_counted_at_scrape_time() -> None:
    """Ten more live tasks show as ten more in loadsvc_asyncio_tasks at the next scrape."""
    registry = CollectorRegistry()
    SelfHealthCollector(asyncio.get_running_loop(), registry)
    before = registry.get_sample_value(TASKS)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(stop.wait()) for _ in range(10)]
    try:
        assert registry.get_sample_value(TASKS) == (before or 0) + 10
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert registry.get_sample_value(TASKS) == before


async def test_open_sockets_follow_connections() -> None:
    """A listener and a connected pair on 127.0.0.1 add three to loadsvc_open_sockets."""
    registry = CollectorRegistry()
    SelfHealthCollector(asyncio.get_running_loop(), registry)
    before = registry.get_sample_value(SOCKETS)
    assert before is not None
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as client:
        server, _ = listener.accept()
        with server:
            assert registry.get_sample_value(SOCKETS) == before + 3
            assert client.fileno() > 0
    assert registry.get_sample_value(SOCKETS) == before


async def test_the_heap_gauge_follows_live_objects() -> None:
    """20,000 live objects raise loadsvc_python_heap_blocks by at least as many; freed, it falls."""
    registry = CollectorRegistry()
    SelfHealthCollector(asyncio.get_running_loop(), registry)
    before = registry.get_sample_value(HEAP_BLOCKS)
    assert before is not None
    held = [object() for _ in range(20_000)]
    during = registry.get_sample_value(HEAP_BLOCKS)
    assert during is not None and during >= before + 20_000
    del held
    after = registry.get_sample_value(HEAP_BLOCKS)
    assert after is not None and after < during - 15_000


async def test_a_scrape_from_another_thread_reads_the_loop() -> None:
    """generate_latest in a worker thread (as the --workers front does) still sees the tasks."""
    registry = CollectorRegistry()
    SelfHealthCollector(asyncio.get_running_loop(), registry)
    text = (await asyncio.to_thread(generate_latest, registry)).decode()
    line = next(line for line in text.splitlines() if line.startswith(TASKS + " "))
    assert float(line.split()[1]) >= 1  # at least this test's own task


async def test_serve_exports_its_own_health(target: RunningTarget, tmp_path: Path) -> None:
    """serve's /metrics carries tasks, sockets, RSS and descriptors for the soak and the alert."""
    settings = ServeSettings(
        config_path=None,
        target=Target(target.url),
        port=0,
        history_file=str(tmp_path / "history.jsonl"),
    )
    config = (
        "version: 1\nscenarios:\n  hold:\n    shape: {kind: constant, users: 2}\n"
        "    users: [{kind: ws_stream, path: /ws/market}]\n"
    )
    service = SoakService(settings, parse_config(config, "test.yaml"))
    await service.start()
    try:
        assert service.url is not None
        async with (
            aiohttp.ClientSession() as session,
            session.get(service.url + "/metrics") as resp,
        ):
            text = await resp.text()
    finally:
        await service.stop()
    names = {m.name for m in text_string_to_metric_families(text) for _ in m.samples}
    assert {TASKS, SOCKETS, "process_resident_memory_bytes", "process_open_fds"} <= names


async def test_the_heap_after_a_full_collection_leaves_the_garbage_out() -> None:
    """20,000 objects in reference cycles raise the heap read at a scrape, not the heap read
    at the end of the next full collection (which frees them); that reading, the count of
    full collections and the 20,000 objects freed are what the scrape then exports."""
    registry = CollectorRegistry()
    SelfHealthCollector(asyncio.get_running_loop(), registry)
    gc.collect()
    clean = registry.get_sample_value(HEAP_AFTER_GC)
    count = registry.get_sample_value(FULL_COLLECTIONS + "_total")
    freed = registry.get_sample_value(CYCLIC_GARBAGE + "_total")
    assert clean is not None and count is not None and freed is not None and clean > 0
    gc.collect(1)  # a younger generation: not a full collection
    assert registry.get_sample_value(FULL_COLLECTIONS + "_total") == count
    gc.disable()  # no collection may free the cycles before they are read
    try:
        for _ in range(10_000):
            pair: list[object] = []
            pair.append([pair])  # two lists that hold each other: garbage once dropped
        del pair
        with_garbage = registry.get_sample_value(HEAP_BLOCKS)
        assert with_garbage is not None and with_garbage >= clean + 20_000
        assert registry.get_sample_value(HEAP_AFTER_GC) == clean  # no collection since
    finally:
        gc.enable()
    assert gc.collect() >= 20_000
    after = registry.get_sample_value(HEAP_AFTER_GC)
    assert after is not None and abs(after - clean) < 2_000
    assert registry.get_sample_value(FULL_COLLECTIONS + "_total") == count + 1
    now_freed = registry.get_sample_value(CYCLIC_GARBAGE + "_total")
    assert now_freed is not None and now_freed >= freed + 20_000


class _Clock:
    """A clock the test moves: the sweep's interval passes when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_heap_at_a_sweep_leaves_frozen_garbage_out_and_counts_it() -> None:
    """20,000 objects in cycles that die frozen blur the heap read after a full collection
    (it cannot see them); the sweep frees them, and the scrape then exports the heap right
    after it (back to the clean size), the 20,000 objects it freed (and their blocks)
    and one trim after it."""
    clock = _Clock()
    gc.collect()
    gc.freeze()
    hook = FrozenSurvivors(3600.0, sweep_growth=1e9, clock=clock, trim=MallocTrim())
    gc.callbacks.append(hook)
    registry = CollectorRegistry()
    SelfHealthCollector(asyncio.get_running_loop(), registry, survivors=hook)
    gc.disable()  # only the test's collections
    try:
        gc.collect()
        clean = registry.get_sample_value(HEAP_AFTER_GC)
        assert clean is not None and registry.get_sample_value(SWEEPS + "_total") == 0
        pairs: list[list[object]] = []
        for _ in range(10_000):
            pair: list[object] = []
            pair.append([pair])
            pairs.append(pair)
        gc.collect()  # they survive it: frozen
        del pairs, pair  # now cycles among frozen objects: no full collection frees them
        gc.collect()
        blurred = registry.get_sample_value(HEAP_AFTER_GC)
        assert blurred is not None and blurred >= clean + 20_000
        clock.now += 3600.0  # the sweep is due: the next full collection unfreezes
        gc.collect()
        assert hook.sweeping
        gc.collect()  # the sweep
        at_sweep = registry.get_sample_value(HEAP_AT_SWEEP)
        freed = registry.get_sample_value(SWEEP_GARBAGE)
        freed_blocks = registry.get_sample_value(SWEEP_FREED_BLOCKS)
        assert at_sweep is not None and abs(at_sweep - clean) < 2_000
        assert freed is not None and freed >= 20_000
        # Their blocks (two each), beyond what an ordinary full collection frees, also exported.
        assert freed_blocks is not None and freed_blocks >= 0.9 * (blurred - clean)
        assert registry.get_sample_value(FULL_GC_FREED_BLOCKS) is not None
        assert registry.get_sample_value(SWEEPS + "_total") == 1
        trims = registry.get_sample_value("loadsvc_malloc_trims_total")
        assert trims == (1 if hook.trim is not None and hook.trim.available else 0)
    finally:
        gc.enable()
        gc.callbacks.remove(hook)
        gc.unfreeze()
        gc.collect()


def test_a_trim_gives_back_what_glibc_kept_free_between_live_blocks() -> None:
    """Every other of 800 64 KiB buffers freed leaves holes between live ones, which glibc
    keeps (free() returns only the heap's top): malloc_trim(0) gives their pages back, timed
    and counted."""
    trim = MallocTrim()
    if not trim.available:
        pytest.skip("not glibc: no malloc_trim")
    # Written, not bytes(n): calloc'd zeros from fresh pages may never become resident.
    big = [b"\x01" * (64 * 1024) for _ in range(800)]
    del big[::2]  # 25 MiB of holes, each between two live buffers
    trim()
    assert trim.trims == 1 and trim.seconds > 0
    assert trim.released_bytes > 10 * 2**20, trim.released_bytes
    assert len(big) == 400


async def test_prepare_counts_the_sockets_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve's scrape counts the sockets in a thread (prepare), and the next collect exports
    that count: sockets opened after it show only at the scrape after."""
    registry = CollectorRegistry()
    health = SelfHealthCollector(asyncio.get_running_loop(), registry)
    threads: list[int] = []
    real = selfmon.count_sockets

    def observed() -> int | None:
        threads.append(threading.get_ident())
        return real()

    monkeypatch.setattr(selfmon, "count_sockets", observed)
    await health.prepare()
    assert threads and threads[0] != threading.get_ident()  # counted off the loop's thread
    prepared = real()
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as client:
        server, _ = listener.accept()
        with server:
            assert registry.get_sample_value(SOCKETS) == prepared  # the thread's count
            assert len(threads) == 1
            assert registry.get_sample_value(SOCKETS) == prepared + 3  # counted again, here
            assert threads[1] == threading.get_ident() and client.fileno() > 0
