"""Hostile login backends: tokens that live shorter than a user's idle time, tokens with CR/LF,
numbers, nulls or nothing, lifetimes that are negative, zero, strings or huge, a login that
fails forever and an API that answers 401 to every token; logins stay bounded and counted,
no header is injected, and the run never passes."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from aiohttp import web

from loadsvc.config import ConfigError, parse_config
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, RunResult, ScenarioRun
from loadsvc.runstats import EndpointSummary
from loadsvc.users import Target
from tests.support.recording import Seen, recording_server

FAST = RunOptions(tick_s=0.1, seed=5)


def scenario(login: str, *, users: str, duration: str = "2s") -> str:
    """Scenario ``s``: a login (YAML lines under ``login:``) and one user group."""
    return f"""
version: 1
scenarios:
  s:
    shape: {{kind: constant, users: 1, duration: {duration}}}
    graceful_stop: 500ms
    login:
      path: /auth/login
      body: {{user: a}}
      token: data.token
{login}    users:
{users}"""


PACED = """      - kind: rest
        pacing: 1s
        timeout: 1s
        tasks: [{path: /api/x}]
"""


async def run(text: str, url: str, metrics: Metrics) -> RunResult:
    spec = parse_config(text, "hostile.yaml").scenario("s")
    return await ScenarioRun(spec, Target(url), Recorder(metrics), FAST).execute()


def endpoint(result: RunResult, name: str) -> EndpointSummary:
    (ep,) = [e for e in result.endpoints if e.endpoint == name]
    return ep


def answering(data: dict[str, Any]) -> Any:
    """A login route answering ``{"data": data}`` with a fresh token each time (when
    ``data`` has ``token`` set to True)."""
    n = itertools.count()

    def login(_: Seen) -> web.Response:
        body = dict(data)
        if body.get("token") is True:
            body["token"] = f"t{next(n)}"
        return web.json_response({"data": body})

    return login


def ok(_: Seen) -> web.Response:
    return web.json_response({"ok": True})


@pytest.mark.parametrize("lifetime", [0.2, 1e-9])
async def test_a_token_shorter_lived_than_the_pacing_is_not_a_login_storm(
    lifetime: float, metrics: Metrics
) -> None:
    """Tokens living 200 ms (or 1 ns) against a user paced at 1 s: at most a few logins per
    request, never a loop of logins through the idle time; a 200 ms token is renewed late
    enough to be valid when the request goes."""
    login = "      expires_in: data.expires_in\n      renew_before: 30s\n"
    issued: dict[str, float] = {}
    tokens = answering({"token": True, "expires_in": lifetime})

    def login_route(seen: Seen) -> web.Response:
        answer = tokens(seen)
        issued[json.loads(answer.body)["data"]["token"]] = seen.at
        return answer

    def api(seen: Seen) -> web.Response:
        age = seen.at - issued.get(seen.headers["Authorization"].removeprefix("Bearer "), -1e9)
        return web.json_response({}, status=200 if age <= lifetime else 401)

    async with recording_server({"/auth/login": login_route, "/api/x": api}) as srv:
        result = await run(scenario(login, users=PACED), srv.url, metrics)
    requests, logins = len(srv.at("/api/x")), len(srv.at("/auth/login"))
    assert 1 <= requests <= 6
    assert logins <= 2 * requests + 1, f"{logins} logins for {requests} requests"
    assert endpoint(result, "login").count == logins
    if lifetime >= 0.1:
        assert endpoint(result, "/api/x").errors == 0


@pytest.mark.parametrize(
    "token",
    ["abc\r\nX-Injected: 1", "abc\nX-Injected: 1", None, {"a": 1}, "", "tok en", "тoken"],
)
async def test_an_unsendable_token_is_refused_never_sent(token: Any, metrics: Metrics) -> None:
    """A token with CR/LF (header injection), a space, non-ASCII, an object, null or empty:
    the login is counted invalid and backed off; no request carries it."""
    login = "      backoff: 200ms\n"
    routes = {"/auth/login": answering({"token": token}), "/api/x": ok}
    async with recording_server(routes) as srv:
        result = await run(scenario(login, users=PACED), srv.url, metrics)
    assert srv.at("/api/x") == []
    assert all("X-Injected" not in s.headers for s in srv.seen)
    logins = endpoint(result, "login")
    assert logins.outcome("invalid") == len(srv.at("/auth/login")) <= 5
    assert ("invalid", "login: no usable token at data.token") in [
        d[:2] for d in logins.diagnostics
    ]
    assert not result.passed


@pytest.mark.parametrize("expires_in", [-5, 0, "soon", "NaN", "inf", None, True])
async def test_an_unusable_lifetime_is_an_invalid_login(expires_in: Any, metrics: Metrics) -> None:
    """expires_in negative, zero, a word, NaN, infinite, null or a boolean: invalid, backed
    off, no request sent with a token of unknown life."""
    login = "      expires_in: data.expires_in\n      backoff: 200ms\n"
    routes = {"/auth/login": answering({"token": True, "expires_in": expires_in}), "/api/x": ok}
    async with recording_server(routes) as srv:
        result = await run(scenario(login, users=PACED), srv.url, metrics)
    assert srv.at("/api/x") == []
    assert endpoint(result, "login").outcome("invalid") == len(srv.at("/auth/login")) <= 5
    assert not result.passed


async def test_a_huge_lifetime_is_used_until_a_401(metrics: Metrics) -> None:
    """expires_in 1e300 is a token that never needs renewing: one login serves the run."""
    login = "      expires_in: data.expires_in\n"
    fast = PACED.replace("pacing: 1s", "pacing: 100ms")
    routes = {"/auth/login": answering({"token": True, "expires_in": 1e300}), "/api/x": ok}
    async with recording_server(routes) as srv:
        result = await run(scenario(login, users=fast), srv.url, metrics)
    assert len(srv.at("/auth/login")) == 1 and len(srv.at("/api/x")) >= 10
    assert result.passed


async def test_a_login_that_fails_forever_is_backed_off_and_fails_the_run(
    metrics: Metrics,
) -> None:
    """The login endpoint answers 500 for the whole run: attempts double their waits, no
    user request is sent, the login endpoint and the user's endpoint both fail the run."""
    login = "      backoff: 100ms\n      max_backoff: 400ms\n"
    routes = {"/auth/login": lambda _: web.json_response({}, status=500), "/api/x": ok}
    async with recording_server(routes) as srv:
        result = await run(scenario(login, users=PACED, duration="2500ms"), srv.url, metrics)
    assert 3 <= len(srv.at("/auth/login")) <= 10
    assert srv.at("/api/x") == []
    failed = {(j.endpoint, j.state) for j in result.verdict.breached()}
    assert ("/api/x", "no_data") in failed
    assert ("login", "breached") in failed


