"""The runner and the users against the real reference target."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import replace

from prometheus_client import CollectorRegistry

from loadsvc.config import parse_config
from loadsvc.config.spec import ScenarioSpec
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, RunResult, ScenarioRun, Shard
from loadsvc.target.testing import RunningTarget
from loadsvc.users import Target
from tests.support.timing import scaled, wait_for_async
from tests.support.wsservers import RawWsConnection, raw_ws_server

FAST = RunOptions(tick_s=0.1, seed=1)


def scenario(body: str, name: str = "s") -> ScenarioSpec:
    """One scenario from a YAML fragment (indented under its name)."""
    text = (
        "version: 1\nscenarios:\n  "
        + name
        + ":\n"
        + "\n".join("    " + line for line in body.strip().splitlines())
    )
    return parse_config(text, "test.yaml").scenario(name)


STREAM = """
shape: {kind: constant, users: 5, duration: 3s}
users:
  - kind: ws_stream
    path: /ws/market
    message: {required_keys: [quotes, indices, foreign, derivatives, prices]}
"""

POLL = """
shape: {kind: constant, users: 10, duration: 3s}
users:
  - kind: rest
    pacing: 200ms
    tasks:
      - {path: /api/market/foreign-detail, required_keys: [summary, stocks]}
"""


async def run(
    spec: ScenarioSpec, target: RunningTarget, metrics: Metrics, options: RunOptions = FAST
) -> RunResult:
    return await ScenarioRun(spec, Target(target.url), Recorder(metrics), options).execute()


async def test_stream_receives_about_two_frames_per_second_per_client(
    target: RunningTarget, metrics: Metrics, registry: CollectorRegistry
) -> None:
    """market_stream clients get ~2 valid frames/s (the 500 ms throttle), timed from the publish stamp."""
    result = await run(scenario(STREAM), target, metrics)
    (ws,) = result.endpoints
    assert result.passed, result.verdict.breached()
    assert ws.errors == 0 and ws.connects == 5
    assert ws.messages_per_second_per_connection is not None
    assert 1.5 <= ws.messages_per_second_per_connection <= 2.5
    assert ws.p99_s is not None and ws.p99_s < 0.1
    ok = registry.get_sample_value(
        "loadsvc_ws_messages_total", {"scenario": "s", "endpoint": "/ws/market", "outcome": "ok"}
    )
    assert ok == ws.count  # status frames are not in count: they have their own counter
    assert (
        registry.get_sample_value(
            "loadsvc_ws_connections", {"scenario": "s", "endpoint": "/ws/market"}
        )
        == 0
    )


async def test_ws_delivery_delay_is_measured_and_breaches(
    target: RunningTarget, metrics: Metrics
) -> None:
    """150 ms of delivery delay shows as delivery p99 >= 150 ms and breaches the 100 ms threshold."""
    await target.set_faults({"ws_delay_ms": {"/ws/market": 150}})
    result = await run(scenario(STREAM), target, metrics)
    (ws,) = result.endpoints
    assert ws.p50_s is not None and 0.15 <= ws.p50_s < 0.25
    (breach,) = result.verdict.breached()
    assert (
        breach.name == "ws_delivery_latency" and breach.value is not None and breach.value >= 0.15
    )


async def test_rest_latency_fault_is_reported_at_its_true_size(
    target: RunningTarget, metrics: Metrics
) -> None:
    """+250 ms on foreign-detail gives p95 of about 250 ms and breaches the REST p95 threshold."""
    await target.set_faults({"latency_ms": {"/api/market/foreign-detail": 250}})
    # Pacing longer than the latency, as the seed's 2 s: each user keeps its schedule.
    result = await run(scenario(POLL.replace("pacing: 200ms", "pacing: 500ms")), target, metrics)
    (ep,) = result.endpoints
    assert ep.p95_s is not None and 0.25 <= ep.p95_s < 0.35
    (breach,) = result.verdict.breached()
    assert breach.name == "http_latency" and breach.endpoint == "/api/market/foreign-detail"


async def test_a_stall_shows_in_paced_latency(
    target: RunningTarget, metrics: Metrics, registry: CollectorRegistry
) -> None:
    """Paced latency counts from the intended start: a 1.5 s stall delays every request due during it."""
    spec = scenario(POLL.replace("duration: 3s", "duration: 4s"))

    async def stall_for_a_while() -> None:
        await asyncio.sleep(1.0)
        await target.set_faults({"stall": ["/api/market/foreign-detail"]})
        await asyncio.sleep(1.5)
        await target.clear_faults()

    stall = asyncio.create_task(stall_for_a_while())
    result = await run(spec, target, metrics)
    await stall
    (ep,) = result.endpoints
    labels = {"scenario": "s", "endpoint": "/api/market/foreign-detail", "method": "GET"}
    total = registry.get_sample_value("loadsvc_http_request_duration_seconds_count", labels)
    fast = registry.get_sample_value(
        "loadsvc_http_request_duration_seconds_bucket", {**labels, "le": "0.25"}
    )
    assert total is not None and fast is not None
    # 10 users x 1.5 s / 0.2 s pacing = ~75 requests were due during the stall. Timed from the
    # send, only the ~10 in flight when it began would look slow; from the intended start all do.
    assert total - fast >= 40
    assert ep.p95_s is not None and ep.p95_s > 0.5
    assert ep.errors == 0


STORM = """
shape: {kind: constant, users: 6, duration: 3.5s}
users:
  - kind: ws_reconnect
    path: /ws/market
    cycle: 1.5s
    messages_per_cycle: 2
    message: {required_keys: [quotes, indices, foreign, derivatives, prices]}
