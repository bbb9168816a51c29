"""A lean HTTP/1.1 client for REST users: one keep-alive connection per user, one request at a time.

A virtual user sends the same few requests again and again, so each request's
bytes are built once (:func:`request_bytes`) and a response is read with a few
bytes operations: the status line, ``Content-Length`` or chunked framing,
``Connection`` and ``Content-Encoding``. aiohttp's ``ClientSession`` builds a
request object, URL, header multidicts, a timer and a cookie pass per request;
on a generator that is most of its CPU (see bench/results.md).

Supported: GET/HEAD/DELETE/... without a request body, http and https, keep-alive
with one retry on a connection the server closed while it was idle, chunked and
until-close bodies, interim 1xx responses. Not supported (not needed by the
users): request bodies, pipelining, proxies, cookies, redirects (never followed).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple, cast
from urllib.parse import urlsplit

_MAX_HEAD = 64 * 1024  # bytes of status line and headers we accept before giving up
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_NO_BODY_STATUS = frozenset({204, 304})


class ProtocolError(ConnectionError):
    """The server's answer is not HTTP/1.x that this client can read."""


@dataclass(frozen=True)
class Origin:
    """Where a user's requests go: host, port, and TLS if https."""

    host: str
    port: int
    host_header: str
    ssl: ssl.SSLContext | None = field(default=None, compare=False)

    @classmethod
    def from_url(cls, url: str) -> Origin:
        """The origin of an http:// or https:// URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host_header = parts.netloc.rpartition("@")[2]
        return cls(parts.hostname, port, host_header, _tls_context() if tls else None)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every user (each loads the CA store, which is slow)."""
    return ssl.create_default_context()


def request_bytes(
    method: str, url: str, origin: Origin, headers: tuple[tuple[str, str], ...]
) -> bytes:
    """The complete request for ``method url``: built once, sent as is every time."""
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
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def decode_body(body: bytes, encoding: bytes) -> bytes:
    """The body without its ``Content-Encoding`` (gzip or deflate); ValueError otherwise."""
    if not encoding or encoding == b"identity":
        return body
    try:
        if encoding in (b"gzip", b"x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if encoding == b"deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:  # raw deflate, as some servers send it
                return zlib.decompress(body, -zlib.MAX_WBITS)
    except zlib.error as exc:
        raise ValueError(f"bad {encoding.decode('latin-1')} body") from exc
    raise ValueError(f"unsupported content-encoding {encoding.decode('latin-1')}")


class Response(NamedTuple):
    """A response: status, body (empty unless kept) and its content encoding."""

    status: int
    body: bytes
    encoding: bytes


# Body framing of the response being read.
_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE = range(4)


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection reading one response at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reusable = False
        self.got_bytes = False  # any byte of the current response arrived
        self._waiter: asyncio.Future[Response] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._head = bytearray()
        self._state = _HEAD
        self._remaining = 0
        self._keep = False
        self._no_body = False
        self._chunks: list[bytes] = []
        self._chunked = bytearray()
        self._status = 0
        self._encoding = b""
        self._keep_alive = True

    # -- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Connected: ready for a request."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.reusable = True

    def data_received(self, data: bytes) -> None:
        """Feed response bytes to the parser."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            # Bytes while no request is out: the server misbehaves; never reuse this.
            self.reusable = False
            if self.transport is not None:
                self.transport.abort()
            return
        self.got_bytes = True
        try:
            self._feed(data)
        except ProtocolError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        """The server closed its side: ends an until-close body, fails anything else."""
        self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            if self._state == _UNTIL_CLOSE:
                self._finish()
            else:
                self._fail(ConnectionResetError("server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Gone: the current request (if any) fails."""
        self.reusable = False
        self.transport = None
        if self._waiter is not None and not self._waiter.done():
            if self._state == _UNTIL_CLOSE and exc is None:
                self._finish()
            else:
                self._fail(exc or ConnectionResetError("connection lost"))

    # -- one exchange ----------------------------------------------------------

    def send(
        self, data: bytes, no_body: bool, keep_body: bool, deadline: float
    ) -> asyncio.Future[Response]:
        """Write a request; the future resolves with its response, or fails with
        TimeoutError at ``deadline`` (loop time)."""
        assert self.transport is not None and self._waiter is None
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        # One timer handle per request: asyncio.timeout() costs several times as much.
        self._timer = loop.call_at(deadline, self._expire)
        self._state = _HEAD
        self._no_body = no_body
        self._keep = keep_body
        self.got_bytes = False
        self.reusable = False  # until the response has been read completely
        self.transport.write(data)
        return self._waiter

    def done(self) -> None:
        """The caller has taken the response (or given up on it)."""
        self._waiter = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        self._fail(TimeoutError("no complete response in time"))

    def abort(self) -> None:
        """Drop the connection at once (a request was abandoned half-way)."""
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    # -- parsing ----------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if self._state == _HEAD:
            head = self._head
            head += data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                if len(head) > _MAX_HEAD:
                    raise ProtocolError("response head too large")
                return
            rest = bytes(head[end + 4 :])
            self._start_body(bytes(head[:end]))
            del head[:]
            if self._state == _HEAD:  # an interim 1xx response: parse what follows anew
                if rest:
                    self._feed(rest)
                return
            if self._state == _LENGTH and self._remaining == 0:
                if rest:
                    raise ProtocolError("bytes after the end of the response")
                self._finish()
                return
            data = rest
            if not data:
                return
        state = self._state
        if state == _LENGTH:
            n = len(data)
            if n > self._remaining:
                raise ProtocolError("bytes after the end of the response")
            if self._keep:
                self._chunks.append(data)
            self._remaining -= n
            if self._remaining == 0:
                self._finish()
        elif state == _CHUNKED:
            self._chunked += data
            self._read_chunks()
        elif state == _UNTIL_CLOSE and self._keep:
            self._chunks.append(data)

    def _start_body(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        if not version.startswith(b"HTTP/1.") or len(rest) < 3 or not rest[:3].isdigit():
            raise ProtocolError("not an HTTP/1.x response")
        status = int(rest[:3])
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError("unexpected protocol switch")
            return  # interim response; the real one follows
        length = -1
        chunked = False
        keep_alive = version == b"HTTP/1.1"
        encoding = b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise ProtocolError("bad content-length") from None
                if length < 0:
                    raise ProtocolError("bad content-length")
            elif name == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
            elif name == b"connection":
                token = value.strip().lower()
                if token == b"close":
                    keep_alive = False
                elif token == b"keep-alive":
                    keep_alive = True
            elif name == b"content-encoding":
                encoding = value.strip().lower()
        self._status = status
        self._encoding = encoding
        self._keep_alive = keep_alive
        self._chunks = []
        if self._no_body or status in _NO_BODY_STATUS:
            self._state, self._remaining = _LENGTH, 0
        elif chunked:
            self._state, self._remaining = _CHUNKED, 0
            self._chunked = bytearray()
        elif length >= 0:
            self._state, self._remaining = _LENGTH, length
        else:
            self._state = _UNTIL_CLOSE

    def _read_chunks(self) -> None:
        buf = self._chunked
        while True:
            if self._remaining > 0:  # inside a chunk's data (and its CRLF)
                if len(buf) < self._remaining:
                    return
                if buf[self._remaining - 2 : self._remaining] != b"\r\n":
                    raise ProtocolError("bad chunk")
                if self._keep:
                    self._chunks.append(bytes(buf[: self._remaining - 2]))
                del buf[: self._remaining]
                self._remaining = 0
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    raise ProtocolError("bad chunk size line")
                return
            if self._remaining < 0:  # in the trailer: an empty line ends the body
                del buf[: end + 2]
                if end == 0:
                    if buf:
                        raise ProtocolError("bytes after the end of the response")
                    self._finish()
                    return
                continue
            try:
                size = int(bytes(buf[:end]).split(b";", 1)[0], 16)
            except ValueError:
                raise ProtocolError("bad chunk size") from None
            del buf[: end + 2]
            self._remaining = size + 2 if size > 0 else -1

    def _finish(self) -> None:
        self.reusable = self._keep_alive and self._state != _UNTIL_CLOSE
        self._state = _HEAD
        body = b"".join(self._chunks) if self._keep else b""
        self._chunks = []
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, body, self._encoding))

    def _fail(self, exc: BaseException) -> None:
        self.reusable = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


