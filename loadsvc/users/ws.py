"""WebSocket users: a streaming client and a reconnect-storm client.

Both read frames the same way (:class:`FrameReader`): one parse per frame,
delivery latency = receive wall time minus the publish stamp the server put in
the frame, the interval since the previous data frame, and sequence gaps.
Frames are timed when their bytes arrive (:class:`TimedConnection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import random
import ssl
import time

from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
)

from loadsvc.config.spec import WsReconnectUserSpec, WsStreamUserSpec, WsUserSpec
from loadsvc.tls import client_context, describe_tls_error
from loadsvc.users.arrival import clock_of
from loadsvc.users.backlog import ArrivalBacklog
from loadsvc.users.backoff import ReconnectBackoff, pacer
from loadsvc.users.base import UserContext, WsSink
from loadsvc.users.conversation import ACK_TIMEOUT, AckTimeout, WsConversation
from loadsvc.users.frames import FrameReader
from loadsvc.users.wsconn import FrameHook, TimedConnection, stamped_connect

__all__ = ["ArrivalBacklog", "TimedConnection", "WsReconnectUser", "WsStreamUser"]

# Longest diagnostic detail kept from a server's error (they can quote whole responses).
_DETAIL_CHARS = 200


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """The verifying context of a run whose target has none: built once, not per connect."""
    return client_context()


def classify_connect_error(exc: BaseException) -> tuple[str, str | None]:
    """The ``reason`` of a failed connect and, where a person needs it, what went wrong."""
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls", describe_tls_error(exc)
    if isinstance(exc, TimeoutError):
        return "timeout", None
    if isinstance(exc, InvalidStatus):
        return "handshake", f"HTTP {exc.response.status_code} to the upgrade"
    if isinstance(exc, InvalidHandshake):
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        return "protocol", f"{type(exc).__name__}: {exc}{cause}"[:_DETAIL_CHARS]
    if isinstance(exc, ConnectionError):
        return "refused", None
    return "error", type(exc).__name__


def _break_cycles(exc: BaseException) -> None:
    """Drop the tracebacks of a failed handshake's exception and of those chained to it.

    websockets keeps a failed handshake's exception on its protocol (and the parser's
    ``EOFError`` under it), and their tracebacks hold the frames of ``connect()`` and of the
    parser, which hold the protocol: ~50 objects in a cycle per failed handshake, a few
    dozen at each backend restart (issue 20); and a refused upgrade's response points back
    at its ``InvalidStatus``. Only the type, message and status are read.
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        if isinstance(current, InvalidStatus):
            current.response._exception = None
        stack += (current.__cause__, current.__context__)


