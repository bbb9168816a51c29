"""REST users against HTTP servers that misbehave one way each: every request is counted
with the outcome that names what went wrong, and the run still ends on time."""

from __future__ import annotations

import asyncio
import gzip
import time

import pytest

from tests.adversarial.runs import outcomes, rest_config, run_rest
from tests.support.rawserver import hold, read_request, serving

# A one-second run with a 300 ms graceful stop ends well within this (generous: 2 shared cores).
RUN_DEADLINE_S = 6.0
BODY = b'{"a": 1}'


def answer(response: bytes) -> object:
    """A script that reads the request, writes ``response`` and keeps the connection open."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response)
        await writer.drain()
        await hold(reader)

    return script


async def test_a_server_that_never_answers_counts_a_timeout_per_user_and_fails() -> None:
    """Requests outstanding when the run is cancelled count as timeout: never a pass over nothing."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await hold(reader)

    async with serving(script) as server:
        started = time.monotonic()
        result = await run_rest(server.url, rest_config(users=3))
        elapsed = time.monotonic() - started
    assert outcomes(result) == {"timeout": 3}
    (endpoint,) = result.endpoints
    assert endpoint.p50_s is not None and endpoint.p50_s >= 1.0  # timed from the send
    assert not result.passed
    assert "error_ratio" in {j.name for j in result.verdict.breached()}
    assert elapsed < RUN_DEADLINE_S


async def test_headers_then_a_stalled_body_is_a_timeout_at_the_request_timeout() -> None:
    """A head followed by a body that never comes times out at the user's request timeout."""
    script = answer(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"a"')
    config = rest_config(duration="1500ms").replace("timeout: 3s", "timeout: 400ms")
    async with serving(script) as server:
        started = time.monotonic()
        result = await run_rest(server.url, config)
        elapsed = time.monotonic() - started
    assert outcomes(result) == {"timeout": 2}
    (endpoint,) = result.endpoints
    assert endpoint.max_s is not None and 0.4 <= endpoint.max_s < 1.5
    assert elapsed < RUN_DEADLINE_S


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-8\r\n"
            + BODY
            + b"\r\n0\r\n\r\n",
            id="negative-chunk-size",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x8\r\n"
            + BODY
            + b"\r\n0\r\n\r\n",
            id="0x-chunk-size",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: +8\r\n\r\n" + BODY, id="plus-length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nContent-Length: 9\r\n\r\n" + BODY,
            id="two-lengths",
        ),
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", id="not-http"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" + BODY + b"junk", id="bytes-after-end"
        ),
        pytest.param(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            id="protocol-switch",
        ),
    ],
)
async def test_malformed_framing_is_a_protocol_error(response: bytes) -> None:
    """A response that is not well-formed HTTP/1.1 is counted as protocol_error, not connection_error."""
    async with serving(answer(response)) as server:
        result = await run_rest(server.url, rest_config())
    assert outcomes(result) == {"protocol_error": 2}


async def test_a_response_with_bare_lf_line_ends_parses() -> None:
    """Head lines ended by a bare LF are accepted (as h11 and aiohttp accept them)."""
    response = b"HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: 8\n\n" + BODY
    async with serving(answer(response)) as server:
        result = await run_rest(server.url, rest_config())
    assert outcomes(result) == {"ok": 2}
    assert result.passed


async def test_a_body_cut_short_by_a_close_is_a_connection_error() -> None:
    """The server closing before the announced length has come is a connection_error."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"a"')
        await writer.drain()

    async with serving(script) as server:
        result = await run_rest(server.url, rest_config())
    assert outcomes(result) == {"connection_error": 2}


@pytest.mark.parametrize(("interim", "outcome"), [(10, "ok"), (11, "protocol_error")])
async def test_ten_interim_responses_are_skipped_an_eleventh_is_a_protocol_error(
    interim: int, outcome: str
) -> None:
    """Up to ten 100 Continue before the real response are read past; an eleventh is a
    protocol_error, even when a real response would follow."""
    response = (
        b"HTTP/1.1 100 Continue\r\n\r\n" * interim + b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n"
    )
    async with serving(answer(response + BODY)) as server:
        result = await run_rest(server.url, rest_config())
    assert outcomes(result) == {outcome: 2}


async def test_a_body_over_max_body_is_too_large() -> None:
    """A body longer than the group's max_body is counted as too_large."""
    body = b'{"a": "' + b"x" * 2048 + b'"}'
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    config = rest_config(user_extra="        max_body: 2KiB\n")
    async with serving(answer(response)) as server:
        result = await run_rest(server.url, config)
    assert outcomes(result) == {"too_large": 2}


