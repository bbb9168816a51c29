"""Arrival times from the kernel, against servers on 127.0.0.1 that send while the client's loop is blocked.

The servers run on a loop of their own in a thread, so they send on time while the
test blocks its own loop on purpose (``time.sleep``: the generator busy with other
sockets). A kernel-stamped arrival stays at the true one; the loop's clock reads late.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry
from websockets.typing import BytesLike

from loadsvc.config import parse_config
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.report import arrival_clock, summary_doc
from loadsvc.runner import RunOptions, ScenarioRun
from loadsvc.users import Target, arrival
from loadsvc.users.arrival import clock_of, use_kernel_clock
from loadsvc.users.http1 import Http1Client, Origin, request_bytes
from loadsvc.users.wsconn import ArrivalBacklog, TimedConnection, stamped_connect
from tests.support.loops import Run
from tests.support.rawserver import Script, hold, read_request, serving_in_thread
from tests.support.timing import scaled, wait_for_async
from tests.support.tls import localhost_tls_pair
from tests.support.wsservers import market_frame

BLOCKED_S = 0.5  # how long the client's loop is kept busy while the data arrives
# What a kernel-stamped arrival may read above the true one: the loopback hop and the
# server thread's own scheduling on a shared machine, far under the blocked time.
KERNEL_SLACK_S = 0.05

needs_stamps = pytest.mark.skipif(not arrival.SUPPORTED, reason="the kernel does not stamp reads")


@pytest.fixture(autouse=True)
def kernel_clock_default() -> Iterator[None]:
    """Each test sets the clock it needs; the default is restored after it."""
    yield
    use_kernel_clock(True)


def _accept(request: bytes) -> bytes:
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    digest = hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n\r\n"
    )


def ws_sends_when_released(release: threading.Event) -> Script:
    """A WS server that completes the handshake, then sends one stamped frame once released."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_accept(await reader.readuntil(b"\r\n\r\n")))
        await writer.drain()
        await asyncio.to_thread(release.wait, scaled(10))
        writer.write(market_frame(1, time.time()))  # published at the moment it is sent
        await writer.drain()
        await hold(reader)

    return script


class HttpExchange:
    """What the HTTP server below saw: requests read, and when (monotonic) it answered each."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.requests = 0
        self.sent: list[float] = []


def http_answers_when_released(exchange: HttpExchange) -> Script:
    """An HTTP server that answers each request once released, noting when (monotonic)."""
    release, sent = exchange.release, exchange.sent

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            exchange.requests += 1
            await asyncio.to_thread(release.wait, scaled(10))
            release.clear()
            sent.append(time.monotonic())
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()

    return script


@dataclass(frozen=True)
class Timed:
    """How the client timed data that arrived while its loop was blocked."""

    latency: float  # arrival as timed - when the server sent it
    clock: str  # what timed it
    after_unblocked: float  # arrival as timed - when the loop was free again


async def ws_delivery_with_blocked_loop(url: str, release: threading.Event) -> Timed:
    """How the client timed one frame (latency = arrival - published_at) that the server sent
    while the client's loop was busy for BLOCKED_S."""
    got: list[tuple[str, float]] = []

    def on_frame(data: BytesLike | str, arrived: float) -> None:
        assert isinstance(data, str)
        got.append((data, arrived))

    ws = await stamped_connect(
        url.replace("http://", "ws://"),
        compression=None,
        proxy=None,
        create_connection=TimedConnection.factory(on_frame),
    )
    try:
        release.set()
        time.sleep(BLOCKED_S)  # the loop is busy on purpose: the frame arrives meanwhile
        unblocked = time.time()
        await wait_for_async(lambda: got, 5, "the frame")
        text, arrived = got[0]
        published = json.loads(text)["published_at"]
        assert published < unblocked, "the server sent only after the block: no test"
        return Timed(arrived - published, clock_of(ws.transport), arrived - unblocked)
    finally:
        ws.transport.abort()  # the raw server does not answer a closing handshake
        await ws.wait_closed()


@needs_stamps
def test_a_ws_frame_is_timed_by_the_kernel_while_the_loop_is_blocked(run: Run) -> None:
    """Kernel clock: the delivery latency stays near the true one though the loop read 200 ms late."""
    release = threading.Event()
    with serving_in_thread(ws_sends_when_released(release)) as server:

        async def body() -> None:
            timed = await ws_delivery_with_blocked_loop(server.url, release)
            assert timed.clock == "kernel"
            assert 0 <= timed.latency < KERNEL_SLACK_S, timed

        run(body())


