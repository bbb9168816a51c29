"""REST requests as configured: methods, per-user paths, queries, headers and JSON bodies, and
429s honoured (Retry-After or a backoff), against real servers on 127.0.0.1."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from loadsvc.config import ConfigError, parse_config
from loadsvc.config.kinds.rest import RateLimitSpec
from loadsvc.config.spec import ScenarioSpec
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.report import endpoint_doc
from loadsvc.runner import RunOptions, RunResult, ScenarioRun
from loadsvc.users import Target
from loadsvc.users.ratelimit import RateLimitGate, parse_retry_after
from tests.support.recording import Seen, ok, recording_server

FAST = RunOptions(tick_s=0.1, seed=3)


def scenario(body: str) -> ScenarioSpec:
    """The scenario ``s`` from a YAML fragment."""
    text = "version: 1\nscenarios:\n  s:\n" + "\n".join(
        "    " + line for line in body.strip().splitlines()
    )
    return parse_config(text, "test.yaml").scenario("s")


async def run(spec: ScenarioSpec, url: str, metrics: Metrics) -> RunResult:
    return await ScenarioRun(spec, Target(url), Recorder(metrics), FAST).execute()


TEMPLATED = """
shape: {kind: constant, users: 2, duration: 1.5s}
data:
  order: unique
  rows:
    - {account: A1, symbols: [VCB, FPT]}
    - {account: B2, symbols: [HPG]}
users:
  - kind: rest
    think_time: {min: 0s, max: 20ms}
    tasks:
      - path: /v2/quotes?symbols=${symbols}
        query: {acct: "${account}", limit: 5}
      - method: POST
        path: /v2/orders/${account}
        headers: {X-Account: "${account}"}
        body: {symbols: "${symbols}", qty: 100, who: "u${user}", note: "a b/${account}"}
      - {method: put, path: "/v2/orders/${account}", body: [1, "${account}"]}
      - {method: PATCH, path: "/v2/orders/${account}", body: {qty: 5}}
      - {method: DELETE, path: "/v2/orders/${account}"}
"""


async def test_methods_paths_queries_headers_and_bodies_reach_the_server_per_user(
    metrics: Metrics,
) -> None:
    """Each user's values fill its path, query, headers and JSON body; labels stay the routes."""
    routes = {"/v2/quotes": ok, "/v2/orders/A1": ok, "/v2/orders/B2": ok}
    async with recording_server(routes) as server:
        result = await run(scenario(TEMPLATED), server.url, metrics)
    quotes = server.at("/v2/quotes")
    assert quotes, "no GET arrived"
    # The path's own query and the query mapping, each user's values, a list joined.
    assert {(q.query["symbols"], q.query["acct"], q.query["limit"]) for q in quotes} == {
        ("VCB,FPT", "A1", "5"),
        ("HPG", "B2", "5"),
    }
    for account, symbols in (("A1", ["VCB", "FPT"]), ("B2", ["HPG"])):
        mine = server.at(f"/v2/orders/{account}")
        by_method = defaultdict(list)
        for s in mine:
            by_method[s.method].append(s)
        assert set(by_method) == {"POST", "PUT", "PATCH", "DELETE"}
        post = by_method["POST"][0]
        assert post.headers["X-Account"] == account
        assert post.headers["Content-Type"] == "application/json"
        # A one-placeholder value keeps its type (a list stays a list); the user's number.
        assert post.body["symbols"] == symbols and post.body["qty"] == 100
        assert post.body["who"] in ("u1", "u2") and post.body["note"] == f"a b/{account}"
        assert by_method["PUT"][0].body == [1, account]
        assert by_method["PATCH"][0].body == {"qty": 5}
        assert by_method["DELETE"][0].body is None
    labels = {(e.endpoint, e.method) for e in result.endpoints}
    assert ("/v2/quotes", "GET") in labels and ("/v2/orders/${account}", "POST") in labels
    assert all(e.errors == 0 for e in result.endpoints), [e.outcomes for e in result.endpoints]


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("{path: /x, body: {a: 1}}", "tasks[0].body: a GET request has no body"),
        ("{path: /x, method: HEAD, body: 1}", "tasks[0].body: a HEAD request has no body"),
        ("{path: /x, method: POST, headers: {Host: x}}", "header 'Host' is written by loadsvc"),
        ("{path: /x, headers: {'a b': x}}", "header name 'a b' is not a valid HTTP token"),
        ("{path: /x, headers: [a]}", "tasks[0].headers: expected a mapping"),
        ("{path: /x, query: {a: {b: 1}}}", "query parameter 'a': a value or a list"),
        ("{path: '/x/${nope}'}", "tasks[0].path: unknown value 'nope'"),
        ("{path: /x, method: POST, body: {a: '${nope}'}}", "tasks[0].body: unknown value 'nope'"),
        ("{path: /x, method: POST, body: {a: '$x'}}", "tasks[0].body: a lone '$'"),
    ],
)
def test_bad_requests_are_config_errors_at_their_field(task: str, expected: str) -> None:
    """A body on GET/HEAD, reserved or malformed headers, a nested query value or an unknown
    template name is an error at its field."""
    text = f"""version: 1
scenarios:
  s:
    shape: {{kind: constant, users: 1, duration: 1s}}
    users:
      - kind: rest
        pacing: 1s
        tasks: [{task}]
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml")
    messages = [f"{i.path}: {i.message}" for i in caught.value.issues]
    assert any(expected in m for m in messages), messages


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    """Retry-After: delay-seconds, an HTTP date (past: 0), or nothing usable."""
    assert parse_retry_after(b"7", now_wall=0.0) == 7.0
    assert parse_retry_after(b"Thu, 01 Jan 1970 00:01:00 GMT", now_wall=45.0) == 15.0
    assert parse_retry_after(b"Thu, 01 Jan 1970 00:01:00 GMT", now_wall=99.0) == 0.0
    for bad in (b"", b"-1", b"1.5", b"tomorrow", b"Thu, 01 Jan 1970 00:01:00"):
        assert parse_retry_after(bad, now_wall=0.0) is None, bad


def test_the_gate_never_opens_before_retry_after_and_backs_off_without_it() -> None:
    """A gate waits at least Retry-After (capped, +<=10 %), or a doubling jittered backoff."""
    gate = RateLimitGate(RateLimitSpec(max_wait_s=10.0, backoff_s=1.0), random.Random(1))
    for _ in range(50):
        assert 3.0 <= gate.refused(3.0, now=0.0) <= 3.3
    assert 10.0 <= gate.refused(500.0, now=0.0) <= 11.0  # capped at max_wait
    gate.answered()
    waits = [gate.refused(None, now=0.0) for _ in range(6)]
    windows = [1, 2, 4, 8, 10, 10]
    assert all(w / 2 <= x <= w for x, w in zip(waits, windows, strict=True)), waits


LIMITED = """
shape: {kind: constant, users: 3, duration: 2.6s}
users:
  - kind: rest
    pacing: 100ms
    tasks: [{path: /limited, headers: {X-User: "${user}"}}]
