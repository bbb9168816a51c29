"""Queued sockets taken off the loop's poll (loadsvc.users.readturns.set_unpoll_after), against real servers.

As in test_read_turns, the budget is zero (one stamped socket read a turn) and a
busy spinner makes each turn 3 ms, so a broadcast to every connection leaves most
of them queued for many turns, each woken every turn by the level-triggered poll
until it is read or taken off the poll. What is checked is that a socket off the
poll loses nothing (bytes, stamps, its end) and that its reader is registered
exactly when it should be.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from loadsvc.users import readturns
from loadsvc.users.arrival import StampedTransport, clock_of
from loadsvc.users.readturns import ReadTurns
from tests.support.loops import Run
from tests.support.timing import scaled, wait_for_async
from tests.users.test_read_turns import (
    CONNECTIONS,
    KERNEL_SLACK_S,
    Broadcaster,
    Reads,
    _broadcasting,
    needs_stamps,
    one_socket_a_turn,  # noqa: F401 (autouse: one stamped socket a turn, defaults restored)
)


def _stamped(protocols: list[Reads]) -> list[StampedTransport]:
    transports = [p.transport for p in protocols]
    assert all(isinstance(t, StampedTransport) for t in transports)
    return transports  # type: ignore[return-value]


def _off_poll(transports: list[StampedTransport]) -> list[StampedTransport]:
    """The transports queued and off the poll now."""
    return [t for t in transports if t._left and not t._polled]


def _end(server: Broadcaster, ports: set[int], how: str) -> None:
    """In the server's thread, end the connections whose client port is in ``ports``: a
    FIN after the data (``close``) or an RST (``reset``). Blocks the caller's loop until done."""

    async def run() -> None:
        for w in server.writers:
            if w.get_extra_info("peername")[1] in ports:
                if how == "reset":
                    sock = w.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    w.transport.abort()
                else:
                    w.close()

    asyncio.run_coroutine_threadsafe(run(), server.loop).result(scaled(10))


@needs_stamps
def test_a_socket_off_the_poll_is_read_later_with_its_frames_and_stamps(run: Run) -> None:
    """Woken more than n times while queued, a socket leaves the poll (at most n+1 wake-ups
    each), is read by the queue with every byte and the stamp of the write, and is back on
    the poll for the next broadcast."""
    unpoll_after = 2
    readturns.set_unpoll_after(unpoll_after)

    async def body() -> None:
        async with _broadcasting() as (server, _, protocols):
            turns = ReadTurns.of(asyncio.get_running_loop())
            transports = _stamped(protocols)
            left0, wakes0, unpolled0 = turns.left, turns.wakes, turns.unpolled
            seen_off = False
            expected = b"hello;"
            for i in range(3):
                n_reads = [len(p.reads) for p in protocols]
                message = f"broadcast {i};".encode() * 50
                t0, t1 = server.broadcast(message)
                expected += message

                def done(e: bytes = expected) -> bool:
                    nonlocal seen_off
                    seen_off = seen_off or bool(_off_poll(transports))
                    return all(p.data == e for p in protocols)

                await wait_for_async(done, 10, "the broadcast", every=0.001)
                new = [r for p, n in zip(protocols, n_reads, strict=True) for r in p.reads[n:]]
                stamps = [stamp for stamp, _, _ in new]
                assert min(stamps) >= t0 - KERNEL_SLACK_S and max(stamps) <= t1 + KERNEL_SLACK_S
                await wait_for_async(lambda: not turns.behind(), 5, "the queue read")
                assert all(t._polled and t.is_reading() for t in transports)  # back on the poll
            left = turns.left - left0
            assert left > 0
            assert turns.unpolled > unpolled0
            assert seen_off
            # Off the poll at the (n+1)-th wake-up: never woken again until read.
            assert turns.wakes - wakes0 <= (unpoll_after + 1) * left
            assert all(clock_of(t) == "kernel" for t in transports)

    run(body())


