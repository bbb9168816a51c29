"""WS conversations against raw servers on 127.0.0.1: a subscribe with per-user values, an
awaited acknowledgement and its timeout, answered heartbeats, periodic messages, nested
RFC 3339 stamps, per-symbol sequences and msgpack frames, end to end."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import msgpack
from prometheus_client import CollectorRegistry

from loadsvc.config import parse_config
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, RunResult, ScenarioRun
from loadsvc.users import Target
from tests.support.timing import scaled
from tests.support.wsservers import BINARY, TEXT, RawWsConnection, encode_frame, raw_ws_server

ENDPOINT = "/ws/quotes"


def config(conversation: str, *, users: int = 1, duration: float = 1.5, extra: str = "") -> str:
    """A ws_stream scenario of ``users`` users (rows of symbols) with this conversation."""
    body = "".join(f"          {line}\n" for line in conversation.strip().splitlines())
    return f"""
version: 1
scenarios:
  s:
    graceful_stop: 1s
    shape: {{kind: constant, users: {users}, duration: {duration}s}}
    data:
      rows:
        - {{symbols: [VCB, FPT]}}
        - {{symbols: [HPG]}}
    users:
      - kind: {extra or "ws_stream"}
        path: {ENDPOINT}
        backoff: {{initial: 0.2s, max: 0.2s}}
        message:
          type_field: op
          timestamp_field: meta.ts
          timestamp_unit: rfc3339
          sequence_field: d.seq
          sequence_key: d.sym
          required_keys: [d.px]
          binary: msgpack
        conversation:
{body}"""


def stamp() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Exchange:
    """A backend unlike the reference target: nothing until a subscribe, then (optionally
    after an ack) quotes of the subscribed symbols only, each with its own sequence, as
    msgpack (or JSON) frames with nested RFC 3339 stamps; pings that must be answered."""

    ack: bool = True
    ack_delay: float = 0.0
    ping_every: float | None = None
    pong_within: float | None = None  # close a connection that leaves a ping unanswered
    binary: bool = True
    publish_every: float = 0.05
    skip: frozenset[tuple[str, int]] = frozenset()  # (symbol, seq) never sent: real drops
    received: dict[int, list[Any]] = field(default_factory=dict)
    pongs: dict[int, set[Any]] = field(default_factory=dict)
    closed_for_no_pong: int = 0
    sent_data: int = 0

    def encode(self, body: dict[str, Any]) -> bytes:
        if self.binary:
            return encode_frame(msgpack.packb(body), BINARY)
        return encode_frame(json.dumps(body).encode(), TEXT)

    async def __call__(self, conn: RawWsConnection) -> None:
        subscribed: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        got = self.received.setdefault(conn.index, [])
        pongs = self.pongs.setdefault(conn.index, set())
        # Before any subscribe: a greeting that must not be counted as data.
        await conn.send(self.encode({"op": "hello", "meta": {"ts": stamp()}}))

        async def read() -> None:
            while (message := await conn.read_message()) is not None:
                opcode, payload = message
                if opcode == BINARY:
                    value = msgpack.unpackb(payload)
                else:
                    try:
                        value = json.loads(payload)
                    except ValueError:
                        value = payload.decode()  # a string sent as is
                got.append(value)
                if (
                    isinstance(value, dict)
                    and value.get("op") == "subscribe"
                    and not subscribed.done()
                ):
                    subscribed.set_result(list(value["symbols"]))
                if isinstance(value, dict) and value.get("op") == "pong":
                    pongs.add(value.get("id"))

        async def ping() -> None:
            assert self.ping_every is not None
            for n in itertools.count(1):
                await asyncio.sleep(self.ping_every)
                await conn.send(self.encode({"op": "ping", "id": f"p{n}"}))
                if self.pong_within is not None:
                    await asyncio.sleep(self.pong_within)
                    if f"p{n}" not in pongs:
                        self.closed_for_no_pong += 1
                        return

        reading = asyncio.ensure_future(read())
        pinging = asyncio.ensure_future(ping()) if self.ping_every else None
        try:
            symbols = await subscribed
            if self.ack:
                await conn.send(self.encode({"op": "data", "meta": {"ts": stamp()}, "d": {}}))
                await asyncio.sleep(self.ack_delay)
                await conn.send(self.encode({"op": "ack", "id": "1"}))
            seqs = dict.fromkeys(symbols, 0)
            while not reading.done() and not (pinging is not None and pinging.done()):
                for sym in symbols:  # interleaved: one sequence per symbol
                    seqs[sym] += 1
                    if (sym, seqs[sym]) in self.skip:
                        continue
                    d = {"sym": sym, "seq": seqs[sym], "px": 25.5}
                    await conn.send(self.encode({"op": "data", "meta": {"ts": stamp()}, "d": d}))
                    self.sent_data += 1
                await asyncio.sleep(self.publish_every)
        finally:
            for task in (reading, pinging):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task


async def run(text: str, server: Any, metrics: Metrics) -> RunResult:
    spec = parse_config(text, "test.yaml").scenario("s")
    return await ScenarioRun(
        spec, Target(server.url), Recorder(metrics), RunOptions(tick_s=0.1, seed=1)
    ).execute()


def errors(registry: CollectorRegistry, reason: str) -> float:
    labels = {"scenario": "s", "endpoint": ENDPOINT, "reason": reason}
    return registry.get_sample_value("loadsvc_ws_connection_errors_total", labels) or 0.0


SUBSCRIBE = """
encoding: msgpack
send:
  - {op: subscribe, symbols: "${symbols}", id: "u${user}"}
