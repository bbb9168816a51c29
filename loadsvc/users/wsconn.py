"""WS client connections that time each frame when its bytes arrive from the network.

:class:`TimedConnection` is websockets' client connection with three changes for
a load generator holding thousands of them: bytes are timed as they are read (by
the kernel's receive stamp over :func:`stamped_connect`, see
:mod:`loadsvc.users.arrival`), and judged then, or on the loop's clock later, in
slices, from the loop's :class:`~loadsvc.users.backlog.ArrivalBacklog`; data
frames can go straight to a callback (``on_frame``) instead of through
``recv()``, with the common frame split off without websockets' parser; and
keepalive pings go in step with the loop's other connections
(:mod:`loadsvc.users.keepalive`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any, cast

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import DATA_OPCODES, CloseCode, Frame, Opcode
from websockets.protocol import OPEN, Event
from websockets.proxy import get_proxy
from websockets.typing import BytesLike

from loadsvc.users.arrival import KernelTimedTransport, arrival_of, kernel_clock_enabled
from loadsvc.users.backlog import _DATA, _EOF, _LOST, ArrivalBacklog
from loadsvc.users.connect import open_connection
from loadsvc.users.keepalive import Keepalive
from loadsvc.users.samebytes import SameBytes

# Bytes of one connection read but not yet judged beyond which its socket is not read
# until the backlog has caught up: a server that floods one connection (pings, huge
# frames) cannot fill the backlog, stall the loop judging it all, or grow memory.
MAX_QUEUED_PER_CONNECTION = 2**20

# A server may ping freely, but it must read our pongs: while this much is already waiting
# to be written, pings go unanswered (RFC 6455 5.5.3 lets a pong answer only the latest) ...
PONG_BUFFER_LIMIT = 64 * 2**10
# ... and a server that keeps pinging this many times without reading is flooding us: the
# connection is dropped (reason "protocol"), so memory and CPU per connection stay bounded.
MAX_UNANSWERED_PINGS = 1000

# A broadcast sends the same text frame to every connection: the latest text frames and the
# str decoded from each, so that a frame already checked for UTF-8 on another connection is
# compared (memcmp) rather than decoded again, and its readers get the same str, whose parse
# they share (FrameReader's memo). Frames up to 64 KiB, 16 of them (~2 MiB at most).
_texts: SameBytes[str] = SameBytes()

FrameHook = Callable[[BytesLike | str, float], None]

# Frames split off without websockets' parser (see TimedConnection).
_TEXT, _BINARY, _PING, _PONG = 1, 2, 9, 10
_SPLIT_OPCODES = frozenset({1, 2, 9, 10})  # text, binary, ping, pong


class TimedConnection(ClientConnection):
    """A client connection that times frames when their bytes arrive from the network.

    Bytes the kernel stamped are judged as they are read: their stamp is their
    arrival, however late the judging. Bytes on the loop's clock are timed and
    queued on the loop's :class:`~loadsvc.users.backlog.ArrivalBacklog`, and
    parsed from there, so a burst of frames on many connections (a broadcast) is
    not charged the generator's own processing time.

    With ``on_frame`` set, data frames go straight to it (payload, arrival time)
    instead of into the queue that ``recv()`` reads: no task switch per frame.
    And while websockets' own parser stands between frames, the common frame (a
    complete, unmasked text or binary frame) is split off here, without the
    sans-I/O machinery; anything else (control frames, fragments, oversize or
    broken frames, a closing handshake) goes to websockets as usual.

    Text frames are checked for valid UTF-8 (and handed on as ``str``); an invalid
    one fails the connection with 1007, as a browser does. When the server breaks
    the protocol (that, a masked or oversize frame, a ping flood), ``violation``
    says how, and the connection is aborted if the server does not close it
    within ``close_timeout``.
    """

    arrived_at: float = 0.0

    def __init__(self, *args: Any, on_frame: FrameHook | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_frame = on_frame
        self._arrival: Callable[[], float] = time.time  # the kernel's stamp once connected
        self._stamps: KernelTimedTransport | None = None  # the transport, if it has stamps
        self.queued = 0  # events of this connection waiting in the backlog
        self.queued_bytes = 0  # bytes of this connection waiting in the backlog
        self._read_span = 0.0  # this read's stamp minus the previous read's
        self._reading_paused = False
        self._fragments: list[BytesLike] | None = None
        self._fragmented_text = False
        self._fast = False  # frames are split off here (see the class docstring)
        self._partial = b""  # the start of a frame, while splitting
        self._limit = self._size_limit()
        self._backlog = ArrivalBacklog.of(self.loop)
        self._keepalive = Keepalive.of(self.loop)
        self._violation: str | None = None
        self.unanswered_pings = 0
        self._abort_timer: asyncio.TimerHandle | None = None

    @classmethod
    def factory(cls, on_frame: FrameHook | None) -> type[ClientConnection]:
        """What to pass as ``connect(create_connection=...)``: connections that feed ``on_frame``.

        websockets documents ``create_connection`` as a factory; its annotation says class.
        """
        return cast(type[ClientConnection], functools.partial(cls, on_frame=on_frame))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Connected: arrivals are read from the transport (the kernel's stamp) where it has them."""
        super().connection_made(transport)
        self._arrival = arrival_of(transport)
        self._stamps = transport if isinstance(transport, KernelTimedTransport) else None

    def _stamped(self) -> bool:
        """Whether what comes now is judged now: its arrival is the kernel's stamp, which
        judging late would not change, and nothing of this connection waits in the backlog."""
        stamps = self._stamps
        return stamps is not None and not stamps.unstamped_reads and not self.queued

    def data_received(self, data: bytes) -> None:
        """Judge the bytes now if the kernel stamped them (:meth:`_stamped`); else note the
        arrival time and judge them later, in arrival order (:class:`ArrivalBacklog`)."""
        stamps = self._stamps
        if stamps is not None and not stamps.unstamped_reads and not self.queued:  # _stamped()
            self._judge(data, stamps.arrived)  # (inline: this runs per read)
            return
        self.queued_bytes += len(data)
        if self.queued_bytes > MAX_QUEUED_PER_CONNECTION and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._backlog.push(self, _DATA, data, self._arrival())

    def eof_received(self) -> None:
        """Handled in order, after the bytes that came before it."""
        if self._stamped():
            self._hand_over_partial()
            super().eof_received()
        else:
            self._backlog.push(self, _EOF, None, 0.0)

    def connection_lost(self, exc: Exception | None) -> None:
        """Handled in order, after the bytes that came before it."""
        self._keepalive.discard(self)
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        if self.queued:
            self._backlog.push(self, _LOST, exc, 0.0)
        else:
            self._hand_over_partial()
            super().connection_lost(exc)
            self._end_parser()

    def _end_parser(self) -> None:
        """Close websockets' parser once the connection is gone: it holds the protocol in a cycle.

        After a closing handshake (or a failure) websockets parses with ``discard()``, a
        generator that ends on a bare ``yield`` and stays suspended there, its frame holding
        the protocol that holds it. Only the cyclic collector frees that pair (and what the
        protocol holds: its reader, URI, logger adapter, the parser's exception), ~40 objects
        a connection. And a connection that lived through a full collection is frozen
        (:mod:`loadsvc.collector`): its cycle then waits for a sweep. In the accelerated soak
        that was ~4,000 dead protocols piled up between sweeps, 80-100 k blocks of the heap
        that only a sweep gave back. No byte comes after ``connection_lost``, so the parser
        has nothing left to do. When the server vanished, the parser ended raising
        ``EOFError``, kept on the protocol with a traceback that holds the parser's frame, so
        the protocol again: only the exception's type and message are read afterwards.
        """
        protocol = self.protocol
        parser = getattr(protocol, "parser", None)
        if parser is not None:
            parser.close()
        failed = getattr(protocol, "parser_exc", None)
        if failed is not None:
            failed.__traceback__ = None

    def replay(self, kind: int, payload: Any, arrived: float) -> None:
        """Handle a queued event as the connection would have when it happened."""
        if kind == _DATA:
            self.queued_bytes -= len(payload)
            if self._reading_paused and self.queued_bytes <= MAX_QUEUED_PER_CONNECTION // 4:
                self._reading_paused = False
                if not self.transport.is_closing():
                    self.transport.resume_reading()
            self._judge(payload, arrived)
        else:
            self._hand_over_partial()
            if kind == _EOF:
                super().eof_received()
            else:
                super().connection_lost(payload)
                self._end_parser()

    def _judge(self, data: bytes, arrived: float) -> None:
        """Parse and judge the bytes of one read that arrived at ``arrived``."""
        # Every byte of this read arrived after the previous read's stamp: how long a frame
        # that shares this read can have waited for it (see ArrivalBacklog.shared).
        self._read_span = arrived - self.arrived_at if self.arrived_at else 0.0
        self.arrived_at = arrived
        if self._fast:
            self._split_frames(data)
        else:
            self._to_websockets(data)
            self._fast = self._between_frames()

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
        n = len(data)
        pos = 0
        judged = 0
        arrived = self.arrived_at
        limit = self._limit
        # This runs per frame: header fields read by index (no slices), the common sizes first.
        while n - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126:
                if n - pos < 4:
                    break
                length = data[pos + 2] << 8 | data[pos + 3]
                start = pos + 4
            else:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            opcode = b0 & 0x0F
            if (
                b0 & 0xF0 != 0x80  # a fragment, or reserved bits set
                or b1 & 0x80  # masked: a server must not
                or opcode not in _SPLIT_OPCODES  # close, continuation, unknown
                or (limit is not None and length > limit)
            ):
                # websockets decides (and may fail the connection): it takes it from here.
                self._fast = False
                self._to_websockets(data[pos:])
                return
            end = start + length
            if end > n:
                break
            if opcode == _TEXT:
                # A slice's decode() beats str() of a memoryview: no view objects.
                chunk = data[start:end]
                seen = _texts.get(chunk)
                if seen is not None:
                    text = seen[1]  # this frame's bytes came on another connection: valid
                else:
                    try:
                        text = chunk.decode()  # validates (~0.1 us/KB)
                    except UnicodeDecodeError as exc:
                        self._fail_invalid_text(exc)
                        return
                    _texts.keep(chunk, text)
                hook(text, arrived)
                judged += 1
            elif opcode == _BINARY:
                hook(memoryview(data)[start:end], arrived)
                judged += 1
            elif opcode == _PONG and self._keepalive.pong(self, data[start:end]):
                pass  # our keepalive's ping answered: nothing for websockets to do
            elif opcode == _PING and self._unread_pongs():
                if self._violation is not None:
                    return  # dropped for flooding: the rest of the bytes do not matter
                # else: the server is not reading; no more pongs until it does
            else:  # ping or pong: websockets answers or acknowledges it
                self._to_websockets(data[pos:end])
                if self._violation is not None:
                    return
            pos = end
        if judged > 1:
            self._backlog.shared(judged - 1, self._read_span)
        if pos < n:
            self._partial = data[pos:]

    def _unread_pongs(self) -> bool:
        """Whether our pongs pile up unread; drop a server that keeps pinging regardless."""
        if self.transport.get_write_buffer_size() <= PONG_BUFFER_LIMIT:
            return False
        self.unanswered_pings += 1
        if self.unanswered_pings >= MAX_UNANSWERED_PINGS:
            self._violation = (
                f"ping flood: {self.unanswered_pings} pings while the server did not read "
                f"our pongs ({self.transport.get_write_buffer_size()} bytes waiting)"
            )
            self._fast = False
            self.transport.abort()
        return True

    def _fail_invalid_text(self, exc: UnicodeDecodeError) -> None:
        """Fail the connection as RFC 6455 8.1 says: close code 1007 (invalid frame data)."""
        self._violation = f"invalid UTF-8 in a text frame ({exc.reason} at byte {exc.start})"
        self._fast = False
        self.set_connection_exc(exc)
        self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")

    def _fail(self, code: CloseCode, reason: str) -> None:
        """Send a close frame with ``code`` (if still open), and abort the connection if the
        server has not closed it ``close_timeout`` later."""
        if self.protocol.state is OPEN:
            self.protocol.fail(code, reason)
            try:
                self.send_data()
            except Exception as exc:  # the server may be gone already
                self.set_connection_exc(exc)
        self._watch_close()

    def start_keepalive(self) -> None:
        """Keepalive pings in step with the loop's other connections
        (:mod:`loadsvc.users.keepalive`), not from a task of this connection's own."""
        # websockets starts it when connect() resumes after the handshake, even if the
        # connection was lost in between (a backend dying mid-recovery).
        if not self.connection_lost_waiter.done():
            self._keepalive.add(self)

    def keepalive_ping(self, payload: bytes) -> bool:
        """Send a keepalive ping (:class:`loadsvc.users.keepalive.Pinged`)."""
        if self.protocol.state is not OPEN:
            return False
        self.protocol.send_ping(payload)
        self.send_data()
        return True

    def keepalive_timed_out(self) -> None:
        """No pong in time: fail with 1011, as websockets' own keepalive does."""
        self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def _to_websockets(self, data: bytes) -> None:
        """Let websockets parse ``data``; if it failed the connection, see that it ends."""
        super().data_received(data)
        if self.protocol.state is not OPEN:
            self._watch_close()

    def _watch_close(self) -> None:
        """Abort the connection if the server has not closed it ``close_timeout`` from now.

        websockets, as a client, waits for the server to close TCP after a failure, and
        enforces its close timeout only inside its own calls (recv, close), which a
        streaming user is not in.
        """
        if self._abort_timer is None and self.close_timeout is not None:
            self._abort_timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    @property
    def violation(self) -> str | None:
        """How the server broke the WebSocket protocol, if it did (None otherwise)."""
        if self._violation is not None:
            return self._violation
        # The parser's own failures, or recv() finding invalid UTF-8 (the reconnect storm).
        for exc in (self.protocol.parser_exc, self.connection_exc):
            if isinstance(exc, ProtocolError | PayloadTooBig | UnicodeDecodeError):
                return f"{type(exc).__name__}: {exc}"
        return None

    def _hand_over_partial(self) -> None:
        """Give websockets a partial frame we hold, so that it sees the stream as it ended."""
        if self._partial:
            partial, self._partial = self._partial, b""
            self._fast = False
            self._to_websockets(partial)

    def process_event(self, event: Event) -> None:
        """Data frames go to ``on_frame`` when set (fragments joined); the rest as usual."""
        if isinstance(event, Frame) and event.opcode is Opcode.PONG:
            self._keepalive.pong(self, bytes(event.data))
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
            self._deliver(event.opcode is Opcode.TEXT, event.data)
            return
        if self._fragments is None:
            self._fragments = []
            self._fragmented_text = event.opcode is Opcode.TEXT
        self._fragments.append(event.data)
        if event.fin:
            message, self._fragments = b"".join(self._fragments), None
            self._deliver(self._fragmented_text, message)

    def _deliver(self, is_text: bool, data: BytesLike) -> None:
        hook = self.on_frame
        assert hook is not None
        if self._violation is not None:
            return  # the connection is failing: frames parsed with the bad one are not judged
        if not is_text:
            hook(data, self.arrived_at)
            return
        try:
            text = str(data, "utf-8")
        except UnicodeDecodeError as exc:
            self._fail_invalid_text(exc)
            return
        hook(text, self.arrived_at)