@needs_stamps
@pytest.mark.parametrize("how", ["close", "reset"])
def test_an_end_that_arrives_while_a_socket_is_off_the_poll_is_found(run: Run, how: str) -> None:
    """A FIN (data, then eof, then lost) or an RST (lost, as a reset) that reaches a socket
    while it is queued and off the poll ends its connection, the other connections reading on."""
    readturns.set_unpoll_after(0)  # off at the first wake-up while queued

    async def body() -> None:
        async with _broadcasting() as (server, _, protocols):
            transports = _stamped(protocols)
            message = b"a;" * 1000
            server.broadcast(message)
            off = await wait_for_async(lambda: _off_poll(transports), 10, "a socket off the poll")
            ended = {t.get_extra_info("sockname")[1] for t in off}
            # The client's loop is blocked while the server ends them: still off the poll.
            _end(server, ended, how)
            assert all(not t._polled for t in off)
            ends = [p for p in protocols if p.transport in off]
            await wait_for_async(
                lambda: all(p.events[-1:] == ["lost"] for p in ends), 10, "every end"
            )
            if how == "close":  # what came before the FIN is all read, then the end
                for p in ends:
                    assert p.data == b"hello;" + message
                    assert p.events[-2:] == ["eof", "lost"]
            others = [p for p in protocols if p.transport not in off]
            await wait_for_async(
                lambda: all(p.data == b"hello;" + message for p in others), 10, "the others"
            )
            assert all("lost" not in p.events for p in others)

    run(body())


@needs_stamps
def test_a_transport_closed_while_off_the_poll_leaves_no_reader(run: Run) -> None:
    """close() while queued off the poll removes no reader twice and the queue's visit adds
    none back: the loop has no reader on the socket, before and after the close completes."""
    readturns.set_unpoll_after(0)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        async with _broadcasting() as (server, _, protocols):
            transports = _stamped(protocols)
            turns = ReadTurns.of(loop)
            server.broadcast(b"b;" * 1000)
            off = await wait_for_async(lambda: _off_poll(transports), 10, "a socket off the poll")
            fds = [t._fd for t in off]
            for t in off:
                t.close()
            # No reader on the open socket (remove_reader says whether it removed one).
            assert not any(loop.remove_reader(fd) for fd in fds)
            closed = [p for p in protocols if p.transport in off]
            await wait_for_async(
                lambda: not turns.behind() and all(p.events[-1:] == ["lost"] for p in closed),
                10,
                "the queue read and the closes done",
            )
            # The queue's visit put none back (a leaked reader would still be in the loop's map).
            assert not any(loop.remove_reader(fd) for fd in fds)
            assert all(not t._polled and not t.is_reading() for t in off)

    run(body())


@needs_stamps
def test_none_keeps_every_queued_socket_on_the_poll(run: Run) -> None:
    """set_unpoll_after(None): no socket leaves the poll, each queued one is woken every turn
    until read (more wake-ups than the break-even allows), and every byte is read."""
    readturns.set_unpoll_after(None)

    async def body() -> None:
        async with _broadcasting() as (server, _, protocols):
            turns = ReadTurns.of(asyncio.get_running_loop())
            transports = _stamped(protocols)
            left0, wakes0, unpolled0 = turns.left, turns.wakes, turns.unpolled
            always_polled = True
            message = b"c;" * 50
            server.broadcast(message)

            def done() -> bool:
                nonlocal always_polled
                always_polled = always_polled and all(t._polled for t in transports)
                return all(p.data == b"hello;" + message for p in protocols)

            await wait_for_async(done, 10, "the broadcast", every=0.001)
            await wait_for_async(lambda: not turns.behind(), 5, "the queue read")
            left = turns.left - left0
            assert left > CONNECTIONS // 2
            assert turns.unpolled == unpolled0
            assert always_polled
            # ~left/2 wake-ups each on average (one socket read a turn): more than an
            # unpoll_after of 2 allows (test above).
            assert turns.wakes - wakes0 > 3 * left

    run(body())


@pytest.mark.parametrize("wakes", [-1, -16])
def test_a_negative_limit_is_refused(wakes: int) -> None:
    """set_unpoll_after refuses a negative count (0 is: off at the first wake-up)."""
    with pytest.raises(ValueError, match="wakes must be >= 0"):
        readturns.set_unpoll_after(wakes)
