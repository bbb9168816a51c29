"""The one HTTP surface of ``loadsvc serve``, in-process or as the ``--workers`` front.

It translates HTTP to calls on the :class:`ServiceApi` handed to it: the
in-process :class:`~loadsvc.service.app.SoakService`, or the
:class:`~loadsvc.service.front.WorkerFront` that asks its workers and merges.

Read-only endpoints are open: ``/metrics``, ``/healthz``, ``/readyz``,
``/api/status``, ``/api/runs``, ``/api/series``, and the status page ``/`` with its
``/assets/`` (:mod:`loadsvc.web`). The control endpoints
(``POST /api/scenarios/{name}/run|stop|accept-baseline``) need ``Authorization: Bearer <token>``;
with no token configured they are disabled (403), and a wrong or missing token
gets 401. Tokens are compared in constant time.

Reads (everything but the health checks and the control endpoints) share the
generator's event loop, so they are paced and served from snapshots at most a
second old (:mod:`.readcache`): readers cannot raise the loop lag that times
frames. ``since`` of ``/api/series`` is honoured to the whole second (a point up
to a second older may be included), so that readers polling the last minutes
share one snapshot.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from loadsvc.service.merge import NoWorkerAnswered
from loadsvc.service.readcache import Body, Overloaded, ReadPacer, Snapshots
from loadsvc.service.regressions import CannotAccept
from loadsvc.service.supervisor import AlreadyRunning, NotRunning, UnknownScenario
from loadsvc.web import ASSETS, asset, live_page

MAX_RUNS_LIMIT = 1000
DEFAULT_RUNS_LIMIT = 50
JSON = "application/json"
HTML = "text/html; charset=utf-8"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Action = Literal["run", "stop", "accept-baseline"]


class ServiceApi(Protocol):
    """What the HTTP surface needs from the service (in-process or the workers' front)."""

    async def exposition(self) -> bytes:
        """The Prometheus text exposition of ``/metrics``."""

    async def readiness(self) -> tuple[bool, str]:
        """(ready, why not)."""

    async def status(self) -> dict[str, Any]:
        """The ``/api/status`` document."""

    async def runs(self, scenario: str | None, limit: int) -> list[dict[str, Any]]:
        """Recent finished runs, most recent first; NoWorkerAnswered if none can be read."""

    async def series(self, scenario: str, since: float | None) -> dict[str, Any] | None:
        """A scenario's time series from ``since`` (Unix s); None for an unknown scenario."""

    async def control(self, action: Action, name: str) -> tuple[int, dict[str, Any]]:
        """Run or stop scenario ``name``, or accept its new baseline (the caller is
        authorised): (HTTP status, body).

        Raises UnknownScenario, AlreadyRunning, NotRunning, CannotAccept or NoWorkerAnswered.
        """


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload), status=status, content_type="application/json", headers=headers
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json({"error": message}, status=status, headers=headers)


def _body(payload: Any, status: int = 200) -> Body:
    return Body(status, orjson.dumps(payload), JSON)


def _answer(body: Body) -> web.Response:
    return web.Response(
        body=body.body, status=body.status, headers={"Content-Type": body.content_type}
    )


