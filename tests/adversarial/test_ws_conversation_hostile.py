"""Hostile backends of WS conversations: a rejected subscribe, an ack that never comes or comes
with nothing after it, a ping flood from a server that never reads, pings whose id is huge or
deep, and frames nested past any decoder's depth; each is counted, bounded and never a PASS."""

from __future__ import annotations

import asyncio
import gc
import json
import time

import msgpack
from prometheus_client import CollectorRegistry

from loadsvc.config import parse_config
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, RunResult, ScenarioRun
from loadsvc.users import Target
from tests.support.timing import scaled
from tests.support.wsservers import BINARY, RawWsConnection, encode_frame, raw_ws_server

ENDPOINT = "/ws/quotes"


def config(conversation: str, *, duration: float = 1.5, message: str = "", stall: str = "") -> str:
    """A one-user ws_stream scenario on ENDPOINT with this conversation (YAML lines)."""
    body = "".join(f"          {line}\n" for line in conversation.strip().splitlines())
    return f"""
version: 1
scenarios:
  s:
    graceful_stop: 1s
    shape: {{kind: constant, users: 1, duration: {duration}s}}
{stall}    users:
      - kind: ws_stream
        path: {ENDPOINT}
        backoff: {{initial: 0.3s, max: 0.3s}}
        message:
          type_field: op
          timestamp_field: ts
          skip_types: [status]
{message}        conversation:
{body}"""


async def run(text: str, url: str, metrics: Metrics) -> RunResult:
    """Run scenario ``s`` of ``text`` against ``url``; it must end within a generous bound."""
    spec = parse_config(text, "hostile.yaml").scenario("s")
    run = ScenarioRun(spec, Target(url), Recorder(metrics), RunOptions(tick_s=0.1, seed=1))
    return await asyncio.wait_for(run.execute(), scaled(20))


def text(body: object) -> bytes:
    return encode_frame(json.dumps(body).encode())


async def reads(conn: RawWsConnection) -> list[object]:
    """The client's messages until it leaves (JSON decoded)."""
    got: list[object] = []
    while (message := await conn.read_message()) is not None:
        got.append(json.loads(message[1]))
    return got


SUBSCRIBE = """
send:
  - {op: subscribe, symbols: [VCB]}
"""


async def test_a_rejected_subscribe_with_only_status_frames_fails_as_no_data(
    metrics: Metrics,
) -> None:
    """The backend answers the subscribe with an error and then only status frames: nothing
    was delivered, so the run fails (no_data), however healthy the connection looked."""

    async def rejecting(conn: RawWsConnection) -> None:
        reading = asyncio.ensure_future(reads(conn))
        await asyncio.sleep(0.05)
        await conn.send(text({"op": "error", "reason": "unknown symbol"}))
        while not reading.done():
            await conn.send(text({"op": "status", "ts": time.time()}))
            await asyncio.sleep(0.05)

    async with raw_ws_server(rejecting) as server:
        result = await run(config(SUBSCRIBE), server.url, metrics)
    (ws,) = result.endpoints
    assert ws.status_messages > 5
    assert not result.passed and result.result == "failed"
    assert ("ws_delivery_latency", "no_data") in [
        (j.name, j.state) for j in result.verdict.breached()
    ]


