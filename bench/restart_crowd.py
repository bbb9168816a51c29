"""A crowd of loadsvc WS streaming clients in this process, and the reference target restarted
under it: what ``bench/reconnect_calm.py`` and ``bench/restart_heap.py`` share.

The clients are loadsvc's own (``WsStreamUser`` wired to a real recorder on a registry of
its own), so what is measured is what ``loadsvc serve`` does when its backend restarts.
The target is a separate process on one core, killed (SIGKILL, by PID) and started
again on the same port; this process keeps to the other core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry

from bench import procs
from bench.soak_faults import SoakTarget
from loadsvc.config import parse_config
from loadsvc.localstack import free_port
from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder
from loadsvc.users import Target, UserContext, wire_group

WS_MARKET = "/ws/market"


def _config(backoff_max: str) -> str:
    # The seed's market stream user group, as the shipped configuration has it.
    return (
        "version: 1\nscenarios:\n  s:\n    shape: {kind: constant, users: 1}\n    users:\n"
        f"      - kind: ws_stream\n        path: {WS_MARKET}\n"
        f"        backoff: {{initial: 100ms, max: {backoff_max}}}\n"
        "        message: {required_keys: [quotes, indices], skip_types: [status]}\n"
    )


class Crowd:
    """``size`` streaming clients against a restartable target; use as ``async with``."""

    def __init__(self, size: int, out: Path, backoff_max: str = "5s") -> None:
        self.size = size
        out.mkdir(parents=True, exist_ok=True)
        target_core, own_core = procs.cores()
        os.sched_setaffinity(0, {own_core})
        self.target = SoakTarget(free_port(), target_core, out / "target.log")
        spec = parse_config(_config(backoff_max), "crowd.yaml").scenario("s")
        self._registry = CollectorRegistry()
        recorder = Recorder(create_metrics(self._registry))
        self._wiring = wire_group(spec.users[0], recorder.sinks(recorder.begin(spec)))
        self._tasks: list[asyncio.Task[None]] = []
        self._ctx: UserContext | None = None

    def connected(self) -> int:
        """Open connections, as the clients count them."""
        labels = {"scenario": "s", "endpoint": WS_MARKET}
        return int(self._registry.get_sample_value("loadsvc_ws_connections", labels) or 0)

    def target_handshakes(self) -> int:
        """Handshakes the running target has completed since it started."""
        with urllib.request.urlopen(self.target.url + "/admin/stats", timeout=5) as resp:
            handshakes: int = json.loads(resp.read())["handshakes"][WS_MARKET]
            return handshakes

    async def __aenter__(self) -> Crowd:
        await asyncio.to_thread(self.target.start)
        loop = asyncio.get_running_loop()
        self._ctx = UserContext("s", Target(self.target.url), asyncio.Event(), loop.time())
        for i in range(self.size):
            user = self._wiring.make(self._ctx, random.Random(i))
            self._tasks.append(asyncio.create_task(user.run()))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # a spawn rate, as the runner has
        await self.wait_all(60.0)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._ctx is not None:
            self._ctx.stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.target.stop)

    async def wait_all(self, timeout: float) -> float | None:
        """Poll until every client is connected; seconds it took (None: not within timeout)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < timeout:
            if self.connected() >= self.size:
                return loop.time() - start
            await asyncio.sleep(0.02)
        return None

    async def restart(self, down_s: float, timeout: float = 30.0) -> float | None:
        """Kill the target, keep it down ``down_s``, start it: seconds until all are back."""
        await asyncio.to_thread(self.target.kill)
        loop = asyncio.get_running_loop()
        seen_by = loop.time() + timeout
        while self.connected() > 0 and loop.time() < seen_by:  # every client saw the loss
            await asyncio.sleep(0.01)
        await asyncio.sleep(down_s)  # the outage itself, not a wait for a condition
        await asyncio.to_thread(self.target.start)
        return await self.wait_all(timeout)
