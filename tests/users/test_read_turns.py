"""A broadcast's reads spread over the loop's turns (loadsvc.users.readturns), against real servers.

The budget is set to zero here: each turn reads one stamped socket and leaves the
rest for the next polls, the most a broadcast can be spread. A server on a loop of
its own in a thread writes to every connection at once and notes when; the client
reads them over many turns, and each read must still carry the kernel's stamp of
that write, every byte in order, and the ends of the streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from websockets.typing import BytesLike

from loadsvc.target.settings import TargetSettings
from loadsvc.target.testing import running_target
from loadsvc.users import arrival, connect, readturns
from loadsvc.users.arrival import clock_of, use_kernel_clock
from loadsvc.users.readturns import ReadTurns
from loadsvc.users.wsconn import TimedConnection, stamped_connect
from tests.support.loops import Run
from tests.support.timing import scaled, wait_for_async
from tests.support.tls import localhost_tls_pair

CONNECTIONS = 40
# What a kernel stamp may read outside the server's write window: the loopback hop and
# the server thread's scheduling on a shared machine.
KERNEL_SLACK_S = 0.05

needs_stamps = pytest.mark.skipif(not arrival.SUPPORTED, reason="the kernel does not stamp reads")


@pytest.fixture(autouse=True)
def one_socket_a_turn() -> Iterator[None]:
    """Each test reads one stamped socket a turn; the defaults are restored after it."""
    readturns.set_budget(0.0)
    yield
    readturns.set_budget(readturns.BUDGET_S)
    readturns.set_unpoll_after()
    use_kernel_clock(True)


class Broadcaster:
    """A server on its own loop in a thread: says hello on connect, then writes to every
    connection at once on :meth:`broadcast`, noting the wall-clock window of the writes."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0
        started = threading.Event()

        async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            writer.write(b"hello;")

        async def start() -> None:
            server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256, ssl=tls)
            self.port = server.sockets[0].getsockname()[1]
            started.set()

        self.thread = threading.Thread(
            target=lambda: (self.loop.run_until_complete(start()), self.loop.run_forever()),
            daemon=True,
        )
        self.thread.start()
        assert started.wait(scaled(10)), "the broadcaster did not start"

    def broadcast(self, message: bytes, end: str = "") -> tuple[float, float]:
        """Write ``message`` to every connection in one callback, then end each if asked
        (``close``: a FIN after the data; ``reset``: an RST); the wall-clock window of the
        writes."""

        def fan_out() -> tuple[float, float]:
            t0 = time.time()
            for w in self.writers:
                w.write(message)
                if end == "close":
                    w.close()
            if end == "reset":
                for w in self.writers:
                    sock = w.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    w.transport.abort()
            return t0, time.time()

        async def run() -> tuple[float, float]:
            return fan_out()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(scaled(10))

    def stop(self) -> None:
        """Abort the connections, stop the loop and its thread."""

        def abort() -> None:
            for w in self.writers:
                w.transport.abort()
            self.loop.stop()

        self.loop.call_soon_threadsafe(abort)
        self.thread.join(scaled(10))
        self.loop.close()


class Turn:
    """Counts the loop's turns (a task that yields at each), each made ``busy_s`` long: the
    generator's other work, so that a socket left for later is read well after its stamp."""

    def __init__(self, busy_s: float = 0.003) -> None:
        self.n = 0
        self.busy_s = busy_s
        self.saw_behind = False  # a turn began with reads waiting (the judging should yield)

    async def spin(self) -> None:
        """Yield at every turn, counting; keep the CPU busy ``busy_s`` in each."""
        clock = time.perf_counter
        turns = ReadTurns.of(asyncio.get_running_loop())
        while True:
            await asyncio.sleep(0)
            self.n += 1
            self.saw_behind = self.saw_behind or turns.behind()
            end = clock() + self.busy_s
            while clock() < end:
                pass


