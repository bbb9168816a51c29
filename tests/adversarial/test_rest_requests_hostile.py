"""Hostile REST backends and data for templated requests: 429 on every request with every kind of
``Retry-After`` (huge, negative, a date in the past, garbage, a latin-1 superscript digit),
bodies nested past the decoder's depth, and per-user values holding CR/LF, spaces, ``../``
and unicode in paths, queries and headers: counted, honoured, never injected, never a PASS."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from loadsvc.config import ConfigError, parse_config
from loadsvc.config.spec import ScenarioSpec
from loadsvc.metrics import Metrics
from loadsvc.users import Target
from tests.adversarial.runs import outcomes, run_bounded
from tests.support.rawserver import Script, read_request, serving
from tests.support.recording import recording_server


def scenario(task: str, *, data: str = "", pacing: str = "50ms", extra: str = "") -> str:
    """Scenario ``s``: one paced REST user for 1.5 s running ``task`` (a flow mapping)."""
    return f"""
version: 1
scenarios:
  s:
    shape: {{kind: constant, users: 1, duration: 1500ms}}
    graceful_stop: 300ms
{data}    users:
      - kind: rest
        pacing: {pacing}
        timeout: 1s
{extra}        tasks:
          - {task}
"""


def run_text(text: str) -> ScenarioSpec:
    return parse_config(text, "hostile.yaml").scenario("s")


def recorder(seen: list[bytes]) -> Script:
    """A server script answering every request 200 ``{}``, keeping each request's head."""

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                seen.append(await read_request(reader))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()

    return record


@pytest.mark.parametrize(
    ("retry_after", "honoured"),
    [
        (b"\xb2", False),  # latin-1 superscript two: str.isdigit() says yes, float() says no
        (b"\xd9\xa1", False),  # an Arabic-Indic digit one, in UTF-8 bytes
        (b"-5", False),
        (b"soon", False),
        (b"1e3", False),
        (b"", False),
        (b"999999", True),  # capped at max_wait
        (b"Thu, 01 Jan 1970 00:00:00 GMT", True),  # a date in the past: 0 s
        (b"9" * 400, True),
    ],
)
async def test_every_request_refused_with_any_retry_after_is_counted_and_fails(
    retry_after: bytes, honoured: bool, metrics: Metrics
) -> None:
    """Every answer is 429 with this Retry-After: each is counted rate_limited with one wait,
    the user is never replaced (no crash), the waits are bounded by max_wait, and the run
    fails (an endpoint that only ever got 429 is not healthy)."""
    requests = 0

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        while True:
            try:
                await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            requests += 1
            header = b"Retry-After: " + retry_after + b"\r\n" if retry_after else b""
            writer.write(
                b"HTTP/1.1 429 Too Many Requests\r\n" + header + b"Content-Length: 0\r\n\r\n"
            )
            await writer.drain()

    extra = "        rate_limit: {max_wait: 200ms, backoff: 50ms}\n"
    spec = run_text(scenario("{path: /api/x}", extra=extra))
    async with serving(refuse) as server:
        result = await run_bounded(spec, Target(server.url), metrics)
    (ep,) = result.endpoints
    assert outcomes(result) == {"rate_limited": requests}
    assert requests >= 3
    assert ep.rate_limit_waits == requests
    assert ep.rate_limit_wait_s <= requests * 0.2 * 1.1 + 1e-9
    detail = "Retry-After honoured" if honoured else "no Retry-After: backoff"
    assert [d[1] for d in ep.diagnostics] == [f"HTTP 429 ({detail})"]
    assert not result.passed and result.result == "failed"


async def test_a_body_nested_past_the_decoders_depth_is_invalid(metrics: Metrics) -> None:
    """A 200 whose body is 5,000 nested arrays: invalid, counted, the user lives on."""
    deep = b"[" * 5000 + b"]" * 5000
    routes = {"/api/x": lambda _: web.Response(body=deep, content_type="application/json")}
    spec = run_text(scenario("{path: /api/x, required_keys: [a]}", pacing="100ms"))
    async with recording_server(routes) as srv:
        result = await run_bounded(spec, Target(srv.url), metrics)
    assert outcomes(result) == {"invalid": len(srv.at("/api/x"))}
    assert len(srv.at("/api/x")) >= 10


HOSTILE_VALUES = """    data:
      rows:
        - {v: "a b/../../admin?x=1&y=ü#frag"}
"""


async def test_values_with_spaces_dots_and_unicode_reach_the_path_and_query_escaped(
    metrics: Metrics,
) -> None:
    """A value with a space, ``../``, ``?``, ``&``, ``#`` and unicode: in a query it arrives
    exactly as written; in a path it is escaped (no fragment cut, nothing outside the
    path); and the request always goes to the target."""
    task = '{path: "/api/x/${v}", query: {q: "${v}"}}'
    spec = run_text(scenario(task, data=HOSTILE_VALUES, pacing="200ms"))
    seen: list[bytes] = []
    async with serving(recorder(seen)) as server:
        result = await run_bounded(spec, Target(server.url), metrics)
    assert seen and outcomes(result) == {"ok": len(seen)}
    line = seen[0].split(b"\r\n", 1)[0].decode("ascii")
    method, target, version = line.split(" ")
    assert (method, version) == ("GET", "HTTP/1.1")
    assert "#" not in target and " " not in target
    parts = urlsplit(target)
    assert parse_qs(parts.query)["q"] == ["a b/../../admin?x=1&y=ü#frag"]


@pytest.mark.parametrize(
    "task",
    [
        '{path: /api/x, headers: {X-Sym: "${v}"}}',
        '{path: /api/x, headers: {X-Sym: "a${v}"}}',
        '{path: /api/x, headers: {X-Sym: "a\\r\\nX-Injected: 1"}}',
    ],
)
def test_a_header_value_with_cr_lf_is_a_config_error_before_any_load(task: str) -> None:
    """A header filled with ``a\\r\\nX-Injected: 1`` (from a data row, or written so) would
    inject a header: a config error naming the header (and the row), never the value; it
    crashed the whole run at its first user."""
    data = '    data:\n      rows:\n        - {v: ok}\n        - {v: "a\\r\\nX-Injected: 1"}\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(scenario(task, data=data), "hostile.yaml")
    messages = [f"{i.path}: {i.message}" for i in caught.value.issues]
    assert any(".tasks[0].headers: the value of header 'X-Sym'" in m for m in messages), messages
    if "${v}" in task:
        assert any("from row 2 of scenarios.s.data" in m for m in messages), messages
    assert all("Injected" not in m for m in messages), messages


@pytest.mark.parametrize("task", ['{path: "/api/${v}"}', '{path: /api/x, query: {q: "${v}"}}'])
async def test_a_value_with_cr_lf_in_a_path_or_query_is_escaped(
    task: str, metrics: Metrics
) -> None:
    """The same value in a path or a query is escaped: one request line, no injected header."""
    data = '    data:\n      rows:\n        - {v: "a\\r\\nX-Injected: 1"}\n'
    seen: list[bytes] = []
    async with serving(recorder(seen)) as server:
        result = await run_bounded(run_text(scenario(task, data=data)), Target(server.url), metrics)
    assert seen and outcomes(result) == {"ok": len(seen)}
    for head in seen:
        assert b"X-Injected" not in head.split(b"\r\n", 1)[1]
        assert b"%0D%0AX-Injected" in head.split(b"\r\n", 1)[0]