"""


async def test_retry_after_is_honoured_per_user_and_counted_apart(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """After a 429 with Retry-After: 1 no user asks again within the second; the 429s are
    rate_limited (not http_error), without latency, and each wait is counted."""
    refused_at: dict[str, float] = {}

    def limited(seen: Seen) -> web.Response:
        user = seen.headers["X-User"]
        if user not in refused_at:
            refused_at[user] = seen.at
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.json_response({"ok": True})

    async with recording_server({"/limited": limited}) as server:
        result = await run(scenario(LIMITED), server.url, metrics)
    assert len(refused_at) == 3
    for user, refused in refused_at.items():
        after = [s.at for s in server.at("/limited") if s.headers["X-User"] == user]
        assert after[0] == refused and len(after) > 2, after
        # The server's own clock: the next request came no sooner than Retry-After.
        assert after[1] - refused >= 1.0, (user, after[1] - refused)
    (ep,) = result.endpoints
    assert ep.outcome("rate_limited") == 3 and ep.outcome("http_error") == 0
    assert ep.rate_limit_waits == 3 and 3.0 <= ep.rate_limit_wait_s <= 3.3
    assert ep.latency_histogram[1] and sum(ep.latency_histogram[1]) == ep.outcome("ok")
    labels = {"scenario": "s", "endpoint": "/limited", "method": "GET"}
    assert registry.get_sample_value("loadsvc_http_rate_limit_waits_total", labels) == 3
    assert (
        registry.get_sample_value(
            "loadsvc_http_requests_total", {**labels, "outcome": "rate_limited"}
        )
        == 3
    )
    doc = endpoint_doc(ep)
    assert doc["rate_limited"] == 3 and doc["rate_limit_waits"] == 3
    # Load refused is load not carried: the error ratio counts it.
    assert ep.errors == 3


async def test_429_without_retry_after_backs_off_instead_of_hammering(metrics: Metrics) -> None:
    """A backend that always answers 429 (no Retry-After) gets a doubling backoff's few
    requests, not the pacing's 50, and the run fails on its error ratio."""
    spec = scenario(
        """
shape: {kind: constant, users: 1, duration: 2.5s}
users:
  - kind: rest
    pacing: 50ms
    rate_limit: {backoff: 200ms, max_wait: 800ms}
    tasks: [{path: /always}]
"""
    )
    async with recording_server({"/always": lambda _: web.Response(status=429)}) as server:
        result = await run(spec, server.url, metrics)
    times = [s.at for s in server.seen]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Windows 0.2, 0.4, 0.8, 0.8...: each wait at least half its window.
    assert 3 <= len(times) <= 9, gaps
    assert all(g >= w / 2 for g, w in zip(gaps, [0.2, 0.4, 0.8, 0.8, 0.8, 0.8, 0.8], strict=False))
    (ep,) = result.endpoints
    assert ep.outcome("rate_limited") == len(times) == ep.rate_limit_waits
    assert not result.passed
    assert "error_ratio" in [j.name for j in result.verdict.breached()]


async def test_a_429_from_one_endpoint_holds_the_users_other_endpoints_too(
    metrics: Metrics,
) -> None:
    """A backend that limits per client: after /a answers 429 with Retry-After: 1, the user
    sends nothing to /a or /b within the second (the exchange counts that as hammering)."""
    refused_at: list[float] = []

    def limited(seen: Seen) -> web.Response:
        if not refused_at:
            refused_at.append(seen.at)
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.json_response({"ok": True})

    spec = scenario(
        """
shape: {kind: constant, users: 1, duration: 2s}
users:
  - kind: rest
    pacing: 50ms
    tasks: [{path: /a}, {path: /b, weight: 4}]
"""
    )
    async with recording_server({"/a": limited, "/b": ok}) as server:
        result = await run(spec, server.url, metrics)
    assert len(refused_at) == 1
    # The server's own clock: nothing at all within Retry-After of the refusal.
    early = [s.path for s in server.seen if refused_at[0] < s.at < refused_at[0] + 1.0]
    assert early == [], early
    later = [s.path for s in server.seen if s.at >= refused_at[0] + 1.0]
    assert {"/a", "/b"} <= set(later), later
    outcomes = {e.endpoint: dict(e.outcomes) for e in result.endpoints}
    assert outcomes["/a"]["rate_limited"] == 1
