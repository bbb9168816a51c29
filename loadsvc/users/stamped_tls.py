"""TLS over a kernel-stamped socket: arrival times from the kernel for https:// and wss:// too.

The loop's own TLS transport reads the socket itself, so the kernel's receive
stamp never reaches the client: TLS endpoints used to be timed by the loop's
clock, and a busy generator shifted their latencies. Here the ciphertext is read
by a :class:`~loadsvc.users.arrival.StampedTransport` (``recvmsg`` with the
kernel's stamp of each read) and decrypted by an ``ssl.SSLObject`` over two
``ssl.MemoryBIO``s, as asyncio's own TLS does, so the plaintext of a read is handed
to the protocol with that read's stamp: the arrival of the segment that completed
its records (a frame's time is its last byte's arrival, as on plain TCP).

Certificate verification, SNI and the hostname check are the ``SSLContext``'s, the
same as with the loop's transport: a handshake that fails raises its
``ssl.SSLError`` from :func:`open_stamped_tls` and the connection is closed.

Example (what :func:`loadsvc.users.connect.open_connection` does for ``ssl=``)::

    transport, protocol = await open_stamped_tls(loop, MyProtocol, "localhost", 443,
                                                 ssl.create_default_context())
    # in MyProtocol.data_received: transport.arrived is the kernel's stamp of the bytes
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

from loadsvc.users.arrival import READ_SIZE, KernelTimedTransport, StampedTransport
from loadsvc.users.connect import open_stamped

__all__ = ["CLOSE_TIMEOUT_S", "HANDSHAKE_TIMEOUT_S", "StampedTLSTransport", "open_stamped_tls"]

HANDSHAKE_TIMEOUT_S = 60.0  # asyncio's default ssl_handshake_timeout
# How long a closed connection may wait for its peer to read what is still buffered (our
# close_notify last): asyncio's TLS transport waits ssl_shutdown_timeout, 30 s, for the same.
CLOSE_TIMEOUT_S = 10.0
_P = TypeVar("_P", bound=asyncio.BaseProtocol)


class _Ciphertext(asyncio.Protocol):
    """The stamped socket's protocol: hands every event to the TLS transport above it."""

    def __init__(self) -> None:
        self.tls: StampedTLSTransport | None = None

    def data_received(self, data: bytes) -> None:
        """Ciphertext, read with a stamp."""
        if self.tls is not None:
            self.tls._feed(data)

    def eof_received(self) -> bool | None:
        """The peer closed TCP."""
        if self.tls is not None:
            self.tls._eof()
        return None  # the stamped transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        """The socket is closed."""
        tls, self.tls = self.tls, None  # no cycle left behind
        if tls is not None:
            tls._lost(exc)

    def pause_writing(self) -> None:
        """The socket's write buffer is full: the protocol above must stop writing."""
        if self.tls is not None:
            self.tls.get_protocol().pause_writing()

    def resume_writing(self) -> None:
        """The socket's write buffer drained."""
        if self.tls is not None:
            self.tls.get_protocol().resume_writing()


