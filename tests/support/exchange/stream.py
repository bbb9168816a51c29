"""One authenticated `/stream` connection: subscribe -> ack, per-symbol frames, heartbeats.

Nothing is sent before the client subscribes. A subscribe is acknowledged after the
configured delay, the ack queued before any trade it acknowledges; from then on the connection
gets the trades of the symbols it subscribed to, and an app-level ping every `heartbeat_s` that
must be answered (`pong`, same id) within `pong_deadline_s`, or the connection is closed (4408).
Every outgoing frame goes through one queue and one sender task, so frames never interleave
and the ground truth records the moment each data frame's bytes went to the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson
from aiohttp import WSMsgType, web

from tests.support.exchange.market import ENCODERS, Trade
from tests.support.exchange.settings import ExchangeSettings
from tests.support.exchange.truth import GroundTruth

CLOSE_UNAUTHORIZED = 4401
CLOSE_TIMEOUT = 4408
DECODERS: dict[WSMsgType, Any] = {WSMsgType.TEXT: orjson.loads, WSMsgType.BINARY: msgpack.unpackb}
"""A client may speak JSON text or msgpack binary, whatever the server sends."""


@dataclass(frozen=True, slots=True)
class StreamFaults:
    """Misbehaviour asked for on one connection (`?drop_every=5&delay_ms=40`)."""

    drop_every: int = 0  # skip the Nth, 2Nth, ... frame of each symbol: true gaps
    delay_ms: float = 0.0  # hold every frame this long after its stamp before writing

    def to_json(self) -> dict[str, float]:
        """The faults as numbers, for the ground truth."""
        return {"drop_every": self.drop_every, "delay_ms": self.delay_ms}


def stream_options(
    query: Mapping[str, str], settings: ExchangeSettings
) -> tuple[str, StreamFaults] | None:
    """(encoding, faults) asked for in the upgrade's query, or None if any is invalid."""
    encoding = query.get("encoding", settings.encoding)
    try:
        drop_every = int(query.get("drop_every", settings.drop_every))
        delay_ms = float(query.get("delay_ms", settings.delay_ms))
    except ValueError:
        return None
    if encoding not in ENCODERS or drop_every < 0 or drop_every == 1:
        return None
    if not (math.isfinite(delay_ms) and delay_ms >= 0):
        return None
    return encoding, StreamFaults(drop_every, delay_ms)


