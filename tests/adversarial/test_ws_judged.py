"""What a soak exists to catch, judged: a stream that stops, half a stream lost, slow handshakes
and reconnects, duplicate frames. Each case fails the run with a reason that names it, and
every count is exact."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
import pytest
from prometheus_client import CollectorRegistry

from loadsvc.config import parse_config
from loadsvc.config.spec import ScenarioSpec
from loadsvc.metrics import Metrics, create_metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, RunResult, ScenarioRun
from loadsvc.runstats import EndpointSummary
from loadsvc.sampler import SeriesSampler
from loadsvc.users import Target
from loadsvc.verdict import Judgement
from tests.adversarial.runs import run_cli
from tests.support.timing import scaled
from tests.support.wsservers import (
    Behaviour,
    RawWsConnection,
    encode_frame,
    frames_then_hold,
    market_frame,
    now,
    raw_ws_server,
)

FAST = RunOptions(tick_s=0.1, seed=1)


def config(
    *,
    users: int = 1,
    duration: str = "1500ms",
    thresholds: str = "",
    kind: str = "ws_stream",
    own: str = "",
) -> str:
    """Scenario ``s``: ``users`` WS users of ``kind`` on /ws/market, judged by ``thresholds``
    (YAML lines under the scenario's ``thresholds``). A lost connection waits 5 s to reconnect
    unless ``own`` says otherwise."""
    return f"""\
version: 1
scenarios:
  s:
    graceful_stop: 1s
    shape: {{kind: constant, users: {users}, duration: {duration}}}
    users:
      - kind: {kind}
        path: /ws/market
        connect_timeout: 30s
        backoff: {{initial: 5s, max: 5s}}
        message: {{required_keys: [quotes, prices]}}
{own}    thresholds:
{thresholds}"""


def scenario(text: str) -> ScenarioSpec:
    return parse_config(text, "judged.yaml").scenario("s")


async def run(url: str, spec: ScenarioSpec, metrics: Metrics) -> RunResult:
    """Run ``spec`` in this process against ``url``, bounded."""
    work = ScenarioRun(spec, Target(url), Recorder(metrics), FAST).execute()
    return await asyncio.wait_for(work, scaled(20))


def only(result: RunResult) -> EndpointSummary:
    (ws,) = result.endpoints
    return ws


def judged(result: RunResult, name: str) -> Judgement:
    return next(j for j in result.verdict.judgements if j.name == name)


def publishing(
    frame: Callable[[int], list[bytes]], every: float, count: int | None = None
) -> Behaviour:
    """A behaviour that sends ``frame(n)`` for n = 1, 2, ... every ``every`` s (``count`` times,
    or until the client leaves), while answering the client's close at once."""

    async def behaviour(conn: RawWsConnection) -> None:
        async def publish() -> None:
            n = 1
            while count is None or n <= count:
                await conn.send(*frame(n))
                n += 1
                await asyncio.sleep(every)

        task = asyncio.ensure_future(publish())
        try:
            await conn.read_client()  # returns at the client's close: the connection ends
        finally:
            task.cancel()

    return behaviour


async def test_a_stream_that_stops_partway_fails_the_run_with_exit_1() -> None:
    """10 frames in 0.5 s, then silence for the rest of a 2 s run: exactly 10 frames per user,
    one stall each (after 500 ms of silence), the rate under its floor; ``loadsvc run`` exits 1
    naming ws_delivery_rate and ws_stalled."""
    text = config(
        users=2,
        duration="2s",
        thresholds="      ws_delivery_rate: 10\n      ws_stall: {after: 500ms, max: 0}\n",
    )
    behaviour = publishing(lambda n: [market_frame(n, now())], every=0.05, count=10)
    async with raw_ws_server(behaviour) as server:
        cli = await asyncio.to_thread(run_cli, text, "s", server.url)
    assert cli.returncode == 1, cli.stderr
    assert cli.outcomes() == {"ok": 20, "stalled": 2}
    states = {t["name"]: t for t in cli.summary["thresholds"]}
    assert states["ws_stalled"]["state"] == "breached" and states["ws_stalled"]["value"] == 2
    rate = states["ws_delivery_rate"]
    assert rate["state"] == "breached" and 0 < rate["value"] < 10
    assert "ws_delivery_rate" in rate["description"] and "BREACHED" in rate["description"]


async def test_a_stream_that_stops_fails_the_serve_window(metrics: Metrics) -> None:
    """Verdict windows rolled while the stream is silent (as `serve` does) fail on the stall
    and the rate, the next one too (the connection is still stalled), and the run goes on."""
    text = config(
        duration="10s",
        thresholds="      ws_delivery_rate: 10\n      ws_stall: {after: 300ms, max: 0}\n",
    )
    behaviour = publishing(lambda n: [market_frame(n, now())], every=0.05, count=5)
    async with raw_ws_server(behaviour) as server:
        run = ScenarioRun(scenario(text), Target(server.url), Recorder(metrics), FAST)
        task = asyncio.ensure_future(run.execute())
        deadline = time.monotonic() + scaled(5)
        while not (run.stats and any(e.stalls for e in run.stats.endpoints.values())):
            assert time.monotonic() < deadline, "no stall counted"
            await asyncio.sleep(0.02)
        window = await run.roll_window()
        still = await run.roll_window()  # the stream is still stopped
        assert not task.done()  # the run goes on after a stall
        run.stop()
        await asyncio.wait_for(task, scaled(10))
    assert window.result == still.result == "failed"
    ws = only(window)
    assert ws.count == 5 and ws.stalls == 1
    reasons = " | ".join(window.reasons)
    assert "ws_stalled = 1 stalls" in reasons and "ws_delivery_rate" in reasons
    assert only(still).count == 0 and only(still).stalls == 1
    assert any("ws_stalled = 1 stalls" in r for r in still.reasons)


async def test_every_other_frame_dropped_is_half_missed_counted_exactly(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """Odd sequence numbers only, sent on past the deadline: every even number below the last
    delivered one is missed (missed = delivered - 1), frames still in flight at the end are
    neither, and ws_missed_ratio fails at ~50 %."""
    text = config(thresholds="      ws_missed_ratio: 0.2\n")
    behaviour = publishing(lambda n: [market_frame(2 * n - 1, now())], every=0.01)
    async with raw_ws_server(behaviour) as server:
        result = await run(server.url, scenario(text), metrics)
    ws = only(result)
    assert ws.connects == 1 and ws.count > 20
    assert ws.missed == ws.count - 1
    missed = judged(result, "ws_missed_ratio")
    assert missed.state == "breached"
    assert missed.value == pytest.approx((ws.count - 1) / (2 * ws.count - 1))
    assert not result.passed and result.result == "failed"
    assert any("ws_missed_ratio" in r for r in result.reasons)
    labels = {"scenario": "s", "endpoint": "/ws/market", "threshold": "ws_missed_ratio"}
    assert registry.get_sample_value("loadsvc_threshold_breached", labels) == 1
    assert registry.get_sample_value("loadsvc_threshold_value", labels) == missed.value
    missed_total = {"scenario": "s", "endpoint": "/ws/market"}
    assert registry.get_sample_value("loadsvc_ws_messages_missed_total", missed_total) == ws.missed


async def test_slow_handshakes_breach_the_connect_time(metrics: Metrics) -> None:
    """Upgrades answered 300 ms late: both connects count, p95 >= 300 ms breaches a 250 ms limit."""
    text = config(users=2, thresholds="      ws_connect_time: {max: 250ms}\n")
    frames = frames_then_hold(lambda c: [market_frame(n, now()) for n in range(1, 6)])
    async with raw_ws_server(frames, handshake_delay=0.3) as server:
        result = await run(server.url, scenario(text), metrics)
        assert server.handshakes == 2
    ws = only(result)
    assert ws.connects == 2 and ws.count == 10
    connect = judged(result, "ws_connect_time")
    assert connect.state == "breached" and connect.value is not None and connect.value >= 0.3
    assert connect.samples == 2
    assert result.result == "failed"
    assert any("ws_connect_time p95" in r and "BREACHED" in r for r in result.reasons)


async def test_slow_reconnects_in_the_storm_breach_the_reconnect_time(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """A storm against a server that answers upgrades 300 ms late: every connect after the
    first is a reconnect (exactly), and their p95 breaches a 250 ms limit."""
    text = config(
        kind="ws_reconnect",
        duration="1800ms",
        own="        cycle: 600ms\n        messages_per_cycle: 1\n",
        thresholds="      ws_reconnect_time: {max: 250ms, min_samples: 1}\n",
    )
    behaviour = publishing(lambda n: [market_frame(n, now())], every=0.05)
    async with raw_ws_server(behaviour, handshake_delay=0.3) as server:
        result = await run(server.url, scenario(text), metrics)
        handshakes = server.handshakes
    ws = only(result)
    assert ws.connects == handshakes and ws.reconnects == ws.connects - 1 >= 2
    reconnect = judged(result, "ws_reconnect_time")
    assert reconnect.state == "breached" and reconnect.samples == ws.reconnects
    assert reconnect.value is not None and reconnect.value >= 0.3
    assert result.result == "failed"
    labels = {"scenario": "s", "endpoint": "/ws/market"}
    count = registry.get_sample_value("loadsvc_ws_reconnect_duration_seconds_count", labels)
    assert count == ws.reconnects


async def test_duplicate_frames_are_counted_apart_never_delivered(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """Every frame sent twice: 50 delivered, 50 duplicates, the rate over the 50 only."""
    text = config(thresholds="      ws_delivery_rate: 1\n")
    twice = frames_then_hold(
        lambda c: [f for n in range(1, 51) for f in (market_frame(n, now()),) * 2]
    )
    async with raw_ws_server(twice) as server:
        result = await run(server.url, scenario(text), metrics)
    ws = only(result)
    assert ws.count == 50 and ws.outcome("ok") == 50 and ws.outcome("duplicate") == 50
    assert dict(ws.sequence_anomalies) == {"duplicate": 50}
    assert ws.latency_histogram[1] and sum(ws.latency_histogram[1]) == 50  # timed once each
    rate = judged(result, "ws_delivery_rate")
    assert rate.value == pytest.approx(50 / ws.connection_seconds)
    labels = {"scenario": "s", "endpoint": "/ws/market", "outcome": "duplicate"}
    assert registry.get_sample_value("loadsvc_ws_messages_total", labels) == 50


async def test_a_null_required_key_is_invalid_unless_nullable(metrics: Metrics) -> None:
    """``"prices": null`` in 5 frames: 5 invalid, the run fails on its error ratio; with
    ``nullable_keys: [prices]`` the same frames are 5 ok."""
    frames = frames_then_hold(lambda c: [market_frame(n, now(), prices=None) for n in range(1, 6)])
    async with raw_ws_server(frames) as server:
        result = await run(
            server.url, scenario(config(thresholds="      error_ratio: 0.01\n")), metrics
        )
        ws = only(result)
        assert ws.outcome("invalid") == 5 and ws.outcome("ok") == 0
        assert not result.passed and "error_ratio" in {j.name for j in result.verdict.breached()}
        nullable = config(thresholds="      error_ratio: 0.01\n").replace(
            "required_keys: [quotes, prices]",
            "required_keys: [quotes, prices], nullable_keys: [prices]",
        )
        allowed = await run(server.url, scenario(nullable), create_metrics(CollectorRegistry()))
    assert only(allowed).outcome("ok") == 5 and only(allowed).outcome("invalid") == 0


async def test_heartbeats_without_data_are_a_stall(metrics: Metrics) -> None:
    """Status frames every 50 ms but no data after 3 frames: each of 2 connections stalls once
    (heartbeats are not delivery), 6 frames delivered, and the run fails on ws_stalled."""
    text = config(users=2, thresholds="      ws_stall: {after: 400ms, max: 0}\n")

    def frames(n: int) -> list[bytes]:
        if n <= 3:
            return [market_frame(n, now())]
        return [encode_frame(orjson.dumps({"type": "status", "published_at": now()}))]

    async with raw_ws_server(publishing(frames, every=0.05)) as server:
        result = await run(server.url, scenario(text), metrics)
    ws = only(result)
    assert ws.count == 6 and ws.stalls == 2 and ws.status_messages > 0
    assert judged(result, "ws_stalled").state == "breached" and not result.passed


async def test_a_stream_whose_reconnects_hang_is_a_stall(metrics: Metrics) -> None:
    """300 frames, a clean close, then every upgrade left unanswered: the user is without a
    stream past the stall limit, so it stalls once and the run fails on ws_stalled (the rate
    over open connection-seconds and 2 errors in 302 events would both have passed it)."""
    text = config(
        duration="2s",
        thresholds="      error_ratio: 0.05\n      ws_stall: {after: 500ms, max: 0}\n",
    ).replace("backoff: {initial: 5s, max: 5s}", "backoff: {initial: 100ms, max: 100ms}")
    close = encode_frame(b"\x03\xe8", 0x8)  # 1000, normal closure

    async def then_close(conn: RawWsConnection) -> None:
        conn.server.handshake = False  # every later upgrade is never answered
        await conn.send(*(market_frame(n, now()) for n in range(1, 301)), close)
        await conn.read_client()

    async with raw_ws_server(then_close) as server:
        result = await run(server.url, scenario(text), metrics)
        assert server.handshakes == 1
    ws = only(result)
    assert ws.count == 300 and ws.connects == 1
    assert ws.outcome("stalled") == 1 and ws.stalls == 1
    assert judged(result, "error_ratio").state == "passed"
    assert judged(result, "ws_stalled").state == "breached" and result.result == "failed"


async def test_frames_without_their_sequence_number_leave_missed_unjudged_not_ok(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """50 frames without ``seq`` (the configured sequence field): each counted ``unsequenced``
    and ws_missed_ratio is no data, failing the run (it read 0.00 % ok: nothing could be missed)."""
    text = config(thresholds="      ws_missed_ratio: 0.2\n")
    frames = frames_then_hold(lambda c: [market_frame(None, now()) for _ in range(50)])
    async with raw_ws_server(frames) as server:
        result = await run(server.url, scenario(text), metrics)
    ws = only(result)
    assert ws.count == 50 and dict(ws.sequence_anomalies) == {"unsequenced": 50}
    missed = judged(result, "ws_missed_ratio")
    assert missed.state == "no_data" and missed.value is None and not result.passed
    assert any("ws_missed_ratio: no data" in r for r in result.reasons)
    labels = {"scenario": "s", "endpoint": "/ws/market", "kind": "unsequenced"}
    assert registry.get_sample_value("loadsvc_ws_sequence_anomalies_total", labels) == 50


async def test_a_stalled_connection_fails_the_live_judgement(metrics: Metrics) -> None:
    """Two connections, one streaming and one silent after its first frame: while it is
    stalled the live judgement fails on ws_stalled (it read PASSED: latencies and errors
    of the streaming one were fine)."""
    text = config(users=2, duration="3s", thresholds="      ws_stall: {after: 300ms, max: 0}\n")

    async def one_silent(conn: RawWsConnection) -> None:
        if conn.index == 2:
            await conn.send(market_frame(1, now()))
            await conn.read_client()
        else:
            await publishing(lambda n: [market_frame(n, now())], every=0.05)(conn)

    sampler = SeriesSampler(live_window_s=1.0)
    results: list[str] = []
    async with raw_ws_server(one_silent) as server:
        run = ScenarioRun(scenario(text), Target(server.url), Recorder(metrics), FAST)
        task = asyncio.ensure_future(run.execute())
        deadline = time.monotonic() + scaled(20)
        while not task.done() and time.monotonic() < deadline:
            if run.stats is not None:
                sampler.sample(run.stats, run.user_count())
                if run.elapsed() > 1.5 and run.stats.endpoints[("ws", "/ws/market", "")].stalls:
                    live = sampler.live("s")
                    assert live is not None
                    results.append(live.result)
                    if live.result == "failed":
                        stalled = [lj.judgement for lj in live.breached()]
                        break
            await asyncio.sleep(0.1)  # the sampler's tick
        run.stop()
        await asyncio.wait_for(task, scaled(10))
    assert results and results[-1] == "failed", results
    assert [(j.name, j.value, j.state) for j in stalled] == [("ws_stalled", 1.0, "breached")]


async def test_a_stream_under_its_rate_floor_fails_the_live_judgement(metrics: Metrics) -> None:
    """Frames every 250 ms against a floor of 10 per connection-second: the live judgement
    fails on ws_delivery_rate at ~4/s (it read PASSED: the latencies were fine), as the
    run's verdict does."""
    text = config(users=2, duration="2500ms", thresholds="      ws_delivery_rate: 10\n")
    sampler = SeriesSampler(live_window_s=1.0)
    seen: list[tuple[str, float | None]] = []
    behaviour = publishing(lambda n: [market_frame(n, now())], every=0.25)
    async with raw_ws_server(behaviour) as server:
        run = ScenarioRun(scenario(text), Target(server.url), Recorder(metrics), FAST)
        task = asyncio.ensure_future(run.execute())
        deadline = time.monotonic() + scaled(20)
        while not task.done() and time.monotonic() < deadline:
            if run.stats is not None:
                sampler.sample(run.stats, run.user_count())
                live = sampler.live("s")
                if live is not None and run.elapsed() > 1.5:
                    rate = next(
                        (lj.judgement for lj in live.judgements if lj.judgement.name
                         == "ws_delivery_rate"), None,
                    )  # fmt: skip
                    seen.append((live.result, rate.value if rate else None))
            await asyncio.sleep(0.1)  # the sampler's tick
        result = await asyncio.wait_for(task, scaled(10))
    assert seen and all(r == "failed" for r, _ in seen), seen
    assert all(v is not None and 1.5 <= v <= 8 for _, v in seen), seen
    assert judged(result, "ws_delivery_rate").state == "breached"


async def test_a_storm_whose_reconnects_hang_is_a_stall(metrics: Metrics) -> None:
    """A storm against a server that stops answering upgrades after the second: the hung
    reconnect leaves the user without a stream past the stall limit, so the run fails on
    ws_stalled (it PASSED: one timeout among many frames, the reconnects that completed fast)."""
    text = config(
        kind="ws_reconnect",
        duration="3s",
        own="        cycle: 600ms\n        messages_per_cycle: 1\n",
        thresholds="      error_ratio: 0.05\n      ws_stall: {after: 500ms, max: 0}\n",
    ).replace("backoff: {initial: 5s, max: 5s}", "backoff: {initial: 100ms, max: 100ms}")
    streaming = publishing(lambda n: [market_frame(n, now())], every=0.01)

    async def then_hang(conn: RawWsConnection) -> None:
        if conn.index == 2:
            conn.server.handshake = False  # every later upgrade is never answered
        await streaming(conn)

    async with raw_ws_server(then_hang) as server:
        result = await run(server.url, scenario(text), metrics)
        assert server.handshakes == 2
    ws = only(result)
    assert ws.connects == 2 and ws.reconnects == 1 and ws.stalls == 1
    assert judged(result, "error_ratio").state == "passed"
    assert judged(result, "ws_stalled").state == "breached" and result.result == "failed"