"""


async def test_reconnect_storm_reconnects_everyone_each_cycle(
    target: RunningTarget, metrics: Metrics, registry: CollectorRegistry
) -> None:
    """Every storm user reconnects once per cycle, and the reconnect time is measured."""
    result = await run(scenario(STORM), target, metrics)
    (ws,) = result.endpoints
    labels = {"scenario": "s", "endpoint": "/ws/market"}
    reconnects = registry.get_sample_value("loadsvc_ws_reconnect_duration_seconds_count", labels)
    # Cycles start at 0 s, 1.5 s and 3 s; each is 2 frames (~0.5-1 s) then a reconnect.
    assert reconnects is not None and 6 * 2 <= reconnects <= 6 * 3
    assert ws.connects == 6 + reconnects
    assert ws.connection_errors == 0 and ws.errors == 0
    assert ws.reconnect_p95_s is not None and ws.reconnect_p95_s < 0.5


async def test_dropped_connections_are_counted_and_reconnected(
    target: RunningTarget, metrics: Metrics, registry: CollectorRegistry
) -> None:
    """An abrupt close by the server is a counted error, and the client is back within a second."""
    spec = scenario(STREAM)

    async def drop_once() -> None:
        await asyncio.sleep(1.0)
        await target.set_faults({"drop_connections": {"/ws/market": 1.0}})

    dropper = asyncio.create_task(drop_once())
    result = await run(spec, target, metrics)
    await dropper
    (ws,) = result.endpoints
    labels = {"scenario": "s", "endpoint": "/ws/market"}
    abnormal = registry.get_sample_value(
        "loadsvc_ws_connection_errors_total", {**labels, "reason": "abnormal_close"}
    )
    assert abnormal == 5
    assert ws.connects == 10
    reconnect = registry.get_sample_value("loadsvc_ws_reconnect_duration_seconds_count", labels)
    assert reconnect == 5
    assert ws.reconnect_p95_s is not None and ws.reconnect_p95_s < 1.0


async def test_malformed_frames_count_as_errors(target: RunningTarget, metrics: Metrics) -> None:
    """Garbage frames are outcome 'malformed' and push the error ratio over its limit."""
    await target.set_faults({"malformed_ratio": {"/ws/market": 0.5}})
    result = await run(scenario(STREAM), target, metrics)
    (ws,) = result.endpoints
    outcomes = dict(ws.outcomes)
    assert outcomes.get("malformed", 0) > 0
    assert [j.name for j in result.verdict.breached()] == ["error_ratio"]


async def test_http_errors_are_counted_by_outcome(
    target: RunningTarget, metrics: Metrics, registry: CollectorRegistry
) -> None:
    """A 30 % error ratio on the target shows as http_error outcomes and a breached error ratio."""
    await target.set_faults({"error_ratio": {"/api/market/foreign-detail": 0.3}})
    result = await run(scenario(POLL), target, metrics)
    (ep,) = result.endpoints
    errors = registry.get_sample_value(
        "loadsvc_http_requests_total",
        {
            "scenario": "s",
            "endpoint": "/api/market/foreign-detail",
            "method": "GET",
            "outcome": "http_error",
        },
    )
    assert errors == ep.errors and 0.15 < ep.error_ratio < 0.45
    assert [j.name for j in result.verdict.breached()] == ["error_ratio"]


async def test_unreachable_target_is_counted_not_raised(metrics: Metrics) -> None:
    """With nothing listening, REST and WS failures are counted by reason and the run still ends."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = scenario(
        """
shape: {kind: constant, users: 3, duration: 1.5s}
users:
  - kind: rest
    pacing: 200ms
    tasks: [{path: /api/market/snapshot}]
  - kind: ws_stream
    path: /ws/market
"""
    )
    result = await ScenarioRun(
        spec, Target(f"http://127.0.0.1:{port}"), Recorder(metrics), FAST
    ).execute()
    by_kind = {e.kind: e for e in result.endpoints}
    assert by_kind["http"].errors == by_kind["http"].count > 0
    assert dict(by_kind["http"].outcomes) == {"connection_error": by_kind["http"].count}
    assert by_kind["ws"].connection_errors > 0 and by_kind["ws"].connects == 0
    assert not result.passed


