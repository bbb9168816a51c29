"""TLS over a kernel-stamped socket, against TLS servers on 127.0.0.1 that send while the client's loop is blocked.

The same shape as the plain-TCP tests of ``test_arrival.py``: the servers run on a
loop of their own in a thread, the test blocks its own loop on purpose, and a
kernel-stamped arrival stays at the true one. Certificates come from a private CA
for ``localhost`` (``tests/support/tls.py``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from websockets.typing import BytesLike

from loadsvc.config import parse_config
from loadsvc.lag import rule_of
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.report import summary_doc
from loadsvc.runner import RunOptions, ScenarioRun
from loadsvc.users import Target, arrival
from loadsvc.users.arrival import clock_of, use_kernel_clock
from loadsvc.users.connect import open_connection
from loadsvc.users.http1 import Http1Client, Origin, request_bytes
from loadsvc.users.stamped_tls import StampedTLSTransport
from loadsvc.users.wsconn import TimedConnection, stamped_connect
from tests.support.loops import Run
from tests.support.rawserver import read_request, serving_in_thread
from tests.support.timing import scaled, wait_for_async
from tests.support.tls import localhost_tls_pair
from tests.users.test_arrival import (
    BLOCKED_S,
    KERNEL_SLACK_S,
    REST_SCENARIO,
    SCENARIO,
    HttpExchange,
    http_answers_at_once,
    http_answers_when_released,
    http_latency_with_blocked_loop,
    publishing_server,
    ws_sends_when_released,
)

needs_stamps = pytest.mark.skipif(not arrival.SUPPORTED, reason="the kernel does not stamp reads")


@pytest.fixture(autouse=True)
def kernel_clock_default() -> Iterator[None]:
    """Each test sets the clock it needs; the default is restored after it."""
    yield
    use_kernel_clock(True)


@pytest.fixture
def tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server and a client TLS context around a fresh certificate for localhost."""
    return localhost_tls_pair()


def wss(url: str) -> str:
    """The wss:// URL of a raw TLS server's https:// base."""
    return url.replace("https://", "wss://")