def _release(ws: TimedConnection) -> None:
    """Free what a connection that ended leaves behind, at once.

    websockets keeps the parser's exception (``EOFError`` when the server vanished), whose
    traceback holds the parser's frame, which holds the protocol: ~15 objects per lost
    connection that only the cyclic collector frees. After a backend restart that is every
    connection at once, and the collection that frees them stalled the loop ~50 ms (issue
    20). The exception's type and message are all anyone reads afterwards.
    """
    for exc in (ws.protocol.parser_exc, ws.connection_exc):
        if exc is not None:
            exc.__traceback__ = None


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
        self._tls = (ctx.target.tls or _default_tls()) if self._url.startswith("wss:") else None
        talk = spec.conversation
        heartbeat = talk.heartbeat if talk is not None else None
        self._reader = FrameReader(
            spec.message,
            sink,
            ack=talk.ack.match if talk is not None and talk.ack is not None else None,
            heartbeat=heartbeat.match if heartbeat is not None else None,
            reply_paths=heartbeat.reply_paths if heartbeat is not None else (),
        )
        self._talk = (
            WsConversation(talk, ctx.values, self._reader, sink) if talk is not None else None
        )
        self._ws: TimedConnection | None = None  # the open connection, if any

    async def _open(
        self, lost_at: float | None, on_frame: FrameHook | None = None, *, turn_taken: bool = False
    ) -> TimedConnection | None:
        """Connect, retrying with calm backoff; report connect (and reconnect) time.

        Every attempt, the first included, takes a turn from the loop's handshake pacer
        (:mod:`loadsvc.users.backoff`) unless ``turn_taken`` says the caller took the first;
        connect time runs from the turn, so the pace is never timed as the backend's.
        With ``on_frame``, data frames go to it as they are parsed, not to ``recv()``.
        None when the run is stopping. A handshake counts as busy work, so a graceful stop
        lets it finish; one still outstanding when the run cancels it is a ``timeout``.
        """
        backoff = ReconnectBackoff(self._spec.backoff, self._rng)  # retries: loadsvc.users.backoff
        clock = self._ctx.clock
        stopping = self._ctx.stopping
        while not stopping.is_set():
            if not turn_taken:
                await pacer().turn(stopping)
                if stopping.is_set():
                    break
            turn_taken = False
            url, headers, credential = self._url, self._headers, None
            if self._ctx.auth is not None:  # the scenario's login: its token on the upgrade
                credential = await self._ctx.auth.ready()
                if credential is None:  # stopping
                    return None
                url = credential.url(url)
                replaced = credential.header_names()
                headers = {k: v for k, v in headers.items() if k.lower() not in replaced}
                headers.update(credential.headers)
            # Before connecting: frames may be judged before connect() returns.
            self._reader.new_connection()
            if self._talk is not None:
                self._talk.prepare()
            t0 = clock()
            was_busy, self.busy = self.busy, True
            try:
                ws = await stamped_connect(
                    url,
                    additional_headers=headers or None,
                    open_timeout=self._spec.connect_timeout_s,
                    compression=None,  # frames are small JSON; deflate costs memory and CPU
                    proxy=None,  # load goes straight to the target, never via a proxy
                    max_queue=64,
                    max_size=self._spec.max_message,
                    close_timeout=2,
                    user_agent_header="loadsvc",
                    ssl=self._tls,
                    create_connection=TimedConnection.factory(on_frame),
                )
            except asyncio.CancelledError:
                if stopping.is_set():  # the run ended with the handshake outstanding
                    self._sink.failed("timeout")
                raise
            except Exception as exc:  # counted by reason, never raised
                _break_cycles(exc)
                reason, detail = classify_connect_error(exc)
                if (
                    credential is not None
                    and self._ctx.auth is not None
                    and isinstance(exc, InvalidStatus)
                    and exc.response.status_code == 401
                ):
                    self._ctx.auth.rejected(credential)  # the next attempt logs in again
                self._sink.failed(reason)
                if detail is not None:
                    self._sink.note(reason, detail)
            else:
                assert isinstance(ws, TimedConnection)
                # Connect time runs to the acknowledgement, when one is awaited: until it,
                # the connection delivers nothing.
                if self._talk is None or await self._converse(ws, pump=on_frame is None):
                    now = clock()
                    self._sink.connected(now - t0)
                    self._sink.arrival_clock(clock_of(ws.transport))
                    if lost_at is not None:
                        self._sink.reconnected(now - lost_at)
                    self._ws = ws
                    return ws
            finally:
                self.busy = was_busy
            if lost_at is None:
                lost_at = t0
            await backoff.wait()
        return None

    async def _converse(self, ws: TimedConnection, *, pump: bool) -> bool:
        """Open the conversation on a new connection; False (counted, the connection closed)
        when the acknowledgement does not come in time or the connection ends first."""
        assert self._talk is not None
        try:
            await self._talk.begin(ws, pump=pump)
            return True
        except AckTimeout as exc:
            self._sink.failed(ACK_TIMEOUT)
            self._sink.note(ACK_TIMEOUT, str(exc))
        except ConnectionClosed as exc:
            self._count_loss(ws, exc)
        except BaseException:
            self._talk.end()
            self._reader.end_connection()
            ws.transport.abort()
            _release(ws)
            raise
        self._talk.end()
        self._reader.end_connection()
        await self._close_quietly(ws)
        return False

    async def _open_watched(
        self, lost_at: float | None, on_frame: FrameHook | None = None, *, turn_taken: bool = False
    ) -> TimedConnection | None:
        """Open the stream; a user left without one past the stall limit is stalled too.

        A backend whose upgrades hang after a clean close has stopped delivering as surely
        as a silent open connection, yet no open connection is silent and the rate counts
        open connection-seconds only: counted once, ended when a connection opens.
        """
        opening = asyncio.ensure_future(self._open(lost_at, on_frame, turn_taken=turn_taken))
        stall = self._sink.stall
        counted = False
        try:
            if stall.after_s is not None:
                done, _ = await asyncio.wait({opening}, timeout=stall.after_s + 0.001)
                if not done:
                    counted = True
                    self._sink.stalled()
            return await opening
        finally:
            if not opening.done():  # this user was cancelled while connecting
                opening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await opening
            if counted:
                self._sink.stall_ended()

    def _lost(self, ws: TimedConnection, exc: ConnectionClosed) -> None:
        """The server ended (or broke) the open connection ``ws``."""
        self._ws = None
        if self._talk is not None:
            self._talk.end()
        self._reader.end_connection()
        self._sink.disconnected()
        self._count_loss(ws, exc)
        _release(ws)

    def _count_loss(self, ws: TimedConnection, exc: ConnectionClosed) -> None:
        """Count why the server ended (or broke) ``ws``."""
        violation = ws.violation
        if violation is not None:
            self._sink.failed("protocol")
            self._sink.note("protocol", violation[:_DETAIL_CHARS])
        else:
            self._sink.failed("closed" if isinstance(exc, ConnectionClosedOK) else "abnormal_close")

    async def _close(self) -> None:
        """Close the open connection, if any (also on cancellation, so it is shielded)."""
        ws, self._ws = self._ws, None
        if ws is None:
            return
        if self._talk is not None:
            self._talk.end()
        self._reader.end_connection()
        self._sink.disconnected()
        await self._close_quietly(ws)

    @staticmethod
    async def _close_quietly(ws: TimedConnection) -> None:
        """Close ``ws`` and free what it leaves behind."""
        try:
            await ws.close()
        except Exception:  # closing a broken connection may fail; it is gone anyway
            ws.transport.abort()
        _release(ws)