class Stream:
    """A subscribed (or not yet) WS client of the exchange."""

    def __init__(
        self,
        conn_id: int,
        ws: web.WebSocketResponse,
        encoding: str,
        faults: StreamFaults,
        settings: ExchangeSettings,
        truth: GroundTruth,
        counters: Counter[str],
    ) -> None:
        self.id = conn_id
        self.ws = ws
        self.subscribed: set[str] = set()
        self._encode = ENCODERS[encoding]
        self._encoding = encoding
        self._faults = faults
        self._settings = settings
        self._truth = truth
        self._counters = counters
        self._offered: Counter[str] = Counter()  # trades of each symbol meant for this client
        # (due at, payload, trade or None for control frames)
        self._queue: deque[tuple[float, bytes | str, Trade | None]] = deque()
        self._wakeup = asyncio.Event()
        self._first_subscribe = asyncio.Event()
        self._pong = asyncio.Event()
        self._ping_id = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def serve(self) -> None:
        """Read the client's messages until it or the server ends the connection."""
        self._tasks = [
            asyncio.create_task(self._send_forever()),
            asyncio.create_task(self._keep_alive()),
        ]
        try:
            async for msg in self.ws:
                if msg.type in DECODERS:
                    self._on_message(DECODERS[msg.type], msg.data)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.wait(self._tasks)

    # Incoming ----------------------------------------------------------------------------

    def _on_message(self, decode: Any, data: Any) -> None:
        try:
            doc = decode(data)
        except ValueError as exc:  # every msgpack and orjson decoding error is one
            return self._refuse(None, f"undecodable message: {exc}")
        if not isinstance(doc, dict):
            return self._refuse(None, "a message must be an object")
        op, msg_id = doc.get("op"), doc.get("id")
        if op == "pong":
            if msg_id == self._ping_id:
                self._pong.set()
            return None
        if op != "subscribe":
            return self._refuse(msg_id, f"unknown op {op!r}")
        symbols = doc.get("symbols")
        if not isinstance(msg_id, int) or isinstance(msg_id, bool):
            return self._refuse(msg_id, "subscribe needs an integer id")
        if not isinstance(symbols, list) or not symbols:
            return self._refuse(msg_id, "subscribe needs a non-empty list of symbols")
        unknown = [s for s in symbols if s not in self._settings.symbols]
        if unknown:
            return self._refuse(msg_id, f"unknown symbols: {unknown}")
        self._counters["subscribes"] += 1
        self._tasks.append(asyncio.create_task(self._acknowledge(msg_id, set(symbols))))
        return None

    def _refuse(self, msg_id: Any, error: str) -> None:
        self._counters["bad_messages"] += 1
        if not isinstance(msg_id, int | str):  # echo only ids every encoding can carry back
            msg_id = None
        self._control({"op": "error", "id": msg_id, "error": error})

    async def _acknowledge(self, msg_id: int, symbols: set[str]) -> None:
        await asyncio.sleep(self._settings.ack_delay_s)
        self._control({"op": "ack", "id": msg_id})
        self._counters["acks"] += 1
        self.subscribed |= symbols  # only trades after the ack: the ack is queued first
        self._first_subscribe.set()

    async def _keep_alive(self) -> None:
        """Close a connection that never subscribes, then ping it and demand pongs."""
        settings = self._settings
        try:
            async with asyncio.timeout(settings.subscribe_timeout_s):
                await self._first_subscribe.wait()
        except TimeoutError:
            return await self._close("subscribe_timeouts", "no subscribe")
        while True:
            await asyncio.sleep(settings.heartbeat_s)
            self._ping_id += 1
            self._pong.clear()
            self._control({"op": "ping", "id": self._ping_id})
            self._counters["pings"] += 1
            try:
                async with asyncio.timeout(settings.pong_deadline_s):
                    await self._pong.wait()
            except TimeoutError:
                return await self._close("heartbeat_timeouts", "no pong")

    async def _close(self, counter: str, why: str) -> None:
        self._counters[counter] += 1
        self._truth.connections[self.id].closed = why
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=CLOSE_TIMEOUT, message=why.encode())

    # Outgoing ----------------------------------------------------------------------------

    def offer(self, trade: Trade) -> None:
        """Queue `trade` if this connection subscribed to its symbol, honouring the faults."""
        if trade.sym not in self.subscribed:
            return
        self._offered[trade.sym] += 1
        every = self._faults.drop_every
        if every and self._offered[trade.sym] % every == 0:
            self._truth.dropped(self.id, trade.sym, trade.seq)
            return
        due = trade.published_us / 1e6 + self._faults.delay_ms / 1000.0
        self._enqueue(due, trade.encoded(self._encoding), trade)

    def _control(self, doc: dict[str, Any]) -> None:
        self._enqueue(time.time(), self._encode(doc), None)

    def _enqueue(self, due: float, payload: bytes | str, trade: Trade | None) -> None:
        if len(self._queue) >= self._settings.queue_size:
            _, _, oldest = self._queue.popleft()
            if oldest is not None:
                self._truth.dropped(self.id, oldest.sym, oldest.seq, overflow=True)
        self._queue.append((due, payload, trade))
        self._wakeup.set()

    async def _send_forever(self) -> None:
        queue, ws, truth = self._queue, self.ws, self._truth
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                while not queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                due, payload, trade = queue.popleft()
                wait = due - time.time()
                if wait > 0:  # the delay fault: a slow pipeline after the stamp
                    await asyncio.sleep(wait)
                if isinstance(payload, bytes):
                    await ws.send_bytes(payload)
                else:
                    await ws.send_str(payload)
                if trade is not None:
                    truth.written(self.id, trade.sym, trade.seq, trade.published_us, time.time())
