"""WS client connections that time each frame when its bytes arrive from the network.

:class:`TimedConnection` is websockets' client connection with two changes for
a load generator holding thousands of them: bytes are timed as they are read and
judged later, in slices, from the loop's :class:`ArrivalBacklog`; and data
frames can go straight to a callback (``on_frame``) instead of through
``recv()``, with the common frame split off without websockets' parser.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from websockets.asyncio.client import ClientConnection
from websockets.frames import DATA_OPCODES, Frame
from websockets.protocol import OPEN, Event
from websockets.typing import BytesLike

# Judging is done in slices of this long, between which the loop reads the network again.
SLICE_S = 0.002
# Bytes read but not yet judged beyond which the generator is falling behind for good:
# then everything queued is judged at once (the loop stalls and the loop-lag monitor sees it).
MAX_BACKLOG_BYTES = 64 * 2**20

FrameHook = Callable[[BytesLike, float], None]

# What the backlog holds for a connection.
_DATA, _EOF, _LOST = range(3)
# Frames split off without websockets' parser (see TimedConnection).
_BINARY = 2
_SPLIT_OPCODES = frozenset({1, 2, 9, 10})  # text, binary, ping, pong


class ArrivalBacklog:
    """Bytes read from the network but not yet parsed and judged, in arrival order.

    Reading a socket is cheap; parsing and judging its frames is not. When a
    broadcast lands on thousands of connections at once, judging each frame as
    it is read would leave the other sockets unread, and their frames timed
    late, for as long as the earlier ones take. So a read only notes the time
    and queues the bytes (:meth:`TimedConnection.data_received`), and the queue
    is worked off in slices of ``SLICE_S`` between which the loop reads again:
    frames are timed when they arrive, however long the judging takes.
    """

    _per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ArrivalBacklog] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        # Parallel queues rather than a queue of tuples: a tuple holding a connection is
        # tracked by the cyclic GC, and thousands in flight would be promoted to the old
        # generation by the collections that happen during a burst, and make the next
        # full collection (a loop stall of 100s of ms at 5,000 connections) come sooner.
        self._conns: deque[TimedConnection] = deque()
        self._kinds: deque[int] = deque()
        self._payloads: deque[Any] = deque()
        self._arrivals: deque[float] = deque()
        self._bytes = 0
        self._scheduled = False

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> ArrivalBacklog:
        """The backlog of ``loop`` (one per loop)."""
        backlog = cls._per_loop.get(loop)
        if backlog is None:
            # The backlog must not refer to its loop: the loop is the weak key.
            backlog = cls._per_loop[loop] = cls()
        return backlog

    def push(self, conn: TimedConnection, kind: int, payload: Any, arrived: float) -> None:
        """Queue one event of ``conn``: bytes, end of stream or loss."""
        self._conns.append(conn)
        self._kinds.append(kind)
        self._payloads.append(payload)
        self._arrivals.append(arrived)
        conn.queued += 1
        if kind == _DATA:
            self._bytes += len(payload)
            if self._bytes > MAX_BACKLOG_BYTES:
                self._work(None)  # falling behind for good: stall rather than grow
                return
        if not self._scheduled:
            self._scheduled = True
            conn.loop.call_soon(self._slice, conn.loop)

    def _slice(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        self._work(time.perf_counter() + SLICE_S)
        if self._conns and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._slice, loop)  # after the loop has polled the network again

    def _work(self, deadline: float | None) -> None:
        conns, kinds, payloads, arrivals = self._conns, self._kinds, self._payloads, self._arrivals
        clock = time.perf_counter
        while conns:
            conn, kind = conns.popleft(), kinds.popleft()
            payload, arrived = payloads.popleft(), arrivals.popleft()
            conn.queued -= 1
            if kind == _DATA:
                self._bytes -= len(payload)
            try:
                conn.replay(kind, payload, arrived)
            except Exception as exc:  # a bug in one connection must not stop the others
                conn.loop.call_exception_handler(
                    {"message": "error judging WS frames", "exception": exc}
                )
            if deadline is not None and clock() >= deadline:
                return


class TimedConnection(ClientConnection):
    """A client connection that times frames when their bytes arrive from the network.

    Bytes are timed and queued on the loop's :class:`ArrivalBacklog`, and parsed
    from there, so a burst of frames on many connections (a broadcast) is not
    charged the generator's own processing time.

    With ``on_frame`` set, data frames go straight to it (payload, arrival time)
    instead of into the queue that ``recv()`` reads: no task switch per frame.
    And while websockets' own parser stands between frames, the common frame (a
    complete, unmasked text or binary frame) is split off here, without the
    sans-I/O machinery; anything else (control frames, fragments, oversize or
    broken frames, a closing handshake) goes to websockets as usual.
    """

    arrived_at: float = 0.0

    def __init__(self, *args: Any, on_frame: FrameHook | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_frame = on_frame
        self.queued = 0  # events of this connection waiting in the backlog
        self._fragments: list[BytesLike] | None = None
        self._fast = False  # frames are split off here (see the class docstring)
        self._partial = b""  # the start of a frame, while splitting
        self._limit = self._size_limit()
        self._backlog = ArrivalBacklog.of(self.loop)

    @classmethod
    def factory(cls, on_frame: FrameHook | None) -> type[ClientConnection]:
        """What to pass as ``connect(create_connection=...)``: connections that feed ``on_frame``.

        websockets documents ``create_connection`` as a factory; its annotation says class.
        """
        return cast(type[ClientConnection], functools.partial(cls, on_frame=on_frame))

    def data_received(self, data: bytes) -> None:
        """Note the arrival time; parse later, in arrival order."""
        self._backlog.push(self, _DATA, data, time.time())

    def eof_received(self) -> None:
        """Handled in order, after the bytes that came before it."""
        self._backlog.push(self, _EOF, None, 0.0)

    def connection_lost(self, exc: Exception | None) -> None:
        """Handled in order, after the bytes that came before it."""
        if self.queued:
            self._backlog.push(self, _LOST, exc, 0.0)
        else:
            self._hand_over_partial()
            super().connection_lost(exc)

    def replay(self, kind: int, payload: Any, arrived: float) -> None:
        """Handle a queued event as the connection would have when it happened."""
        if kind == _DATA:
            self.arrived_at = arrived
            if self._fast:
                self._split_frames(payload)
            else:
                super().data_received(payload)
                self._fast = self._between_frames()
        else:
            self._hand_over_partial()
            if kind == _EOF:
                super().eof_received()
            else:
                super().connection_lost(payload)

    def _between_frames(self) -> bool:
        """Whether frames may be split off here: websockets' parser holds no partial frame
        or message. Checked through its attributes; any doubt keeps websockets parsing."""
        p = self.protocol
        reader = getattr(p, "reader", None)
        return (
            self.on_frame is not None
            and self.response is not None
            and p.state is OPEN
            and not p.extensions
            and getattr(p, "current_size", 0) is None
            and reader is not None
            and not getattr(reader, "buffer", True)
        )

    def _size_limit(self) -> int | None:
        p = self.protocol
        limits = [getattr(p, "max_message_size", None), getattr(p, "max_fragment_size", None)]
        return min((x for x in limits if x is not None), default=None)

    def _split_frames(self, data: bytes) -> None:
        """Judge the complete data frames in ``data``; websockets gets everything else."""
        hook = self.on_frame
        assert hook is not None
        if self._partial:
            data, self._partial = self._partial + data, b""
        view = memoryview(data)
        n = len(data)
        pos = 0
        while n - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length >= 126:
                head = 4 if length == 126 else 10
                if n - pos < head:
                    break
                length = int.from_bytes(data[pos + 2 : pos + head], "big")
            opcode = b0 & 0x0F
            if (
                b0 & 0xF0 != 0x80  # a fragment, or reserved bits set
                or b1 & 0x80  # masked: a server must not
                or opcode not in _SPLIT_OPCODES  # close, continuation, unknown
                or (self._limit is not None and length > self._limit)
            ):
                # websockets decides (and may fail the connection): it takes it from here.
                self._fast = False
                super().data_received(data[pos:])
                return
            end = pos + head + length
            if end > n:
                break
            if opcode <= _BINARY:
                hook(view[pos + head : end], self.arrived_at)
            else:  # ping or pong: websockets answers or acknowledges it
                super().data_received(data[pos:end])
            pos = end
        if pos < n:
            self._partial = data[pos:]

    def _hand_over_partial(self) -> None:
        """Give websockets a partial frame we hold, so that it sees the stream as it ended."""
        if self._partial:
            partial, self._partial = self._partial, b""
            self._fast = False
            super().data_received(partial)

    def process_event(self, event: Event) -> None:
        """Data frames go to ``on_frame`` when set (fragments joined); the rest as usual."""
        hook = self.on_frame
        if (
            hook is None
            or self.response is None  # the handshake response comes first
            or not isinstance(event, Frame)
            or event.opcode not in DATA_OPCODES
        ):
            super().process_event(event)
            return
        # websockets' protocol has already checked that fragments arrive in a valid order.
        if event.fin and self._fragments is None:
            hook(event.data, self.arrived_at)
            return
        if self._fragments is None:
            self._fragments = []
        self._fragments.append(event.data)
        if event.fin:
            message, self._fragments = b"".join(self._fragments), None
            hook(message, self.arrived_at)
