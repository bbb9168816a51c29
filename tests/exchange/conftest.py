"""Fixtures for the exchange's own tests: a fast exchange on 127.0.0.1 port 0, a login."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgpack
import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from tests.support.exchange import ExchangeSettings, RunningExchange, running_exchange
from tests.support.timing import scaled

FAST = ExchangeSettings(tick_s=0.02, ack_delay_s=0.1, heartbeat_s=0.3, pong_deadline_s=0.5)


@pytest.fixture
async def exchange() -> AsyncIterator[RunningExchange]:
    """An exchange that trades every 20 ms and pings every 300 ms."""
    async with running_exchange(FAST) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client session."""
    async with aiohttp.ClientSession() as client:
        yield client


async def login(
    session: aiohttp.ClientSession, ex: RunningExchange, user: str = "alice", pw: str = "alice-pw"
) -> str:
    """A fresh access token for `user`."""
    async with session.post(ex.url + "/auth/login", json={"username": user, "password": pw}) as r:
        assert r.status == 200, await r.text()
        token: str = (await r.json())["data"]["access_token"]
        return token


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for `token`."""
    return {"Authorization": f"Bearer {token}"}


async def recv_doc(ws: ClientConnection, within: float = 2.0) -> dict[str, Any]:
    """The next frame decoded: msgpack if binary, JSON if text."""
    raw = await asyncio.wait_for(ws.recv(), scaled(within))
    doc = msgpack.unpackb(raw) if isinstance(raw, bytes) else orjson.loads(raw)
    assert isinstance(doc, dict)
    return doc


async def subscribe(ws: ClientConnection, symbols: list[str], msg_id: int = 1) -> None:
    """Send a subscribe and wait for its ack (the first frame the server sends)."""
    await ws.send(orjson.dumps({"op": "subscribe", "symbols": symbols, "id": msg_id}).decode())
    assert await recv_doc(ws) == {"op": "ack", "id": msg_id}


async def trades(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next `count` trade frames, answering pings on the way."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        doc = await recv_doc(ws)
        if doc.get("op") == "ping":
            await ws.send(msgpack.packb({"op": "pong", "id": doc["id"]}))
        else:
            got.append(doc)
    return got
