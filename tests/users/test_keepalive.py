"""Keepalive pings in step (loadsvc.users.keepalive) against real servers that answer, stay
silent, answer with forged pongs, or answer late."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from loadsvc.users import keepalive
from loadsvc.users.keepalive import Keepalive
from loadsvc.users.wsconn import FrameHook, TimedConnection, stamped_connect
from tests.support.loops import Run
from tests.support.wsservers import PING, RawWsConnection, encode_frame, raw_ws_server

PONG = 0xA
INTERVAL_S = 0.2


@pytest.fixture(autouse=True)
def fast_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ticks of 50 ms, so that pings 0.2 s apart keep time within a quarter of that."""
    monkeypatch.setattr(keepalive, "TICK_S", 0.05)


def answering(
    pings: Counter[int], delay: float = 0.0
) -> Callable[[RawWsConnection], Awaitable[None]]:
    """Answer each ping with its payload (``delay`` seconds late), counting them by connection."""

    async def behaviour(conn: RawWsConnection) -> None:
        while (message := await conn.read_message()) is not None:
            opcode, payload = message
            if opcode == PING:
                pings[conn.index] += 1
                if delay:
                    await asyncio.sleep(delay)
                await conn.send(encode_frame(payload, PONG))

    return behaviour


async def open_ws(
    port: int, on_frame: FrameHook | None, timeout: float = INTERVAL_S
) -> TimedConnection:
    ws = await stamped_connect(
        f"ws://127.0.0.1:{port}",
        compression=None,
        ping_interval=INTERVAL_S,
        ping_timeout=timeout,
        create_connection=TimedConnection.factory(on_frame),
    )
    assert isinstance(ws, TimedConnection)
    return ws


@pytest.mark.parametrize("hook", [True, False], ids=["frames split here", "websockets parses"])
def test_a_server_that_answers_is_pinged_every_interval_and_kept(run: Run, hook: bool) -> None:
    """Pings every 0.2 s for 1.2 s, every one answered: the connection stays open, and no
    task of websockets' own keepalive runs."""
    pings: Counter[int] = Counter()

    async def body() -> None:
        loop_keepalive = Keepalive.of(asyncio.get_running_loop())
        async with raw_ws_server(answering(pings)) as server:
            # A timeout far over a loaded machine's answer time: the pings still go every 0.2 s.
            ws = await open_ws(server.port, (lambda data, at: None) if hook else None, timeout=1.0)
            await asyncio.sleep(1.2)
            assert ws.protocol.state.name == "OPEN"
            assert not [
                t
                for t in asyncio.all_tasks()
                if t.get_coro().__qualname__ == "Connection.keepalive"
            ]
            await ws.close()
        assert 3 <= pings[1] <= 7, pings  # ~6 intervals in 1.2 s, each within a tick
        assert loop_keepalive.pongs >= pings[1] - 1  # the last may be in flight at close
        assert loop_keepalive.timeouts == 0
        assert len(loop_keepalive) == 0  # closed: no longer pinged

    run(body())


async def closed_for_keepalive(
    behaviour: Callable[[RawWsConnection], Awaitable[None]], timeout: float = INTERVAL_S
) -> tuple[float, list[int | None], Keepalive]:
    """Connect to a server behaving so; wait for the connection to end. Returns how long it
    lived, the close codes the server received, and the loop's keepalive."""
    async with raw_ws_server(behaviour) as server:
        ws = await open_ws(server.port, lambda data, at: None, timeout)
        opened = time.monotonic()
        await asyncio.wait_for(ws.wait_closed(), 10)
        lived = time.monotonic() - opened
        await asyncio.sleep(0.05)  # the server has read the close frame
        return lived, server.close_codes, Keepalive.of(asyncio.get_running_loop())


def test_a_server_that_never_answers_is_failed_with_1011(run: Run) -> None:
    """Pings read and never answered: the connection fails with 1011 once the first ping has
    gone unanswered for ping_timeout, not before."""

    async def body() -> None:
        async def silent(conn: RawWsConnection) -> None:
            await conn.read_client()

        lived, codes, loop_keepalive = await closed_for_keepalive(silent)
        assert codes == [1011]
        assert loop_keepalive.timeouts == 1
        assert lived >= 2 * INTERVAL_S - keepalive.TICK_S, lived

    run(body())


def test_forged_and_unsolicited_pongs_do_not_keep_a_connection_alive(run: Run) -> None:
    """A server that answers each ping with a pong of other bytes and sends unsolicited pongs
    besides has not answered: it is failed with 1011 as a silent one is."""

    async def body() -> None:
        async def forging(conn: RawWsConnection) -> None:
            async def unsolicited() -> None:
                while True:
                    await conn.send(encode_frame(b"anything", PONG))
                    await asyncio.sleep(0.03)

            chatter = asyncio.create_task(unsolicited())
            try:
                while (message := await conn.read_message()) is not None:
                    opcode, payload = message
                    if opcode == PING:
                        await conn.send(encode_frame(bytes(b ^ 0xFF for b in payload), PONG))
            finally:
                chatter.cancel()

        lived, codes, loop_keepalive = await closed_for_keepalive(forging)
        assert codes == [1011]
        assert loop_keepalive.timeouts == 1
        assert loop_keepalive.pongs == 0
        assert lived >= 2 * INTERVAL_S - keepalive.TICK_S, lived

    run(body())


def test_a_pong_late_but_within_the_timeout_keeps_the_connection(run: Run) -> None:
    """Each pong 0.3 s after its ping, the timeout 1 s: open after 1.5 s. The next ping
    waits for the pong and goes when it comes, as websockets' does: not at the timeout."""
    pings: Counter[int] = Counter()

    async def body() -> None:
        async with raw_ws_server(answering(pings, delay=0.3)) as server:
            ws = await open_ws(server.port, lambda data, at: None, timeout=1.0)
            await asyncio.sleep(1.5)
            assert ws.protocol.state.name == "OPEN"
            await ws.close()
        assert Keepalive.of(asyncio.get_running_loop()).timeouts == 0
        # Pings 0.3 s apart from 0.2 s: 4 or 5; every 1 s (at the timeout) would be 1 or 2.
        assert 3 <= pings[1] <= 6, pings

    run(body())


def test_connections_due_together_are_pinged_in_slices(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 connections opened at once are due in the same tick: with no time for a second
    ping in a turn, each turn pings one, and every one is pinged and answered."""
    monkeypatch.setattr(keepalive, "SLICE_S", 0.0)
    pings: Counter[int] = Counter()
    n = 100

    async def body() -> None:
        loop_keepalive = Keepalive.of(asyncio.get_running_loop())
        async with raw_ws_server(answering(pings)) as server:
            conns = await asyncio.gather(
                *(open_ws(server.port, lambda data, at: None, timeout=1.0) for _ in range(n))
            )
            await asyncio.sleep(3 * INTERVAL_S)
            assert all(ws.protocol.state.name == "OPEN" for ws in conns)
            await asyncio.gather(*(ws.close() for ws in conns))
        assert len(pings) == n and min(pings.values()) >= 1, pings
        assert loop_keepalive.slices >= loop_keepalive.pings >= n
        assert loop_keepalive.timeouts == 0

    run(body())


def test_the_keepalive_of_a_loop_does_not_keep_the_loop() -> None:
    """One keepalive per loop, kept beside the loop (a weak key): it must not hold the loop
    itself, or every closed loop would stay in memory with it."""
    loop = asyncio.new_event_loop()
    Keepalive.of(loop)
    gone = weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert gone() is None
