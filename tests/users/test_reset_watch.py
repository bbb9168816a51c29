"""A reset that arrives behind unread data ends the stamped connection on both loops.

uvloop's ``add_reader`` reads the data and then drops the reset (libuv stops polling
the socket): :mod:`loadsvc.users.resetwatch` finds it on the idle socket. A real
server on 127.0.0.1 writes, then resets (``SO_LINGER`` 0) before the client's loop
has read anything, so the data and the reset wait in the socket together.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest

from loadsvc.users import arrival, readturns
from loadsvc.users.connect import open_stamped
from loadsvc.users.resetwatch import IDLE_S, ResetWatch
from tests.support.loops import Run
from tests.support.timing import scaled, wait_for_async

needs_stamps = pytest.mark.skipif(not arrival.SUPPORTED, reason="the kernel does not stamp reads")


class Recorder(asyncio.Protocol):
    """What the transport told its protocol."""

    def __init__(self) -> None:
        self.data = b""
        self.lost: list[Exception | None] = []

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


@needs_stamps
@pytest.mark.parametrize("budget", [readturns.BUDGET_S, None], ids=["budget", "no budget"])
def test_data_then_a_reset_ends_the_connection(run: Run, budget: float | None) -> None:
    """The data is delivered, then the reset ends the connection as ConnectionResetError
    within a few seconds (was: never, on uvloop, until a write failed); a second connection
    that stays open and silent is asked and left open."""
    readturns.set_budget(budget)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        with socket.create_server(("127.0.0.1", 0)) as server:
            port = server.getsockname()[1]
            transport, reset = await open_stamped(loop, Recorder, "127.0.0.1", port)
            peer, _ = server.accept()
            quiet_transport, quiet = await open_stamped(loop, Recorder, "127.0.0.1", port)
            quiet_peer, _ = server.accept()
            with peer, quiet_peer:
                await asyncio.sleep(0.05)  # both connected and polled, nothing to read yet
                # Written and reset in one go, with the loop blocked: the client's first
                # report of the socket finds the data and the reset both waiting.
                peer.sendall(b"x" * 2000)
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                peer.close()
                time.sleep(0.05)
                await wait_for_async(lambda: bool(reset.lost), scaled(4 + 2 * IDLE_S), "reset")
                assert reset.data == b"x" * 2000
                assert isinstance(reset.lost[0], ConnectionResetError)
                watch = ResetWatch.of(loop)
                if type(loop).__module__.startswith("uvloop"):
                    assert watch is not None and watch.found == 1
                    await wait_for_async(lambda: watch.asked >= 2, scaled(5), "the quiet one asked")
                else:
                    assert watch is None  # asyncio's loop reports the reset to the reader
                assert quiet.lost == [] and not quiet_transport.is_closing()
            quiet_transport.close()
            transport.close()

    try:
        run(body())
    finally:
        readturns.set_budget(readturns.BUDGET_S)
