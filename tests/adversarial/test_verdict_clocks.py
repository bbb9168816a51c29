"""Clocks and units: stamps in the wrong unit fail the run and say to check timestamp_unit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from loadsvc.config import parse_config
from loadsvc.lag import TRUST_SHARE
from loadsvc.loopmon import LoopLagMonitor
from loadsvc.metrics import Metrics
from loadsvc.report import summary_table
from loadsvc.users import Target
from tests.adversarial.runs import run_bounded
from tests.support.rawserver import serving
from tests.support.wsservers import publishing


def stream(unit: str) -> str:
    """A 1.5 s scenario of two ws_stream users reading stamps in ``unit``."""
    return (
        "version: 1\nscenarios:\n  s:\n"
        "    shape: {kind: constant, users: 2, duration: 1500ms}\n"
        "    graceful_stop: 500ms\n"
        "    users:\n"
        f"      - {{kind: ws_stream, path: /ws/market, message: {{timestamp_unit: {unit}}}}}\n"
    )


@pytest.fixture
async def stamps_in_seconds() -> AsyncIterator[str]:
    """A WS server that publishes data frames every 50 ms stamped in seconds, with a sequence."""
    async with publishing(
        lambda seq: {"type": "market", "published_at": time.time(), "seq": seq}
    ) as url:
        yield url


async def test_stamps_in_seconds_read_as_ms_fail_naming_timestamp_unit(
    stamps_in_seconds: str, metrics: Metrics
) -> None:
    """Seconds read as ms give latencies of decades: the run fails and names timestamp_unit."""
    spec = parse_config(stream("ms"), "test.yaml").scenario("s")
    result = await run_bounded(spec, Target(stamps_in_seconds), metrics)
    (ws,) = result.endpoints
    assert ws.count > 0 and ws.p50_s is not None and ws.p50_s > 86_400
    assert not result.passed and result.result == "failed"
    names = {j.name: j for j in result.verdict.breached()}
    assert set(names) == {"ws_delivery_latency", "clock_skew"}
    assert "check the endpoint's timestamp_unit" in names["clock_skew"].describe()
    assert "timestamp_unit" in summary_table(result)


async def test_same_stamps_read_in_the_right_unit_pass(
    stamps_in_seconds: str, metrics: Metrics
) -> None:
    """The same server read with timestamp_unit s passes: the judgement is about the unit."""
    spec = parse_config(stream("s"), "test.yaml").scenario("s")
    result = await run_bounded(spec, Target(stamps_in_seconds), metrics)
    assert result.passed, [j.describe() for j in result.verdict.breached()]


async def test_a_lagging_generator_never_excuses_no_data(metrics: Metrics) -> None:
    """With the loop lagging far past the trust limit, a run failed by no data is failed."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return  # the server closes the connection when its script ends

    async def hog() -> None:
        while True:
            time.sleep(0.05)  # block the loop on purpose: the generator is overloaded
            await asyncio.sleep(0.01)

    text = (
        "version: 1\nscenarios:\n  s:\n"
        "    shape: {kind: constant, users: 1, duration: 1s}\n"
        "    users:\n      - {kind: rest, pacing: 100ms, tasks: [{path: /api/x}]}\n"
    )
    spec = parse_config(text, "test.yaml").scenario("s")
    monitor = LoopLagMonitor(None, interval=0.01)
    monitor.start()
    hogging = asyncio.get_running_loop().create_task(hog())
    try:
        async with serving(hang_up) as server:
            result = await run_bounded(spec, Target(server.url), metrics, monitor)
    finally:
        hogging.cancel()
        await monitor.stop()
    # The trust limit is a share of the tightest latency limit (the default ws 100 ms).
    assert result.loop_lag_p99_s is not None and result.loop_lag_p99_s > 0.1 * TRUST_SHARE
    assert [(j.name, j.state) for j in result.verdict.breached()] == [
        ("http_latency", "no_data"),
        ("error_ratio", "breached"),
    ]
    assert result.result == "failed"
