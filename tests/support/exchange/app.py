"""Routes of the exchange: login, the guarded REST API, the `/stream` upgrade, ground truth.

A middleware guards the REST API (bearer token, then the per-token rate limit) and counts
every answer by status; the stream checks its own token (query or header) at the upgrade.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSCloseCode, web

from tests.support.exchange.access import TOKEN_OK, RateLimiter, TokenBook
from tests.support.exchange.market import Market
from tests.support.exchange.orders import OrderBook
from tests.support.exchange.settings import ENCODINGS, ExchangeSettings
from tests.support.exchange.stream import CLOSE_UNAUTHORIZED, Stream, stream_options
from tests.support.exchange.truth import GroundTruth

LOGIN, QUOTES, ORDERS, STREAM, TRUTH, HEALTH = (
    "/auth/login", "/v2/quotes", "/v2/orders", "/stream", "/_truth", "/healthz"
)  # fmt: skip
GUARDED = frozenset({QUOTES, ORDERS})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Exchange:
    """The exchange's whole state: market, tokens, rate limits, open streams, ground truth."""

    def __init__(self, settings: ExchangeSettings) -> None:
        self.settings = settings
        self.market = Market(settings.symbols, settings.update_probability, settings.seed)
        self.tokens = TokenBook(settings.passwords, settings.token_ttl_s)
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_window_s)
        self.orders = OrderBook(settings.symbols)
        self.truth = GroundTruth()
        self.streams: set[Stream] = set()
        self.counters: Counter[str] = Counter()  # stream events, REST answers by status
        self._ids = itertools.count(1)
        self._ticker: asyncio.Task[None] | None = None

    def next_id(self) -> int:
        """A connection id, unique in this exchange."""
        return next(self._ids)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_s)
            for trade in self.market.tick():
                for stream in self.streams:
                    stream.offer(trade)

    def halt(self) -> None:
        """The closing bell: no trade after it, while streams stay open and heartbeats go on.

        A client still connected a moment later has received every frame written to it, so
        its counts (frames, gaps) can be compared with the ground truth exactly.
        """
        if self._ticker is not None:
            self._ticker.cancel()

    def counts(self) -> dict[str, Any]:
        """Logins, rejections by reason, expired-token requests, 429s, hammering, and the rest."""
        return {
            "logins": self.tokens.logins,
            "login_rejections": self.tokens.login_rejections,
            "token_rejections": dict(self.tokens.rejections),
            "expired_token_requests": self.tokens.rejections["expired"],
            "rate_limited": self.limiter.limited,
            "hammering": self.limiter.hammering,
            **self.counters,
        }