ack: {match: {op: ack}, timeout: 5s}
"""


async def test_each_user_subscribes_to_its_own_symbols(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """Two users send msgpack subscribes filled from their own rows; frames before the ack
    are status, after it every quote is delivered with no false gap across interleaved
    symbols, latency from the nested RFC 3339 stamp within a few ms."""
    exchange = Exchange(ack_delay=0.0)
    async with raw_ws_server(exchange) as server:
        result = await run(config(SUBSCRIBE, users=2), server, metrics)
    subscribes = sorted((m[0]["id"], m[0]["symbols"]) for m in exchange.received.values() if m)
    assert subscribes == [("u1", ["VCB", "FPT"]), ("u2", ["HPG"])]
    (ws,) = result.endpoints
    # hello and the pre-ack data frame and the ack itself: 3 status frames per connection
    assert ws.outcome("status") == 3 * len(exchange.received)
    assert ws.outcome("invalid") == 0 and ws.outcome("malformed") == 0
    assert ws.count > 20 and ws.missed == 0
    assert dict(ws.sequence_anomalies).get("duplicate", 0) == 0
    assert dict(ws.sequence_anomalies).get("reordered", 0) == 0
    assert ws.p50_s is not None and 0 <= ws.p50_s < scaled(0.05)


async def test_a_dropped_quote_is_missed_exactly_per_symbol(metrics: Metrics) -> None:
    """The exchange skips VCB 3 and FPT 5 and 6: exactly 3 missed, nothing else."""
    exchange = Exchange(skip=frozenset({("VCB", 3), ("FPT", 5), ("FPT", 6)}))
    async with raw_ws_server(exchange) as server:
        result = await run(config(SUBSCRIBE), server, metrics)
    (ws,) = result.endpoints
    assert ws.count > 12
    assert ws.missed == 3


async def test_connect_time_runs_to_the_ack(metrics: Metrics) -> None:
    """An ack 0.4 s after the subscribe makes the connect time at least 0.4 s."""
    exchange = Exchange(ack_delay=0.4)
    async with raw_ws_server(exchange) as server:
        result = await run(config(SUBSCRIBE), server, metrics)
    (ws,) = result.endpoints
    assert ws.connect_time_s is not None and ws.connect_time_s >= 0.4
    assert ws.count > 0


async def test_an_ack_that_never_comes_is_counted_and_retried(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """No ack within 0.3 s: reason ack_timeout, noted, the connection dropped and retried
    with the backoff; nothing the server sent is data."""
    exchange = Exchange(ack=False)
    text = config(SUBSCRIBE.replace("timeout: 5s", "timeout: 0.3s"))
    async with raw_ws_server(exchange) as server:
        result = await run(text, server, metrics)
        assert server.handshakes >= 2  # retried
    (ws,) = result.endpoints
    assert errors(registry, "ack_timeout") >= 2
    assert ws.count == 0 and ws.outcome("status") >= 2
    assert any(r == "ack_timeout" and "op" in d for r, d, _ in ws.diagnostics)


HEARTBEAT = """
send: [{op: subscribe, symbols: "${symbols}"}]
heartbeat:
  match: {op: ping}
  reply: {op: pong, id: "${frame.id}", who: "${user}"}
