"""Reads that cannot starve the generator: snapshots, the read pacer, the sliced exposition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from loadsvc.service.http import ApiAuth, build_app
from loadsvc.service.readcache import (
    Body,
    Overloaded,
    ReadPacer,
    Snapshots,
    exposition_in_slices,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_readers_share_one_build_until_the_snapshot_is_stale() -> None:
    """Fifty readers of a stale key wait for one build; a second later there is one more."""
    clock = Clock()
    snapshots = Snapshots(max_age_s=1.0, clock=clock)
    release = asyncio.Event()
    built = 0

    async def build() -> Body:
        nonlocal built
        built += 1
        await release.wait()
        return Body(200, f"v{built}".encode(), "text/plain")

    readers = [asyncio.create_task(snapshots.get("/metrics", build)) for _ in range(50)]
    await asyncio.sleep(0)
    release.set()
    assert {b.body for b in await asyncio.gather(*readers)} == {b"v1"}
    clock.now += 0.9
    assert (await snapshots.get("/metrics", build)).body == b"v1"
    clock.now += 0.2
    assert (await snapshots.get("/metrics", build)).body == b"v2"
    assert built == snapshots.builds == 2


async def test_a_failed_build_is_not_kept_and_clear_forgets_every_snapshot() -> None:
    """An error reaches the reader, the next read builds again; clear() makes reads fresh."""
    snapshots = Snapshots(clock=Clock())
    calls = 0

    async def build() -> Body:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("backend of the read failed")
        return Body(200, str(calls).encode(), "text/plain")

    with pytest.raises(RuntimeError):
        await snapshots.get("k", build)
    assert (await snapshots.get("k", build)).body == b"2"
    snapshots.clear()
    assert (await snapshots.get("k", build)).body == b"3"


async def test_a_reader_that_goes_away_does_not_cancel_the_build_for_the_others() -> None:
    """Of two readers waiting on one build, the first is cancelled; the second gets the body."""
    snapshots = Snapshots(clock=Clock())
    release = asyncio.Event()

    async def build() -> Body:
        await release.wait()
        return Body(200, b"built", "text/plain")

    first = asyncio.create_task(snapshots.get("k", build))
    second = asyncio.create_task(snapshots.get("k", build))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    release.set()
    assert (await second).body == b"built" and snapshots.builds == 1
    assert first.cancelled()


async def test_the_pacer_admits_a_burst_then_spaces_reads_and_refuses_a_long_queue() -> None:
    """10 reads/s, a burst of 2, 0.25 s of queue, time standing still: two reads pass at once,
    the next two wait their turn (0.1 and 0.2 s), the fifth (0.3 s away) is refused."""
    pacer = ReadPacer(per_second=10, burst=2, max_wait_s=0.25, clock=Clock())
    admitted = [asyncio.create_task(pacer.admit()) for _ in range(4)]
    await asyncio.sleep(0)  # the four take their turns
    with pytest.raises(Overloaded):
        await pacer.admit()
    await asyncio.sleep(0)
    assert [t.done() for t in admitted] == [True, True, False, False]
    assert pacer.refused == 1
    for t in admitted:
        t.cancel()


async def test_the_sliced_exposition_is_the_exposition() -> None:
    """Written family by family with the loop given back, the text is generate_latest's."""
    registry = CollectorRegistry()
    c = Counter("loadsvc_x", "x", ["a"], registry=registry)
    h = Histogram("loadsvc_y_seconds", "y", registry=registry)
    for i in range(200):
        c.labels(str(i)).inc(i)
        h.observe(i / 1000)
    assert await exposition_in_slices(registry, slice_s=0.0) == generate_latest(registry)


class CountingApi:
    """A ServiceApi whose reads count their calls (the real HTTP surface in front of it)."""

    def __init__(self) -> None:
        self.expositions = 0

    async def exposition(self) -> bytes:
        self.expositions += 1
        await asyncio.sleep(0.01)  # a build that takes time: readers arrive meanwhile
        return b"# HELP loadsvc_z z\n# TYPE loadsvc_z gauge\nloadsvc_z 1.0\n"

    async def readiness(self) -> tuple[bool, str]:
        return True, ""

    async def status(self) -> dict[str, object]:
        return {"service": {}, "scenarios": []}

    async def runs(self, scenario: str | None, limit: int) -> list[dict[str, object]]:
        return []

    async def series(self, scenario: str, since: float | None) -> dict[str, object] | None:
        return {"scenario": scenario, "since": since, "endpoints": []}

    async def control(self, action: str, name: str) -> tuple[int, dict[str, object]]:
        return 202, {}


@pytest.fixture
async def paced_app() -> AsyncIterator[tuple[str, CountingApi]]:
    """The real HTTP surface on 127.0.0.1 port 0, paced at 20 reads/s with a 0.3 s queue."""
    api = CountingApi()
    pacer = ReadPacer(per_second=20, burst=5, max_wait_s=0.3)
    server = TestServer(build_app(api, ApiAuth(None), pacer=pacer), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), api
    finally:
        await server.close()


async def test_many_readers_get_one_exposition_some_are_refused_health_is_not_paced(
    paced_app: tuple[str, CountingApi],
) -> None:
    """40 readers of /metrics at once: one build, reads beyond the queue get 503 with
    Retry-After, and /healthz still answers 200 while the queue is full."""
    url, api = paced_app
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as client:

        async def get(path: str) -> tuple[int, str, bytes]:
            async with client.get(url + path) as resp:
                return resp.status, resp.headers.get("Retry-After", ""), await resp.read()

        answers = await asyncio.gather(*(get("/metrics") for _ in range(40)), get("/healthz"))
    metrics, health = answers[:-1], answers[-1]
    ok = [a for a in metrics if a[0] == 200]
    refused = [a for a in metrics if a[0] == 503]
    assert health[0] == 200
    assert api.expositions == 1 and {a[2] for a in ok} == {ok[0][2]} and b"loadsvc_z" in ok[0][2]
    # 5 at once plus 0.3 s of queue at 20/s: about 11 admitted, the rest refused at once.
    assert 8 <= len(ok) <= 14 and len(refused) == 40 - len(ok)
    assert {a[1] for a in refused} == {"1"}


async def test_series_since_is_read_to_the_whole_second(
    paced_app: tuple[str, CountingApi],
) -> None:
    """Two readers asking from moments of the same second share its snapshot; a bad since is 400."""
    url, _ = paced_app
    async with aiohttp.ClientSession() as client:
        docs = []
        for since in ("1700000000.25", "1700000000.75"):
            async with client.get(f"{url}/api/series?scenario=s&since={since}") as resp:
                docs.append(await resp.json())
        async with client.get(f"{url}/api/series?scenario=s&since=nan") as resp:
            assert resp.status == 400
    assert [d["since"] for d in docs] == [1700000000.0, 1700000000.0]
