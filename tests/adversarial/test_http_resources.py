"""`loadsvc run` against HTTP servers that try to exhaust the generator: every request is
counted with its outcome, the run exits on time with its verdict, and the process's peak
RSS stays bounded."""

from __future__ import annotations

import asyncio
import zlib

import pytest

from tests.adversarial.runs import CliRun, rest_config, run_cli
from tests.support.rawserver import read_request, serving_in_thread

PEAK_RSS_MB = 200  # the bound for a generator under a hostile backend
RUN_DEADLINE_S = 30.0  # a 2 s run; generous for a child process on 2 shared cores

# Users with no pause between requests: each keeps its connection under attack.
HAMMER = rest_config(users=4, duration="2s").replace(
    "think_time: {min: 60s, max: 60s}", "think_time: {min: 0s, max: 0s}"
)


async def _write_forever(writer: asyncio.StreamWriter, block: bytes) -> None:
    while True:  # until the client drops the connection (the script's normal end)
        writer.write(block)
        await writer.drain()


def assert_cut_off(run: CliRun, outcome: str) -> None:
    """Every request of the hammering run ended as ``outcome``, and the run failed on time in
    bounded memory."""
    counts = run.outcomes()
    assert set(counts) == {outcome} and counts[outcome] >= 4, run.stderr
    assert run.returncode == 1
    assert run.peak_rss_mb < PEAK_RSS_MB
    assert run.elapsed_s < RUN_DEADLINE_S


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """A gzip stream of 256 MiB of zeros (about 250 KiB): five times the decompressed cap."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [deflater.compress(zeros) for _ in range(256)]
    return b"".join([*parts, deflater.flush()])


def test_never_answering_server_exits_1_with_a_timeout_per_user() -> None:
    """A 1 s run against a server that never answers exits 1, counting one timeout per user."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()

    with serving_in_thread(script) as server:
        run = run_cli(rest_config(users=3), "s", server.url)
    assert run.returncode == 1, run.stderr
    assert run.outcomes() == {"timeout": 3}
    assert run.summary["passed"] is False
    assert run.elapsed_s < RUN_DEADLINE_S


def test_a_100_continue_flood_is_a_protocol_error_in_bounded_memory() -> None:
    """An endless stream of 100 Continue is cut off as protocol_error; RSS stays bounded."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await _write_forever(writer, b"HTTP/1.1 100 Continue\r\n\r\n" * 2048)

    with serving_in_thread(script) as server:
        run = run_cli(HAMMER, "s", server.url)
    assert_cut_off(run, "protocol_error")


def test_an_endless_body_is_too_large_in_bounded_memory() -> None:
    """A body that never ends (announced as 10 GiB) stops at max_body as too_large; RSS bounded."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (10 * 1024**3))
            await _write_forever(writer, b"x" * 65536)

    with serving_in_thread(script) as server:
        run = run_cli(HAMMER, "s", server.url)
    assert_cut_off(run, "too_large")


def test_a_gzip_bomb_is_too_large_in_bounded_memory(gzip_bomb: bytes) -> None:
    """A 250 KiB gzip body that would inflate to 256 MiB stops at max_decompressed; RSS bounded."""
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(gzip_bomb)
        + gzip_bomb
    )

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(response)
            await writer.drain()

    with serving_in_thread(script) as server:
        run = run_cli(HAMMER, "s", server.url)
    assert_cut_off(run, "too_large")