async def test_an_api_that_rejects_every_token_costs_one_login_per_request(
    metrics: Metrics,
) -> None:
    """Logins succeed but the API answers 401 to every token: one renewal per request (the
    request is sent once more), never a storm; every request is an error, and the run fails."""
    fast = PACED.replace("pacing: 1s", "pacing: 100ms")
    routes = {
        "/auth/login": answering({"token": True}),
        "/api/x": lambda _: web.json_response({}, status=401),
    }
    async with recording_server(routes) as srv:
        result = await run(scenario("", users=fast), srv.url, metrics)
    requests, logins = len(srv.at("/api/x")), len(srv.at("/auth/login"))
    assert requests >= 10
    assert logins <= requests // 2 + 2, f"{logins} logins for {requests} requests"
    api = endpoint(result, "/api/x")
    assert api.errors == api.count > 0
    assert not result.passed


def test_a_secret_with_a_newline_in_a_login_header_is_a_config_error_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An API key from the environment holding ``\\r\\n`` sent as a login header would inject
    a header (and crashed the run at its start): a config error naming the header, without
    the secret."""
    monkeypatch.setenv("TEST_API_KEY", "k3y-SECRET\r\nX-Injected: 1")
    login = '      headers: {X-Api-Key: "${key}"}\n      secrets: {key: {env: TEST_API_KEY}}\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(scenario(login, users=PACED), "hostile.yaml")
    messages = [f"{i.path}: {i.message}" for i in caught.value.issues]
    assert any("login.headers: the value of header 'X-Api-Key'" in m for m in messages), messages
    assert all("SECRET" not in m and "Injected" not in m for m in messages), messages
