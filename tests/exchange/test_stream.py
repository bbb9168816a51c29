"""The exchange's `/stream`: auth at the upgrade, subscribe -> ack, per-symbol trades, heartbeats."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime

import aiohttp
import msgpack
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.exchange.conftest import FAST, bearer, login, recv_doc, subscribe, trades
from tests.support.exchange import ExchangeSettings, RunningExchange, running_exchange
from tests.support.timing import scaled, wait_for_async


async def test_nothing_comes_before_a_subscribe_and_its_ack_comes_first(
    exchange: RunningExchange, session: aiohttp.ClientSession
) -> None:
    """A silent client gets nothing; a subscribe gets its ack after the delay, then only the
    subscribed symbols, in binary msgpack frames; a second subscribe adds symbols."""
    token = await login(session, exchange)
    async with connect(f"{exchange.ws_url}?token={token}") as ws:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), scaled(0.3))
        started = time.monotonic()
        await subscribe(ws, ["VCB", "FPT"], msg_id=7)
        assert time.monotonic() - started >= FAST.ack_delay_s
        raw = await asyncio.wait_for(ws.recv(), scaled(2))
        assert isinstance(raw, bytes) and msgpack.unpackb(raw)["meta"]["kind"] == "trade"
        assert {t["d"]["sym"] for t in await trades(ws, 40)} == {"VCB", "FPT"}
        await ws.send(msgpack.packb({"op": "subscribe", "symbols": ["HPG"], "id": 8}))
        seen: set[str] = set()
        while "HPG" not in seen:  # the ack comes in between trades of the first subscription
            doc = await recv_doc(ws)
            if doc.get("op") == "ping":
                await ws.send(msgpack.packb({"op": "pong", "id": doc["id"]}))
                continue
            seen.add(doc["d"]["sym"] if "d" in doc else f"{doc['op']} {doc['id']}")
        assert {"HPG", "ack 8"} <= seen <= {"VCB", "FPT", "HPG", "ack 8"}


async def test_trades_are_nested_stamped_in_rfc3339_and_numbered_per_symbol(
    exchange: RunningExchange, session: aiohttp.ClientSession
) -> None:
    """Each trade has meta.ts (RFC 3339, µs, UTC) and d.seq counting up by one per symbol,
    with the symbols interleaved."""
    token = await login(session, exchange)
    async with connect(f"{exchange.ws_url}?token={token}") as ws:
        await subscribe(ws, ["VCB", "VNM", "MWG"])
        got = await trades(ws, 60)
    last: dict[str, int] = {}
    for t in got:
        stamp = datetime.fromisoformat(t["meta"]["ts"])
        assert t["meta"]["ts"].endswith("Z") and len(t["meta"]["ts"]) == 27
        assert abs(stamp.timestamp() - time.time()) < scaled(30)
        sym, seq = t["d"]["sym"], t["d"]["seq"]
        assert seq == last.get(sym, seq - 1) + 1, (sym, seq, last)
        last[sym] = seq
    order = [t["d"]["sym"] for t in got]
    switches = sum(a != b for a, b in itertools.pairwise(order))
    assert len(last) == 3 and switches >= 10  # interleaved, not one symbol after another


async def test_json_encoding_and_a_header_token_are_accepted(
    exchange: RunningExchange, session: aiohttp.ClientSession
) -> None:
    """`?encoding=json` sends text frames of the same shape; the token may come as a header."""
    headers = bearer(await login(session, exchange))
    async with connect(f"{exchange.ws_url}?encoding=json", additional_headers=headers) as ws:
        await subscribe(ws, ["TCB"])
        raw = await asyncio.wait_for(ws.recv(), scaled(2))
        assert isinstance(raw, str) and orjson.loads(raw)["d"]["sym"] == "TCB"


async def test_a_bad_token_is_refused_at_the_upgrade(session: aiohttp.ClientSession) -> None:
    """Missing, forged and expired tokens get 401 instead of a WebSocket; counted."""
    async with running_exchange(ExchangeSettings(token_ttl_s=0.5)) as ex:
        token = await login(session, ex)
        for url in (ex.ws_url, f"{ex.ws_url}?token=forged"):
            with pytest.raises(InvalidStatus) as refused:
                await connect(url)
            assert refused.value.response.status_code == 401

        async def expired() -> bool:
            async with session.get(ex.url + "/v2/quotes?symbols=VCB", headers=bearer(token)) as r:
                return r.status == 401

        await wait_for_async(expired, 5, "the token expiring")
        before = ex.exchange.counts()["expired_token_requests"]
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{ex.ws_url}?token={token}")
        assert refused.value.response.status_code == 401
        assert ex.exchange.counts()["expired_token_requests"] == before + 1


async def test_ws_auth_close_accepts_then_closes_4401(session: aiohttp.ClientSession) -> None:
    """With ws_auth_close a bad token gets the upgrade and then a 4401 close."""
    async with running_exchange(ExchangeSettings(ws_auth_close=True)) as ex:
        async with connect(f"{ex.ws_url}?token=forged") as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), scaled(2))
        assert ws.close_code == 4401


async def test_answered_pings_keep_the_stream_open(
    exchange: RunningExchange, session: aiohttp.ClientSession
) -> None:
    """A client that pongs every ping (matching id) stays connected across several pings."""
    token = await login(session, exchange)
    async with connect(f"{exchange.ws_url}?token={token}") as ws:
        await subscribe(ws, ["VCB"])
        while exchange.exchange.counters["pings"] < 3:
            await trades(ws, 1)
        assert ws.close_code is None
    assert exchange.exchange.counters["heartbeat_timeouts"] == 0


async def test_an_unanswered_ping_closes_the_stream_4408(
    exchange: RunningExchange, session: aiohttp.ClientSession
) -> None:
    """A client that reads but never pongs is closed with 4408 after the deadline; counted."""
    token = await login(session, exchange)
    async with connect(f"{exchange.ws_url}?token={token}") as ws:
        await subscribe(ws, ["VCB"])
        pings = 0
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(scaled(5)):
                while True:
                    pings += (await recv_doc(ws)).get("op") == "ping"
    assert ws.close_code == 4408 and pings == 1
    assert exchange.exchange.counters["heartbeat_timeouts"] == 1
    assert exchange.exchange.truth.connections[1].closed == "no pong"


async def test_a_stream_never_subscribed_is_closed_4408(session: aiohttp.ClientSession) -> None:
    """A client that connects and says nothing is closed after subscribe_timeout_s."""
    async with running_exchange(ExchangeSettings(subscribe_timeout_s=0.3)) as ex:
        async with connect(f"{ex.ws_url}?token={await login(session, ex)}") as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), scaled(3))
        assert ws.close_code == 4408 and ex.exchange.counters["subscribe_timeouts"] == 1


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"op": "subscribe", "symbols": ["VCB", "XYZ"], "id": 3}, "unknown symbols: ['XYZ']"),
        ({"op": "subscribe", "symbols": [], "id": 4}, "non-empty list"),
        ({"op": "subscribe", "symbols": ["VCB"], "id": "x"}, "integer id"),
        ({"op": "unsubscribe", "id": 5}, "unknown op 'unsubscribe'"),
        ([1, 2], "must be an object"),
        (b"\x81\x91\x01\x01", "undecodable"),  # msgpack map with an array key
        (b"\xc1", "undecodable"),  # a msgpack byte that is never valid
        (b"\x82\xa2op\xa1x\xa2id\xc4\x01\x00", "unknown op 'x'"),  # a bytes id: not echoed
    ],
)
async def test_bad_client_messages_get_an_error_reply(
    exchange: RunningExchange, session: aiohttp.ClientSession, message: object, error: str
) -> None:
    """Each malformed message is answered {op: error, id, error} and counted, not crashed on
    (on a JSON stream, where a msgpack bytes id could not be echoed)."""
    token = await login(session, exchange)
    async with connect(f"{exchange.ws_url}?token={token}&encoding=json") as ws:
        await ws.send(message if isinstance(message, bytes) else orjson.dumps(message).decode())
        reply = await recv_doc(ws)
        assert reply["op"] == "error" and error in reply["error"]
        assert reply["id"] == (message.get("id") if isinstance(message, dict) else None)
        assert isinstance(reply["id"], int | str | None)
        await subscribe(ws, ["VCB"])  # the connection still works
    assert exchange.exchange.counters["bad_messages"] == 1


async def test_bad_stream_options_are_400(
    exchange: RunningExchange, session: aiohttp.ClientSession
) -> None:
    """An unknown encoding or a nonsense fault in the query refuses the upgrade with 400."""
    token = await login(session, exchange)
    for query in ("encoding=xml", "drop_every=1", "delay_ms=-5", "delay_ms=inf", "drop_every=two"):
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{exchange.ws_url}?token={token}&{query}")
        assert refused.value.response.status_code == 400, query