def test_the_loop_clock_reads_a_blocked_loop_s_delay(run: Run) -> None:
    """Loop clock (the fallback): the same frame reads at least the 200 ms the loop was blocked."""
    use_kernel_clock(False)
    release = threading.Event()
    with serving_in_thread(ws_sends_when_released(release)) as server:

        async def body() -> None:
            timed = await ws_delivery_with_blocked_loop(server.url, release)
            assert timed.clock == "loop"
            assert timed.after_unblocked >= 0, timed  # timed when the loop got to it, late

        run(body())


def ws_sends_two_when_released(release: threading.Event, gap_s: float) -> Script:
    """A WS server that sends two stamped frames ``gap_s`` apart once released."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_accept(await reader.readuntil(b"\r\n\r\n")))
        await writer.drain()
        await asyncio.to_thread(release.wait, scaled(10))
        for seq in (1, 2):
            writer.write(market_frame(seq, time.time()))
            await writer.drain()
            await asyncio.sleep(gap_s)
        await hold(reader)

    return script


@needs_stamps
def test_frames_that_share_a_read_are_timed_by_the_last_and_counted(run: Run) -> None:
    """The kernel stamps a read: a frame read together with a later one gets the later arrival, counted."""
    release = threading.Event()
    gap_s = 0.1
    with serving_in_thread(ws_sends_two_when_released(release, gap_s)) as server:

        async def body() -> None:
            got: list[tuple[str, float]] = []
            ws = await stamped_connect(
                server.url.replace("http://", "ws://"),
                compression=None,
                proxy=None,
                create_connection=TimedConnection.factory(lambda d, a: got.append((str(d), a))),
            )
            backlog = ArrivalBacklog.of(asyncio.get_running_loop())
            before = backlog.frames_sharing_a_read
            try:
                release.set()
                time.sleep(gap_s + BLOCKED_S)  # both frames arrive before the loop reads
                await wait_for_async(lambda: len(got) == 2, 5, "both frames")
            finally:
                ws.transport.abort()
                await ws.wait_closed()
            (first, t1), (second, t2) = got
            assert t1 == t2  # one read, one stamp: the second frame's arrival
            assert t1 - json.loads(first)["published_at"] >= gap_s * 0.9
            assert 0 <= t2 - json.loads(second)["published_at"] < KERNEL_SLACK_S
            assert backlog.frames_sharing_a_read - before == 1

        run(body())


async def http_latency_with_blocked_loop(
    url: str, exchange: HttpExchange, tls: ssl.SSLContext | None = None
) -> Timed:
    """Latency from the server's send to the response's arrival as the client timed it (monotonic
    clock), and the clock, when the client's loop is busy for BLOCKED_S as the response arrives."""
    origin = Origin.from_url(url, tls)
    client = Http1Client(origin, time.monotonic)
    data = request_bytes("GET", url + "/x", origin, ())
    request = asyncio.get_running_loop().create_task(client.request(data, "GET", False, 10))
    await wait_for_async(lambda: exchange.requests, 5, "the request at the server")
    exchange.release.set()
    time.sleep(BLOCKED_S)  # the loop is busy on purpose: the response arrives meanwhile
    unblocked = time.monotonic()
    response = await request
    client.close()
    assert response.status == 200 and len(exchange.sent) == 1
    assert exchange.sent[0] < unblocked, "the server sent only after the block: no test"
    arrived = response.arrived
    return Timed(arrived - exchange.sent[0], response.arrival_clock, arrived - unblocked)


@needs_stamps
def test_an_http_response_is_timed_by_the_kernel_while_the_loop_is_blocked(run: Run) -> None:
    """The response's last byte keeps its kernel arrival, converted to the client's monotonic clock."""
    exchange = HttpExchange()
    with serving_in_thread(http_answers_when_released(exchange)) as server:

        async def body() -> None:
            timed = await http_latency_with_blocked_loop(server.url, exchange)
            assert timed.clock == "kernel"
            assert -KERNEL_SLACK_S < timed.latency < KERNEL_SLACK_S, timed

        run(body())


def test_an_http_response_on_the_loop_clock_reads_the_blocked_time(run: Run) -> None:
    """With the kernel clock off, the same response reads the 200 ms the loop was blocked."""
    use_kernel_clock(False)
    exchange = HttpExchange()
    with serving_in_thread(http_answers_when_released(exchange)) as server:

        async def body() -> None:
            timed = await http_latency_with_blocked_loop(server.url, exchange)
            assert timed.clock == "loop"
            assert timed.after_unblocked >= 0, timed  # timed when the loop got to it, late

        run(body())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_this_linux_machine_stamps_reads() -> None:
    """On Linux (x86-64 here) the kernel clock is available, so the fallback is not what is tested above."""
    assert arrival.SUPPORTED and arrival.kernel_clock_enabled()