class WsStreamUser(_WsClient):
    """Connects and receives continuously; reconnects with calm backoff when dropped."""

    def __init__(
        self, spec: WsStreamUserSpec, ctx: UserContext, sink: WsSink, rng: random.Random
    ) -> None:
        super().__init__(spec, ctx, sink, rng)

    async def run(self) -> None:
        """Stream until cancelled or the run stops."""
        lost_at: float | None = None
        try:
            while True:
                # Frames are judged as they are parsed (text already checked for UTF-8);
                # this task only waits for the connection to end.
                ws = await self._open_watched(lost_at, self._reader.feed)
                if ws is None or self._ctx.stopping.is_set():
                    return
                await self._watch_stalls(ws)
                self._lost(ws, ws.protocol.close_exc)
                lost_at = self._ctx.clock()
                await ReconnectBackoff(self._spec.backoff, self._rng).wait()
        finally:
            await asyncio.shield(self._close())

    async def _watch_stalls(self, ws: TimedConnection) -> None:
        """Wait for ``ws`` to close; meanwhile count each silence the sink's ``stall`` calls
        a stall, once, and keep the connection (a stalled stream may resume)."""
        stall = self._sink.stall
        if stall.after_s is None:
            await ws.wait_closed()
            return
        closed = asyncio.ensure_future(ws.wait_closed())
        opened = time.time()
        counted_since: float | None = None  # the silence already counted, by its start
        try:
            while True:
                since = self._reader.last_delivery or opened
                if since < opened:  # the last frame was on an earlier connection
                    since = opened
                if counted_since is not None and counted_since != since:
                    counted_since = None  # data again: that stall is over
                    self._sink.stall_ended()
                silent = time.time() - since
                if counted_since is None and stall.is_stall(silent):
                    counted_since = since
                    self._sink.stalled()
                # Wake when the current silence would become a stall (or soon after a count).
                wake = stall.after_s if counted_since is not None else stall.after_s - silent
                done, _ = await asyncio.wait({closed}, timeout=max(wake, 0.0) + 0.001)
                if done:
                    return
        finally:
            closed.cancel()
            if counted_since is not None:
                self._sink.stall_ended()


class WsReconnectUser(_WsClient):
    """The reconnect storm: on each cycle boundary, receive N frames, then reconnect at once."""

    def __init__(
        self, spec: WsReconnectUserSpec, ctx: UserContext, sink: WsSink, rng: random.Random
    ) -> None:
        super().__init__(spec, ctx, sink, rng)
        self._cycle = spec.cycle_s
        self._per_cycle = spec.messages_per_cycle

    def _next_boundary(self, previous: float | None) -> float:
        """The first cycle boundary after now, and after ``previous``, by the run's clock."""
        start = self._ctx.started_at
        k = math.floor((self._ctx.clock() - start) / self._cycle) + 1
        boundary = start + k * self._cycle
        if previous is not None and boundary <= previous:
            boundary = previous + self._cycle
        return boundary

    async def run(self) -> None:
        """Cycle until stopped; between storms keep reading so the server queue never fills."""
        ws = await self._open(None)
        boundary: float | None = None
        try:
            while ws is not None and not self._ctx.stopping.is_set():
                boundary = self._next_boundary(boundary)
                ws = await self._receive(ws, count=self._per_cycle)
                if ws is None or self._ctx.stopping.is_set():
                    return
                self.busy = True
                await self._close()
                # The storm's reconnect takes a handshake turn like any other, timed from
                # the turn: the whole storm still reaches the target, within about
                # users / HANDSHAKES_PER_S of the boundary, and its reconnect time is the
                # target's, not the pace's.
                await pacer().turn(self._ctx.stopping)
                if self._ctx.stopping.is_set():
                    self.busy = False
                    return
                t0 = self._ctx.clock()
                ws = await self._open_watched(t0, turn_taken=True)
                self.busy = False
                if ws is not None:
                    ws = await self._receive(ws, until=boundary)
        finally:
            await asyncio.shield(self._close())

    async def _receive(
        self, ws: TimedConnection, count: int | None = None, until: float | None = None
    ) -> TimedConnection | None:
        """Read ``count`` frames or until ``until``; reconnect if the server drops us.

        ``until`` is judged by the run's clock, never by the loop's timer alone: uvloop's
        timers (millisecond ticks) can fire just before the boundary, and a user that
        returned then would run a second cycle at once.
        """
        got = 0
        feed = self._reader.feed
        clock = self._ctx.clock
        while True:
            try:
                if until is None:
                    while got < (count or 0):
                        feed(await ws.recv(), ws.arrived_at)
                        got += 1
                    return ws
                while (remaining := until - clock()) > 0:
                    async with asyncio.timeout(remaining):
                        while True:
                            feed(await ws.recv(), ws.arrived_at)
                return ws
            except TimeoutError:
                continue  # the loop above decides, by the run's clock, whether it is time
            except ConnectionClosed as exc:
                self._lost(ws, exc)
                reopened = await self._open_watched(clock())
                if reopened is None:
                    return None
                ws = reopened