class Reads(asyncio.Protocol):
    """Every read of one connection: (stamp, turn), its bytes, and the ends, in order."""

    turn: Turn

    def __init__(self) -> None:
        self.reads: list[tuple[float, int, float]] = []  # (stamp, turn, time read)
        self.data = b""
        self.events: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.arrived = arrival.arrival_of(transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reads.append((self.arrived(), self.turn.n, time.time()))
        self.data += data
        self.events.append("data")

    def eof_received(self) -> None:
        self.events.append("eof")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")


@contextlib.asynccontextmanager
async def _broadcasting(
    server_tls: ssl.SSLContext | None = None, client_tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[Broadcaster, Turn, list[Reads]]]:
    """A broadcaster with CONNECTIONS clients connected (their hellos read) while a busy turn
    spins; the spinner and the server stopped on the way out."""
    server, turn = Broadcaster(server_tls), Turn()
    # Not busy while connecting: the server's thread needs the GIL for every accept, and a
    # turn busy 3 ms in Python took it from that thread for seconds on a loaded machine.
    busy_s, turn.busy_s = turn.busy_s, 0.0
    spinner = asyncio.get_running_loop().create_task(turn.spin())
    try:
        Reads.turn = turn
        host = "localhost" if client_tls else "127.0.0.1"  # the test certificate's name
        pairs = await asyncio.gather(
            *(
                connect.open_connection(Reads, host, server.port, ssl=client_tls)
                for _ in range(CONNECTIONS)
            )
        )
        protocols = [p for _, p in pairs]
        await wait_for_async(lambda: all(p.data == b"hello;" for p in protocols), 10, "the hellos")
        turn.busy_s = busy_s
        yield server, turn, protocols
    finally:
        spinner.cancel()
        server.stop()


@needs_stamps
@pytest.mark.parametrize("scheme", ["tcp", "tls"])
def test_a_broadcast_read_over_many_turns_keeps_each_writes_stamp_and_every_byte(
    run: Run, scheme: str
) -> None:
    """Reads left to later turns carry the stamp of the server's write, in order, nothing lost."""
    server_tls, client_tls = localhost_tls_pair() if scheme == "tls" else (None, None)

    async def body() -> None:
        async with _broadcasting(server_tls, client_tls) as (server, turn, protocols):
            turns = ReadTurns.of(asyncio.get_running_loop())
            left0 = turns.left
            expected = b"hello;"
            for i in range(3):
                n_reads = [len(p.reads) for p in protocols]
                message = f"broadcast {i};".encode()
                t0, t1 = server.broadcast(message)
                expected += message
                await wait_for_async(
                    lambda e=expected: all(p.data == e for p in protocols), 10, "the broadcast"
                )
                new = [r for p, n in zip(protocols, n_reads, strict=True) for r in p.reads[n:]]
                stamps = [stamp for stamp, _, _ in new]
                assert min(stamps) >= t0 - KERNEL_SLACK_S and max(stamps) <= t1 + KERNEL_SLACK_S
                # Spread: one socket a turn, so the broadcast took about as many turns, and
                # the last ones were read long after their stamp (the loop's clock would err).
                assert len({t for _, t, _ in new}) >= CONNECTIONS // 2
                assert max(read - stamp for stamp, _, read in new) > KERNEL_SLACK_S
            assert turns.left > left0  # sockets were left to later turns
            assert turn.saw_behind
            assert all(clock_of(p.transport) == "kernel" for p in protocols)
            await wait_for_async(lambda: not turns.behind(), 5, "the budget caught up")

    run(body())


@needs_stamps
def test_end_of_stream_and_close_are_seen_after_the_data_when_reads_are_left(run: Run) -> None:
    """Data, then the end of the stream, then the close: each connection, though read late."""

    async def body() -> None:
        async with _broadcasting() as (server, _, protocols):
            server.broadcast(b"last;", end="close")
            await wait_for_async(
                lambda: all(p.events[-1:] == ["lost"] for p in protocols), 10, "every close"
            )
            for p in protocols:
                assert p.data == b"hello;last;"
                assert p.events[-2:] == ["eof", "lost"]
            assert ReadTurns.of(asyncio.get_running_loop()).left > 0

    run(body())


@needs_stamps
def test_a_reset_is_seen_by_every_connection_whose_read_was_left(run: Run) -> None:
    """Sockets reset by the server while their reads wait in the queue all see their end
    (on uvloop, whose add_reader drops a reset that follows unread data, through
    loadsvc.users.resetwatch: found idle within a few seconds)."""

    async def body() -> None:
        async with _broadcasting() as (server, _, protocols):
            turns = ReadTurns.of(asyncio.get_running_loop())
            left0 = turns.left
            server.broadcast(b"a;" * 1000)  # read over many turns ...
            server.broadcast(b"", end="reset")  # ... and reset meanwhile
            await wait_for_async(
                lambda: all(p.events[-1:] == ["lost"] for p in protocols), 10, "every end"
            )
            assert turns.left > left0

    run(body())


@pytest.mark.parametrize("how", ["loop transports", "stamps refused"])
def test_reads_timed_by_the_loop_are_never_left(
    run: Run, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a kernel stamp the read time is the arrival: every such socket is read when ready."""
    if how == "loop transports":
        use_kernel_clock(False)
    else:  # stamped sockets whose every stamp is out of range: timed by the loop
        if not arrival.SUPPORTED:
            pytest.skip("the kernel does not stamp reads")
        monkeypatch.setattr(arrival, "_MAX_AGE_S", -1.0)

    async def body() -> None:
        async with _broadcasting() as (server, _, protocols):
            turns = ReadTurns.of(asyncio.get_running_loop())
            left0 = turns.left
            server.broadcast(b"now;")
            await wait_for_async(
                lambda: all(p.data == b"hello;now;" for p in protocols), 10, "the broadcast"
            )
            assert turns.left == left0
            assert all(clock_of(p.transport) == "loop" for p in protocols)

    run(body())


@needs_stamps
def test_ws_frames_of_the_reference_target_read_late_keep_its_ground_truth(run: Run) -> None:
    """WS frames read over many turns: every seq in order, latency at the target's truth, close seen."""

    async def body() -> None:
        got: dict[int, list[tuple[int, float]]] = {}

        def hook(index: int) -> Any:
            got[index] = []

            def on_frame(data: BytesLike | str, arrived: float) -> None:
                assert isinstance(data, str)
                doc = json.loads(data)
                if "seq" in doc:
                    got[index].append((doc["seq"], arrived - doc["published_at"]))

            return on_frame

        # A broadcast every 0.5 s, read over ~CONNECTIONS turns of 3 ms: the generator keeps
        # up on average (else frames share reads, and a shared read's stamp is the last one's).
        async with running_target(settings=TargetSettings(throttle_s=0.5)) as target:
            url = target.ws_url + "/ws/market"
            conns = await asyncio.gather(
                *(
                    stamped_connect(
                        url,
                        compression=None,
                        proxy=None,
                        create_connection=TimedConnection.factory(hook(i)),
                    )
                    for i in range(CONNECTIONS)
                )
            )
            turns = ReadTurns.of(asyncio.get_running_loop())
            left0 = turns.left
            turn = Turn()
            spinner = asyncio.get_running_loop().create_task(turn.spin())
            await target.reset_delivery()
            arrival.take_read_delays()
            for frames in got.values():  # the truth's window starts now: ours too
                frames.clear()
            await wait_for_async(lambda: all(len(v) >= 3 for v in got.values()), 20, "frames")
            spinner.cancel()
            truth = (await target.delivery())["/ws/market"]
            assert turns.left > left0
            assert max(arrival.take_read_delays()) > KERNEL_SLACK_S  # frames read late
            for frames in got.values():
                seqs = [s for s, _ in frames]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # none lost or reordered
            latencies = sorted(lat for frames in got.values() for _, lat in frames)
            # The stamp is the kernel's receipt of the target's write: at its truth (the
            # truth's bins are 0.1-1 ms wide), however many turns later the frame was read.
            ours_p99_ms = latencies[int(0.99 * (len(latencies) - 1))] * 1000
            assert ours_p99_ms <= truth["max_ms"] + KERNEL_SLACK_S * 1000
            assert all(clock_of(c.transport) == "kernel" for c in conns)
        # The target is gone: every connection sees its close.
        for c in conns:
            await asyncio.wait_for(c.wait_closed(), scaled(10))

    run(body())
