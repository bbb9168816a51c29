"""A busy generator excuses only what its lag can explain: a breach beyond the lag fails."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest

from loadsvc.config import parse_config
from loadsvc.lag import lag_adjusted
from loadsvc.loopmon import LoopLagMonitor
from loadsvc.metrics import Metrics
from loadsvc.report import summary_doc, summary_table
from loadsvc.runner import RunResult
from loadsvc.users import Target
from loadsvc.users.arrival import use_kernel_clock
from tests.adversarial.runs import run_bounded
from tests.support.processes import ROOT
from tests.support.rawserver import RawServer, read_request, serving_in_thread
from tests.support.timing import scaled

# The generator's loop is blocked this long at a time, on purpose: far more than what a
# loaded shared machine adds, so "within the lag" and "beyond it" keep wide margins. Between
# blocks it runs freely for FREE_S, longer than a request of the "within" case takes, so no
# request waits out two blocks (which would add twice the lag p99: beyond what it excuses).
BLOCK_S = 0.3
FREE_S = 0.2
# Closed-model users (latency from the send), a request every ~20 ms each: enough samples.
CONFIG = """\
version: 1
scenarios:
  s:
    shape: {kind: constant, users: 4, duration: 2s}
    graceful_stop: 1s
    users:
      - kind: rest
        think_time: {min: 10ms, max: 30ms}
        timeout: 3s
        tasks: [{path: /api/x, required_keys: [a]}]
"""
BODY = b'{"a": 1}'


@contextmanager
def slow_backend(delay_s: float) -> Iterator[RawServer]:
    """A keep-alive HTTP backend that answers every request after ``delay_s``, on its own
    loop in a thread: the generator's busy loop does not delay the backend."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(delay_s)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
            )
            await writer.drain()

    with serving_in_thread(script) as server:
        yield server


@asynccontextmanager
async def busy_generator() -> AsyncIterator[LoopLagMonitor]:
    """The loop blocked for BLOCK_S out of every BLOCK_S + FREE_S, and a monitor watching it."""

    async def hog() -> None:
        while True:
            time.sleep(BLOCK_S)  # block the loop on purpose: the generator is overloaded
            await asyncio.sleep(FREE_S)

    monitor = LoopLagMonitor(None, interval=0.01)
    monitor.start()
    hogging = asyncio.get_running_loop().create_task(hog())
    try:
        yield monitor
    finally:
        hogging.cancel()
        await monitor.stop()


async def run_busy(delay_s: float, metrics: Metrics) -> RunResult:
    """Scenario ``s`` against a backend slow by ``delay_s``, with the generator kept busy."""
    spec = parse_config(CONFIG, "test.yaml").scenario("s")
    with slow_backend(delay_s) as server:
        async with busy_generator() as monitor:
            return await run_bounded(spec, Target(server.url), metrics, monitor)


async def test_a_backend_delay_far_beyond_the_lag_fails_although_the_generator_was_busy(
    metrics: Metrics,
) -> None:
    """700 ms of backend delay (limit 200 ms) under ~300 ms of lag: failed, busy said, and the
    reason names how far beyond the lag the breach goes."""
    result = await run_busy(0.7, metrics)
    lag, limit = result.loop_lag_p99_s, result.loop_lag_limit_s
    assert lag is not None and limit is not None and lag > limit  # busy on purpose
    (latency,) = [j for j in result.verdict.breached() if j.name == "http_latency"]
    assert latency.value is not None and lag_adjusted(latency.value, lag) > latency.limit
    assert result.result == "failed" and not result.passed
    assert (
        "the lag cannot explain the breach: beyond the lag by /api/x http_latency"
        in (result.reasons[-1])
    )
    doc = summary_doc(result, "http://127.0.0.1")
    assert doc["result"] == "failed" and doc["generator_busy"] is True
    last = summary_table(result).splitlines()[-1]
    assert last.startswith("s: FAILED; event-loop lag p99") and "beyond the lag by" in last


@pytest.fixture
def loop_clock() -> Iterator[None]:
    """Responses timed by the event loop's clock, as before kernel arrival times (and as over TLS):
    the clock a busy loop makes late, which the lag rule is about."""
    use_kernel_clock(False)
    try:
        yield None
    finally:
        use_kernel_clock(True)


async def test_a_breach_within_the_lag_is_generator_bound_and_says_both(
    metrics: Metrics, loop_clock: None
) -> None:
    """100 ms of backend delay (within 200 ms) measured over the limit only because the loop
    was up to 300 ms late: generator_bound, and the summary says breached and busy."""
    result = await run_busy(0.1, metrics)
    lag = result.loop_lag_p99_s
    (latency,) = result.verdict.breached()
    assert latency.name == "http_latency" and latency.state == "breached"
    assert lag is not None and latency.value is not None
    assert lag_adjusted(latency.value, lag) <= latency.limit  # the lag explains all of it
    assert result.result == "generator_bound"
    assert "every breach is within the lag" in result.reasons[-1]
    last = summary_table(result).splitlines()[-1]
    assert last.startswith("s: GENERATOR-BOUND (breached; event-loop lag p99")
    assert "(the generator was busy)" in last and last.endswith("the excess is not certain)")
    assert metrics.scenario_runs.labels("s", "generator_bound")._value.get() == 1


# The CLI in a child process whose generator is busy for real: a thread spinning in Python
# holds the GIL for up to 30 ms each time, so every wake-up of the event loop waits. It starts
# once loadsvc is imported: every file an import reads would wait for the GIL too.
_CLI_WITH_A_GIL_HOG = """
import runpy, sys, threading
import loadsvc.cli, loadsvc.oneshot, loadsvc.users.rest, loadsvc.sampler, loadsvc.environment

def spin():
    while True:
        pass

sys.setswitchinterval(0.03)
loadsvc.cli.share_quickly = lambda: None  # keep the hog's interval (loadsvc.gil would set 0.5 ms)
threading.Thread(target=spin, daemon=True).start()
runpy.run_module("loadsvc", run_name="__main__", alter_sys=True)
"""


def test_loadsvc_run_exits_1_for_a_breach_beyond_the_lag_of_a_busy_generator() -> None:
    """``loadsvc run`` with its loop starved by a GIL hog, against a backend 600 ms slow:
    exit 1, result failed (not generator_bound), generator_busy, the excess in the reasons."""
    with tempfile.TemporaryDirectory() as tmp, slow_backend(0.6) as server:
        config, summary = Path(tmp) / "c.yaml", Path(tmp) / "summary.json"
        config.write_text(CONFIG)
        args = [sys.executable, "-c", _CLI_WITH_A_GIL_HOG, "run", "s", "--config", str(config),
                "--target", server.url, "--summary-json", str(summary), "--tick", "0.1"]  # fmt: skip
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=scaled(60))
        doc = json.loads(summary.read_text())
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert doc["generator_busy"] is True
    assert doc["loop_lag_p99_ms"] > doc["loop_lag_limit_ms"]
    assert doc["result"] == "failed"
    assert any("beyond the lag by /api/x http_latency" in r for r in doc["reasons"])
    assert "s: FAILED; event-loop lag p99" in proc.stdout
