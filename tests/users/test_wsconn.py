"""TimedConnection on the kernel-stamped transport (as the users connect) against a real websockets server."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import BytesLike

from loadsvc.users import arrival
from loadsvc.users.arrival import StampedTransport
from loadsvc.users.wsconn import TimedConnection, stamped_connect
from tests.support.loops import Run


def as_bytes(data: BytesLike | str) -> bytes:
    """A frame as on the wire: text frames reach on_frame as (validated) str."""
    return data.encode() if isinstance(data, str) else bytes(data)


MESSAGES: list[str | bytes] = [
    "small",
    "x" * 200,  # 16-bit length
    b"\x00binary\xff",
    "y" * 70_000,  # 64-bit length
    *[f"burst {i}" for i in range(50)],  # written back to back: many frames per read
]


async def received_by_client(server_side: Callable[[ServerConnection], Any]) -> list[bytes]:
    """What on_frame got, in order, from a server running ``server_side``; then closed."""
    got: list[bytes] = []
    times: list[float] = []

    def on_frame(data: BytesLike | str, arrived: float) -> None:
        got.append(as_bytes(data))
        times.append(arrived)

    async with serve(server_side, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        ws = await stamped_connect(
            f"ws://127.0.0.1:{port}",
            compression=None,
            create_connection=TimedConnection.factory(on_frame),
        )
        await asyncio.wait_for(ws.wait_closed(), 10)
    assert isinstance(ws.transport, StampedTransport) == arrival.SUPPORTED
    assert all(t > 0 for t in times)
    return got


def encoded(messages: list[str | bytes]) -> list[bytes]:
    return [m.encode() if isinstance(m, str) else m for m in messages]


def test_every_data_frame_reaches_on_frame_in_order(run: Run) -> None:
    """Text and binary frames of every length encoding, sent back to back, arrive whole."""

    async def server_side(ws: ServerConnection) -> None:
        await asyncio.sleep(0.05)  # after the handshake has been read on its own
        for m in MESSAGES:
            await ws.send(m)
        await asyncio.sleep(0.05)
        for m in MESSAGES:
            await ws.send(m)
        await ws.close()

    async def body() -> None:
        assert await received_by_client(server_side) == encoded(MESSAGES) * 2

    run(body())


def test_fragmented_messages_and_pings_in_between(run: Run) -> None:
    """A fragmented message is joined; pings between frames are answered; order is kept."""

    async def server_side(ws: ServerConnection) -> None:
        await asyncio.sleep(0.05)  # after the handshake has been read on its own
        await ws.send("before")
        pong = await ws.ping()
        await ws.send("between")
        await asyncio.wait_for(pong, 5)  # the client answered the ping
        await ws.send(["frag", "ment", "ed"])
        await asyncio.sleep(0.05)
        await ws.send("after")
        await ws.close()

    async def body() -> None:
        got = await received_by_client(server_side)
        assert got == [b"before", b"between", b"fragmented", b"after"]

    run(body())


def test_closing_handshake_after_frames(run: Run) -> None:
    """The server's close is handled by websockets: the connection ends cleanly."""
    codes: list[int | None] = []

    async def server_side(ws: ServerConnection) -> None:
        await ws.send("last")
        await ws.close(code=1001)

    async def body() -> None:
        got: list[bytes] = []
        async with serve(server_side, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            ws = await stamped_connect(
                f"ws://127.0.0.1:{port}",
                compression=None,
                create_connection=TimedConnection.factory(lambda d, _: got.append(as_bytes(d))),
            )
            await asyncio.wait_for(ws.wait_closed(), 10)
            codes.append(ws.close_code)
        assert got == [b"last"]

    run(body())
    assert codes == [1001]


def test_without_on_frame_recv_still_works(run: Run) -> None:
    """With no on_frame (the reconnect storm), frames are read with recv() as usual."""

    async def server_side(ws: ServerConnection) -> None:
        for m in MESSAGES:
            await ws.send(m)
        await ws.close()

    async def body() -> None:
        async with serve(server_side, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            ws = await stamped_connect(
                f"ws://127.0.0.1:{port}",
                compression=None,
                create_connection=TimedConnection.factory(None),
            )
            got = [await ws.recv(decode=False) for _ in MESSAGES]
            assert got == encoded(MESSAGES)
            await ws.close()

    run(body())


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """No cyclic collection inside: what is freed is freed by reference counting alone."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def server_closes(ws: ServerConnection) -> None:
    """A closing handshake started by the server."""
    await ws.send("last")
    await ws.close(code=1001)


async def server_vanishes(ws: ServerConnection) -> None:
    """The TCP connection dropped under the client, no closing handshake."""
    await ws.send("last")
    ws.transport.abort()


async def client_closes(ws: ServerConnection) -> None:
    """The server waits for the client's close."""
    await ws.send("last")
    await ws.wait_closed()


@pytest.mark.parametrize("server_side", [server_closes, server_vanishes, client_closes])
def test_an_ended_connection_leaves_no_cycle(
    run: Run, server_side: Callable[[ServerConnection], Any]
) -> None:
    """However a connection ends, its protocol is freed with it by reference counting: no
    parser left suspended holding the protocol in a cycle (which a frozen heap keeps until a
    sweep)."""

    protocols: list[weakref.ref[Any]] = []

    async def body() -> None:
        async with serve(server_side, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            ws = await stamped_connect(
                f"ws://127.0.0.1:{port}",
                compression=None,
                # No keepalive: a ping failing on the vanished server logs its traceback,
                # which pytest's log capture keeps (and the connection with it).
                ping_interval=None,
                create_connection=TimedConnection.factory(lambda d, _: None),
            )
            if server_side is client_closes:
                await ws.close()
            await asyncio.wait_for(ws.wait_closed(), 10)
            protocols.append(weakref.ref(ws.protocol))
            del ws
            await asyncio.sleep(0.05)  # the transport's last callbacks run

    with collector_off():
        run(body())
        alive = protocols[0]()
        assert alive is None, [type(r).__name__ for r in gc.get_referrers(alive)]