MIXED = """
shape:
  kind: ramping
  stages: [{duration: 0.5s, target: 8}, {duration: 30s, target: 8}]
users:
  - kind: ws_stream
    weight: 3
    path: /ws/market
  - kind: rest
    weight: 5
    think_time: {min: 100ms, max: 200ms}
    tasks:
      - {path: /api/market/snapshot, weight: 5}
      - {path: /api/market/foreign-detail, weight: 3}
      - {path: "/api/market/alerts?limit=50", weight: 1}
"""


async def test_mixed_scenario_keeps_weights_and_stop_ends_it(
    target: RunningTarget, metrics: Metrics
) -> None:
    """8 users split 3 WS : 5 REST; tasks follow 5:3:1; stop() ends a long run promptly."""
    r = ScenarioRun(scenario(MIXED), Target(target.url), Recorder(metrics), FAST)
    task = asyncio.create_task(r.execute())

    async def connected_and_polled() -> bool:
        stats = await target.stats()
        ws = stats["connections"].get("/ws/market", 0)
        # About 90 requests: enough for the 5:3:1 order to show (about 50:30:10).
        return ws >= 3 and sum(stats["rest_requests"].values()) >= 90

    await wait_for_async(connected_and_polled, 10, "3 WS users connected and 90 requests made")
    assert r.user_count() == 8
    r.stop()
    result = await asyncio.wait_for(task, timeout=5)
    assert result.stopped_early
    http = {e.endpoint: e.count for e in result.endpoints if e.kind == "http"}
    assert set(http) == {"/api/market/snapshot", "/api/market/foreign-detail", "/api/market/alerts"}
    assert (
        http["/api/market/snapshot"]
        > http["/api/market/foreign-detail"]
        > http["/api/market/alerts"]
    )
    assert (await target.stats())["connections"].get("/ws/market", 0) == 0


async def slow_snapshots(
    target: RunningTarget, *, latency_ms: int, users: int, duration: str, graceful: str
) -> ScenarioSpec:
    """The target's snapshot made ``latency_ms`` slow; a scenario of REST users polling it
    back to back for ``duration``, with ``graceful`` to finish."""
    await target.set_faults({"latency_ms": {"/api/market/snapshot": latency_ms}})
    return scenario(
        f"""
shape: {{kind: constant, users: {users}, duration: {duration}}}
graceful_stop: {graceful}
users:
  - kind: rest
    think_time: {{min: 10ms, max: 10ms}}
    tasks: [{{path: /api/market/snapshot}}]
"""
    )


