"""What losing every connection leaves in the generator: no cyclic garbage, no growth."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest

from loadsvc.config import parse_config
from loadsvc.localstack import free_port
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.users import Target, UserContext, wire_group
from loadsvc.users.backoff import pace_handshakes
from loadsvc.users.keepalive import Keepalive
from tests.support.http import http
from tests.support.processes import Proc, start_target
from tests.support.timing import wait_for_async
from tests.support.wsservers import RawWsConnection, raw_ws_server

WS_MARKET = "/ws/market"
CONFIG = (
    "version: 1\nscenarios:\n  s:\n    shape: {kind: constant, users: 1}\n    users:\n"
    f"      - {{kind: ws_stream, path: {WS_MARKET}, backoff: {{initial: 50ms, max: 500ms}}}}\n"
)


class Crowd:
    """``size`` loadsvc streaming clients on this loop against a reference target process."""

    def __init__(self, size: int, metrics: Metrics) -> None:
        self.size = size
        spec = parse_config(CONFIG, "test.yaml").scenario("s")
        recorder = Recorder(metrics)
        self.wiring = wire_group(spec.users[0], recorder.sinks(recorder.begin(spec)))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Proc | None = None
        self.ctx: UserContext | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def _admin(self, method: str, path: str, body: object = None) -> dict[str, object]:
        """Call the target's admin API."""
        status, raw = http(method, self.url + path, body=body)
        assert 200 <= status < 300, (status, raw)
        doc: dict[str, object] = json.loads(raw)
        return doc

    async def connected(self) -> bool:
        """Every client is connected, as the target counts them."""
        stats = await asyncio.to_thread(self._admin, "GET", "/admin/stats")
        connections = stats["connections"]
        assert isinstance(connections, dict)
        return bool(connections[WS_MARKET] == self.size)

    async def start_target(self) -> None:
        """The target on this crowd's port (again, after a kill)."""
        self.proc, _ = await asyncio.to_thread(start_target, self.port)

    async def kill_target(self) -> None:
        """SIGKILL the target by its PID: every connection lost at once, no close frames."""
        assert self.proc is not None
        self.proc.popen.kill()
        await asyncio.to_thread(self.proc.popen.wait)

    async def drop_all(self) -> None:
        """The target closes every connection abruptly; wait until all are back."""
        await asyncio.to_thread(
            self._admin, "POST", "/admin/faults", {"drop_connections": {WS_MARKET: 1.0}}
        )
        await wait_for_async(self.connected, 20, "every client back after the drop")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Crowd]:
        """The target and the clients, all connected; everything stopped afterwards."""
        await self.start_target()
        loop = asyncio.get_running_loop()
        self.ctx = UserContext("s", Target(self.url), asyncio.Event(), started_at=loop.time())
        self.tasks = [
            asyncio.create_task(self.wiring.make(self.ctx, random.Random(i)).run())
            for i in range(self.size)
        ]
        try:
            await wait_for_async(self.connected, 20, "every client connected")
            yield self
        finally:
            self.ctx.stopping.set()
            for task in self.tasks:
                task.cancel()
            for task in self.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self.proc is not None:
                await asyncio.to_thread(self.proc.stop)


@pytest.fixture
def saved_garbage() -> Iterator[None]:
    """The collector keeps what it finds in ``gc.garbage`` for the test; restored after."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield None
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def test_a_target_killed_under_the_clients_leaves_no_cyclic_garbage(
    metrics: Metrics, saved_garbage: None
) -> None:
    """After a crash of the target and the clients' recovery, a collection finds nothing from
    their lost connections: each was freed when it was lost (websockets' parser exception
    would otherwise keep its protocol in a cycle until a full collection)."""
    pace_handshakes(1000.0, 50)
    async with Crowd(40, metrics).running() as crowd:
        gc.collect()
        gc.garbage.clear()
        await crowd.kill_target()
        await crowd.start_target()
        await wait_for_async(crowd.connected, 20, "every client back after the restart")
        gc.collect()
        kinds = Counter(type(o).__name__ for o in gc.garbage)
        assert kinds["ClientProtocol"] == 0, kinds.most_common(10)
        assert kinds["EOFError"] == 0, kinds.most_common(10)


async def test_the_heap_after_2n_drops_of_every_connection_is_the_heap_after_n(
    metrics: Metrics,
) -> None:
    """Every connection dropped by the target 2N times: the live heap (blocks, after a
    collection) up to drop 2N is within 2 % of up to drop N, and grew by less than one
    block per client and drop meanwhile (a leak of one object per lost connection fails)."""
    clients, n = 50, 8
    pace_handshakes(1000.0, 50)
    async with Crowd(clients, metrics).running() as crowd:
        for _ in range(2):  # warm: caches and free lists at their working size
            await crowd.drop_all()
        after: list[int] = []
        for _ in range(2 * n):
            await crowd.drop_all()
            gc.collect()
            after.append(sys.getallocatedblocks())
        # Floors of the four readings up to N and up to 2N: a frame or two in flight at one
        # reading adds a few thousand blocks that the next reading no longer has.
        at_n, at_2n = min(after[n - 4 : n]), min(after[2 * n - 4 : 2 * n])
        assert abs(at_2n / at_n - 1) <= 0.02, (at_n, at_2n, after)
        assert at_2n - at_n < clients * n, (at_n, at_2n, after)


async def test_a_connection_lost_right_after_its_handshake_is_not_kept_for_keepalive(
    metrics: Metrics,
) -> None:
    """A server that closes each connection as soon as it accepted the upgrade: 100 such
    connections later, the loop's keepalive holds none of the dead ones (websockets'
    own keepalive kept each for its 20 s ping interval, then logged a traceback)."""

    async def close_at_once(conn: RawWsConnection) -> None:
        conn.writer.close()

    spec = parse_config(CONFIG.replace(WS_MARKET, "/ws"), "test.yaml").scenario("s")
    recorder = Recorder(metrics)
    wiring = wire_group(spec.users[0], recorder.sinks(recorder.begin(spec)))
    users = 5
    keepalive = Keepalive.of(asyncio.get_running_loop())
    async with raw_ws_server(close_at_once) as server:
        ctx = UserContext("s", Target(server.url), asyncio.Event(), started_at=0.0)
        tasks = [
            asyncio.create_task(wiring.make(ctx, random.Random(i)).run()) for i in range(users)
        ]
        try:
            await wait_for_async(lambda: server.handshakes >= 100, 30, "100 handshakes")
            assert len(keepalive) <= users, len(keepalive)  # at most one per live connection
            tasks_of_websockets = [
                t
                for t in asyncio.all_tasks()
                if t.get_coro().__qualname__ == "Connection.keepalive"
            ]
            assert not tasks_of_websockets  # pinged in step, not by a task each
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert len(keepalive) == 0