class stamped_connect(connect):  # lower case, as the websockets class it stands for
    """websockets' ``connect`` over a kernel-stamped transport: ws://, and wss:// (TLS decrypted
    above the stamped socket, :mod:`loadsvc.users.stamped_tls`), without a proxy.

    Anything else (a proxy, a socket, Unix path or local address given, the kernel clock
    off or unsupported) connects as websockets does, timed by the loop's clock.
    """

    async def open_tcp_connection(self) -> ClientConnection:
        """Open the TCP (or TLS) connection: stamped when the URI and options allow it."""
        kwargs = self.create_connection_kwargs
        proxy = get_proxy(self.ws_uri) if self.proxy is True else self.proxy
        uri = self.ws_uri
        tls = kwargs.get("ssl", True) if uri.secure else None
        if (
            proxy is not None
            or not kernel_clock_enabled()
            or (uri.secure and tls is None)  # websockets says why that cannot be
            or (not uri.secure and kwargs.get("ssl"))
            or any(kwargs.get(k) for k in _UNSTAMPED_OPTIONS)
        ):
            return await super().open_tcp_connection()
        _, connection = await open_connection(
            lambda: self.factory(uri),
            uri.host,
            uri.port,
            ssl=tls,
            server_hostname=kwargs.get("server_hostname", uri.host) if tls else None,
        )
        return connection


# Connection options only the loop's own transports take.
_UNSTAMPED_OPTIONS = ("sock", "unix", "local_addr", "ssl_handshake_timeout", "ssl_shutdown_timeout")
