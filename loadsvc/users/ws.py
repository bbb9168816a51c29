"""WebSocket users: a streaming client and a reconnect-storm client.

Both read frames the same way (:class:`FrameReader`): one parse per frame,
delivery latency = receive wall time minus the publish stamp the server put in
the frame, the interval since the previous data frame, and sequence gaps.
Frames are timed when their bytes arrive (:class:`TimedConnection`).
"""

from __future__ import annotations

import asyncio
import math
import random

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus

from loadsvc.config.spec import WsReconnectUserSpec, WsStreamUserSpec, WsUserSpec
from loadsvc.recorder import WsSink
from loadsvc.users.base import UserContext, jittered
from loadsvc.users.frames import FrameReader
from loadsvc.users.wsconn import ArrivalBacklog, FrameHook, TimedConnection

__all__ = ["ArrivalBacklog", "TimedConnection", "WsReconnectUser", "WsStreamUser"]


class _WsClient:
    """Connection handling shared by the WS users: open with backoff, read, classify losses."""

    def __init__(
        self, spec: WsUserSpec, ctx: UserContext, sink: WsSink, rng: random.Random
    ) -> None:
        self.busy = False
        self._spec = spec
        self._ctx = ctx
        self._sink = sink
        self._rng = rng
        self._url = ctx.target.ws_url(spec.path)
        self._headers = ctx.target.header_dict()
        self._reader = FrameReader(spec.message, sink)
        self._ws: TimedConnection | None = None  # the open connection, if any

    async def _open(
        self, lost_at: float | None, on_frame: FrameHook | None = None
    ) -> TimedConnection:
        """Connect, retrying with jittered backoff; report connect (and reconnect) time.

        With ``on_frame``, data frames go to it as they are parsed, not to ``recv()``.
        """
        delay = self._spec.backoff.initial_s
        clock = self._ctx.clock
        # Before connecting: frames may be judged before connect() returns.
        self._reader.new_connection()
        while True:
            t0 = clock()
            reason = None
            try:
                ws = await connect(
                    self._url,
                    additional_headers=self._headers or None,
                    open_timeout=self._spec.connect_timeout_s,
                    compression=None,  # frames are small JSON; deflate costs memory and CPU
                    proxy=None,  # load goes straight to the target, never via a proxy
                    max_queue=64,
                    close_timeout=2,
                    user_agent_header="loadsvc",
                    create_connection=TimedConnection.factory(on_frame),
                )
            except TimeoutError:
                reason = "timeout"
            except InvalidStatus:
                reason = "handshake"
            except (ConnectionRefusedError, ConnectionResetError):
                reason = "refused"
            except Exception:  # counted by reason, never raised
                reason = "error"
            if reason is None:
                assert isinstance(ws, TimedConnection)
                now = clock()
                self._sink.connected(now - t0)
                if lost_at is not None:
                    self._sink.reconnected(now - lost_at)
                self._ws = ws
                return ws
            self._sink.failed(reason)
            if lost_at is None:
                lost_at = t0
            await asyncio.sleep(jittered(delay, self._rng))
            delay = min(delay * self._spec.backoff.multiplier, self._spec.backoff.max_s)

    def _lost(self, exc: ConnectionClosed) -> None:
        self._ws = None
        self._sink.disconnected()
        self._sink.failed("closed" if isinstance(exc, ConnectionClosedOK) else "abnormal_close")

    async def _close(self) -> None:
        """Close the open connection, if any (also on cancellation, so it is shielded)."""
        ws, self._ws = self._ws, None
        if ws is None:
            return
        self._sink.disconnected()
        try:
            await ws.close()
        except Exception:  # closing a broken connection may fail; it is gone anyway
            ws.transport.abort()


class WsStreamUser(_WsClient):
    """Connects and receives continuously; reconnects with jittered backoff when dropped."""

    def __init__(
        self, spec: WsStreamUserSpec, ctx: UserContext, sink: WsSink, rng: random.Random
    ) -> None:
        super().__init__(spec, ctx, sink, rng)

    async def run(self) -> None:
        """Stream until cancelled."""
        lost_at: float | None = None
        try:
            while True:
                # Frames are judged as they are parsed (bytes: the decoder reads UTF-8
                # itself); this task only waits for the connection to end.
                ws = await self._open(lost_at, self._reader.feed)
                await ws.wait_closed()
                closed = ws.protocol.close_exc
                self._lost(closed)
                lost_at = self._ctx.clock()
                await asyncio.sleep(jittered(self._spec.backoff.initial_s, self._rng))
        finally:
            await asyncio.shield(self._close())


class WsReconnectUser(_WsClient):
    """The reconnect storm: on each cycle boundary, receive N frames, then reconnect at once."""

    def __init__(
        self, spec: WsReconnectUserSpec, ctx: UserContext, sink: WsSink, rng: random.Random
    ) -> None:
        super().__init__(spec, ctx, sink, rng)
        self._cycle = spec.cycle_s
        self._per_cycle = spec.messages_per_cycle

    def _next_boundary(self) -> float:
        start = self._ctx.started_at
        k = math.floor((self._ctx.clock() - start) / self._cycle) + 1
        return start + k * self._cycle

    async def run(self) -> None:
        """Cycle until stopped; between storms keep reading so the server queue never fills."""
        ws = await self._open(None)
        try:
            while not self._ctx.stopping.is_set():
                boundary = self._next_boundary()
                ws = await self._receive(ws, count=self._per_cycle)
                self.busy = True
                t0 = self._ctx.clock()
                await self._close()
                ws = await self._open(t0)
                self.busy = False
                ws = await self._receive(ws, until=boundary)
        finally:
            await asyncio.shield(self._close())

    async def _receive(
        self, ws: TimedConnection, count: int | None = None, until: float | None = None
    ) -> TimedConnection:
        """Read ``count`` frames or until ``until``; reconnect if the server drops us."""
        got = 0
        feed = self._reader.feed
        while True:
            try:
                if until is None:
                    while got < (count or 0):
                        feed(await ws.recv(decode=False), ws.arrived_at)
                        got += 1
                    return ws
                remaining = until - self._ctx.clock()
                async with asyncio.timeout(max(0.0, remaining)):
                    while True:
                        raw = await ws.recv(decode=False)
                        feed(raw, ws.arrived_at)
            except TimeoutError:
                return ws
            except ConnectionClosed as exc:
                self._lost(exc)
                ws = await self._open(self._ctx.clock())
