"""Shared WS connection options act on a real connection (a raw server on 127.0.0.1)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from loadsvc.config import parse_config
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, ScenarioRun
from loadsvc.users import Target
from tests.support.wsservers import (
    RawWsConnection,
    frames_then_hold,
    market_frame,
    now,
    raw_ws_server,
)

DURATION_S = 1.5
DEADLINE_S = DURATION_S + 1.0 + 5.0  # the run's deadlines plus slack for a shared machine


def stream(max_message: str) -> str:
    """A ws_stream scenario on /ws/market whose messages may be at most ``max_message``."""
    return f"""
version: 1
scenarios:
  s:
    graceful_stop: 1s
    shape: {{kind: constant, users: 1, duration: {DURATION_S}s}}
    users:
      - kind: ws_stream
        path: /ws/market
        max_message: {max_message}
        backoff: {{initial: 5s, max: 5s}}
        message: {{required_keys: [quotes, prices]}}
"""


async def test_a_message_over_max_message_fails_the_connection(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """With max_message 1KiB a 4 KiB frame fails the connection: 1009, reason protocol."""

    def frames(conn: RawWsConnection) -> list[bytes]:
        if conn.index > 1:
            return []
        small = [market_frame(i, now()) for i in range(1, 4)]
        return [*small, market_frame(4, now(), padding="x" * 4096)]

    spec = parse_config(stream("1KiB"), "test.yaml").scenario("s")
    started = time.monotonic()
    async with raw_ws_server(frames_then_hold(frames)) as server:
        result = await ScenarioRun(
            spec, Target(server.url), Recorder(metrics), RunOptions(tick_s=0.1, seed=1)
        ).execute()
        assert server.close_codes[:1] == [1009]
    assert time.monotonic() - started < DEADLINE_S
    (ws,) = result.endpoints
    assert ws.outcome("ok") == 3 and ws.count == 3
    assert [r for r, _, _ in ws.diagnostics] == ["protocol"]
    labels = {"scenario": "s", "endpoint": "/ws/market", "reason": "protocol"}
    assert registry.get_sample_value("loadsvc_ws_connection_errors_total", labels) == 1


async def test_a_message_under_max_message_is_taken(metrics: Metrics) -> None:
    """The same 4 KiB frame under a 64KiB max_message is judged ok, the connection kept."""

    def frames(conn: RawWsConnection) -> list[bytes]:
        return [market_frame(1, now(), padding="x" * 4096)] if conn.index == 1 else []

    spec = parse_config(stream("64KiB"), "test.yaml").scenario("s")
    async with raw_ws_server(frames_then_hold(frames)) as server:
        result = await ScenarioRun(
            spec, Target(server.url), Recorder(metrics), RunOptions(tick_s=0.1, seed=1)
        ).execute()
        assert 1009 not in server.close_codes
    (ws,) = result.endpoints
    assert ws.outcome("ok") == 1
