"""A small aiohttp backend that records every request it gets, for REST and login tests.

Each route is a handler given the request (already recorded) that returns a response;
``seen`` holds what arrived, in order, with the server's own arrival time.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[["Seen"], Awaitable[web.StreamResponse] | web.StreamResponse]


@dataclass(frozen=True)
class Seen:
    """One request as the server got it."""

    method: str
    path: str  # the route, without the query
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON, or None without a body
    at: float  # time.monotonic() at arrival


@dataclass
class RecordingServer:
    """The running server: its base URL and what it has seen."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)

    def at(self, path: str, method: str | None = None) -> list[Seen]:
        """The requests to ``path`` (and ``method``), in order."""
        return [s for s in self.seen if s.path == path and method in (None, s.method)]


@contextlib.asynccontextmanager
async def recording_server(routes: dict[str, Handler]) -> AsyncIterator[RecordingServer]:
    """Serve ``routes`` (path -> handler, any method) on 127.0.0.1, port 0."""
    server = RecordingServer()

    async def dispatch(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        seen = Seen(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=json.loads(raw) if raw else None,
            at=time.monotonic(),
        )
        server.seen.append(seen)
        answer = routes[request.path](seen)
        if not isinstance(answer, web.StreamResponse):
            answer = await answer
        return answer

    app = web.Application()
    for path in routes:
        app.router.add_route("*", path, dispatch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def ok(_: Seen) -> web.Response:
    """A 200 with a small JSON object."""
    return web.json_response({"ok": True})