class StampedTLSTransport(KernelTimedTransport):
    """A TLS client transport whose plaintext carries the kernel's stamp of its ciphertext.

    ``arrived`` is the wall-clock arrival (CLOCK_REALTIME) of the read whose
    ciphertext completed the records just handed to ``data_received``; it is set
    right before that call. ``unstamped_reads`` counts the socket's reads that
    came without a stamp (timed by ``time.time()`` instead). Writes are encrypted
    and go out at once; TLS has no half-close, so ``can_write_eof`` is False.
    Closing (and aborting, when no record is cut) says close_notify before the TCP
    close, so the server can tell our end from a truncation.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        raw: StampedTransport,
        context: ssl.SSLContext,
        server_hostname: str | None,
    ) -> None:
        super().__init__(extra=None)
        self._loop = loop
        self._raw = raw
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        # server_hostname None: no SNI and no hostname check (a context that checks
        # hostnames refuses that, as it does with asyncio's transport).
        self._sslobj = context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )
        self._handshake: asyncio.Future[None] = loop.create_future()
        self._app: asyncio.Protocol = _NOT_YET
        # What happened between the handshake and start(): handed over in order by start().
        self._early: list[tuple[bytes, float]] = []
        self._early_eof = False
        self._early_lost: tuple[Exception | None] | None = None
        self._error: Exception | None = None  # a TLS failure after the handshake
        self._closing = False
        self._raw_lost = False
        self._close_timer: asyncio.TimerHandle | None = None
        self.close_timeout_s = CLOSE_TIMEOUT_S
        self._eof_told = False
        self.arrived = 0.0
        self.unstamped_reads = 0

    # -- the handshake -----------------------------------------------------------

    async def handshake(self, timeout_s: float = HANDSHAKE_TIMEOUT_S) -> None:
        """Complete the TLS handshake; raises its ``ssl.SSLError`` (or a timeout, a reset)."""
        self._advance_handshake()
        async with asyncio.timeout(timeout_s):
            await asyncio.shield(self._handshake)

    def _advance_handshake(self) -> None:
        try:
            self._sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._flush()  # the alert that tells the server why
            self._fail_handshake(exc)
            self._raw.close()
            return
        self._flush()
        if not self._handshake.done():
            self._handshake.set_result(None)

    def _fail_handshake(self, exc: BaseException) -> None:
        # Its traceback would hold this frame, which holds this transport, which holds the
        # future that holds the exception: a cycle per failed handshake (a wrong CA, every
        # retry) for the cyclic collector (issue 20). The type and message are what is read.
        exc.__traceback__ = None
        if not self._handshake.done():
            self._handshake.set_exception(exc)

    def start(self, protocol: asyncio.Protocol) -> None:
        """Hand the connection to ``protocol``: what came early first, in order, then live."""
        self._app = protocol
        protocol.connection_made(self)
        early, self._early = self._early, []
        for data, arrived in early:
            self.arrived = arrived
            protocol.data_received(data)
        if self._early_eof:
            self._eof()
        if self._early_lost is not None:
            self._lost(self._early_lost[0])

    # -- reading -------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """Decrypt what the socket read; the records it completed go up with its stamp."""
        self.unstamped_reads = self._raw.unstamped_reads
        self._incoming.write(data)
        if not self._handshake.done():
            self._advance_handshake()
            if not self._handshake.done() or self._handshake.exception() is not None:
                return
        chunks: list[bytes] = []
        ended = False
        read, incoming, sslobj = self._sslobj.read, self._incoming, self._sslobj
        try:
            while True:
                chunk = read(READ_SIZE)
                if not chunk:  # the server's close_notify: the end of its data
                    ended = True
                    break
                chunks.append(chunk)
                # Nothing left to decrypt: stop without the SSLWantReadError another read
                # would raise (an exception per read is a measurable part of its cost).
                if not incoming.pending and not sslobj.pending():
                    break
        except ssl.SSLWantReadError:
            pass  # the rest of a record is still on its way
        except ssl.SSLZeroReturnError:
            ended = True
        except ssl.SSLError as exc:
            self._flush()
            self._error = exc  # what the protocol's connection_lost is told
            self._raw.abort()
            return
        self._flush()  # a read may answer the server (a key update)
        if chunks:
            plain = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if self._app is _NOT_YET:
                self._early.append((plain, self._raw.arrived))
            elif self._app is not _GONE:
                self.arrived = self._raw.arrived
                self._app.data_received(plain)
        if ended:
            self._eof()

    def _eof(self) -> None:
        """The server's data ended (close_notify, or TCP closed): the protocol hears it once."""
        if self._app is _NOT_YET:
            self._early_eof = True
            return
        if self._eof_told or self._app is _GONE:
            return
        self._eof_told = True
        self._app.eof_received()  # TLS has no half-close: the transport closes whatever it says
        self.close()

    def _lost(self, exc: Exception | None) -> None:
        """The socket closed: a handshake waiting fails; the protocol is told once."""
        self._raw_lost = True
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if not self._handshake.done():
            self._fail_handshake(
                exc or ConnectionResetError("the connection closed during the TLS handshake")
            )
            return
        if self._app is _NOT_YET:
            self._early_lost = (exc,)
            return
        app, self._app = self._app, _GONE  # no cycle kept: the protocol holds this transport
        if app is not _GONE:
            app.connection_lost(exc or self._error)
            self._error = None

    def pause_reading(self) -> None:
        """Stop reading the socket until :meth:`resume_reading`."""
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        """Read the socket again."""
        self._raw.resume_reading()

    def is_reading(self) -> bool:
        """Whether the socket is being read."""
        return self._raw.is_reading()

    # -- writing -------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and send it."""
        if self._closing or not data:
            return
        view = memoryview(data).cast("B")
        while view:
            # Not view[write(view):]: mypyc evaluates a call in a slice bound twice.
            written = self._sslobj.write(view)
            view = view[written:]
        self._flush()

    def _flush(self) -> None:
        if self._outgoing.pending:
            self._raw.write(self._outgoing.read())

    def can_write_eof(self) -> bool:
        """TLS cannot half-close."""
        return False

    def write_eof(self) -> None:
        """Not possible over TLS (as asyncio's TLS transport)."""
        raise NotImplementedError("TLS does not support half-closing")

    def get_write_buffer_size(self) -> int:
        """Ciphertext waiting to be sent."""
        return self._raw.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """(low, high) water marks of the socket's write buffer."""
        return self._raw.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Water marks of the socket's write buffer."""
        self._raw.set_write_buffer_limits(high, low)

    # -- closing -------------------------------------------------------------------

    def is_closing(self) -> bool:
        """Whether the transport is closing or closed."""
        return self._closing or self._raw.is_closing()

    def close(self) -> None:
        """Say close_notify, then close the socket once what is written is sent.

        The peer's close_notify is not awaited (the socket closes anyway), and a peer
        that does not read what is still buffered holds the socket at most
        ``close_timeout_s``: then it is aborted.
        """
        if self._closing:
            return
        self._closing = True
        self._say_close_notify()
        self._raw.close()
        if not self._raw_lost:
            self._close_timer = self._loop.call_later(self.close_timeout_s, self._raw.abort)

    def abort(self) -> None:
        """Close at once, dropping unsent data; close_notify first when the records are whole.

        websockets aborts a client whose server has not closed TCP ``close_timeout``
        after the closing handshake: our TLS ended cleanly all the same, and a server
        that waits for the client to close should hear so. Nothing waiting in the
        socket's buffer means no record was cut: the alert goes out at once, if the
        socket takes it (else it is dropped with the rest, as before).
        """
        if not self._closing and not self._raw.get_write_buffer_size():
            self._say_close_notify()
        self._closing = True
        self._raw.abort()

    def _say_close_notify(self) -> None:
        """Write our close_notify (``SSLObject.unwrap``), if the TLS session is still sound."""
        if self._raw.is_closing() or self._error is not None:
            return
        if not self._handshake.done() or self._handshake.exception() is not None:
            return
        # unwrap() writes the alert, then wants the peer's (SSLWantReadError): not awaited.
        with contextlib.suppress(ssl.SSLError):
            self._sslobj.unwrap()
        self._flush()

    # -- the rest of the transport interface ----------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """TLS details (``ssl_object``, ``peercert``, ``cipher``...) and the socket's."""
        if name == "ssl_object":
            return self._sslobj
        if name == "sslcontext":
            return self._sslobj.context
        if name == "peercert":
            return self._sslobj.getpeercert()
        if name == "cipher":
            return self._sslobj.cipher()
        if name == "compression":
            return self._sslobj.compression()
        return self._raw.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand the stream to another protocol."""
        assert isinstance(protocol, asyncio.Protocol)
        self._app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The current protocol."""
        return self._app


