"""Misbehaving WS servers, frame by frame: every case is a counted outcome, never 0 ms or a crash."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from prometheus_client import CollectorRegistry

from loadsvc.config import parse_config
from loadsvc.config.spec import ScenarioSpec
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, RunResult, ScenarioRun
from loadsvc.runstats import EndpointSummary
from loadsvc.users import Target
from tests.support.wsservers import (
    CONTINUATION,
    RawWsConnection,
    encode_frame,
    frames_then_hold,
    market_frame,
    now,
    raw_ws_server,
)

DURATION_S = 1.5
# The run's own deadlines (duration + graceful stop) plus slack for a shared machine.
DEADLINE_S = DURATION_S + 1.0 + 5.0


def stream(users: int = 1, message: str = "") -> ScenarioSpec:
    """A ws_stream scenario of ``users`` on /ws/market for DURATION_S."""
    text = f"""
version: 1
scenarios:
  s:
    graceful_stop: 1s
    shape: {{kind: constant, users: {users}, duration: {DURATION_S}s}}
    users:
      - kind: ws_stream
        path: /ws/market
        connect_timeout: 30s
        backoff: {{initial: 5s, max: 5s}}
        message: {{required_keys: [quotes, prices]{message}}}
"""
    return parse_config(text, "test.yaml").scenario("s")


async def run(url: str, metrics: Metrics, spec: ScenarioSpec | None = None) -> RunResult:
    """Run the scenario against ``url``; assert it ends within its deadline."""
    started = time.monotonic()
    result = await ScenarioRun(
        spec or stream(), Target(url), Recorder(metrics), RunOptions(tick_s=0.1, seed=1)
    ).execute()
    assert time.monotonic() - started < DEADLINE_S
    return result


def errors(registry: CollectorRegistry, reason: str) -> float | None:
    """The connection errors of /ws/market with ``reason``."""
    labels = {"scenario": "s", "endpoint": "/ws/market", "reason": reason}
    return registry.get_sample_value("loadsvc_ws_connection_errors_total", labels)


def only(result: RunResult) -> EndpointSummary:
    (ws,) = result.endpoints
    return ws


async def test_ms_stamps_read_as_seconds_are_skewed_not_zero(metrics: Metrics) -> None:
    """Stamps in ms with unit s: every frame 'skewed', none timed, offset around -1.7e12 s,
    and the run fails naming timestamp_unit (never p99 0.0 ms and PASSED)."""
    behaviour = frames_then_hold(lambda c: [market_frame(i, now() * 1000) for i in range(1, 11)])
    async with raw_ws_server(behaviour) as server:
        result = await run(server.url, metrics)
    ws = only(result)
    assert ws.outcome("skewed") == 10 and ws.outcome("ok") == 0
    assert ws.p99_s is None and ws.errors == 0
    assert ws.clock_offset_min_s is not None and ws.clock_offset_min_s < -1e12
    assert not result.passed and result.result == "failed"
    failed = {j.name: j.describe() for j in result.verdict.breached()}
    assert "timestamp_unit" in failed["clock_skew"]
    assert "no data" in failed["ws_delivery_latency"]


async def test_stamps_50ms_in_the_future_are_skewed(metrics: Metrics) -> None:
    """A server clock 50 ms ahead (beyond the 10 ms tolerance): skewed, offset about -50 ms,
    and the run fails naming clock skew (NTP) and the offset."""
    behaviour = frames_then_hold(lambda c: [market_frame(i, now() + 0.05) for i in range(1, 6)])
    async with raw_ws_server(behaviour) as server:
        result = await run(server.url, metrics)
    ws = only(result)
    assert ws.outcome("skewed") == 5 and ws.count == 5 and ws.p99_s is None
    assert ws.clock_offset_min_s is not None and -0.06 < ws.clock_offset_min_s < -0.04
    assert not result.passed and result.result == "failed"
    skew = next(j.describe() for j in result.verdict.breached() if j.name == "clock_skew")
    assert "NTP" in skew and "-0.050 s" in skew


async def test_pairwise_swapped_sequence_is_reordered_not_missed(metrics: Metrics) -> None:
    """seq 2,1,4,3,...,200,199: 100 reordered, 0 missed, every frame ok."""
    order = [n for i in range(1, 200, 2) for n in (i + 1, i)]
    behaviour = frames_then_hold(lambda c: [market_frame(n, now()) for n in order])
    async with raw_ws_server(behaviour) as server:
        ws = only(await run(server.url, metrics))
    assert ws.outcome("ok") == 200 and ws.missed == 0
    assert dict(ws.sequence_anomalies) == {"reordered": 100}


async def test_duplicates_and_backwards_reset_are_counted(metrics: Metrics) -> None:
    """1..10, 10 again, 5 again, then 1..5 after 1000: 2 duplicates (counted apart, not
    delivered), 1 reset, 0 missed."""
    order = [*range(1, 11), 10, 5, *range(1000, 1100), *range(1, 6)]
    behaviour = frames_then_hold(lambda c: [market_frame(n, now()) for n in order])
    async with raw_ws_server(behaviour) as server:
        ws = only(await run(server.url, metrics))
    assert dict(ws.sequence_anomalies) == {"duplicate": 2, "reset": 1}
    # 11..999 is a jump below MAX_SEQUENCE_GAP: genuinely missed numbers.
    assert ws.missed == 989
    assert ws.outcome("ok") == ws.count == len(order) - 2 and ws.outcome("duplicate") == 2


async def test_sequence_past_2_to_the_64_is_a_reset_with_sane_counts(
    metrics: Metrics,
) -> None:
    """seq 1, 2, then 2**70, 2**70+2: one reset, one missed, and the summary serialises."""
    order = [1, 2, 2**70, 2**70 + 2, 2**70 + 3]
    behaviour = frames_then_hold(lambda c: [market_frame(n, now()) for n in order])
    async with raw_ws_server(behaviour) as server:
        ws = only(await run(server.url, metrics))
    assert dict(ws.sequence_anomalies) == {"reset": 1} and ws.missed == 1
    assert ws.outcome("ok") == 5
    assert orjson.loads(orjson.dumps({"missed": ws.missed, "count": ws.count}))["missed"] == 1


async def test_invalid_utf8_text_fails_the_connection_with_1007(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """Invalid UTF-8 in a text frame: closed with 1007, reason 'protocol', never counted ok."""

    def frames(conn: RawWsConnection) -> list[bytes]:
        if conn.index > 1:
            return []
        good = [market_frame(i, now()) for i in range(1, 4)]
        return [*good, encode_frame(b'{"type": "market", "quotes": "\xc3\x28"}')]

    async with raw_ws_server(frames_then_hold(frames)) as server:
        ws = only(await run(server.url, metrics))
        assert server.close_codes[:1] == [1007]
    assert ws.outcome("ok") == 3 and ws.count == 3
    assert errors(registry, "protocol") == 1
    assert any(r == "protocol" and "invalid UTF-8" in d for r, d, _ in ws.diagnostics)


async def test_a_frame_as_long_as_one_seen_before_is_judged_by_its_own_bytes(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """A text frame already seen (on this connection or another) is not decoded again
    (loadsvc.users.wsconn's memo, keyed by length): one of the same length but other bytes
    (a required key renamed, invalid UTF-8) is still judged on its own, as is a repeat."""
    good = orjson.dumps({"type": "market", "quotes": [], "prices": {}, "published_at": now()})
    renamed = good.replace(b'"quotes"', b'"quotxs"')
    broken = good.replace(b'"market"', b'"m\xc3\x28ket"')
    assert len(renamed) == len(broken) == len(good)

    async def apart(conn: RawWsConnection) -> None:
        # One read per frame, after the handshake's: frames the client splits off itself.
        for payload in (good, good, renamed, good, broken) if conn.index <= 2 else ():
            await asyncio.sleep(0.05)
            await conn.send(encode_frame(payload))
        await conn.read_client()

    async with raw_ws_server(apart) as server:
        result = await run(server.url, metrics, stream(users=2))
        assert server.close_codes[:2] == [1007, 1007]
    ws = only(result)
    assert ws.outcome("ok") == 6 and ws.outcome("invalid") == 2 and ws.count == 8
    assert errors(registry, "protocol") == 2


BODY = b'{"type": "market", "quotes": [], "prices": {}, "seq": 2}'
VIOLATIONS = {
    "masked": encode_frame(BODY, masked=True),
    "reserved_opcode": b"\x83" + encode_frame(BODY)[1:],
    "rsv_bit_set": b"\xc1" + encode_frame(BODY)[1:],
    "fragmented_invalid_utf8": b'\x01\x02{"' + encode_frame(b'\xc3\x28"}', CONTINUATION),
}


@pytest.mark.parametrize("violation", sorted(VIOLATIONS))
async def test_protocol_violations_fail_the_connection_as_protocol(
    violation: str, metrics: Metrics, registry: CollectorRegistry
) -> None:
    """Masked frames, reserved opcodes or bits, bad UTF-8 across fragments: reason 'protocol'."""

    def frames(conn: RawWsConnection) -> list[bytes]:
        return [market_frame(1, now()), VIOLATIONS[violation]] if conn.index == 1 else []

    async with raw_ws_server(frames_then_hold(frames)) as server:
        ws = only(await run(server.url, metrics))
        expected = 1007 if violation.endswith("utf8") else 1002
        assert server.close_codes[:1] == [expected]
    assert ws.outcome("ok") == 1 and ws.count == 1
    assert errors(registry, "protocol") == 1 and errors(registry, "error") == 0
    assert [r for r, _, _ in ws.diagnostics] == ["protocol"]


async def test_status_only_stream_counts_no_data_frames(metrics: Metrics) -> None:
    """Heartbeats while data stopped: status frames counted on their own, count stays 0."""
    status = encode_frame(orjson.dumps({"type": "status", "published_at": now()}))
    async with raw_ws_server(frames_then_hold(lambda c: [status] * 4)) as server:
        ws = only(await run(server.url, metrics))
    assert ws.count == 0 and ws.status_messages == 4 and ws.outcome("status") == 4
    assert ws.p99_s is None


async def test_handshake_outstanding_at_the_end_is_a_timeout(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """A server that never answers the upgrade: each user's handshake is counted 'timeout'."""

    async def never(conn: RawWsConnection) -> None:
        raise AssertionError("no handshake is ever answered")

    async with raw_ws_server(never, handshake=False) as server:
        ws = only(await run(server.url, metrics, stream(users=3)))
    assert ws.connects == 0
    assert errors(registry, "timeout") == 3 and ws.connection_errors == 3
