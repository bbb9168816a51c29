"""Small raw asyncio TCP servers that misbehave on purpose.

A server is a *script*: a coroutine given each connection's reader and writer,
which answers (or fails to answer) as the test needs. It runs in the test's own
event loop (:func:`serving`, for in-process runs) or on a loop of its own in a
thread (:func:`serving_in_thread`, for runs of the ``loadsvc`` CLI as a child
process). Everything listens on 127.0.0.1, port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawServer:
    """A running script server: its base URL and how many connections it accepted."""

    url: str = ""
    connections: int = 0
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _scripts: set[asyncio.Task[Any]] = field(default_factory=set)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request head (loadsvc's REST client never sends a body)."""
    return await reader.readuntil(b"\r\n\r\n")


async def hold(reader: asyncio.StreamReader) -> None:
    """Keep the connection open, reading nothing more, until the client goes."""
    with contextlib.suppress(ConnectionError):
        await reader.read()


async def _start(script: Script, tls: ssl.SSLContext | None) -> tuple[asyncio.Server, RawServer]:
    state = RawServer()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        state._writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        state._scripts.add(task)
        # A client that went away mid-script is the normal end of a misbehaving exchange.
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            await script(reader, writer)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    scheme = "https" if tls else "http"
    host = "localhost" if tls else "127.0.0.1"  # the name a test certificate is issued to
    state.url = f"{scheme}://{host}:{server.sockets[0].getsockname()[1]}"
    return server, state


async def _stop(server: asyncio.Server, state: RawServer) -> None:
    server.close()
    for writer in state._writers:  # scripts that hold a connection open
        writer.transport.abort()
    if state._scripts:  # let each script see its connection go and end
        await asyncio.wait(state._scripts, timeout=5)
    await server.wait_closed()


@contextlib.asynccontextmanager
async def serving(script: Script, tls: ssl.SSLContext | None = None) -> AsyncIterator[RawServer]:
    """``script`` serving every connection, in the running event loop."""
    server, state = await _start(script, tls)
    try:
        yield state
    finally:
        await _stop(server, state)


@contextlib.contextmanager
def serving_in_thread(script: Script, tls: ssl.SSLContext | None = None) -> Iterator[RawServer]:
    """``script`` serving every connection on its own event loop in a thread."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: list[tuple[asyncio.Server, RawServer]] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        holder.append(loop.run_until_complete(_start(script, tls)))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("raw server did not start")
    server, state = holder[0]
    try:
        yield state
    finally:
        asyncio.run_coroutine_threadsafe(_stop(server, state), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
