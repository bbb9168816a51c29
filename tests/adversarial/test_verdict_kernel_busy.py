"""On a kernel-timed WS endpoint the loop's lag excuses nothing; only frames that shared a read do."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from collections.abc import Iterator

import pytest

from loadsvc.config import parse_config
from loadsvc.lag import Timing
from loadsvc.loopmon import LoopLagMonitor
from loadsvc.report import summary_doc
from loadsvc.runner import RunResult
from loadsvc.users import Target, arrival
from loadsvc.users.arrival import use_kernel_clock
from tests.adversarial.runs import run_bounded
from tests.adversarial.test_verdict_busy import BLOCK_S, busy_generator
from tests.support.rawserver import Script, hold, serving_in_thread
from tests.support.wsservers import market_frame

needs_stamps = pytest.mark.skipif(not arrival.SUPPORTED, reason="the kernel does not stamp reads")

# Default WS thresholds: delivery p99 <= 100 ms, trust limit 10 ms.
CONFIG = """\
version: 1
scenarios:
  s:
    shape: {kind: constant, users: 8, duration: 3s}
    graceful_stop: 1s
    users:
      - kind: ws_stream
        path: /ws/market
        message: {timestamp_field: published_at}
"""


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


def _market_backend(delay_s: float, every_s: float, pair_every: int = 0) -> Script:
    """A WS backend's script: a frame every ``every_s`` stamped ``delay_s`` before it is sent
    (a real backend delay), and every ``pair_every``-th write two frames at once (they arrive
    together, and are read together; 0: never)."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(_accept(await reader.readuntil(b"\r\n\r\n")))
        await writer.drain()
        sending = asyncio.get_running_loop().create_task(hold(reader))
        seq = 0
        while not sending.done():
            seq += 1
            data = market_frame(seq, time.time() - delay_s)
            if pair_every and seq % pair_every == 0:
                seq += 1
                data += market_frame(seq, time.time() - delay_s)
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(every_s)

    return script


async def _stream(delay_s: float, every_s: float) -> RunResult:
    """Scenario ``s`` against :func:`_market_backend` (its own loop, in a thread), while the
    generator's loop is blocked BLOCK_S at a time."""
    spec = parse_config(CONFIG, "test.yaml").scenario("s")
    with serving_in_thread(_market_backend(delay_s, every_s)) as server:
        async with busy_generator() as monitor:
            return await run_bounded(spec, Target(server.url), None, monitor)


@pytest.fixture
def kernel_clock() -> Iterator[None]:
    """The kernel's stamps (the default), restored after a test that changes it."""
    use_kernel_clock(True)
    yield None
    use_kernel_clock(True)


@needs_stamps
async def test_a_real_backend_delay_under_a_blocked_loop_fails_on_a_kernel_timed_endpoint(
    kernel_clock: None,
) -> None:
    """300 ms of real delay (limit 100 ms), frames 450 ms apart, the loop blocked 300 ms at a
    time: the old rule (lag p99 ~300 ms) would say generator_bound; kernel-timed, it FAILS."""
    result = await _stream(0.3, 0.45)
    (latency,) = [j for j in result.verdict.breached() if j.name == "ws_delivery_latency"]
    lag, limit = result.loop_lag_p99_s, result.loop_lag_limit_s
    assert lag is not None and limit is not None and lag > limit  # the loop was busy
    assert latency.value is not None and 0.25 < latency.value < 0.3 + BLOCK_S
    old_rule = Timing(lag, limit)  # everything judged by the loop's lag, as before
    assert old_rule.explains(latency.value, latency.limit, "loop")  # would have been excused
    assert result.reads.shared_frames == 0  # each frame had its own read: stamps exact
    assert result.result == "failed"
    assert "kernel-timed: the loop lag cannot move it" in result.reasons[-1]
    doc = summary_doc(result, "http://127.0.0.1")
    (ep,) = doc["endpoints"]
    assert (ep["arrival_clock"], ep["lag_rule"], ep["generator_ms"]) == ("kernel", "kernel", 0.0)
    assert doc["read_delay_p99_ms"] is not None and doc["frames_sharing_a_read"] == 0