class ApiAuth:
    """Bearer-token check of the control endpoints."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    @property
    def enabled(self) -> bool:
        """True when a token is configured."""
        return self._token is not None

    def check(self, request: web.Request) -> web.Response | None:
        """None when the request may proceed; else the 403 or 401 answer."""
        if self._token is None:
            return _error(
                403, "the control API is disabled: set LOADSVC_API_TOKEN or LOADSVC_API_TOKEN_FILE"
            )
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="loadsvc"'}
        if scheme.lower() != "bearer" or not given:
            return _error(401, "missing bearer token", challenge)
        try:
            presented = given.strip().encode()
        except UnicodeEncodeError:  # bytes that are not UTF-8: no token of ours, not a crash
            return _error(401, "invalid bearer token", challenge)
        if not hmac.compare_digest(presented, self._token):
            return _error(401, "invalid bearer token", challenge)
        return None


def build_app(
    service: ServiceApi,
    auth: ApiAuth,
    snapshots: Snapshots | None = None,
    pacer: ReadPacer | None = None,
) -> web.Application:
    """The aiohttp application of the service's one HTTP port."""
    app = web.Application()
    snapshots = snapshots or Snapshots()
    pacer = pacer or ReadPacer()

    def read(handler: Handler) -> Handler:
        """A read of the API: admitted by the pacer (or refused at once when it is full)."""

        async def paced(request: web.Request) -> web.StreamResponse:
            try:
                await pacer.admit()
            except Overloaded:
                return _error(503, "too many reads of the API at once", {"Retry-After": "1"})
            return await handler(request)

        return paced

    async def metrics(_: web.Request) -> web.Response:
        async def build() -> Body:
            return Body(200, await service.exposition(), CONTENT_TYPE_LATEST)

        return _answer(await snapshots.get("/metrics", build))

    async def healthz(_: web.Request) -> web.Response:
        # Answering at all is the proof: the event loop is running handlers.
        return _json({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready, why = await service.readiness()
        if ready:
            return _json({"status": "ready"})
        return _json({"status": "not ready", "reason": why}, status=503)

    async def status(_: web.Request) -> web.Response:
        async def build() -> Body:
            return _body(await service.status())

        return _answer(await snapshots.get("/api/status", build))

    async def runs(request: web.Request) -> web.Response:
        scenario = request.query.get("scenario") or None
        raw = request.query.get("limit", str(DEFAULT_RUNS_LIMIT))
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_RUNS_LIMIT:
            return _error(400, f"limit must be a whole number from 1 to {MAX_RUNS_LIMIT}")

        async def build() -> Body:
            try:
                found = await service.runs(scenario, limit)
            except NoWorkerAnswered as exc:
                return _body({"error": str(exc)}, 503)
            return _body({"runs": found, "count": len(found)})

        return _answer(await snapshots.get(f"/api/runs?{scenario}&{limit}", build))

    async def page(_: web.Request) -> web.Response:
        async def build() -> Body:
            return Body(200, live_page(), HTML)

        return _answer(await snapshots.get("/", build))

    async def assets(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound()
        headers = {"Cache-Control": "max-age=300"}
        return web.Response(body=asset(name), content_type=ASSETS[name], headers=headers)

    async def series(request: web.Request) -> web.Response:
        scenario = request.query.get("scenario", "")
        try:
            raw = float(request.query["since"]) if "since" in request.query else None
        except ValueError:
            return _error(400, "since must be a Unix time in seconds")
        if raw is not None and not math.isfinite(raw):
            return _error(400, "since must be a Unix time in seconds")
        # To the whole second: readers of "the last 15 minutes" share one snapshot.
        since = None if raw is None else float(math.floor(raw))

        async def build() -> Body:
            try:
                found = await service.series(scenario, since)
            except NoWorkerAnswered as exc:
                return _body({"error": str(exc)}, 503)
            if found is None:
                return _body({"error": f"no scenario {scenario!r}"}, 404)
            return _body(found)

        return _answer(await snapshots.get(f"/api/series?{scenario}&{since}", build))

    def control(action: Action) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            denied = auth.check(request)
            if denied is not None:
                return denied
            name = request.match_info["name"]
            try:
                status, body = await service.control(action, name)
            except UnknownScenario:
                return _error(404, f"no scenario {name!r}")
            except (AlreadyRunning, NotRunning) as exc:
                return _error(409, str(exc))
            except (NoWorkerAnswered, CannotAccept) as exc:
                return _error(503, str(exc))
            snapshots.clear()  # a run started or stopped: no read may show the state before it
            return _json(body, status=status)

        return handler

    app.router.add_get("/", read(page))
    app.router.add_get("/assets/{name}", read(assets))
    app.router.add_get("/api/series", read(series))
    app.router.add_get("/metrics", read(metrics))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/status", read(status))
    app.router.add_get("/api/runs", read(runs))
    app.router.add_post("/api/scenarios/{name}/run", control("run"))
    app.router.add_post("/api/scenarios/{name}/stop", control("stop"))
    app.router.add_post("/api/scenarios/{name}/accept-baseline", control("accept-baseline"))
    return app
