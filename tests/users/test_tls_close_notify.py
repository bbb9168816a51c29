"""close_notify: a kernel-timed TLS connection that loadsvc closes ends its TLS before TCP.

The servers are blocking ``ssl`` sockets in threads that read each connection to
its end with ``suppress_ragged_eofs=False``: a clean end (``recv`` gives b"") is the
client's close_notify; ``SSLEOFError`` is TCP closed without it (a truncation, as far
as the server can tell).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry

from loadsvc.config import parse_config
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, RunResult, ScenarioRun
from loadsvc.users import Target, arrival
from loadsvc.users.connect import open_connection
from loadsvc.users.stamped_tls import StampedTLSTransport
from tests.support.loops import Run
from tests.support.timing import scaled, wait_for
from tests.support.tls import localhost_tls_pair
from tests.support.wsservers import CLOSE, encode_frame, market_frame

pytestmark = pytest.mark.skipif(not arrival.SUPPORTED, reason="the kernel does not stamp reads")

CLEAN, UNCLEAN = "close_notify", "unclean EOF"
Script = Callable[[ssl.SSLSocket], None]


class Ended(Exception):
    """A script read b"": the client's close_notify (``suppress_ragged_eofs`` is off)."""


@dataclass
class EndingsServer:
    """A blocking TLS server on 127.0.0.1: runs ``script`` per connection, then reads to the
    end and records how the client ended its TLS (``endings``, one per connection)."""

    script: Script
    tls: ssl.SSLContext
    endings: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        """The https:// base (the certificate names localhost)."""
        return f"https://localhost:{self.port}"

    def serve(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the listener closed: the test is over
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(scaled(30))
        with conn:
            try:
                tls = self.tls.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
                self.script(tls)
                while tls.recv(65536):
                    pass
                self.endings.append(CLEAN)
            except Ended:
                self.endings.append(CLEAN)
            except ssl.SSLEOFError:
                self.endings.append(UNCLEAN)
            except OSError as exc:
                self.endings.append(f"{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def endings_server(script: Script) -> Iterator[tuple[EndingsServer, ssl.SSLContext]]:
    """An :class:`EndingsServer` for the block (a fresh localhost certificate), and the
    client's TLS context that trusts it."""
    server_tls, client_tls = localhost_tls_pair()
    server = EndingsServer(script, server_tls)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        server.port = listener.getsockname()[1]
        threading.Thread(target=server.serve, args=(listener,), daemon=True).start()
        yield server, client_tls


@contextlib.contextmanager
def held_server() -> Iterator[tuple[EndingsServer, ssl.SSLContext, threading.Event]]:
    """An :func:`endings_server` whose connections read nothing until the event is set (set on
    the way out at the latest)."""
    release = threading.Event()

    def read_nothing(_tls: ssl.SSLSocket) -> None:
        release.wait(scaled(60))

    with endings_server(read_nothing) as (server, client_tls):
        try:
            yield server, client_tls, release
        finally:
            release.set()


async def buffered_connection(
    server: EndingsServer, client_tls: ssl.SSLContext
) -> tuple[StampedTLSTransport, Ends]:
    """A kernel-timed TLS connection to ``server`` with megabytes written that the server has
    not read: the kernel's buffers full and the transport's own holding the rest."""
    transport, protocol = await open_connection(Ends, "localhost", server.port, ssl=client_tls)
    assert isinstance(transport, StampedTLSTransport)
    for _ in range(200):  # until the kernel's buffers are full and ours holds the rest
        transport.write(b"x" * 1_000_000)
        if transport.get_write_buffer_size():
            break
    assert transport.get_write_buffer_size() > 0
    return transport, protocol


def read_head(tls: ssl.SSLSocket) -> bytes:
    """A request head (HTTP or the WS upgrade)."""
    head = b""
    while b"\r\n\r\n" not in head:
        data = tls.recv(4096)
        if not data:
            raise ConnectionResetError("the client left before its request")
        head += data
    return head


def answer_http(tls: ssl.SSLSocket) -> None:
    """Answer each request on the connection (keep-alive) until the client closes."""
    head = b""
    while True:
        while b"\r\n\r\n" not in head:
            data = tls.recv(4096)
            if not data:
                raise Ended  # the client's close_notify (a ragged EOF raises SSLEOFError)
            head += data
        _, head = head.split(b"\r\n\r\n", 1)
        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def ws_then_wait_for_the_client(tls: ssl.SSLSocket) -> None:
    """Upgrade, send market frames until the client's Close, answer it, then do not close:
    the server waits for the client to end (RFC 6455 lets either close TCP first)."""
    head = read_head(tls)
    key = next(
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    tls.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    tls.sendall(market_frame(1, time.time()))
    buf = b""
    while True:  # the client's frames (masked) until its Close
        while len(buf) < 6:
            data = tls.recv(4096)
            if not data:
                raise Ended
            buf += data
        opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
        offset = 6 if n < 126 else 8 if n == 126 else 14
        if n >= 126:
            while len(buf) < offset:
                buf += tls.recv(4096)
            n = struct.unpack("!H" if n == 126 else "!Q", buf[2 : offset - 4])[0]
        while len(buf) < offset + n:
            buf += tls.recv(4096)
        buf = buf[offset + n :]
        if opcode == CLOSE:
            tls.sendall(encode_frame(struct.pack("!H", 1000), CLOSE))
            return


def settled(server: EndingsServer, n: int) -> list[str]:
    """The server's record once ``n`` connections have ended."""
    return wait_for(lambda: server.endings if len(server.endings) >= n else None, 15, "endings")


REST = """
version: 1
scenarios:
  s:
    graceful_stop: 500ms
    shape: {kind: constant, users: 3, duration: 1s}
    users:
      - kind: rest
        pacing: 200ms
        timeout: 3s
        tasks:
          - {path: /x}
"""

WSS = """
version: 1
scenarios:
  s:
    graceful_stop: 3s
    shape: {kind: constant, users: 3, duration: 1s}
    users:
      - kind: ws_stream
        path: /ws/market
        backoff: {initial: 5s, max: 5s}
"""


async def run_scenario(
    text: str, server: EndingsServer, client_tls: ssl.SSLContext, m: Metrics
) -> RunResult:
    """Scenario ``s`` of ``text`` against ``server`` to its end."""
    spec = parse_config(text, "test.yaml").scenario("s")
    return await ScenarioRun(
        spec, Target(server.url, tls=client_tls), Recorder(m), RunOptions(tick_s=0.1)
    ).execute()


async def test_https_connections_closed_at_the_end_of_a_run_say_close_notify(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """A REST run's kept-alive connections, closed as the users end: every one a clean TLS end."""
    with endings_server(answer_http) as (server, client_tls):
        result = await run_scenario(REST, server, client_tls, metrics)
        (rest,) = result.endpoints
        assert rest.count > 0 and not rest.errors
        endings = await asyncio.to_thread(settled, server, 3)
    assert endings == [CLEAN] * 3


async def test_wss_connections_closed_at_the_end_of_a_run_say_close_notify(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """wss:// users closing at the end of a run against a server that answers the Close and
    waits for the client to end: the client's abort after its close timeout still says
    close_notify (before: a bare TCP close, a truncation to the server)."""
    with endings_server(ws_then_wait_for_the_client) as (server, client_tls):
        result = await run_scenario(WSS, server, client_tls, metrics)
        (ws,) = result.endpoints
        assert ws.count >= 3
        endings = await asyncio.to_thread(settled, server, 3)
    assert endings == [CLEAN] * 3


class Ends(asyncio.Protocol):
    """Notes when its connection is lost."""

    def __init__(self) -> None:
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


def test_a_peer_that_never_reads_cannot_hold_the_close(run: Run) -> None:
    """close() with megabytes the server never reads still buffered: the socket is aborted
    close_timeout_s later, not held for as long as the server likes."""

    with held_server() as (server, client_tls, _):

        async def body() -> None:
            transport, protocol = await buffered_connection(server, client_tls)
            transport.close_timeout_s = 0.5
            closed_at = time.monotonic()
            transport.close()
            async with asyncio.timeout(scaled(10)):
                await protocol.lost
            assert time.monotonic() - closed_at >= 0.4  # it waited for the buffer first

        run(body())


def test_an_abort_that_cuts_a_record_says_no_close_notify(run: Run) -> None:
    """abort() with ciphertext still buffered (a record cut short): no close_notify after it,
    so the server reads the truncation it is (an unclean EOF), not a clean end."""
    with held_server() as (server, client_tls, release):

        async def body() -> None:
            transport, protocol = await buffered_connection(server, client_tls)
            transport.abort()
            async with asyncio.timeout(scaled(10)):
                await protocol.lost
            release.set()
            endings = await asyncio.to_thread(settled, server, 1)
            assert endings == [UNCLEAN]

        run(body())