@needs_stamps
async def test_frames_sharing_reads_are_generator_bound_within_the_read_delay(
    kernel_clock: None,
) -> None:
    """Frames every 40 ms (no backend delay) while the loop is blocked 300 ms at a time: they
    share reads and carry the last one's stamp, so p99 reads over 100 ms; busy under the
    kernel rule and within its read delay: generator_bound."""
    result = await _stream(0.0, 0.04)
    (latency,) = [j for j in result.verdict.breached() if j.name == "ws_delivery_latency"]
    reads = result.reads
    assert reads.shared_frames > 0 and reads.busy
    assert latency.value is not None and latency.value - reads.delay_s <= latency.limit
    assert result.result == "generator_bound", result.reasons
    assert "frames shared a read" in result.reasons[-1]


@needs_stamps
async def test_frames_sharing_reads_fail_beyond_the_read_delay(kernel_clock: None) -> None:
    """The same shared reads with 700 ms of real backend delay on top: beyond what the
    read delay can explain, so it fails, saying how far beyond."""
    result = await _stream(0.7, 0.04)
    (latency,) = [j for j in result.verdict.breached() if j.name == "ws_delivery_latency"]
    assert result.reads.busy
    assert latency.value is not None and latency.value - result.reads.delay_s > latency.limit
    assert result.result == "failed"
    assert "cannot explain the breach" in result.reasons[-1]


async def test_a_loop_timed_endpoint_keeps_the_loop_rule() -> None:
    """Timed by the loop (as over TLS or a fallback): 50 ms of backend delay read late by up to
    the ~300 ms lag: the old rule holds and the run is generator_bound, as before."""
    use_kernel_clock(False)
    try:
        result = await _stream(0.05, 0.45)
    finally:
        use_kernel_clock(True)
    (ep,) = summary_doc(result, "http://127.0.0.1")["endpoints"]
    assert (ep["arrival_clock"], ep["lag_rule"]) == ("loop", "loop")
    assert result.result == "generator_bound", result.reasons
    assert "every breach is within the lag" in result.reasons[-1]


async def _paired(delay_s: float, every_s: float, pair_every: int) -> RunResult:
    """Scenario ``s`` against :func:`_market_backend` writing every ``pair_every``-th time two
    frames at once; the generator's loop is not blocked."""
    spec = parse_config(CONFIG, "test.yaml").scenario("s")
    monitor = LoopLagMonitor(None, interval=0.01)
    monitor.start()
    try:
        with serving_in_thread(_market_backend(delay_s, every_s, pair_every)) as server:
            return await run_bounded(spec, Target(server.url), None, monitor)
    finally:
        await monitor.stop()


@needs_stamps
@pytest.mark.parametrize("pair_every", [1, 4], ids=["every-write-a-pair", "a-pair-now-and-then"])
async def test_frames_a_backend_writes_together_excuse_no_breach(
    kernel_clock: None, pair_every: int
) -> None:
    """300 ms of real delay (limit 100 ms), frames 300 ms apart, some written two at a time:
    each pair shares a read, which makes the generator busy under the kernel rule, and each
    pair's first frame could have waited the 300 ms since the last read. But the pairs came
    together, and the latencies are flat: frames timed too late cannot have moved the p99.
    It FAILS; the old excuse (the shared frames' whole wait) called it generator_bound."""
    result = await _paired(0.3, 0.3, pair_every)
    (latency,) = [j for j in result.verdict.breached() if j.name == "ws_delivery_latency"]
    reads = result.reads
    assert reads.busy and reads.shared_wait_p99_s is not None
    assert latency.value is not None and 0.3 <= latency.value < 0.35
    # What the old rule excused: the frames' whole wait, enough to explain the breach.
    assert latency.value - reads.shared_wait_p99_s <= latency.limit
    assert result.result == "failed", (result.reasons, reads)
    assert "cannot explain the breach" in result.reasons[-1]
    added = re.search(r"the generator may have added ([0-9.]+) ms to its p99", result.reasons[-1])
    assert added is not None and float(added.group(1)) < 20  # not the 300 ms wait
    doc = summary_doc(result, "http://127.0.0.1")
    assert "or they came together" in doc["generator"]  # not said to be the generator's
    (ep,) = doc["endpoints"]
    # What a baseline comparison takes off the p99: not the 300 ms wait.
    assert ep["lag_rule"] == "kernel" and ep["generator_ms_by_quantile"]["p99"] < 20
