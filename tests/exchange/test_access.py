"""Login, expiring tokens, 401s and the per-token rate limit of the exchange."""

from __future__ import annotations

import aiohttp
import pytest

from tests.exchange.conftest import bearer, login
from tests.support.exchange import ExchangeSettings, RunningExchange, running_exchange
from tests.support.exchange.access import RateLimiter, TokenBook
from tests.support.timing import wait_for_async


class FakeClock:
    """A clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_good_until_its_ttl_and_expired_after() -> None:
    """check() says ok just before the TTL, expired at it, unknown/missing otherwise; counted."""
    clock = FakeClock()
    book = TokenBook({"alice": "pw"}, ttl_s=5.0, clock=clock)
    assert book.login("alice", "wrong") is None and book.login("mallory", "pw") is None
    token = book.login("alice", "pw")
    assert token is not None
    clock.now += 4.999
    assert book.check(token) == ("ok", "alice")
    clock.now += 0.001
    assert book.check(token) == ("expired", "alice")
    assert book.check("forged")[0] == "unknown" and book.check(None)[0] == "missing"
    assert (book.logins, book.login_rejections) == (1, 2)
    assert book.rejections == {"expired": 1, "unknown": 1, "missing": 1}


def test_the_rate_limit_tells_whole_seconds_and_counts_who_does_not_wait() -> None:
    """The 4th request in a 1 s window of 3 gets Retry-After 1; asking again before that
    second passed is hammering; after it, a new window starts."""
    clock = FakeClock()
    limiter = RateLimiter(limit=3, window_s=1.0, clock=clock)
    assert [limiter.retry_after("t") for _ in range(3)] == [None, None, None]
    clock.now += 0.2
    assert limiter.retry_after("t") == 1  # 0.8 s left, rounded up
    assert limiter.retry_after("other") is None  # per token
    clock.now += 0.5
    assert limiter.retry_after("t") == 1  # told to wait until +1.2: hammering
    clock.now += 0.5
    assert limiter.retry_after("t") is None
    assert (limiter.limited, limiter.hammering) == (2, 1)


async def test_login_answers_a_token_and_refuses_bad_credentials(
    exchange: RunningExchange, session: aiohttp.ClientSession
) -> None:
    """Good credentials get {data: {access_token, expires_in}}; wrong ones 401, junk 400."""
    url = exchange.url + "/auth/login"
    async with session.post(url, json={"username": "bob", "password": "bob-pw"}) as r:
        data = (await r.json())["data"]
        assert r.status == 200 and len(data["access_token"]) > 20
        assert data["expires_in"] == exchange.exchange.settings.token_ttl_s
    async with session.post(url, json={"username": "bob", "password": "alice-pw"}) as r:
        assert r.status == 401
    async with session.post(url, data=b"username=bob") as r:
        assert r.status == 400
    counts = exchange.exchange.counts()
    assert (counts["logins"], counts["login_rejections"]) == (1, 1)


async def test_rest_wants_a_live_bearer_token(session: aiohttp.ClientSession) -> None:
    """No token, a forged one and an expired one are each 401 (expired ones counted apart)."""
    async with running_exchange(ExchangeSettings(token_ttl_s=1.0)) as ex:
        quotes = ex.url + "/v2/quotes?symbols=VCB"
        token = await login(session, ex)
        async with session.get(quotes, headers=bearer(token)) as r:
            assert r.status == 200
        for headers in ({}, bearer("forged"), {"Authorization": f"Basic {token}"}):
            async with session.get(quotes, headers=headers) as r:
                assert r.status == 401 and "Bearer" in r.headers["WWW-Authenticate"]

        async def expired() -> bool:
            async with session.get(quotes, headers=bearer(token)) as r:
                return r.status == 401 and (await r.json())["error"] == "token expired"

        await wait_for_async(expired, 5, "the token expiring")
        counts = ex.exchange.counts()
        assert counts["expired_token_requests"] >= 1
        assert counts["token_rejections"]["missing"] == 2  # no header, and not a Bearer one
        async with session.get(quotes, headers=bearer(await login(session, ex))) as r:
            assert r.status == 200  # a new login is the way back


async def test_429_carries_retry_after_and_hammering_is_counted(
    session: aiohttp.ClientSession,
) -> None:
    """Past 3 requests/s: 429 + Retry-After; a request before it passed is hammering; one
    after it passed is served."""
    async with running_exchange(ExchangeSettings(rate_limit=3, rate_window_s=1.0)) as ex:
        headers = bearer(await login(session, ex))
        statuses = []
        for _ in range(4):
            async with session.get(ex.url + "/v2/quotes?symbols=FPT", headers=headers) as r:
                statuses.append(r.status)
                retry_after = r.headers.get("Retry-After")
        assert statuses == [200, 200, 200, 429] and retry_after == "1"
        async with session.get(ex.url + "/v2/quotes?symbols=FPT", headers=headers) as r:
            assert r.status == 429
        assert (ex.exchange.limiter.limited, ex.exchange.limiter.hammering) == (2, 1)

        async def served() -> bool:
            async with session.get(ex.url + "/v2/quotes?symbols=FPT", headers=headers) as r:
                return r.status == 200

        # Polling every 0.4 s hammers a little until the second passes; then it is served.
        await wait_for_async(served, 5, "served after Retry-After", every=0.4)
        assert ex.exchange.counts()["http_429"] == ex.exchange.limiter.limited


async def test_quotes_answer_only_the_symbols_asked(
    exchange: RunningExchange, session: aiohttp.ClientSession
) -> None:
    """`?symbols=FPT,VCB` answers those two in that order; an unknown symbol is 400."""
    headers = bearer(await login(session, exchange))
    async with session.get(exchange.url + "/v2/quotes?symbols=FPT,VCB", headers=headers) as r:
        assert [q["sym"] for q in (await r.json())["data"]] == ["FPT", "VCB"]
    for query in ("?symbols=FPT,XYZ", ""):
        async with session.get(exchange.url + "/v2/quotes" + query, headers=headers) as r:
            assert r.status == 400


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"sym": "VCB", "side": "buy", "qty": 100, "px": 91.2}, []),
        ({"sym": "XYZ", "side": "hold", "qty": True, "px": -1, "note": 1}, 5),
        ({"sym": ["VCB"], "side": "sell", "qty": 100, "px": "91"}, 2),
        ([1, 2], 1),
    ],
)
async def test_orders_are_validated_with_every_error_listed(
    exchange: RunningExchange, session: aiohttp.ClientSession, body: object, errors: object
) -> None:
    """A good order is 201 with an id; a bad one is 400 listing each field that is wrong."""
    headers = bearer(await login(session, exchange))
    async with session.post(exchange.url + "/v2/orders", json=body, headers=headers) as r:
        doc = await r.json()
    if errors == []:
        assert r.status == 201 and doc["data"]["order_id"] == "o-1"
        assert doc["data"]["user"] == "alice"
    else:
        assert r.status == 400 and len(doc["details"]) == errors, doc