async def wss_frame_with_blocked_loop(
    url: str, release: threading.Event, tls: ssl.SSLContext
) -> tuple[float, str, float]:
    """(arrival as timed - published_at, the clock, arrival as timed - loop free again) of one
    frame the server sent over TLS while the client's loop was busy for BLOCKED_S."""
    got: list[tuple[str, float]] = []

    def on_frame(data: BytesLike | str, arrived: float) -> None:
        assert isinstance(data, str)
        got.append((data, arrived))

    ws = await stamped_connect(
        wss(url),
        ssl=tls,
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
        return arrived - published, clock_of(ws.transport), arrived - unblocked
    finally:
        ws.transport.abort()
        await ws.wait_closed()


@needs_stamps
def test_a_wss_frame_is_timed_by_the_kernel_while_the_loop_is_blocked(
    run: Run, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """wss://: the frame's delivery latency stays near the true one though the loop read it 500 ms late."""
    server_tls, client_tls = tls_pair
    release = threading.Event()
    with serving_in_thread(ws_sends_when_released(release), tls=server_tls) as server:

        async def body() -> None:
            latency, clock, _ = await wss_frame_with_blocked_loop(server.url, release, client_tls)
            assert clock == "kernel"
            assert 0 <= latency < KERNEL_SLACK_S, latency

        run(body())


def test_a_wss_frame_on_the_loop_clock_reads_the_blocked_time(
    run: Run, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """The fallback (kernel clock off): the same TLS frame is timed when the loop got to it, late."""
    use_kernel_clock(False)
    server_tls, client_tls = tls_pair
    release = threading.Event()
    with serving_in_thread(ws_sends_when_released(release), tls=server_tls) as server:

        async def body() -> None:
            latency, clock, after_unblocked = await wss_frame_with_blocked_loop(
                server.url, release, client_tls
            )
            assert clock == "loop"
            assert after_unblocked >= 0 and latency >= BLOCKED_S * 0.9

        run(body())


@needs_stamps
def test_an_https_response_is_timed_by_the_kernel_while_the_loop_is_blocked(
    run: Run, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """https://: the response keeps its kernel arrival (monotonic clock) though the loop read it late."""
    server_tls, client_tls = tls_pair
    exchange = HttpExchange()
    with serving_in_thread(http_answers_when_released(exchange), tls=server_tls) as server:

        async def body() -> None:
            timed = await http_latency_with_blocked_loop(server.url, exchange, client_tls)
            assert timed.clock == "kernel"
            assert -KERNEL_SLACK_S < timed.latency < KERNEL_SLACK_S, timed

        run(body())


BIG = 300_000  # bytes: many TLS records (16 KiB each) and many reads


async def big_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP server answering one request with a BIG body ended by closing (no length)."""
    await read_request(reader)
    body = bytes(i % 251 for i in range(BIG))
    writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
    await writer.drain()
    writer.close()


@needs_stamps
def test_a_large_response_over_many_records_arrives_whole_and_its_end_is_heard(
    run: Run, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """A 300 KB body in many records and reads arrives byte for byte; the close ends it, kernel-timed."""
    server_tls, client_tls = tls_pair
    with serving_in_thread(big_then_close, tls=server_tls) as server:

        async def body() -> None:
            origin = Origin.from_url(server.url, client_tls)
            client = Http1Client(origin, time.monotonic)
            data = request_bytes("GET", server.url + "/big", origin, ())
            response = await client.request(data, "GET", True, scaled(10))
            client.close()
            assert response.status == 200 and response.arrival_clock == "kernel"
            assert response.body == bytes(i % 251 for i in range(BIG))

        run(body())


async def connect_tls(
    url: str, tls: ssl.SSLContext, server_hostname: str | None = None
) -> asyncio.BaseTransport:
    """A TLS connection to a raw server's host and port (the handshake done), then closed."""
    host, port = url.split("//")[1].split(":")
    transport, _ = await open_connection(
        asyncio.Protocol, host, int(port), ssl=tls, server_hostname=server_hostname
    )
    transport.close()
    return transport


async def answers_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Complete the TLS handshake (the server side does) and wait for the client to go."""
    await reader.read()


@needs_stamps
def test_a_certificate_from_another_ca_fails_closed(run: Run) -> None:
    """A client trusting another CA gets the verification error, not a connection (stamped path)."""
    server_tls, _ = localhost_tls_pair()
    _, other_ca_client = localhost_tls_pair()
    with serving_in_thread(answers_nothing, tls=server_tls) as server:

        async def body() -> None:
            with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
                await connect_tls(server.url, other_ca_client)

        run(body())


@needs_stamps
def test_the_hostname_is_checked_and_sent_as_sni(
    run: Run, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """The certificate must name the host (another name fails); the host goes out as SNI."""
    server_tls, client_tls = tls_pair
    names: list[str | None] = []
    server_tls.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment, func-returns-value]
    with serving_in_thread(answers_nothing, tls=server_tls) as server:

        async def body() -> None:
            transport = await connect_tls(server.url, client_tls)
            assert isinstance(transport, StampedTLSTransport)
            assert transport.get_extra_info("peercert")["subjectAltName"] == (("DNS", "localhost"),)
            wrong = server.url.replace("localhost", "127.0.0.1")
            with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
                await connect_tls(wrong, client_tls)
            with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
                await connect_tls(server.url, client_tls, server_hostname="other.example")

        run(body())
    assert names[0] == "localhost"
    assert "other.example" in names


async def not_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A plain-text server where TLS was expected: it answers the ClientHello with HTTP."""
    await reader.read(1)
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    await reader.read()


@needs_stamps
def test_a_server_that_does_not_speak_tls_is_an_ssl_error(
    run: Run, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """Plain bytes instead of a ServerHello: an ssl.SSLError from the connect, nothing hangs."""
    _, client_tls = tls_pair
    with serving_in_thread(not_tls) as server:
        url = server.url.replace("http://127.0.0.1", "https://localhost")

        async def body() -> None:
            with pytest.raises(ssl.SSLError):
                await asyncio.wait_for(connect_tls(url, client_tls), scaled(5))

        run(body())


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "loop"])
async def test_a_wss_endpoint_s_summary_and_metric_name_its_clock(
    kernel: bool,
    metrics: Metrics,
    registry: CollectorRegistry,
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """A wss:// run says arrival_clock kernel, judged by the kernel rule (loop, said so, when off)."""
    if kernel and not arrival.SUPPORTED:
        pytest.skip("the kernel does not stamp reads")
    use_kernel_clock(kernel)
    clock = "kernel" if kernel else "loop"
    server_tls, client_tls = tls_pair
    spec = parse_config(SCENARIO, "test.yaml").scenario("s")
    with serving_in_thread(publishing_server(), tls=server_tls) as server:
        result = await ScenarioRun(
            spec, Target(server.url, tls=client_tls), Recorder(metrics), RunOptions(tick_s=0.1)
        ).execute()
    (doc,) = summary_doc(result, server.url)["endpoints"]
    assert doc["count"] > 0 and doc["errors"] == 0
    assert doc["arrival_clock"] == clock and doc["arrival_clocks"] == {clock: 2}
    assert rule_of(doc["arrival_clock"], "ws_delivery_latency") == clock
    labels = {"scenario": "s", "endpoint": "/ws/market"}
    assert registry.get_sample_value("loadsvc_arrival_clock_info", {**labels, "clock": clock}) == 1


@needs_stamps
async def test_a_wss_run_against_another_ca_counts_tls_connect_errors(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    """Wrong CA in a run: every attempt is a counted connect error of reason tls, no frame judged."""
    server_tls, _ = localhost_tls_pair()
    _, other_ca_client = localhost_tls_pair()
    spec = parse_config(SCENARIO, "test.yaml").scenario("s")
    with serving_in_thread(publishing_server(), tls=server_tls) as server:
        result = await ScenarioRun(
            spec, Target(server.url, tls=other_ca_client), Recorder(metrics), RunOptions(tick_s=0.1)
        ).execute()
    (ws,) = result.endpoints
    assert ws.count == 0 and not result.passed
    labels = {"scenario": "s", "endpoint": "/ws/market", "reason": "tls"}
    errors = registry.get_sample_value("loadsvc_ws_connection_errors_total", labels)
    assert errors is not None and errors >= 2  # each of the two users' attempts


@needs_stamps
async def test_an_https_rest_endpoint_reports_its_responses_on_the_kernel_clock(
    metrics: Metrics, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """Every HTTPS response of a REST run is kernel-timed, and the summary says so."""
    server_tls, client_tls = tls_pair
    spec = parse_config(REST_SCENARIO, "test.yaml").scenario("s")
    with serving_in_thread(http_answers_at_once, tls=server_tls) as server:
        result = await ScenarioRun(
            spec, Target(server.url, tls=client_tls), Recorder(metrics), RunOptions(tick_s=0.1)
        ).execute()
    (doc,) = summary_doc(result, server.url)["endpoints"]
    assert doc["count"] > 0 and doc["outcomes"].get("ok") == doc["count"]
    assert doc["arrival_clock"] == "kernel"


@needs_stamps
def test_failed_handshakes_leave_no_cyclic_garbage(run: Run) -> None:
    """Refused certificates (every retry against a wrong CA) are freed at once, not by the
    cyclic collector: no transport or exception of theirs in a collection's garbage."""
    server_tls, _ = localhost_tls_pair()
    _, other_ca_client = localhost_tls_pair()
    with serving_in_thread(answers_nothing, tls=server_tls) as server:

        async def body() -> None:
            refused = 0
            for _ in range(5):
                try:  # not pytest.raises: its record of the exception is a cycle of its own
                    await connect_tls(server.url, other_ca_client)
                except ssl.SSLCertVerificationError:
                    refused += 1
            assert refused == 5
            await asyncio.sleep(0)  # the sockets' closing callbacks
            gc.collect()
            kinds = Counter(type(o).__name__ for o in gc.garbage)
            # The server's side (asyncio's own TLS, in its thread) leaves cycles of its own
            # (an SSLError future per refused client): only the client's objects are judged.
            for kind in ("StampedTLSTransport", "StampedTransport", "SSLCertVerificationError"):
                assert kinds[kind] == 0, kinds.most_common(10)

        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            run(body())
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