async def test_graceful_stop_lets_in_flight_requests_finish(
    target: RunningTarget, metrics: Metrics
) -> None:
    """At the first deadline idle users stop at once while a request in flight still completes."""
    spec = await slow_snapshots(target, latency_ms=600, users=4, duration="1s", graceful="3s")
    result = await run(spec, target, metrics)
    (ep,) = result.endpoints
    # Requests take 0.6 s: two rounds fit before 1 s ends the plan, and the second round's
    # requests (in flight at the deadline) are allowed to finish: 4 users x 2 = 8, no errors.
    assert ep.count == 8 and ep.errors == 0


async def test_hard_deadline_cancels_what_is_still_busy(
    target: RunningTarget, metrics: Metrics
) -> None:
    """After graceful_stop a request still in flight is cancelled and counted as a timeout
    with its latency so far: a backend that never answers is never a run with no requests."""
    spec = await slow_snapshots(
        target, latency_ms=3000, users=2, duration="500ms", graceful="200ms"
    )
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    result = await run(spec, target, metrics)
    assert loop.time() - t0 < 2.0
    (ep,) = result.endpoints
    assert ep.count == 2 and dict(ep.outcomes) == {"timeout": 2}
    # Cancelled at the hard deadline (0.5 s + 0.2 s): each waited about 0.7 s, not 3 s.
    assert ep.p50_s is not None and 0.5 <= ep.p50_s < 3.0
    assert not result.passed


async def test_shards_split_the_users(target: RunningTarget, metrics: Metrics) -> None:
    """Shard 1 of 3 of 5 users runs 2 of them (shares 2, 2, 1)."""
    spec = replace(scenario(STREAM))
    result = await run(spec, target, metrics, replace(FAST, shard=Shard(1, 3)))
    assert result.endpoints[0].connects == 2
    assert result.shard == "1/3"


async def test_other_ws_channels_are_reachable_by_configuration(
    target: RunningTarget, metrics: Metrics
) -> None:
    """/ws/foreign and /ws/alerts need nothing but a path and their keys in the configuration."""
    spec = scenario(
        """
shape: {kind: constant, users: 2, duration: 2.5s}
users:
  - kind: ws_stream
    path: /ws/foreign
    message: {required_keys: [summary, stocks]}
  - kind: ws_stream
    path: /ws/alerts
    message: {required_keys: [alerts]}
"""
    )
    result = await run(spec, target, metrics)
    by_endpoint = {e.endpoint: e for e in result.endpoints}
    assert set(by_endpoint) == {"/ws/foreign", "/ws/alerts"}
    assert by_endpoint["/ws/foreign"].count - by_endpoint["/ws/foreign"].status_messages > 0
    assert all(e.errors == 0 and e.connects == 1 for e in result.endpoints)
    assert result.passed


async def test_a_ticks_users_connect_spread_over_the_tick_and_count_at_once(
    metrics: Metrics,
) -> None:
    """Ten users added in one 1 s tick connect over ~0.8 s, not in one burst, yet all count at once."""
    handshakes: list[float] = []

    async def hold(conn: RawWsConnection) -> None:
        handshakes.append(time.monotonic())
        await conn.read_client()

    spec = scenario(
        """
shape: {kind: constant, users: 10, duration: 30s}
users:
  - kind: ws_stream
    path: /ws/market
"""
    )
    async with raw_ws_server(hold) as server:
        r = ScenarioRun(spec, Target(server.url), Recorder(metrics), RunOptions(tick_s=1.0))
        task = asyncio.create_task(r.execute())
        try:
            await wait_for_async(lambda: r.user_count() == 10, 5, "ten users counted")
            await wait_for_async(lambda: len(handshakes) == 10, 10, "ten users connected")
        finally:
            r.stop()
            await asyncio.wait_for(task, scaled(10))
    # Started 0.09 s apart (over the tick's first 90 %): 0.81 s from first to last. Wide
    # margin for a loaded machine; all ten in one burst (the old runner) took a few ms.
    assert handshakes[-1] - handshakes[0] >= 0.45
    # Spread, not most together and one late: most gaps near 0.1 s (a burst's are ~0.5 ms;
    # a loop stall can bunch a few timers, so not all).
    gaps = [b - a for a, b in itertools.pairwise(handshakes)]
    assert sum(g >= 0.03 for g in gaps) >= len(gaps) // 2, gaps