EXCHANGE_KEY = web.AppKey("exchange", Exchange)
USER_KEY = web.RequestKey("user", str)  # who the guard let through


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = orjson.dumps(doc)
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def _body(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Token, then rate limit, for the REST API; every answer counted by status."""
    exchange = request.app[EXCHANGE_KEY]
    response: web.StreamResponse
    if request.path in GUARDED:
        token = _bearer(request)
        verdict, user = exchange.tokens.check(token)
        request[USER_KEY] = user or ""
        wait = exchange.limiter.retry_after(token or "") if verdict == TOKEN_OK else None
        if verdict != TOKEN_OK:
            challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            response = _json({"error": f"token {verdict}"}, 401, challenge)
        elif wait is not None:
            doc = {"error": "rate limited", "retry_after": wait}
            response = _json(doc, 429, {"Retry-After": str(wait)})
        else:
            response = await handler(request)
    else:
        response = await handler(request)
    exchange.counters[f"http_{response.status}"] += 1
    return response


async def _login(request: web.Request) -> web.Response:
    doc = await _body(request)
    fields = ("username", "password")
    if not isinstance(doc, dict) or not all(isinstance(doc.get(f), str) for f in fields):
        return _json({"error": "login needs JSON {username, password} strings"}, 400)
    exchange = request.app[EXCHANGE_KEY]
    token = exchange.tokens.login(doc["username"], doc["password"])
    if token is None:
        return _json({"error": "bad credentials"}, 401)
    ttl = exchange.settings.token_ttl_s
    return _json({"data": {"access_token": token, "token_type": "Bearer", "expires_in": ttl}})


async def _quotes(request: web.Request) -> web.Response:
    market = request.app[EXCHANGE_KEY].market
    wanted = [s for s in request.query.get("symbols", "").split(",") if s]
    unknown = [s for s in wanted if s not in market.prices]
    if not wanted or unknown:
        return _json({"error": f"symbols= needs known symbols; unknown: {unknown}"}, 400)
    return _json({"data": [market.quote(sym) for sym in wanted]})


async def _order(request: web.Request) -> web.Response:
    orders = request.app[EXCHANGE_KEY].orders
    order, errors = orders.place(await _body(request), request[USER_KEY])
    if errors:
        return _json({"error": "invalid order", "details": errors}, 400)
    return _json({"data": order}, 201)


async def _stream(request: web.Request) -> web.StreamResponse:
    exchange = request.app[EXCHANGE_KEY]
    settings = exchange.settings
    query = request.query
    options = stream_options(query, settings)
    if options is None:
        doc = {"error": f"encoding in {ENCODINGS}, drop_every 0 or >= 2, delay_ms >= 0"}
        return _json(doc, 400)
    encoding, faults = options
    verdict, user = exchange.tokens.check(query.get("token") or _bearer(request))
    if verdict != TOKEN_OK and not settings.ws_auth_close:
        return _json({"error": f"token {verdict}"}, 401)
    ws = web.WebSocketResponse(max_msg_size=64 * 1024)
    await ws.prepare(request)
    if verdict != TOKEN_OK or user is None:
        await ws.close(code=CLOSE_UNAUTHORIZED, message=f"token {verdict}".encode())
        return ws
    conn_id = exchange.next_id()
    exchange.truth.open(conn_id, user, encoding, faults.to_json())
    stream = Stream(conn_id, ws, encoding, faults, settings, exchange.truth, exchange.counters)
    exchange.streams.add(stream)
    try:
        await stream.serve()
    finally:
        exchange.streams.discard(stream)
    return ws


async def _truth(request: web.Request) -> web.Response:
    exchange = request.app[EXCHANGE_KEY]
    if request.method == "DELETE":
        exchange.truth.reset()
    frames = request.query.get("frames") in ("1", "true")
    return _json({"counters": exchange.counts(), **exchange.truth.to_json(frames)})


async def _health(_: web.Request) -> web.Response:
    return _json({"status": "ok"})


def build_app(settings: ExchangeSettings | None = None) -> web.Application:
    """The exchange as an aiohttp application; its state at `app[EXCHANGE_KEY]`."""
    exchange = Exchange(settings or ExchangeSettings())
    app = web.Application(middlewares=[_guard])
    app[EXCHANGE_KEY] = exchange

    async def start(_: web.Application) -> None:
        exchange._ticker = asyncio.create_task(exchange._tick_forever())

    async def stop(_: web.Application) -> None:
        if exchange._ticker is not None:
            exchange._ticker.cancel()
        for stream in list(exchange.streams):
            with suppress(ConnectionError, RuntimeError):
                await stream.ws.close(code=WSCloseCode.GOING_AWAY, message=b"shutdown")

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    app.router.add_post(LOGIN, _login)
    app.router.add_get(QUOTES, _quotes)
    app.router.add_post(ORDERS, _order)
    app.router.add_get(STREAM, _stream)
    app.router.add_get(TRUTH, _truth)
    app.router.add_delete(TRUTH, _truth)
    app.router.add_get(HEALTH, _health)
    return app


@dataclass(frozen=True, slots=True)
class RunningExchange:
    """An exchange serving on 127.0.0.1 in the current loop."""

    port: int
    exchange: Exchange

    @property
    def url(self) -> str:
        """Base HTTP URL, e.g. `http://127.0.0.1:40123`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """The stream's URL, e.g. `ws://127.0.0.1:40123/stream`."""
        return f"ws://127.0.0.1:{self.port}{STREAM}"


@asynccontextmanager
async def running_exchange(
    settings: ExchangeSettings | None = None, port: int = 0
) -> AsyncIterator[RunningExchange]:
    """Serve a fresh exchange on 127.0.0.1:`port` (0: a free one) for the block's duration."""
    app = build_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        yield RunningExchange(runner.addresses[0][1], app[EXCHANGE_KEY])
    finally:
        await runner.cleanup()