SCENARIO = """
version: 1
scenarios:
  s:
    graceful_stop: 500ms
    shape: {kind: constant, users: 2, duration: 1s}
    users:
      - kind: ws_stream
        path: /ws/market
        backoff: {initial: 5s, max: 5s}
        message: {required_keys: [quotes]}
"""


def publishing_server() -> Script:
    """A WS server sending a stamped market frame every 50 ms to each client."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_accept(await reader.readuntil(b"\r\n\r\n")))
        for seq in range(1, 1000):
            writer.write(market_frame(seq, time.time()))
            await writer.drain()
            await asyncio.sleep(0.05)

    return script


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "loop"])
async def test_the_summary_and_metric_name_the_clock_that_timed_the_endpoint(
    kernel: bool, metrics: Metrics, registry: CollectorRegistry
) -> None:
    """A run's endpoint says arrival_clock kernel (or loop when off), with the info gauge at 1."""
    if kernel and not arrival.SUPPORTED:
        pytest.skip("the kernel does not stamp reads")
    use_kernel_clock(kernel)
    clock = "kernel" if kernel else "loop"
    spec = parse_config(SCENARIO, "test.yaml").scenario("s")
    with serving_in_thread(publishing_server()) as server:
        result = await ScenarioRun(
            spec, Target(server.url), Recorder(metrics), RunOptions(tick_s=0.1, seed=1)
        ).execute()
    (doc,) = summary_doc(result, server.url)["endpoints"]
    assert doc["count"] > 0
    assert doc["arrival_clock"] == clock
    assert doc["arrival_clocks"] == {clock: 2}  # two connections
    labels = {"scenario": "s", "endpoint": "/ws/market"}
    assert registry.get_sample_value("loadsvc_arrival_clock_info", {**labels, "clock": clock}) == 1
    other = "loop" if kernel else "kernel"
    assert registry.get_sample_value("loadsvc_arrival_clock_info", {**labels, "clock": other}) == 0


@pytest.fixture
def tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server and a client TLS context around a fresh certificate for localhost."""
    return localhost_tls_pair()


@needs_stamps
def test_a_host_name_is_resolved_and_each_address_tried(run: Run) -> None:
    """http://localhost (perhaps ::1 first, where nothing listens) still connects, stamped."""
    exchange = HttpExchange()
    exchange.release.set()  # answer at once
    with serving_in_thread(http_answers_when_released(exchange)) as server:
        url = server.url.replace("127.0.0.1", "localhost")

        async def body() -> None:
            origin = Origin.from_url(url)
            client = Http1Client(origin, time.monotonic)
            data = request_bytes("GET", url + "/x", origin, ())
            response = await client.request(data, "GET", False, scaled(5))
            client.close()
            assert (response.status, response.arrival_clock) == (200, "kernel")

        run(body())


def test_the_summary_names_one_clock_mixed_or_none() -> None:
    """One clock is named; two are 'mixed'; none yet is None, never a clock over no data."""
    assert arrival_clock((("kernel", 3),)) == "kernel"
    assert arrival_clock((("kernel", 3), ("loop", 1))) == "mixed"
    assert arrival_clock((("kernel", 0), ("loop", 2))) == "loop"
    assert arrival_clock(()) is None


async def http_answers_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP server answering every request with 200 and a small body at once."""
    while True:
        try:
            await read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()


REST_SCENARIO = """
version: 1
scenarios:
  s:
    graceful_stop: 500ms
    shape: {kind: constant, users: 2, duration: 1s}
    users:
      - kind: rest
        pacing: 200ms
        timeout: 3s
        tasks:
          - {path: /x}
"""


@needs_stamps
async def test_a_rest_endpoint_reports_its_responses_by_clock(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """Every REST response of a run counts under the clock that timed it: kernel, all of them."""
    spec = parse_config(REST_SCENARIO, "test.yaml").scenario("s")
    with serving_in_thread(http_answers_at_once) as server:
        result = await ScenarioRun(
            spec, Target(server.url), Recorder(metrics), RunOptions(tick_s=0.1, seed=1)
        ).execute()
    (doc,) = summary_doc(result, server.url)["endpoints"]
    assert doc["count"] > 0 and doc["outcomes"].get("ok") == doc["count"]
    assert doc["arrival_clock"] == "kernel"
    assert doc["arrival_clocks"] == {"kernel": doc["count"]}
    labels = {"scenario": "s", "endpoint": "/x", "clock": "kernel"}
    assert registry.get_sample_value("loadsvc_arrival_clock_info", labels) == 1
