"""The exchange's ground truth agrees with what a plain client received, faults included."""

from __future__ import annotations

import time
from datetime import datetime

import aiohttp
from websockets.asyncio.client import connect

from tests.exchange.conftest import login, subscribe, trades
from tests.support.exchange import RunningExchange
from tests.support.exchange.truth import GroundTruth
from tests.support.timing import wait_for_async

# Arrival may precede the recorded write time by the rest of the server's send call (the
# reference target's truth test found up to ~1 ms over loopback).
WRITE_SLACK_S = 0.002


def _received_at(doc: dict[str, object], at: float) -> tuple[str, int, str, float]:
    d, meta = doc["d"], doc["meta"]
    assert isinstance(d, dict) and isinstance(meta, dict)
    return d["sym"], d["seq"], meta["ts"], at


async def _receive(ws_url: str, token: str, symbols: list[str], count: int) -> list[tuple]:
    """(sym, seq, ts, receive time) of the next `count` trades after subscribing."""
    got = []
    async with connect(f"{ws_url}{'&' if '?' in ws_url else '?'}token={token}") as ws:
        await subscribe(ws, symbols)
        for _ in range(count):
            (doc,) = await trades(ws, 1)
            got.append(_received_at(doc, time.time()))
    return got


async def test_every_frame_received_is_recorded_with_its_stamp_and_write_time(
    exchange: RunningExchange, session: aiohttp.ClientSession
) -> None:
    """Per symbol, the client's seqs lead the truth's; each ts matches; each arrival is no
    earlier than its recorded write; the truth's latency quantiles cover every frame."""
    got = await _receive(exchange.ws_url, await login(session, exchange), ["VCB", "FPT"], 40)
    conn = exchange.exchange.truth.connections[1]
    assert set(conn.symbols) == {"VCB", "FPT"}
    total = 0
    for sym in conn.symbols:
        frames = conn.frames(sym)
        total += len(frames)
        mine = [g for g in got if g[0] == sym]
        assert [g[1] for g in mine] == [f.seq for f in frames[: len(mine)]]
        for (_, _, ts, at), truth in zip(mine, frames, strict=False):
            assert ts == truth.ts
            assert datetime.fromisoformat(ts).timestamp() == truth.published_at
            assert at >= truth.written_at - WRITE_SLACK_S
            assert truth.written_at >= truth.published_at
    latency = exchange.exchange.truth.latency_ms()
    assert latency["count"] == total >= 40
    assert 0 <= latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]


async def test_drop_every_makes_true_gaps_exactly_where_recorded(
    exchange: RunningExchange, session: aiohttp.ClientSession
) -> None:
    """With drop_every=3 the client misses every 3rd trade per symbol: the seqs it never
    saw are exactly the ones the truth recorded as dropped."""
    token = await login(session, exchange)
    got = await _receive(f"{exchange.ws_url}?drop_every=3", token, ["HPG", "MWG"], 60)
    conn = exchange.exchange.truth.connections[1]
    assert conn.faults == {"drop_every": 3, "delay_ms": 0.0}
    for sym, record in conn.symbols.items():
        seen = [g[1] for g in got if g[0] == sym]
        missing = set(range(seen[0], seen[-1] + 1)) - set(seen)
        assert missing and missing == {s for s in record.dropped if s < seen[-1]}
        assert record.gaps() == len([s for s in record.dropped if s < record.seqs[-1]])
        assert not record.overflowed
        # Every third trade meant for this client is dropped: of 3k + r offered, k dropped and
        # 2k + r written, less what was still queued when the client left.
        assert -3 <= len(record.seqs) - 2 * len(record.dropped) <= 2


async def test_delayed_frames_show_their_delay_in_the_truth_and_at_the_client(
    exchange: RunningExchange, session: aiohttp.ClientSession
) -> None:
    """With delay_ms=60 every recorded write, and every arrival, is >= 60 ms after its stamp."""
    token = await login(session, exchange)
    got = await _receive(f"{exchange.ws_url}?delay_ms=60", token, ["VNM"], 15)
    assert all(at - datetime.fromisoformat(ts).timestamp() >= 0.060 for _, _, ts, at in got)
    assert exchange.exchange.truth.latency_ms()["p50_ms"] >= 60.0


async def test_truth_over_http_matches_the_object_and_delete_resets_it(
    exchange: RunningExchange, session: aiohttp.ClientSession
) -> None:
    """GET /_truth is the object's JSON plus counters; ?frames=1 lists frames; DELETE empties
    the window while the connection keeps being recorded."""
    token = await login(session, exchange)
    async with connect(f"{exchange.ws_url}?token={token}") as ws:
        await subscribe(ws, ["TCB"])
        await trades(ws, 5)
        async with session.get(exchange.url + "/_truth?frames=1") as r:
            doc = await r.json()
        truth: GroundTruth = exchange.exchange.truth
        (conn,) = doc["connections"]
        assert conn["user"] == "alice" and conn["encoding"] == "msgpack"
        frames = conn["symbols"]["TCB"]["frames"]
        assert frames[0][:2] == [truth.connections[1].frames("TCB")[0].seq, frames[0][1]]
        assert len(frames) == conn["symbols"]["TCB"]["written"] >= 5
        assert doc["counters"]["logins"] == 1 and doc["counters"]["acks"] == 1
        async with session.delete(exchange.url + "/_truth") as r:
            assert (await r.json())["latency_ms"]["count"] <= 1
        await trades(ws, 3)
        await wait_for_async(lambda: truth.latency_ms()["count"] >= 3, 2, "writes recorded")
