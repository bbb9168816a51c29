"""Run the reference target inside a test's event loop: `async with running_target() as t:`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from loadsvc.target.app import TARGET_KEY, build_app
from loadsvc.target.faults import InvalidFaults
from loadsvc.target.paths import ADMIN_DELIVERY_PATH, ADMIN_FAULTS_PATH, ADMIN_STATS_PATH
from loadsvc.target.runtime import TargetRuntime
from loadsvc.target.server import start_site
from loadsvc.target.settings import TargetSettings


@dataclass(frozen=True, slots=True)
class RunningTarget:
    """A target serving in the current loop, with helpers that use its real admin API."""

    host: str
    port: int
    app: web.Application
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        """Base HTTP URL, e.g. `http://127.0.0.1:40123`."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """Base WebSocket URL, e.g. `ws://127.0.0.1:40123`."""
        return f"ws://{self.host}:{self.port}"

    @property
    def runtime(self) -> TargetRuntime:
        """The target's in-process state, for assertions that HTTP cannot make."""
        return self.app[TARGET_KEY]

    async def set_faults(self, faults: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /admin/faults`; return its answer (`faults` in force and `dropped` counts).

        Raises `InvalidFaults` with the server's messages when it rejects the body.
        """
        async with self.session.post(self.url + ADMIN_FAULTS_PATH, json=dict(faults)) as resp:
            body: dict[str, Any] = await resp.json()
            if resp.status == 400:
                raise InvalidFaults(list(body["details"]))
            resp.raise_for_status()
            return body

    async def clear_faults(self) -> dict[str, Any]:
        """`DELETE /admin/faults`; return the (now empty) faults."""
        async with self.session.delete(self.url + ADMIN_FAULTS_PATH) as resp:
            resp.raise_for_status()
            body: dict[str, Any] = await resp.json()
            return body

    async def faults(self) -> dict[str, Any]:
        """`GET /admin/faults`: the faults in force."""
        return await self._get_json(ADMIN_FAULTS_PATH)

    async def stats(self) -> dict[str, Any]:
        """`GET /admin/stats`: the target's counters."""
        return await self._get_json(ADMIN_STATS_PATH)

    async def delivery(self) -> dict[str, Any]:
        """`GET /admin/stats/delivery`: ground-truth delivery latency per WS path."""
        return await self._get_json(ADMIN_DELIVERY_PATH)

    async def reset_delivery(self) -> dict[str, Any]:
        """`DELETE /admin/stats/delivery`: start a new ground-truth window."""
        async with self.session.delete(self.url + ADMIN_DELIVERY_PATH) as resp:
            resp.raise_for_status()
            body: dict[str, Any] = await resp.json()
            return body

    async def _get_json(self, path: str) -> dict[str, Any]:
        async with self.session.get(self.url + path) as resp:
            resp.raise_for_status()
            body: dict[str, Any] = await resp.json()
            return body


@asynccontextmanager
async def running_target(
    host: str = "127.0.0.1", port: int = 0, settings: TargetSettings | None = None
) -> AsyncIterator[RunningTarget]:
    """Serve a fresh target on `host:port` (0 picks a free port) for the block's duration."""
    runner, bound_port = await start_site(build_app(settings), host, port)
    try:
        async with aiohttp.ClientSession() as session:
            yield RunningTarget(host, bound_port, runner.app, session)
    finally:
        await runner.cleanup()