class Http1Client:
    """One user's connection to an origin: opened on first use, kept alive, reopened as needed."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self._conn: _Connection | None = None

    async def request(
        self, data: bytes, method: str, keep_body: bool, timeout_s: float
    ) -> Response:
        """Send the prebuilt request ``data`` and read the response.

        Raises TimeoutError when it has not all come within ``timeout_s`` (connecting
        included), and OSError (``ConnectionError``, ``ProtocolError``, TLS errors)
        when no response could be read. A connection the server closed while idle is
        retried once on a new one, for idempotent methods. A request abandoned half-way
        (timeout, cancellation) drops its connection, since its response may still come.
        """
        deadline = asyncio.get_running_loop().time() + timeout_s
        conn = self._conn
        reused = conn is not None and conn.reusable
        if not reused:
            conn = await self._connect(deadline)
        assert conn is not None
        try:
            return await self._exchange(conn, data, method, keep_body, deadline)
        except ConnectionError:
            if not (reused and not conn.got_bytes and method in _IDEMPOTENT):
                raise
        # The kept-alive connection had gone stale: one retry on a fresh one.
        conn = await self._connect(deadline)
        return await self._exchange(conn, data, method, keep_body, deadline)

    async def _connect(self, deadline: float) -> _Connection:
        self.close()
        o = self.origin
        loop = asyncio.get_running_loop()
        async with asyncio.timeout_at(deadline):
            _, conn = await loop.create_connection(
                _Connection, o.host, o.port, ssl=o.ssl, server_hostname=o.host if o.ssl else None
            )
        self._conn = conn
        return conn

    async def _exchange(
        self, conn: _Connection, data: bytes, method: str, keep_body: bool, deadline: float
    ) -> Response:
        if conn.transport is None or conn.transport.is_closing():
            raise ConnectionResetError("connection closed")
        completed = False
        try:
            response = await conn.send(data, method == "HEAD", keep_body, deadline)
            completed = True
            return response
        finally:
            conn.done()
            if not completed:
                conn.abort()
                self._conn = None

    def close(self) -> None:
        """Close the connection, if any."""
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.close()