"""


async def test_heartbeats_are_answered_and_the_connection_kept(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """A server that closes when a ping goes unanswered for 0.2 s keeps the one connection:
    every ping gets a pong with its id; pings are status frames, never timed."""
    exchange = Exchange(ack=False, ping_every=0.1, pong_within=scaled(0.2), binary=False)
    async with raw_ws_server(exchange) as server:
        result = await run(config(HEARTBEAT), server, metrics)
        assert server.handshakes == 1
    assert exchange.closed_for_no_pong == 0
    pongs = exchange.pongs[1]
    assert len(pongs) >= 4 and all(isinstance(p, str) and p.startswith("p") for p in pongs)
    replies = [m for m in exchange.received[1] if m.get("op") == "pong"]
    assert all(m["who"] == 1 for m in replies)
    (ws,) = result.endpoints
    assert errors(registry, "closed") + errors(registry, "abnormal_close") == 0
    assert ws.outcome("status") >= len(pongs)  # the hello and every ping
    assert ws.count > 0


async def test_unanswered_heartbeats_lose_the_connection(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """The control: without a heartbeat reply the same server drops the client."""
    exchange = Exchange(ack=False, ping_every=0.1, pong_within=0.2, binary=False)
    text = config('send: [{op: subscribe, symbols: "${symbols}"}]')
    async with raw_ws_server(exchange) as server:
        await run(text, server, metrics)
        assert server.handshakes >= 2
    assert exchange.closed_for_no_pong >= 1


async def test_periodic_messages_are_sent_while_connected(metrics: Metrics) -> None:
    """A keep-alive every 0.2 s reaches the server several times within 1.5 s."""
    text = config(
        'send: [{op: subscribe, symbols: "${symbols}"}]\n'
        "periodic:\n  - {every: 0.2s, send: {op: keepalive, user: '${user}'}}\n"
        "  - {every: 0.5s, send: 'PING'}"
    )
    exchange = Exchange(ack=False, binary=False)
    async with raw_ws_server(exchange) as server:
        await run(text, server, metrics)
    got = exchange.received[1]
    keepalives = [m for m in got if isinstance(m, dict) and m.get("op") == "keepalive"]
    assert len(keepalives) >= 3 and keepalives[0] == {"op": "keepalive", "user": 1}
    assert got.count("PING") >= 1


async def test_the_reconnect_storm_converses_on_every_connection(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """ws_reconnect (frames read with recv) awaits the ack on each of its connections."""
    text = config(SUBSCRIBE, extra="ws_reconnect", duration=2.0)
    text = text.replace(
        "        path:", "        cycle: 0.5s\n        messages_per_cycle: 2\n        path:"
    )
    exchange = Exchange()
    async with raw_ws_server(exchange) as server:
        result = await run(text, server, metrics)
        assert server.handshakes >= 3
    subscribes = [m for ms in exchange.received.values() for m in ms if m["op"] == "subscribe"]
    assert len(subscribes) >= 3
    assert errors(registry, "ack_timeout") == 0
    (ws,) = result.endpoints
    assert ws.count > 0 and ws.outcome("invalid") == 0
