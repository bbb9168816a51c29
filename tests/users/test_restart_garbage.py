"""What a backend restart cycle leaves to the cyclic collector: (almost) nothing.

The soak's cycle in small: WS streams and REST pollers on one loop, the reference target
killed and started again, refused upgrades (HTTP 503) while the clients come back, and
the pollers of a finished run ending. Each of these used to leave its objects in reference
cycles (an HTTP/1 connection and its parser, a REST user and its client, a failed
handshake's exception and its frames, a refused upgrade's response and its exception):
~15,000 objects a cycle at the soak's size, freed only by a full collection (issue 20).
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
from collections import Counter
from collections.abc import Iterator

import pytest

from loadsvc.config import parse_config
from loadsvc.localstack import free_port
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.users import Target, UserContext, wire_group
from loadsvc.users.backoff import pace_handshakes
from tests.support.http import http
from tests.support.processes import Proc, start_target
from tests.support.timing import wait_for_async

WS_MARKET = "/ws/market"
SNAPSHOT = "/api/market/snapshot"
CONFIG = f"""\
version: 1
scenarios:
  s:
    shape: {{kind: constant, users: 1}}
    users:
      - {{kind: ws_stream, path: {WS_MARKET}, backoff: {{initial: 50ms, max: 300ms}}}}
      - kind: rest
        pacing: 100ms
        timeout: 1s
        tasks: [{{path: {SNAPSHOT}}}]
"""
WS_USERS = 30
REST_USERS = 30
# A cycle left behind by one of the 60 users, connections or failed handshakes would be
# hundreds of objects (each ~15); what remains allowed is asyncio's and the libraries' own
# odd cycle, not one per connection.
MOST_GARBAGE = 50


class Cycle:
    """The target process and a crowd of WS and REST users on this loop."""

    def __init__(self, metrics: Metrics) -> None:
        spec = parse_config(CONFIG, "test.yaml").scenario("s")
        recorder = Recorder(metrics)
        sinks = recorder.begin(spec)
        self.ws, self.rest = (wire_group(u, recorder.sinks(sinks)) for u in spec.users)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Proc | None = None

    def admin(self, method: str, path: str, body: object = None) -> dict[str, object]:
        """Call the target's admin API."""
        status, raw = http(method, self.url + path, body=body)
        assert 200 <= status < 300, (status, raw)
        doc: dict[str, object] = json.loads(raw)
        return doc

    async def all_streaming(self) -> bool:
        """Every WS user is connected, as the target counts them."""
        stats = await asyncio.to_thread(self.admin, "GET", "/admin/stats")
        connections = stats["connections"]
        assert isinstance(connections, dict)
        return bool(connections[WS_MARKET] == WS_USERS)

    async def start_target(self) -> None:
        """The target on this cycle's port (again, after a kill)."""
        self.proc, _ = await asyncio.to_thread(start_target, self.port)

    async def kill_target(self) -> None:
        """SIGKILL the target by its PID: every connection lost at once."""
        assert self.proc is not None
        self.proc.popen.kill()
        await asyncio.to_thread(self.proc.popen.wait)

    def users(self, ctx: UserContext, wiring_ws: bool, n: int) -> list[asyncio.Task[None]]:
        """``n`` users of one kind running under ``ctx``."""
        wiring = self.ws if wiring_ws else self.rest
        return [asyncio.create_task(wiring.make(ctx, random.Random(i)).run()) for i in range(n)]


async def _end(ctx: UserContext, tasks: list[asyncio.Task[None]]) -> None:
    ctx.stopping.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


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
        gc.collect()


async def test_a_restart_cycle_leaves_almost_no_cyclic_garbage(
    metrics: Metrics, saved_garbage: None
) -> None:
    """The target killed under 30 WS and 30 REST users, started again refusing half the
    upgrades, every stream back, the pollers' run ended: a full collection then finds at
    most a few dozen objects in cycles (it found thousands before)."""
    pace_handshakes(1000.0, 50)
    cycle = Cycle(metrics)
    await cycle.start_target()
    loop = asyncio.get_running_loop()
    streams_ctx = UserContext("s", Target(cycle.url), asyncio.Event(), started_at=loop.time())
    pollers_ctx = UserContext("s", Target(cycle.url), asyncio.Event(), started_at=loop.time())
    streams = cycle.users(streams_ctx, True, WS_USERS)
    pollers = cycle.users(pollers_ctx, False, REST_USERS)
    try:
        await wait_for_async(cycle.all_streaming, 20, "every stream connected")
        gc.collect()
        gc.garbage.clear()

        await cycle.kill_target()
        await asyncio.sleep(0.3)  # the outage itself: refused connects, not a wait
        await cycle.start_target()
        await asyncio.to_thread(
            cycle.admin, "POST", "/admin/faults", {"error_ratio": {WS_MARKET: 0.5}}
        )
        await wait_for_async(cycle.all_streaming, 30, "every stream back after the restart")
        stats = await asyncio.to_thread(cycle.admin, "GET", "/admin/stats")
        await asyncio.to_thread(cycle.admin, "DELETE", "/admin/faults")
        await _end(pollers_ctx, pollers)  # the run of the pollers is over

        found = gc.collect()
        kinds = Counter(type(o).__name__ for o in gc.garbage)
        assert found <= MOST_GARBAGE, (found, kinds.most_common(12))
        refused = stats["handshakes_refused"]
        assert isinstance(refused, dict) and refused[WS_MARKET] > 0, stats  # 503s were sent
    finally:
        await _end(streams_ctx, streams)
        await _end(pollers_ctx, pollers)
        if cycle.proc is not None:
            await asyncio.to_thread(cycle.proc.stop)
