"""Calm reconnects (loadsvc.users.backoff): full jitter, the handshake pace, and a real restart."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
import urllib.request

import pytest

import loadsvc.users.backoff
from loadsvc.config import parse_config
from loadsvc.config.spec import WsBackoffSpec
from loadsvc.localstack import free_port
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.users import Target, UserContext, wire_group
from loadsvc.users.backoff import HandshakePacer, ReconnectBackoff, pace_handshakes, pacer
from loadsvc.users.timers import TIMER_GRAIN_S
from tests.support.loops import Run
from tests.support.processes import Proc, start_target
from tests.support.timing import scaled, wait_for_async

WS_MARKET = "/ws/market"


def test_full_jitter_covers_the_whole_window_which_grows_to_its_max() -> None:
    """Waits are spread over all of [0, window] (not its upper half); the window doubles to max."""
    spec = WsBackoffSpec(initial_s=0.1, max_s=0.4, multiplier=2.0)
    rng = random.Random(7)
    firsts = [ReconnectBackoff(spec, rng).next_wait() for _ in range(2000)]
    assert 0.0 <= min(firsts) < 0.005 and 0.095 < max(firsts) <= 0.1
    assert sum(w < 0.05 for w in firsts) > 800  # half-jitter would put none below 0.05
    one = ReconnectBackoff(spec, random.Random(1))
    ceilings = [0.1, 0.2, 0.4, 0.4, 0.4]
    waits = [one.next_wait() for _ in ceilings]
    assert all(0.0 <= w <= c for w, c in zip(waits, ceilings, strict=True))


def test_the_pacer_hands_out_at_most_burst_plus_rate_times_span_turns() -> None:
    """A crowd asking at one instant gets ``burst`` turns at once, then one per interval."""
    pace = HandshakePacer(rate=100.0, burst=4)
    starts = [pace.reserve(10.0) for _ in range(50)]
    assert starts[:4] == [10.0] * 4
    gaps = [b - a for a, b in itertools.pairwise(starts[3:])]
    assert all(abs(g - 0.01) < 1e-9 for g in gaps)
    for i, start in enumerate(starts):  # every span [start, start + t] holds <= burst + rate t
        for later in starts[i:]:
            inside = sum(start <= s <= later for s in starts)
            assert inside <= 4 + 100.0 * (later - start) + 1e-6
    assert abs(pace.waited_s - sum(s - 10.0 for s in starts)) < 1e-9
    # A caller after a quiet spell is not charged for the crowd that came before.
    assert pace.reserve(100.0) == 100.0


async def test_each_loop_has_one_pacer_and_a_test_can_set_its_pace() -> None:
    """Every user on a loop shares its pacer; ``pace_handshakes`` replaces it for that loop."""
    assert pacer() is pacer()
    mine = pace_handshakes(rate=5.0, burst=1)
    assert pacer() is mine and mine.rate == 5.0
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.gather(*(pacer().turn() for _ in range(3)))
    assert loop.time() - t0 >= 0.39  # 3 turns at 5 a second, none early: 0, 0.2, 0.4 s


async def test_after_the_loop_stalls_the_pacer_releases_a_burst_not_a_crowd() -> None:
    """Waiters whose turns fell due while the loop was blocked do not all go at once: the
    releases, timed on the loop, keep to burst + rate x span over every span."""
    rate, burst = 100.0, 2
    pace = pace_handshakes(rate, burst)
    loop = asyncio.get_running_loop()
    released: list[float] = []

    async def client() -> None:
        await pace.turn()
        released.append(loop.time())

    clients = [asyncio.create_task(client()) for _ in range(20)]
    await asyncio.sleep(0)  # every client is queued
    time.sleep(0.15)  # the loop blocked (a stall to survive, not a wait for a condition)
    await asyncio.gather(*clients)
    for i, first in enumerate(released):
        for last in released[i:]:
            inside = sum(first <= t <= last for t in released)
            # +1e-3: loop.time() of one iteration may read slightly apart.
            assert inside <= burst + rate * (last - first) + 1e-3 * rate, (i, released)


def _stats(url: str) -> dict[str, dict[str, int]]:
    with urllib.request.urlopen(url + "/admin/stats", timeout=2) as resp:
        doc: dict[str, dict[str, int]] = json.loads(resp.read())
        return doc


async def test_clients_return_after_a_target_restart_at_the_pace_and_all_of_them(
    metrics: Metrics,
) -> None:
    """The reference target killed and restarted: its handshakes per poll never beat the pace
    (burst + rate x interval), yet every client is connected again, in about clients / rate."""
    users, rate, burst = 120, 60.0, 4
    text = (
        "version: 1\nscenarios:\n  s:\n    shape: {kind: constant, users: 1}\n    users:\n"
        f"      - {{kind: ws_stream, path: {WS_MARKET}, backoff: {{initial: 100ms, max: 1s}}}}\n"
    )
    spec = parse_config(text, "test.yaml").scenario("s")
    recorder = Recorder(metrics)
    wiring = wire_group(spec.users[0], recorder.sinks(recorder.begin(spec)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc, _ = await asyncio.to_thread(start_target, port)
    loop = asyncio.get_running_loop()
    pace_handshakes(rate, burst)
    ctx = UserContext("s", Target(url), asyncio.Event(), started_at=loop.time())
    tasks = [asyncio.create_task(wiring.make(ctx, random.Random(i)).run()) for i in range(users)]

    def connected(stats: dict[str, dict[str, int]]) -> int:
        return stats["connections"][WS_MARKET]

    try:
        await wait_for_async(
            lambda: asyncio.to_thread(lambda: connected(_stats(url)) == users), 20, "all connected"
        )
        proc.popen.kill()  # a crash, by PID: no close frames
        await asyncio.to_thread(proc.popen.wait)
        proc = Proc(["target", "--host", "127.0.0.1", "--port", str(port)])
        # Polled from the moment it starts, so the first answer comes as it begins listening,
        # before the paced clients can have made more than a few handshakes.
        polls: list[tuple[float, int, int]] = []  # (time, handshakes, connected)
        deadline = loop.time() + scaled(20)
        while loop.time() < deadline:
            try:
                stats = await asyncio.to_thread(_stats, url)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            polls.append((loop.time(), stats["handshakes"][WS_MARKET], connected(stats)))
            if polls[-1][2] == users:
                break
            await asyncio.sleep(0.05)
        assert polls and polls[-1][2] == users, f"not every client came back: {polls[-1:]}"
        for (t0, h0, _), (t1, h1, _) in itertools.pairwise(polls):
            # +2: a handshake's completion may trail its paced start by a little.
            assert h1 - h0 <= burst + rate * (t1 - t0) + 2, (t0 - polls[0][0], h1 - h0, t1 - t0)
        # Spread, not bunched: unpaced, 120 clients are back within a few tenths of a second.
        first_t, first_h, _ = polls[0]
        spread = polls[-1][0] - first_t
        assert spread >= 0.8 * (users - first_h - burst) / rate, (spread, first_h)
    finally:
        ctx.stopping.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(proc.stop)


def test_the_pacer_sleeps_once_a_turn_not_through_empty_loop_turns(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between turns the dispatcher sleeps once: a wait shorter than the loop's timer grain
    (uvloop's millisecond) is not slept for, it would wake at once and spin the loop through
    thousands of empty turns (a restart of 500 clients spent a fifth of its CPU so)."""
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def counted(delay: float) -> None:
        sleeps.append(delay)
        await real_sleep(delay)

    monkeypatch.setattr(loadsvc.users.backoff.asyncio, "sleep", counted)
    waiters, rate = 60, 300.0  # 3.3 ms apart: not a whole number of timer grains

    async def body() -> None:
        pace = pace_handshakes(rate, burst=1)
        loop = asyncio.get_running_loop()
        released: list[float] = []

        async def client() -> None:
            await pace.turn()
            released.append(loop.time())

        t0 = loop.time()
        await asyncio.gather(*(client() for _ in range(waiters)))
        assert len(released) == waiters
        # The pace kept on average: 59 intervals, within the grain at either end.
        assert loop.time() - t0 >= (waiters - 1) / rate - 2 * TIMER_GRAIN_S
        assert all(d > TIMER_GRAIN_S for d in sleeps), min(sleeps)

    run(body())
    assert len(sleeps) <= 2 * waiters, len(sleeps)