_NOT_YET = asyncio.Protocol()  # the protocol, until start()
_GONE = asyncio.Protocol()  # the protocol, after connection_lost


async def open_stamped_tls(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], _P],
    host: str,
    port: int,
    context: ssl.SSLContext | bool,
    server_hostname: str | None = None,
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
) -> tuple[StampedTLSTransport, _P]:
    """Connect to ``host:port`` over TLS with kernel-stamped reads; the handshake done.

    ``context`` True means a default verifying context, as asyncio's ``ssl=True`` does.
    ``server_hostname`` (SNI and the name the certificate must carry) defaults to
    ``host``, as asyncio's ``create_connection`` does; ``""`` sends none.
    """
    if not isinstance(context, ssl.SSLContext):
        context = ssl.create_default_context()
    raw, cipher = await open_stamped(loop, _Ciphertext, host, port)
    name = host if server_hostname is None else server_hostname or None
    tls = StampedTLSTransport(loop, raw, context, name)
    cipher.tls = tls
    try:
        await tls.handshake(handshake_timeout_s)
    except BaseException as exc:  # a failed handshake, a timeout, a cancel: no socket leaks
        cipher.tls = None
        raw.abort()
        # No cycle through the frames of the way up (they hold the transport, which holds
        # the failed future, which holds the exception): raised from here, without them.
        del tls, cipher, raw
        raise exc.with_traceback(None) from exc.__cause__
    protocol = factory()
    assert isinstance(protocol, asyncio.Protocol)
    tls.start(protocol)
    return tls, protocol