async def test_a_body_that_inflates_past_max_decompressed_is_too_large() -> None:
    """A gzip body that inflates past max_decompressed is too_large; one under it is validated."""
    small = gzip.compress(b'{"a": "' + b"x" * 1000 + b'"}')
    big = gzip.compress(b'{"a": "' + b"x" * 4096 + b'"}')

    def gzipped(body: bytes) -> bytes:
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
        return head % len(body) + body

    config = rest_config(user_extra="        max_decompressed: 4KiB\n")
    async with serving(answer(gzipped(big))) as server:
        result = await run_rest(server.url, config)
    assert outcomes(result) == {"too_large": 2}
    async with serving(answer(gzipped(small))) as server:
        result = await run_rest(server.url, config)
    assert outcomes(result) == {"ok": 2}


async def test_stray_bytes_after_a_complete_response_are_a_protocol_error() -> None:
    """Bytes sent 100 ms after a complete response (in a read of their own): the response is
    ok, the stray bytes one protocol_error per user, and the run fails on its error ratio."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" + BODY)
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(b"HTTP/1.1 200 OK\r\n")  # a second response nobody asked for
        await writer.drain()
        await hold(reader)

    async with serving(script) as server:
        result = await run_rest(server.url, rest_config())
    assert outcomes(result) == {"ok": 2, "protocol_error": 2}
    (endpoint,) = result.endpoints
    assert any("bytes after the end" in d for _, d, _ in endpoint.diagnostics)
    assert not result.passed and "error_ratio" in {j.name for j in result.verdict.breached()}


async def test_a_null_required_key_is_invalid_unless_nullable() -> None:
    """``{"a": null}``: invalid for each user (null is not a value); with
    ``nullable_keys: [a]`` ok, while ``{}`` stays invalid."""
    null_body = b'{"a": null}'
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(null_body), null_body)
    async with serving(answer(response)) as server:
        strict = await run_rest(server.url, rest_config())
        lenient = await run_rest(
            server.url,
            rest_config().replace("required_keys: [a]}", "required_keys: [a], nullable_keys: [a]}"),
        )
    assert outcomes(strict) == {"invalid": 2} and not strict.passed
    assert outcomes(lenient) == {"ok": 2} and lenient.passed
    empty = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    async with serving(answer(empty)) as server:
        absent = await run_rest(
            server.url,
            rest_config().replace("required_keys: [a]}", "required_keys: [a], nullable_keys: [a]}"),
        )
    assert outcomes(absent) == {"invalid": 2}


async def test_a_body_as_long_as_one_checked_before_is_judged_by_its_own_bytes() -> None:
    """Each checker keeps its latest verdicts by body length (a snapshot endpoint sends every
    user the same body): a body of the same length but other bytes, plain or inflated from
    gzip, is still judged on its own."""
    bodies = [b'{"a": 1}', b'{"b": 1}', gzip.compress(b'{"b": 1}'), gzip.compress(b'{"a": 1}')]
    served = iter(range(len(bodies)))

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        i = next(served)
        gzipped = b"Content-Encoding: gzip\r\n" if i >= 2 else b""
        body = bodies[i]
        writer.write(
            b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (gzipped, len(body), body)
        )
        await writer.drain()
        await hold(reader)

    async with serving(script) as server:
        result = await run_rest(server.url, rest_config(users=4))
    assert outcomes(result) == {"ok": 2, "invalid": 2}
