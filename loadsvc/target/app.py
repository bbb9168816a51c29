"""Routes of the reference target: the seed's six endpoints, health, and fault/stats admin.

Handlers translate HTTP and WebSocket to calls on the `TargetRuntime` that `build_app`
creates; all state, timing and fan-out live there and in the modules it uses.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from loadsvc.target.connection import ClientConnection
from loadsvc.target.faults import InvalidFaults, parse_fault_update
from loadsvc.target.paths import (
    ADMIN_DELIVERY_PATH,
    ADMIN_FAULTS_PATH,
    ADMIN_STATS_PATH,
    ALERTS_PATH,
    FOREIGN_DETAIL_PATH,
    HEALTH_PATH,
    SNAPSHOT_PATH,
    WS_PATHS,
)
from loadsvc.target.runtime import TargetRuntime
from loadsvc.target.settings import TargetSettings

__all__ = ["TARGET_KEY", "TargetSettings", "build_app"]

TARGET_KEY = web.AppKey("loadsvc_target", TargetRuntime)
"""Where `build_app` stores the target's runtime, for tests that want to look inside."""

_DEFAULT_ALERTS_LIMIT = 50
# Clients only send control frames and perhaps small subscribe messages.
_MAX_CLIENT_MESSAGE = 64 * 1024
_DEFAULT_WRITER_LIMIT = 64 * 1024  # aiohttp's own default

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(payload: Any, status: int = 200) -> web.Response:
    return _json_bytes(orjson.dumps(payload), status)


def _json_bytes(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def build_app(settings: TargetSettings | None = None) -> web.Application:
    """An aiohttp application simulating the stock-tracker backend of the seed."""
    runtime = TargetRuntime(settings or TargetSettings())
    app = web.Application()
    app[TARGET_KEY] = runtime

    async def start(_: web.Application) -> None:
        runtime.start()

    async def stop(_: web.Application) -> None:
        await runtime.shutdown()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)

    app.router.add_get(HEALTH_PATH, _healthz)
    app.router.add_get(SNAPSHOT_PATH, _cached_rest_handler(SNAPSHOT_PATH))
    app.router.add_get(FOREIGN_DETAIL_PATH, _cached_rest_handler(FOREIGN_DETAIL_PATH))
    app.router.add_get(ALERTS_PATH, _alerts)
    for path in WS_PATHS:
        app.router.add_get(path, _ws_handler(path))
    app.router.add_get(ADMIN_FAULTS_PATH, _get_faults)
    app.router.add_post(ADMIN_FAULTS_PATH, _post_faults)
    app.router.add_delete(ADMIN_FAULTS_PATH, _delete_faults)
    app.router.add_get(ADMIN_STATS_PATH, _stats)
    app.router.add_get(ADMIN_DELIVERY_PATH, _get_delivery)
    app.router.add_delete(ADMIN_DELIVERY_PATH, _reset_delivery)
    return app


async def _healthz(_: web.Request) -> web.Response:
    return _json({"status": "ok"})


# REST ------------------------------------------------------------------------------------


async def _rest_faults(runtime: TargetRuntime, path: str) -> web.Response | None:
    """Count the request and apply the path's faults; an error response if one is injected."""
    runtime.rest_requests[path] += 1
    await runtime.faults.wait_unstalled(path)
    latency = runtime.faults.latency_s(path)
    if latency > 0:
        await asyncio.sleep(latency)
    if runtime.roll(runtime.faults.error_ratio(path)):
        runtime.rest_errors[path] += 1
        return _json({"error": "injected fault", "path": path}, status=500)
    return None


def _cached_rest_handler(path: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        runtime = request.app[TARGET_KEY]
        error = await _rest_faults(runtime, path)
        # Not `error or ...`: a Response is a MutableMapping, so an empty one is falsy.
        return error if error is not None else _json_bytes(runtime.rest_body(path))

    return handler


async def _alerts(request: web.Request) -> web.Response:
    runtime = request.app[TARGET_KEY]
    error = await _rest_faults(runtime, ALERTS_PATH)
    if error is not None:
        return error
    maximum = runtime.settings.alert_history
    raw = request.query.get("limit", str(min(_DEFAULT_ALERTS_LIMIT, maximum)))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= maximum:
        # FastAPI's validation error shape, as the seed backend would answer.
        detail = {
            "loc": ["query", "limit"],
            "msg": f"limit must be an integer between 1 and {maximum}",
            "input": raw,
        }
        return _json({"detail": [detail]}, status=422)
    return _json({"alerts": runtime.market.recent_alerts(limit)})


# WebSocket -------------------------------------------------------------------------------


def _ws_handler(path: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        runtime = request.app[TARGET_KEY]
        faults = runtime.faults
        latency = faults.latency_s(path)
        if latency > 0:
            await asyncio.sleep(latency)
        if runtime.roll(faults.error_ratio(path)):
            runtime.handshakes_refused[path] += 1
            return _json({"error": "injected fault", "path": path}, status=503)
        transport = request.transport
        if transport is None:  # the client gave up during the handshake delay
            raise web.HTTPBadRequest(text="connection closed")
        # No compression: it would cost a zlib pass per client per frame, and the point of
        # the fan-out is that every client gets the very same bytes.
        buffer = runtime.settings.ws_send_buffer_bytes
        ws = web.WebSocketResponse(
            compress=False,
            max_msg_size=_MAX_CLIENT_MESSAGE,
            # aiohttp checks for back-pressure each time this many bytes have been written.
            writer_limit=buffer or _DEFAULT_WRITER_LIMIT,
        )
        await ws.prepare(request)
        if buffer is not None:
            _limit_send_buffer(transport, buffer)
        publisher = runtime.publishers[path]
        client = ClientConnection(ws, transport, runtime.settings.queue_size, publisher.delivery)
        publisher.add(client)
        client.start()
        try:
            async for _ in ws:
                pass  # incoming messages are ignored; reading is how we notice the close
        finally:
            publisher.remove(client)
            await client.stop()
        return ws

    return handler


def _limit_send_buffer(transport: asyncio.Transport, size: int) -> None:
    """Shrink the socket's and the transport's send buffers to about `size` bytes."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    transport.set_write_buffer_limits(high=size)


# Admin -----------------------------------------------------------------------------------


async def _get_faults(request: web.Request) -> web.Response:
    return _json(request.app[TARGET_KEY].faults.to_json())


async def _post_faults(request: web.Request) -> web.Response:
    runtime = request.app[TARGET_KEY]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return _json({"error": "invalid faults", "details": [f"body is not JSON: {exc}"]}, 400)
    try:
        update = parse_fault_update(body)
    except InvalidFaults as exc:
        return _json({"error": "invalid faults", "details": exc.errors}, status=400)
    runtime.faults.apply(update)
    dropped = runtime.drop_connections(update.drop_connections)
    return _json({"faults": runtime.faults.to_json(), "dropped": dropped})


async def _delete_faults(request: web.Request) -> web.Response:
    faults = request.app[TARGET_KEY].faults
    faults.clear()
    return _json(faults.to_json())


async def _stats(request: web.Request) -> web.Response:
    return _json(request.app[TARGET_KEY].stats())


async def _get_delivery(request: web.Request) -> web.Response:
    return _json(request.app[TARGET_KEY].delivery())


async def _reset_delivery(request: web.Request) -> web.Response:
    runtime = request.app[TARGET_KEY]
    runtime.reset_delivery()
    return _json(runtime.delivery())
