"""A reset that arrives behind unread data ends the stamped connection on both loops.

uvloop's ``add_reader`` reads the data and then drops the reset (libuv stops polling
the socket): :mod:`loadsvc.users.resetwatch` finds it on the idle socket. A real
server on 127.0.0.1 writes, then resets (``SO_LINGER`` 0) before the client's loop
has read anything, so the data and the reset wait in the socket together.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
import time
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import uvloop

from loadsvc.users import arrival, readturns
from loadsvc.users.connect import open_stamped
from loadsvc.users.resetwatch import EVERY_S, IDLE_S, SLICE_S, ResetWatch
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


@dataclass(eq=False)  # hashed by identity, as transports are
class Idle:
    """A watched transport that has read nothing since ``arrived``; each ask costs ``cost_s``
    of busy CPU and notes the loop's time and the watch's slice."""

    log: list[tuple[int, int]]  # (passes finished, slice) at each ask of any transport
    watch: ResetWatch | None = None
    cost_s: float = 0.0
    arrived: float = 0.0
    asks: list[float] = field(default_factory=list)
    on_ask: Callable[[], None] | None = None

    def pending_error(self) -> int:
        end = time.perf_counter() + self.cost_s
        while time.perf_counter() < end:
            pass
        self.asks.append(asyncio.get_running_loop().time())
        assert self.watch is not None
        self.log.append((self.watch.passes, self.watch.slices))
        if self.on_ask is not None:
            self.on_ask()
        return 0

    def reset_found(self, exc: OSError) -> None:
        raise AssertionError(f"no reset here: {exc}")


def test_a_pass_is_sliced_across_turns_within_the_slice_budget(run: Run) -> None:
    """Asks costing 0.4 ms each: no turn asks more than the budget allows (SLICE_S, stopped at
    the first ask past it), every idle transport is asked once a pass, and transports closed
    while the pass is under way are not asked after."""
    cost_s = 0.4 * SLICE_S
    per_slice = int(SLICE_S / cost_s) + 1  # the budget is checked after each ask

    async def body() -> None:
        watch = ResetWatch(asyncio.get_running_loop())
        log: list[tuple[int, int]] = []
        victims: list[Idle] = []

        def close_the_victims() -> None:  # the pass's first ask: the victims close
            for v in victims:
                watch.discard(v)

        idle = [Idle(log, watch, cost_s, on_ask=close_the_victims) for _ in range(40)]
        # The pass's order is a set's: whichever is asked first (a victim too) closes them.
        victims += [Idle(log, watch, cost_s, on_ask=close_the_victims) for _ in range(10)]
        for t in idle + victims:
            watch.add(t)
        await wait_for_async(lambda: watch.passes >= 1, scaled(5), "the first pass")
        first_pass = Counter(s for p, s in log if p == 0)
        assert max(first_pass.values()) <= per_slice
        assert len(first_pass) >= len(idle) // per_slice  # spread over turns, not one
        victims_asked = sum(len(v.asks) for v in victims)
        assert victims_asked <= 1  # only if one was the pass's first ask
        assert all(t.asks for t in idle)
        assert sum(first_pass.values()) == len(idle) + victims_asked  # each idle one once
        for t in idle:
            watch.discard(t)
        await wait_for_async(lambda: watch.passes >= 2, scaled(5), "the last pass")

    run(body())


def test_every_idle_transport_is_asked_once_a_period_when_passes_take_many_turns(
    run: Run,
) -> None:
    """5,000 watched, a few of them reading: each idle one asked every pass, passes EVERY_S
    apart start to start (so within its period), the reading ones never asked."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        watch = ResetWatch(loop)
        log: list[tuple[int, int]] = []
        idle = [Idle(log, watch) for _ in range(5000)]
        reading = [Idle(log, watch, arrived=time.time() + 3600) for _ in range(10)]
        for t in idle + reading:
            watch.add(t)
        await wait_for_async(lambda: watch.passes >= 3, scaled(10), "three passes")
        assert watch.slices > watch.passes  # a pass took more than one turn
        assert all(len(t.asks) >= 3 for t in idle)
        assert all(not t.asks for t in reading)
        gaps = [b - a for t in idle for a, b in zip(t.asks, t.asks[1:], strict=False)]
        assert max(gaps) <= EVERY_S + scaled(0.5)
        for t in idle + reading:
            watch.discard(t)
        await wait_for_async(lambda: watch.passes >= 4, scaled(5), "the last pass")

    run(body())


def test_the_watch_of_a_loop_does_not_keep_the_loop() -> None:
    """One watch per loop, kept beside the loop (a weak key): it must not hold the loop
    itself, or every closed loop would stay in memory with it."""
    loop = uvloop.new_event_loop()
    assert ResetWatch.of(loop) is not None
    gone = weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert gone() is None
