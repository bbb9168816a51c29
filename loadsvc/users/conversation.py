"""What a WS user says on each connection: its opening messages, the acknowledgement it
waits for, its replies to the backend's heartbeats and its periodic messages.

Messages are filled once per user from its values (they do not change between its
connections); a heartbeat's reply is filled per heartbeat, with the fields of the frame
it answers as ``frame.<path>``. The :class:`~loadsvc.users.frames.FrameReader` finds
heartbeats and the acknowledgement while it judges frames, and calls this back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Mapping
from typing import Any

import msgspec
import orjson
from websockets.exceptions import ConnectionClosed

from loadsvc.config.spec import FRAME, WsConversationSpec
from loadsvc.users.base import WsSink
from loadsvc.users.frames import FrameReader
from loadsvc.users.wsconn import TimedConnection

__all__ = ["ACK_TIMEOUT", "MAX_PENDING_REPLIES", "AckTimeout", "WsConversation", "encode_message"]

# The connection error reason of an acknowledgement that did not come in time.
ACK_TIMEOUT = "ack_timeout"
# Heartbeats answered before the connection is handed over (they can arrive with the
# handshake's response); more are counted but not answered.
_EARLY_REPLIES = 16
# Replies still being written at once: a backend that pings faster than it reads would
# otherwise make every ping a pending send holding its reply (a copied id can be as large
# as a frame). Past this the ping goes unanswered, as a client that cannot keep up would
# leave it, and the backend's own heartbeat timeout decides; the drops are noted.
MAX_PENDING_REPLIES = 16
_UNANSWERED = "heartbeat_unanswered"

Message = str | bytes


def encode_message(value: Any, encoding: str) -> Message:
    """A filled template as sent: a string as is (a text frame); anything else as JSON text
    or, with ``encoding: msgpack``, as a msgpack binary frame."""
    if isinstance(value, str):
        return value
    if encoding == "msgpack":
        return msgspec.msgpack.encode(value)
    return orjson.dumps(value).decode()


class AckTimeout(Exception):
    """The acknowledgement did not come within its timeout."""


class WsConversation:
    """One user's side of the conversation; ``begin`` on each connection, ``end`` after."""

    def __init__(
        self,
        spec: WsConversationSpec,
        values: Mapping[str, Any],
        reader: FrameReader,
        sink: WsSink | None = None,
    ) -> None:
        self._spec = spec
        self._values = values
        self._reader = reader
        enc = spec.encoding
        self._opening = [encode_message(t.fill(values), enc) for t in spec.send]
        self._periodic = [(p.every_s, encode_message(p.message.fill(values), enc))
                          for p in spec.periodic]  # fmt: skip
        heartbeat = spec.heartbeat
        self._reply = heartbeat.reply if heartbeat is not None else None
        self._ws: TimedConnection | None = None
        self._early: list[Message] = []  # replies owed before the connection was handed over
        self._acked: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._replying: set[asyncio.Task[None]] = set()  # replies being written
        self._sink = sink
        self.unanswered = 0  # heartbeats left unanswered: replies still pending
        reader.control = self

    def heartbeat(self, fields: Mapping[str, Any]) -> None:
        """Answer a heartbeat (from the reader, while it judges frames)."""
        if self._reply is None:
            return
        if len(self._replying) >= MAX_PENDING_REPLIES:
            self.unanswered += 1
            if self._sink is not None:
                self._sink.note(
                    _UNANSWERED,
                    f"{MAX_PENDING_REPLIES} heartbeat replies still unsent: the backend "
                    "does not read them",
                )
            return
        prefix = f"{FRAME}."
        values = {**self._values, **{prefix + path: v for path, v in fields.items()}}
        message = encode_message(self._reply.fill(values), self._spec.encoding)
        ws = self._ws
        if ws is None:
            if len(self._early) < _EARLY_REPLIES:
                self._early.append(message)
            return
        task = self._spawn(self._send(ws, message))
        self._replying.add(task)
        task.add_done_callback(self._replying.discard)

    def acknowledged(self) -> None:
        """The acknowledgement arrived (from the reader)."""
        if self._acked is not None:
            self._acked.set()

    def prepare(self) -> None:
        """Before a connection attempt: nothing owed, no acknowledgement yet."""
        self._early.clear()
        self._ws = None
        self._acked = asyncio.Event() if self._spec.ack is not None else None

    async def begin(self, ws: TimedConnection, *, pump: bool) -> None:
        """Open the conversation on ``ws``: answer what is owed, send the opening messages,
        wait for the acknowledgement, then start the periodic messages.

        ``pump``: frames reach the reader only through ``recv()`` (no frame hook), so this
        reads them while it waits. Raises :class:`AckTimeout`, or ``ConnectionClosed``
        when the connection ends first.
        """
        self._ws = ws
        early, self._early = self._early, []
        for message in early:
            await ws.send(message)
        for message in self._opening:
            await ws.send(message)
        ack = self._spec.ack
        if ack is not None and self._acked is not None:
            try:
                async with asyncio.timeout(ack.timeout_s):
                    if pump:
                        feed = self._reader.feed
                        while not self._acked.is_set():
                            feed(await ws.recv(), ws.arrived_at)
                    else:
                        await self._until_acked(ws)
            except TimeoutError:
                raise AckTimeout(
                    f"no frame matching {dict(ack.match.fields)} within {ack.timeout_s:g} s "
                    "of the opening messages"
                ) from None
        for every, message in self._periodic:
            self._spawn(self._every(ws, every, message))

    async def _until_acked(self, ws: TimedConnection) -> None:
        """Wait for the acknowledgement; a connection that closes first raises its close."""
        assert self._acked is not None
        acked = asyncio.ensure_future(self._acked.wait())
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            await asyncio.wait({acked, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            acked.cancel()
            closed.cancel()
        if not self._acked.is_set():
            exc = ws.protocol.close_exc
            raise exc

    def end(self) -> None:
        """The connection ended or is being closed: stop sending on it."""
        self._ws = None
        for task in list(self._tasks):
            task.cancel()
        self._tasks.clear()
        self._replying.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _send(ws: TimedConnection, message: Message) -> None:
        with contextlib.suppress(ConnectionClosed):  # the user sees the loss and counts it
            await ws.send(message)

    @staticmethod
    async def _every(ws: TimedConnection, every: float, message: Message) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(every)
                await ws.send(message)
