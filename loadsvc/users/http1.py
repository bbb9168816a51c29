"""A lean HTTP/1.1 client for REST users: one keep-alive connection per user, one request at a time.

A virtual user sends the same few requests again and again, so each request's
bytes are built once (:func:`request_bytes`). Responses are parsed by llhttp
(through httptools), the parser of Node.js, as strict about framing as
aiohttp and h11: a negative or ``0x`` chunk size, ``Content-Length: +9``, a
duplicate length or a length beside chunked framing are protocol errors. Only
one leniency is allowed, as h11 allows it: a bare LF ending a head line.
aiohttp's ``ClientSession`` builds a request object, URL, header multidicts, a
timer and a cookie pass per request; on a generator that is most of its CPU
(see bench/results.md).

Everything a server sends is bounded: the head (64 KiB), the interim 1xx
responses before the real one (10), the body (``max_body``), and the framing
around it. A body is decompressed after its last byte has been timed, by
:mod:`loadsvc.users.http_body`, so a gzip bomb never inflates past its cap.

Supported: every method, with or without a request body (JSON, sized: never chunked),
http and https, keep-alive with one retry on a connection the server closed while it was
idle (idempotent methods only), chunked and until-close bodies. Not supported (not needed
by the users): pipelining, proxies, cookies, redirects (never followed).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import httptools

from loadsvc.config.spec import RestUserSpec
from loadsvc.users.arrival import ArrivalClock, age_of, clock_of
from loadsvc.users.connect import open_connection
from loadsvc.users.http_body import BodyTooLarge

_MAX_HEAD = 64 * 1024  # bytes of status lines and headers before the body
_MAX_FRAMING = 1024 * 1024  # chunk-size lines and trailers around a body
_MAX_INTERIM = 10  # 1xx responses before the real one
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_NO_BODY_STATUS = frozenset({204, 304})
# What a closed connection holds instead of its parser (which holds the connection's
# callbacks): a parser with no callbacks, never fed.
_NO_PARSER = httptools.HttpResponseParser(object())

DEFAULT_MAX_BODY = RestUserSpec.max_body


class ProtocolError(ConnectionError):
    """The server's answer is not well-formed HTTP/1.x."""


class _HeadRead(Exception):
    """Stops the parser after the head of a response to HEAD (llhttp cannot skip its body)."""


@dataclass(frozen=True)
class Origin:
    """Where a user's requests go: host, port, and the TLS context if https."""

    host: str
    port: int
    host_header: str
    ssl: SSLContext | None = field(default=None, compare=False)

    @classmethod
    def from_url(cls, url: str, tls: SSLContext | None = None) -> Origin:
        """The origin of an http:// or https:// URL; https uses ``tls`` (the run's one
        context), or a default verifying context built once for the process."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        host_header = parts.netloc.rpartition("@")[2]
        context = (tls or default_tls_context()) if https else None
        return cls(parts.hostname, port, host_header, context)


@functools.cache
def default_tls_context() -> SSLContext:
    """The verifying context of a run that has none of its own: built once (it loads the
    CA store, tens of milliseconds), never per connection."""
    return ssl.create_default_context()


# Methods whose request carries a body by nature: sent with ``Content-Length: 0`` when empty
# (some servers answer 411 to a POST without a length).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def request_bytes(
    method: str,
    url: str,
    origin: Origin,
    headers: tuple[tuple[str, str], ...],
    body: bytes | None = None,
    content_type: str = "application/json",
) -> bytes:
    """The complete request for ``method url`` (with ``body``, if any): built once, sent as
    is every time. ValueError when a header cannot be sent (names it, never its value)."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {origin.host_header}",
        "Accept: */*",
        "Accept-Encoding: gzip, deflate",
    ]
    for name, value in headers:
        if any(c in name + value for c in "\r\n\0") or not name or ":" in name:
            raise ValueError(f"header {name!r} cannot be sent")
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
    elif method in _BODY_METHODS:
        lines.append("Content-Length: 0")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        # A header value outside latin-1 (a templated value): say where, never what.
        raise ValueError("a header or the path has characters HTTP/1.1 cannot carry") from None
    return head + body if body is not None else head