async def test_an_ack_that_never_comes_is_an_error_and_the_run_fails(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """Data without the awaited ack is never timed: every connection ends in ack_timeout,
    counted, and the run fails."""

    async def no_ack(conn: RawWsConnection) -> None:
        reading = asyncio.ensure_future(reads(conn))
        while not reading.done():
            await conn.send(text({"op": "quote", "ts": time.time()}))
            await asyncio.sleep(0.02)

    talk = SUBSCRIBE + "ack: {match: {op: ack}, timeout: 300ms}\n"
    async with raw_ws_server(no_ack) as server:
        result = await run(config(talk), server.url, metrics)
    (ws,) = result.endpoints
    assert ws.count == 0 and ws.outcome("status") > 0
    labels = {"scenario": "s", "endpoint": ENDPOINT, "reason": "ack_timeout"}
    assert (registry.get_sample_value("loadsvc_ws_connection_errors_total", labels) or 0) >= 2
    assert not result.passed


async def test_an_ack_then_silence_is_a_stall_and_no_data(metrics: Metrics) -> None:
    """The backend acks and then sends nothing: a stall is counted and the run fails."""

    async def ack_then_nothing(conn: RawWsConnection) -> None:
        await conn.read_message()
        await conn.send(text({"op": "ack"}))
        await conn.read_client()

    talk = SUBSCRIBE + "ack: {match: {op: ack}, timeout: 1s}\n"
    stall = "    thresholds:\n      ws_stall: {after: 500ms, max: 0}\n"
    async with raw_ws_server(ack_then_nothing) as server:
        result = await run(config(talk, stall=stall), server.url, metrics)
    (ws,) = result.endpoints
    assert ws.count == 0 and ws.stalls >= 1
    assert not result.passed
    breached = {j.name for j in result.verdict.breached()}
    assert {"ws_delivery_latency", "ws_stalled"} <= breached


async def test_an_ack_that_is_also_data_is_status_and_the_next_frames_are_timed(
    metrics: Metrics,
) -> None:
    """An ack frame carrying a stamp is the ack, not data (counted as status once); what
    follows is data."""

    async def ack_with_data(conn: RawWsConnection) -> None:
        reading = asyncio.ensure_future(reads(conn))
        await asyncio.sleep(0.05)
        await conn.send(text({"op": "quote", "ack": True, "ts": time.time()}))
        while not reading.done():
            await conn.send(text({"op": "quote", "ts": time.time()}))
            await asyncio.sleep(0.02)

    talk = SUBSCRIBE + "ack: {match: {ack: true}, timeout: 1s}\n"
    async with raw_ws_server(ack_with_data) as server:
        result = await run(config(talk), server.url, metrics)
    (ws,) = result.endpoints
    assert ws.outcome("status") == 1 and ws.count > 10 and ws.errors == 0
    assert result.passed


async def test_frames_nested_past_the_decoders_depth_are_malformed_not_lost(
    metrics: Metrics,
) -> None:
    """A 4 KB frame nested 2,000 levels deep (text and msgpack) is malformed; the frames
    around it, in the same TCP segment, are still judged."""
    deep_json = b'{"op":"quote","x":' + b"[" * 2000 + b"]" * 2000 + b"}"
    deep_msgpack = b"\x82\xa2op\xa5quote\xa1x" + b"\x91" * 2000 + b"\xc0"

    async def deep(conn: RawWsConnection) -> None:
        reading = asyncio.ensure_future(reads(conn))
        for _ in range(5):
            good = text({"op": "quote", "ts": time.time()})
            await conn.send(good, encode_frame(deep_json), encode_frame(deep_msgpack, BINARY), good)
            await asyncio.sleep(0.05)
        await reading

    message = "          binary: msgpack\n"
    async with raw_ws_server(deep) as server:
        result = await run(config(SUBSCRIBE, message=message), server.url, metrics)
    (ws,) = result.endpoints
    assert ws.outcome("malformed") == 10
    assert ws.outcome("ok") == 10


PINGS = """
send:
  - {op: subscribe, symbols: [VCB]}
heartbeat:
  match: {op: ping}
  reply: {op: pong, id: "${frame.id}"}
"""


async def test_a_ping_flood_from_a_server_that_never_reads_keeps_memory_bounded(
    metrics: Metrics,
) -> None:
    """10,000 pings a second, each with a 64 KB id, to a client whose replies are never read:
    the replies owed are bounded (not one pending task, 64 KB each, per ping); the pings are
    counted as status frames."""
    big = "x" * 65536
    sent = 0

    async def flood(conn: RawWsConnection) -> None:
        nonlocal sent
        frame = text({"op": "ping", "id": big})
        deadline = time.monotonic() + 1.2
        while time.monotonic() < deadline:  # never reads: the client's replies pile up
            await conn.send(*[frame] * 50)
            sent += 50
            await asyncio.sleep(0.005)
        await asyncio.sleep(3600)

    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, len(asyncio.all_tasks()))
            await asyncio.sleep(0.01)

    watcher = asyncio.ensure_future(watch())
    try:
        async with raw_ws_server(flood) as server:
            result = await run(config(PINGS, duration=1.5), server.url, metrics)
    finally:
        watcher.cancel()
    gc.collect()
    (ws,) = result.endpoints
    assert sent > 1000
    assert ws.status_messages > 500
    assert peak < 100, f"{peak} tasks at once for {sent} pings"
    (unanswered,) = [(r, n) for r, d, n in ws.diagnostics if r == "heartbeat_unanswered"]
    assert unanswered[1] > 100


async def test_a_ping_whose_id_is_nested_deep_gets_no_reply_and_no_crash(metrics: Metrics) -> None:
    """A ping with an id nested past the decoder's depth is malformed; a normal ping after it
    is answered: the user lives on."""
    answered: list[object] = []

    async def deep_ping(conn: RawWsConnection) -> None:
        reading = asyncio.ensure_future(reads(conn))
        await conn.send(encode_frame(b'{"op":"ping","id":' + b"[" * 3000 + b"]" * 3000 + b"}"))
        await conn.send(encode_frame(msgpack.packb({"op": "ping", "id": "ok"}), BINARY))
        for _ in range(20):
            await conn.send(text({"op": "quote", "ts": time.time()}))
            await asyncio.sleep(0.02)
        answered.extend(await reading)

    message = "          binary: msgpack\n"
    async with raw_ws_server(deep_ping) as server:
        result = await run(config(PINGS, message=message), server.url, metrics)
    (ws,) = result.endpoints
    assert ws.outcome("malformed") >= 1
    assert {"op": "pong", "id": "ok"} in answered
    assert ws.outcome("ok") >= 15
