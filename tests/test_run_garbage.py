"""What a finished scenario run leaves to the cyclic collector: nothing (issue 20).

A run wires its users to the recorder's sinks (each with a metric batch of the recorder's
:class:`~loadsvc.metricbatch.MetricBatches`), rolls verdict windows and ends; the service
keeps one recorder for its life and runs scenarios on it over and over. A reference cycle
among a run's objects would be freed only by a full collection — and, with survivors
frozen (:mod:`loadsvc.collector`), only by a sweep. So: a run on a recorder that already ran
one, with ``gc.DEBUG_SAVEALL``, then a full collection must find not one object.
"""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from loadsvc.config import parse_config
from loadsvc.config.spec import ScenarioSpec
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, ScenarioRun
from loadsvc.users import Target
from tests.support.http import http
from tests.support.processes import start_target

SNAPSHOT = "/api/market/snapshot"
# WS streams and REST pollers, a timeout the latency fault below trips, three windows' worth.
CONFIG = f"""\
version: 1
scenarios:
  s:
    shape: {{kind: constant, users: 6, duration: 2s}}
    users:
      - {{kind: ws_stream, path: /ws/market}}
      - kind: rest
        pacing: 100ms
        timeout: 300ms
        tasks: [{{path: {SNAPSHOT}}}]
"""
FAST = RunOptions(tick_s=0.1, seed=1)


@pytest.fixture
def target_url() -> Iterator[str]:
    """The reference target in its own process: its objects are not this heap's garbage."""
    proc, port = start_target()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def _spec() -> ScenarioSpec:
    return parse_config(CONFIG, "test.yaml").scenario("s")


async def _run(spec: ScenarioSpec, url: str, recorder: Recorder, how: str) -> None:
    """One run to its end: the plan's end, ``stop()`` half-way, or windows rolled then stop."""
    run = ScenarioRun(spec, Target(url), recorder, FAST)
    task = asyncio.create_task(run.execute())
    if how != "planned":
        await asyncio.sleep(0.5)
        if how == "windows":
            await run.roll_window()
            await asyncio.sleep(0.3)
            await run.roll_window()
        run.stop()
    await task


@pytest.mark.parametrize("how", ["planned", "stopped", "windows", "faults"])
async def test_a_finished_run_leaves_no_cyclic_garbage(
    target_url: str, registry: CollectorRegistry, metrics: Metrics, how: str
) -> None:
    """A second run on the same recorder (WS and REST users, its sinks, their metric batches,
    its verdict windows), ended by its plan, by stop(), after rolled windows, or under errors
    and timeouts: a full collection after it finds no object in a reference cycle."""
    spec = _spec()
    recorder = Recorder(metrics)
    await _run(spec, target_url, recorder, "planned")  # what a first run makes once, made
    if how == "faults":
        body = {"error_ratio": {SNAPSHOT: 0.5}, "latency_ms": {SNAPSHOT: 400}}
        status, _ = await asyncio.to_thread(http, "POST", target_url + "/admin/faults", body=body)
        assert status == 200
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await _run(spec, target_url, recorder, "planned" if how == "faults" else how)
        await asyncio.sleep(0.1)  # the batches' flush timer (FLUSH_S) has run
        found = gc.collect()
        kinds = Counter(type(o).__qualname__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()
    assert found == 0, kinds.most_common(12)
    requests = registry.get_sample_value(
        "loadsvc_http_requests_total",
        {"scenario": "s", "endpoint": SNAPSHOT, "method": "GET", "outcome": "ok"},
    )
    assert requests is not None and requests > 0  # the runs ran: their batches were flushed
