"""Raw WebSocket servers that misbehave on purpose: a minimal handshake, then frames by hand.

Each server listens on 127.0.0.1 port 0 and runs a *behaviour* per connection
(``async def behaviour(conn: RawWsConnection) -> None``); it counts handshakes
and remembers the close codes clients sent, so a test can assert both sides.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import ssl
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection, serve

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONTINUATION, TEXT, BINARY, CLOSE, PING = 0x0, 0x1, 0x2, 0x8, 0x9


def encode_frame(payload: bytes, opcode: int = TEXT, *, masked: bool = False) -> bytes:
    """One final frame as a server writes it (``masked=True`` breaks RFC 6455 5.1)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 2**16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def market_frame(seq: int | None, published_at: float | None, **extra: object) -> bytes:
    """A frame of the market stream (json, not orjson: sequence numbers may exceed 64 bits)."""
    body: dict[str, object] = {"type": "market", "quotes": [], "prices": {}}
    if seq is not None:
        body["seq"] = seq
    if published_at is not None:
        body["published_at"] = published_at
    body.update(extra)
    return encode_frame(json.dumps(body).encode())


@dataclass
class RawWsConnection:
    """One accepted connection after the handshake: raw streams plus the server's records."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    index: int  # 1 for the first connection the server accepted
    server: RawWsServer

    async def send(self, *frames: bytes) -> None:
        """Write frames and wait until the kernel took them."""
        self.writer.write(b"".join(frames))
        await self.writer.drain()

    async def read_message(self) -> tuple[int, bytes] | None:
        """The client's next frame as (opcode, unmasked payload); None when it closed or left
        (a close is recorded as in ``read_client``)."""
        try:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            key = await self.reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ key[i % 4] for i, b in enumerate(await self.reader.readexactly(n)))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        if b0 & 0x0F == CLOSE:
            self.server.close_codes.append(
                struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
            )
            return None
        return b0 & 0x0F, data

    async def read_client(self) -> None:
        """Read the client's frames until it leaves, recording the close code it sends."""
        while await self.read_message() is not None:
            pass


Behaviour = Callable[[RawWsConnection], Awaitable[None]]


@dataclass
class RawWsServer:
    """A listening raw WS server; ``url`` is its http:// base (loadsvc makes it ws://)."""

    behaviour: Behaviour
    handshake: bool = True  # False: accept TCP and never answer the upgrade
    handshake_delay: float = 0.0  # seconds before answering the upgrade (a slow handshake)
    tls: bool = False
    handshakes: int = 0
    close_codes: list[int | None] = field(default_factory=list)
    port: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        """The base URL to give loadsvc as its target."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            if not self.handshake:
                await reader.read()  # until the client gives up
                return
            key = next(
                line.split(b":", 1)[1].strip()
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            if self.handshake_delay:
                await asyncio.sleep(self.handshake_delay)
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.handshakes += 1
            await self.behaviour(RawWsConnection(reader, writer, self.handshakes, self))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.transport.abort()
            self._tasks.discard(task)


@contextlib.asynccontextmanager
async def raw_ws_server(
    behaviour: Behaviour,
    *,
    handshake: bool = True,
    tls: ssl.SSLContext | None = None,
    handshake_delay: float = 0.0,
) -> AsyncIterator[RawWsServer]:
    """Serve ``behaviour`` on 127.0.0.1 port 0 (over TLS with ``tls``) for the block's duration;
    each upgrade is answered ``handshake_delay`` seconds late."""
    state = RawWsServer(behaviour, handshake, handshake_delay, tls is not None)
    server = await asyncio.start_server(state._serve, "127.0.0.1", 0, ssl=tls)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        for task in list(state._tasks):
            task.cancel()
        await asyncio.gather(*state._tasks, return_exceptions=True)
        await server.wait_closed()


def frames_then_hold(make: Callable[[RawWsConnection], list[bytes]]) -> Behaviour:
    """Send the frames ``make`` gives for each connection, then read until the client leaves."""

    async def behaviour(conn: RawWsConnection) -> None:
        await conn.send(*make(conn))
        await conn.read_client()

    return behaviour


def now() -> float:
    """Wall time in seconds, as a server stamps frames."""
    return time.time()


@contextlib.asynccontextmanager
async def publishing(
    frame: Callable[[int], dict[str, object]], every: float = 0.05
) -> AsyncIterator[str]:
    """A well-behaved WS server (``websockets``) that sends ``frame(n)`` as JSON every ``every``
    seconds to each client, n = 0, 1, ...; yields its base URL."""

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(Exception):  # a client that goes is the normal end
            for n in itertools.count():
                await ws.send(json.dumps(frame(n)))
                await asyncio.sleep(every)

    async with serve(handler, "127.0.0.1", 0) as server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
