"""No data is a failure: backends that answer nothing measurable are never reported healthy."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from loadsvc.config import parse_config
from loadsvc.config.spec import ScenarioSpec
from loadsvc.metrics import Metrics
from loadsvc.oneshot import EXIT_BREACHED
from loadsvc.report import summary_doc, summary_table
from loadsvc.users import Target
from tests.adversarial.runs import run_bounded
from tests.support.processes import ROOT
from tests.support.rawserver import hold, serving
from tests.support.timing import scaled
from tests.support.wsservers import publishing


def scenario(users: str) -> ScenarioSpec:
    """A 1.5 s scenario of two users (YAML list items under ``users:``)."""
    text = (
        "version: 1\nscenarios:\n  s:\n"
        "    shape: {kind: constant, users: 2, duration: 1500ms}\n"
        "    graceful_stop: 500ms\n"
        "    users:\n" + users
    )
    return parse_config(text, "test.yaml").scenario("s")


@pytest.fixture
async def heartbeat_only_ws() -> AsyncIterator[str]:
    """A WS server whose data stopped: it only ever sends ``{"type": "status"}`` heartbeats."""
    async with publishing(lambda _: {"type": "status", "clients": 1}) as url:
        yield url


REST = (
    "      - kind: rest\n        pacing: 100ms\n        timeout: 300ms\n"
    "        tasks: [{path: /api/market/snapshot}]\n"
)


@pytest.fixture
async def hang_up_http() -> AsyncIterator[str]:
    """An HTTP server that closes every connection as soon as it is accepted."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return  # the server closes the connection when its script ends

    async with serving(hang_up) as server:
        yield server.url


@pytest.fixture
async def silent_http() -> AsyncIterator[str]:
    """An HTTP server that accepts connections and reads requests but never answers."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hold(reader)

    async with serving(silent) as server:
        yield server.url


async def test_ws_stream_of_heartbeats_only_fails_as_no_data(
    heartbeat_only_ws: str, metrics: Metrics
) -> None:
    """Status frames alone (data stopped) fail the run as no_data naming the endpoint, exit 1."""
    spec = scenario("      - {kind: ws_stream, path: /ws/market}\n")
    result = await run_bounded(spec, Target(heartbeat_only_ws), metrics)
    (ws,) = result.endpoints
    assert ws.status_messages > 0 and ws.errors == 0
    assert not result.passed and result.result == "failed"
    (failed,) = result.verdict.breached()
    assert (failed.endpoint, failed.name, failed.state) == (
        "/ws/market",
        "ws_delivery_latency",
        "no_data",
    )
    table = summary_table(result)
    assert "/ws/market ws_delivery_latency p99: no data (0 of min 1 samples) FAILED" in table
    assert table.endswith("s: FAILED")
    doc = summary_doc(result, heartbeat_only_ws)
    assert [t["state"] for t in doc["thresholds"]] == ["no_data", "passed"]


async def test_loadsvc_run_exits_1_on_no_data(heartbeat_only_ws: str, tmp_path: Path) -> None:
    """`loadsvc run` against a heartbeat-only stream exits 1 (breached) and says no data."""
    config = tmp_path / "c.yaml"
    config.write_text(
        "version: 1\nscenarios:\n  s:\n    shape: {kind: constant, users: 1, duration: 1s}\n"
        "    users:\n      - {kind: ws_stream, path: /ws/market}\n"
    )
    out = tmp_path / "summary.json"
    args = ["run", "s", "--config", str(config), "--target", heartbeat_only_ws]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadsvc", *args, "--summary-json", str(out),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), scaled(60))
    assert proc.returncode == EXIT_BREACHED, stderr.decode()[-2000:]
    assert "/ws/market ws_delivery_latency p99: no data (0 of min 1 samples)" in stdout.decode()
    doc = orjson.loads(out.read_bytes())
    assert doc["result"] == "failed"
    assert [t["state"] for t in doc["thresholds"]] == ["no_data", "passed"]


async def test_http_server_that_never_answers_fails_on_its_timeouts(
    silent_http: str, metrics: Metrics
) -> None:
    """Requests that time out are counted and timed to the timeout: the run fails, never passes."""
    spec = scenario(REST)
    result = await run_bounded(spec, Target(silent_http), metrics)
    (http,) = result.endpoints
    assert http.outcome("timeout") == http.count > 0
    assert not result.passed and result.result == "failed"
    latency = next(j for j in result.verdict.judgements if j.name == "http_latency")
    assert latency.state == "breached" and latency.value is not None and latency.value >= 0.3


async def test_http_server_that_hangs_up_fails_as_no_data(
    hang_up_http: str, metrics: Metrics
) -> None:
    """Connections closed before any answer leave no latency: no_data (exported as breached)."""
    result = await run_bounded(scenario(REST), Target(hang_up_http), metrics)
    (http,) = result.endpoints
    assert http.outcome("connection_error") == http.count > 0
    assert not result.passed and result.result == "failed"
    states = [(j.name, j.state) for j in result.verdict.judgements]
    assert states == [("http_latency", "no_data"), ("error_ratio", "breached")]
    labels = {"scenario": "s", "endpoint": "/api/market/snapshot", "threshold": "http_latency"}
    assert registry_value(metrics, "loadsvc_threshold_breached", labels) == 1
    assert registry_value(metrics, "loadsvc_threshold_value", labels) is None


def registry_value(metrics: Metrics, name: str, labels: dict[str, str]) -> float | None:
    """A sample of the test's own registry (None: the series does not exist)."""
    for family in metrics.threshold_breached.collect() + metrics.threshold_value.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


async def test_an_endpoint_no_user_ran_in_an_unsharded_run_fails_as_no_data(
    metrics: Metrics,
) -> None:
    """Weights 100:1 over 2 users leave /ws/alerts without a user for the whole run: on one
    shard it was never tested, so it is no_data and fails (it was left out and the run PASSED)."""
    async with publishing(lambda n: {"type": "market", "published_at": time.time()}) as url:
        spec = scenario(
            "      - {kind: ws_stream, path: /ws/market, weight: 100}\n"
            "      - {kind: ws_stream, path: /ws/alerts, weight: 1}\n"
        )
        result = await run_bounded(spec, Target(url), metrics)
    counts = {e.endpoint: e.count for e in result.endpoints}
    assert counts["/ws/market"] > 0 and counts["/ws/alerts"] == 0
    assert not result.passed and result.result == "failed"
    assert [(j.endpoint, j.state) for j in result.verdict.breached()] == [("/ws/alerts", "no_data")]