class Response(NamedTuple):
    """A response: status, body (empty unless kept), its content encoding, when its
    last byte arrived (on the client's clock), which clock timed that arrival, and its
    ``Retry-After`` header as sent (empty when absent)."""

    status: int
    body: bytes
    encoding: bytes
    arrived: float
    arrival_clock: ArrivalClock = "loop"
    retry_after: bytes = b""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection reading one response at a time.

    Also the llhttp parser's callback object: httptools calls the ``on_*`` methods.
    """

    def __init__(
        self, clock: Callable[[], float], max_body: int, on_stray: Callable[[], None] | None = None
    ) -> None:
        self.transport: asyncio.Transport | None = None
        # Made by its loop (the protocol factory of a connect): asyncio.get_running_loop()
        # is a getpid() system call on Python 3.11, twice a request were it asked each time.
        self.loop = asyncio.get_running_loop()
        self._on_stray = on_stray  # told once when bytes come while no request is out
        self._stamps: asyncio.BaseTransport | None = None  # what timed the reads
        self._age = age_of(None)  # seconds since the bytes just read arrived
        self.reusable = False
        self.got_bytes = False  # any byte of the current response arrived
        self._clock = clock
        self._max_body = max_body
        self._parser = self._new_parser()
        self._waiter: asyncio.Future[Response] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when the armed timer fires (loop time)
        self._deadline = 0.0  # the current request's
        self._keep = False
        self._no_body = False
        self._chunks: list[bytes] = []
        self._status = 0
        self._encoding = b""
        self._retry_after = b""
        self._keep_alive = False
        self._framed = False  # a length or chunked framing header was seen
        self._until_close = False  # the body ends when the server closes
        self._head_done = False  # the final (non-1xx) head has been read
        self._interim = 0
        self._wire = 0  # bytes of this response so far
        self._body = 0  # of which body bytes
        self._response: Response | None = None  # read, not yet handed over

    def _new_parser(self) -> httptools.HttpResponseParser:
        parser = httptools.HttpResponseParser(self)
        parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
        return parser

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Connected: ready for a request."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self._stamps = transport
        self._age = age_of(transport)
        self.reusable = True

    def data_received(self, data: bytes) -> None:
        """Feed response bytes to the parser."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            # Bytes while no request is out: the server misbehaves; never reuse this.
            self.reusable = False
            if self.transport is not None:
                self.transport.abort()
                if self._on_stray is not None:
                    self._on_stray()
            return
        self.got_bytes = True
        self._wire += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadRead):
                self._parser = self._new_parser()  # the old one waits for a body
                self._deliver()
                return
            self._fail(cause if cause is not None else ProtocolError(str(exc)))
            return
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("unexpected protocol switch"))
            return
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"malformed response: {exc}"))
            return
        if self._response is not None:
            # Delivered only now: a byte after the end in this same read fails it instead.
            self._deliver()
        elif self._wire - self._body > (_MAX_FRAMING if self._head_done else _MAX_HEAD):
            self._fail(ProtocolError("response head or framing too large"))

    def eof_received(self) -> bool:
        """The server closed its side: ends an until-close body, fails anything else."""
        self._closed(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Gone: the current request (if any) fails, unless its body ends at close."""
        self.transport = None
        self._closed(exc)
        self._disarm()  # a closed connection is not kept alive by its timer
        # The parser holds this object's on_* methods: a cycle of ~16 objects per closed
        # connection (parser, callbacks, transport, socket) left to the cyclic collector,
        # 300 at once when a backend restart ends every poller's connection (issue 20).
        # Nothing is parsed after the connection is lost.
        self._parser = _NO_PARSER

    def _closed(self, exc: Exception | None) -> None:
        self.reusable = False
        if self._waiter is None or self._waiter.done():
            return
        if exc is None and self._head_done and self._until_close:
            self._finish()
            self._deliver()
        else:
            self._fail(exc or ConnectionResetError("server closed the connection"))

    # -- llhttp callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        """A response starts; one after the real one is a byte too many."""
        if self._head_done:
            raise ProtocolError("bytes after the end of the response")

    def on_header(self, name: bytes, value: bytes) -> None:
        """Keep the few headers the client acts on."""
        name = name.lower()
        if name == b"content-encoding":
            self._encoding = value.strip().lower()
        elif name == b"content-length":
            self._framed = True
            # llhttp has checked the digits; a body announced past the cap is not read.
            if int(value) > self._max_body:
                raise BodyTooLarge(f"body of {int(value)} bytes over {self._max_body}")
        elif name == b"transfer-encoding":
            self._framed = True
        elif name == b"retry-after":
            self._retry_after = value[:64].strip()  # a number or a date: short

    def on_headers_complete(self) -> None:
        """A head is read: an interim 1xx (bounded, skipped) or the response's."""
        parser = self._parser
        status = parser.get_status_code()
        if status < 200:
            if status == 101:
                raise ProtocolError("unexpected protocol switch")
            self._interim += 1
            if self._interim > _MAX_INTERIM:
                raise ProtocolError(f"more than {_MAX_INTERIM} interim responses")
            self._encoding, self._framed, self._retry_after = b"", False, b""
            return
        self._status = status
        self._keep_alive = parser.should_keep_alive()
        self._until_close = not (self._framed or self._no_body or status in _NO_BODY_STATUS)
        self._head_done = True
        if self._no_body:
            self._finish()
            raise _HeadRead

    def on_body(self, body: bytes) -> None:
        """Body bytes: counted against the cap, kept if asked."""
        self._body += len(body)
        if self._body > self._max_body:
            raise BodyTooLarge(f"body over {self._max_body} bytes")
        if self._keep:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        """The end of an interim response (nothing to do) or of the real one."""
        if self._head_done:
            self._finish()

    # -- one exchange ----------------------------------------------------------

    def send(
        self, data: bytes, no_body: bool, keep_body: bool, deadline: float
    ) -> asyncio.Future[Response]:
        """Write a request; the future resolves with its response, or fails with
        TimeoutError at ``deadline`` (loop time)."""
        assert self.transport is not None and self._waiter is None
        loop = self.loop
        self._waiter = loop.create_future()
        # One timer per connection, not one made and cancelled per request (asyncio.timeout()
        # costs several times as much again): armed at a request's deadline, it moves on to
        # the current request's when it fires (_expire), and drops when nothing is out.
        self._deadline = deadline
        if self._timer is None or deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(deadline, self._expire)
            self._timer_at = deadline
        self._no_body = no_body
        self._keep = keep_body
        self._chunks = []
        self._encoding = b""
        self._retry_after = b""
        self._framed = self._until_close = self._head_done = False
        self._interim = self._wire = self._body = 0
        self._response = None
        self.got_bytes = False
        self.reusable = False  # until the response has been read completely
        self.transport.write(data)
        return self._waiter

    def done(self) -> None:
        """The caller has taken the response (or given up on it); the timer stays armed for
        the next request (see :meth:`send`)."""
        self._waiter = None

    def _expire(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nothing out: the next request arms it again
        loop = self.loop
        if loop.time() < self._deadline:  # a later request than the one it was armed for
            self._timer = loop.call_at(self._deadline, self._expire)
            self._timer_at = self._deadline
            return
        self._fail(TimeoutError("no complete response in time"))

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abort(self) -> None:
        """Drop the connection at once (a request was abandoned half-way)."""
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def _finish(self) -> None:
        # The last byte (the kernel's stamp of it, where there is one): decoding and
        # validation come after.
        arrived = self._clock() - self._age()
        self.reusable = self._keep_alive and not self._until_close
        chunks = self._chunks
        body = (chunks[0] if len(chunks) == 1 else b"".join(chunks)) if self._keep else b""
        self._chunks = []
        self._response = Response(
            self._status, body, self._encoding, arrived, clock_of(self._stamps), self._retry_after
        )

    def _deliver(self) -> None:
        response, self._response = self._response, None
        waiter = self._waiter
        if response is not None and waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _fail(self, exc: BaseException) -> None:
        self.reusable = False
        self._response = None
        self._chunks = []  # at once: the parser's callbacks make this object a GC cycle
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


class Http1Client:
    """One user's connection to an origin: opened on first use, kept alive, reopened as needed.

    ``clock`` times the arrival of each response's last byte; ``max_body`` caps the
    body of a response as sent (BodyTooLarge past it). ``on_stray`` is told when
    bytes arrive after a response was complete, while no request is out (the
    connection is then dropped): a ``protocol_error`` the response itself could
    not show, since it was already delivered.
    """

    def __init__(
        self,
        origin: Origin,
        clock: Callable[[], float] = time.monotonic,
        max_body: int = DEFAULT_MAX_BODY,
        on_stray: Callable[[], None] | None = None,
    ) -> None:
        self.origin = origin
        self._conn: _Connection | None = None
        self._new_connection = functools.partial(_Connection, clock, max_body, on_stray)

    async def request(
        self, data: bytes, method: str, keep_body: bool, timeout_s: float
    ) -> Response:
        """Send the prebuilt request ``data`` and read the response.

        Raises TimeoutError when it has not all come within ``timeout_s`` (connecting
        included); BodyTooLarge past the body cap; ProtocolError when the answer is not
        well-formed HTTP; ssl.SSLError when TLS fails; other OSError (ConnectionError)
        when the connection is refused, reset or closed early. A connection the server
        closed while idle is retried once on a new one, for idempotent methods. A request
        abandoned half-way (timeout, cancellation) drops its connection, since its
        response may still come.
        """
        conn = self._conn
        reused = conn is not None and conn.reusable
        if reused:
            assert conn is not None
            deadline = conn.loop.time() + timeout_s
        else:
            deadline = asyncio.get_running_loop().time() + timeout_s
            conn = await self._connect(deadline)
        # The common case awaits the connection's future itself, not a coroutine around it:
        # each coroutine level costs a frame and a resumption per request (bench/results.md).
        try:
            response = await _start(conn, data, method, keep_body, deadline)
        except BaseException as exc:
            self._abandon(conn)
            if not (
                isinstance(exc, ConnectionError)
                and reused
                and not conn.got_bytes
                and method in _IDEMPOTENT
            ):
                raise
        else:
            conn.done()
            return response
        # The kept-alive connection had gone stale: one retry on a fresh one.
        conn = await self._connect(deadline)
        try:
            response = await _start(conn, data, method, keep_body, deadline)
        except BaseException:
            self._abandon(conn)
            raise
        conn.done()
        return response

    def _abandon(self, conn: _Connection) -> None:
        """A request that failed or was abandoned half-way: its connection is dropped, since
        its response may still come."""
        conn.done()
        conn.abort()
        self._conn = None

    async def _connect(self, deadline: float) -> _Connection:
        self.close()
        o = self.origin
        async with asyncio.timeout_at(deadline):
            _, conn = await open_connection(
                self._new_connection,
                o.host,
                o.port,
                ssl=o.ssl,
                server_hostname=o.host if o.ssl else None,
            )
        self._conn = conn
        return conn

    def close(self) -> None:
        """Close the connection, if any."""
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.close()


def _start(
    conn: _Connection, data: bytes, method: str, keep_body: bool, deadline: float
) -> asyncio.Future[Response]:
    """Send on ``conn``: the future of its response (ConnectionResetError if it is closed)."""
    transport = conn.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("connection closed")
    return conn.send(data, method == "HEAD", keep_body, deadline)
