"""The reconnect storm and first connects take handshake turns (loadsvc.users.backoff), for real."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import urllib.request
from collections.abc import AsyncIterator

import pytest

from loadsvc.config import parse_config
from loadsvc.localstack import free_port
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.users import Target, UserContext, wire_group
from loadsvc.users.backoff import pace_handshakes
from tests.support.processes import start_target
from tests.support.timing import scaled, wait_for_async

WS_MARKET = "/ws/market"
USERS, RATE, BURST, CYCLE_S = 40, 20.0, 2, 4.0


def _stats(url: str) -> dict[str, dict[str, int]]:
    with urllib.request.urlopen(url + "/admin/stats", timeout=2) as resp:
        doc: dict[str, dict[str, int]] = json.loads(resp.read())
        return doc


def _poll_now(url: str) -> tuple[int, int]:
    """(handshakes, open connections) on the target's WS path."""
    stats = _stats(url)
    return stats["handshakes"][WS_MARKET], stats["connections"][WS_MARKET]


async def _poll(url: str) -> tuple[int, int]:
    """:func:`_poll_now` off the loop."""
    return await asyncio.to_thread(_poll_now, url)


@pytest.fixture
async def storm(
    metrics: Metrics,
) -> AsyncIterator[tuple[str, UserContext, list[asyncio.Task[None]]]]:
    """USERS storm clients on a CYCLE_S cycle against the reference target, paced at RATE."""
    text = (
        "version: 1\nscenarios:\n  s:\n    shape: {kind: constant, users: 1}\n    users:\n"
        f"      - {{kind: ws_reconnect, path: {WS_MARKET}, cycle: {CYCLE_S}s, "
        "messages_per_cycle: 1}\n"
    )
    spec = parse_config(text, "test.yaml").scenario("s")
    recorder = Recorder(metrics)
    wiring = wire_group(spec.users[0], recorder.sinks(recorder.begin(spec)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc, _ = await asyncio.to_thread(start_target, port)
    loop = asyncio.get_running_loop()
    pace_handshakes(RATE, BURST)
    ctx = UserContext("s", Target(url), asyncio.Event(), started_at=loop.time())
    tasks = [asyncio.create_task(wiring.make(ctx, random.Random(i)).run()) for i in range(USERS)]
    try:
        yield url, ctx, tasks
    finally:
        ctx.stopping.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(proc.stop)


def _assert_paced(polls: list[tuple[float, int, int]]) -> None:
    for (t0, h0, _), (t1, h1, _) in itertools.pairwise(polls):
        # +2: a handshake's completion may trail its paced start by a little.
        assert h1 - h0 <= BURST + RATE * (t1 - t0) + 2, (t0 - polls[0][0], h1 - h0, t1 - t0)


async def test_a_storm_reaches_the_target_whole_at_the_pace_and_every_client_is_back(
    storm: tuple[str, UserContext, list[asyncio.Task[None]]],
) -> None:
    """First connects and a storm's deliberate reconnects never beat burst + rate x span at the
    target, the storm takes at least (users - burst) / rate, and every client reconnects."""
    url, _, _ = storm
    loop = asyncio.get_running_loop()
    # Each user connects, reconnects after its first frames, then again after the first
    # boundary's frames: three handshakes each, all polled as they happen.
    polls: list[tuple[float, int, int]] = []
    deadline = loop.time() + scaled(2 * CYCLE_S + 20)
    while loop.time() < deadline:
        hs, conns = await _poll(url)
        polls.append((loop.time(), hs, conns))
        if hs >= 3 * USERS and conns == USERS:
            break
        await asyncio.sleep(0.05)
    assert polls[-1][1] >= 3 * USERS and polls[-1][2] == USERS, f"storm incomplete: {polls[-1]}"
    _assert_paced(polls)
    began = next(t for t, hs, _ in polls if hs > 2 * USERS)
    ended = next(t for t, hs, _ in polls if hs >= 3 * USERS)
    # Unpaced, 40 clients reconnect within a few hundredths of a second.
    assert ended - began >= 0.8 * (USERS - BURST) / RATE, (began, ended)


async def test_stopping_during_a_paced_storm_ends_every_user_without_waiting_its_turn(
    storm: tuple[str, UserContext, list[asyncio.Task[None]]],
) -> None:
    """stop in the middle of a storm's reconnects: the queued users end without a handshake,
    well before the queue's pace would have let them, and no connection is left open."""
    url, ctx, tasks = storm
    settled = await wait_for_async(  # first connects and first reconnects done
        lambda: asyncio.to_thread(lambda: (h := _poll_now(url))[0] >= 2 * USERS and h[1] == USERS),
        20,
        "all connected twice",
    )
    assert settled
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(CYCLE_S + 10)
    while loop.time() < deadline:  # into the boundary's storm, most of it still queued
        hs, _ = await _poll(url)
        if hs > 2 * USERS + BURST:
            break
        await asyncio.sleep(0.02)
    handshakes_at_stop, _ = await _poll(url)
    assert handshakes_at_stop < 3 * USERS - 10, "the storm ended before the stop"
    ctx.stopping.set()
    # Not cancelled: each user must see the stop and return by itself. The queued ones go
    # at once (at the pace, 37 queued would take ~1.8 s); the connected ones at the boundary,
    # as before this pace.
    queued = 3 * USERS - handshakes_at_stop
    early, _ = await asyncio.wait(tasks, timeout=scaled(0.5))
    assert len(early) >= queued - BURST - 4, (len(early), queued)
    _, pending = await asyncio.wait(tasks, timeout=scaled(CYCLE_S + 5))
    assert not pending, f"{len(pending)} users still running after the stop"
    await wait_for_async(
        lambda: asyncio.to_thread(lambda: _stats(url)["connections"][WS_MARKET] == 0),
        10,
        "every connection closed",
    )
    handshakes_after, _ = await _poll(url)
    assert handshakes_after <= handshakes_at_stop + BURST + 2  # the queue did not connect
