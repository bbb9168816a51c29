"""Connection endings torn down in slices (loadsvc.users.endings), and the stamped transport
ending through them when its server vanishes."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from loadsvc.users.connect import open_stamped
from loadsvc.users.endings import SLICE_S, Endings
from tests.support.loops import Run
from tests.support.timing import wait_for_async


def _busy(seconds: float) -> None:
    """Hold the loop for ``seconds`` (the work of a costly teardown)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_slice_stops_at_its_budget_and_the_rest_run_in_later_turns_in_order(run: Run) -> None:
    """An ending that uses up a slice leaves the next for a later turn; all run, in order."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        endings = Endings.of(loop)
        ran: list[int] = []

        def end(i: int) -> None:
            ran.append(i)
            if i == 0:
                _busy(2 * SLICE_S)

        for i in range(3):
            endings.push(end, i)
        seen_this_turn: list[list[int]] = []
        loop.call_soon(lambda: seen_this_turn.append(list(ran)))  # after the first slice
        await wait_for_async(lambda: len(ran) == 3, 5.0, "every ending ran")
        assert seen_this_turn == [[0]]
        assert ran == [0, 1, 2]
        assert endings.slices >= 2
        assert len(endings) == 0

    run(body())


def test_an_ending_that_raises_is_reported_and_the_others_still_run(run: Run) -> None:
    """A failing teardown goes to the loop's exception handler; the queue goes on."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        ran: list[str] = []

        def fail(_: object) -> None:
            raise RuntimeError("broken teardown")

        Endings.of(loop).push(fail, None)
        Endings.of(loop).push(ran.append, "after")
        await wait_for_async(lambda: ran, 5.0, "the ending after the failing one ran")
        assert [c["message"] for c in reported] == ["error ending a connection"]
        assert str(reported[0]["exception"]) == "broken teardown"

    run(body())


def test_every_loop_has_its_own_queue() -> None:
    """Two loops' endings never mix (each loop tears down its own connections)."""
    loops = [asyncio.new_event_loop() for _ in range(2)]
    try:
        assert Endings.of(loops[0]) is Endings.of(loops[0])
        assert Endings.of(loops[0]) is not Endings.of(loops[1])
    finally:
        for loop in loops:
            loop.close()


class _Client(asyncio.Protocol):
    def __init__(self, lost: list[Exception | None]) -> None:
        self._lost = lost

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost.append(exc)


def test_connections_whose_server_vanishes_all_end_through_the_queue(run: Run) -> None:
    """Stamped connections aborted by their server at once all end, by the endings queue."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        accepted: list[asyncio.Transport] = []

        class _Server(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.append(cast(asyncio.Transport, transport))  # uvloop's: no subclass

        server = await loop.create_server(_Server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        lost: list[Exception | None] = []
        clients = [
            (await open_stamped(loop, lambda: _Client(lost), "127.0.0.1", port))[0]
            for _ in range(100)
        ]
        await wait_for_async(lambda: len(accepted) == 100, 10.0, "the server accepted all")
        slices_before = Endings.of(loop).slices
        for transport in accepted:  # the backend dies: every connection ends at once
            transport.abort()
        await wait_for_async(lambda: len(lost) == 100, 10.0, "every client saw its end")
        assert Endings.of(loop).slices > slices_before
        assert all(t.is_closing() and t.get_extra_info("socket").fileno() == -1 for t in clients)
        server.close()
        await server.wait_closed()

    run(body())
