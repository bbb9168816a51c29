"""A ping flood from a server that never reads our pongs: bounded memory, a live loop, counted."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from tests.support.wsservers import PING, RawWsConnection, encode_frame, raw_ws_server

ROOT = Path(__file__).resolve().parent.parent.parent
USERS = 4
# Long enough that each user is dropped once even on a loaded machine: filling the kernel's
# buffers with pongs before the flood is detected takes ~1.5 s here on a quiet one.
DURATION_S = 6.0
DEADLINE_S = 30.0  # the child's whole life, start-up included, on a busy shared machine
# Peak RSS growth allowed during the run (the issue: ~10 MB/s per connection before the fix).
MAX_RSS_GROWTH_MB = 60
# The loop must keep turning: a 10 ms ticker never waits this long between turns (before
# the fix: ~6 s, judging a 64 MB backlog of pings at once). Not a speed limit: starvation.
MAX_LOOP_GAP_S = 2.0

# Runs the scenario in its own process (uvloop, as the generator does), so that its peak
# RSS is its own; prints the connection errors by reason, the RSS growth and the loop gap.
CHILD = """
import asyncio, json, resource, sys, time
import uvloop
from prometheus_client import CollectorRegistry
from loadsvc.config import parse_config
from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, ScenarioRun
from loadsvc.users import Target

async def main(url, text):
    spec = parse_config(text, "flood.yaml").scenario("s")
    registry = CollectorRegistry()
    gaps = [0.0]
    async def ticker():
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            t = time.monotonic()
            gaps.append(t - last)
            last = t
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tick = asyncio.create_task(ticker())
    result = await ScenarioRun(
        spec, Target(url), Recorder(create_metrics(registry)), RunOptions(tick_s=0.1, seed=1)
    ).execute()
    tick.cancel()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (ws,) = result.endpoints
    reasons = {
        s.labels["reason"]: s.value
        for m in registry.collect() if m.name == "loadsvc_ws_connection_errors"
        for s in m.samples if s.name.endswith("_total")
    }
    print(json.dumps({
        "reasons": reasons, "connects": ws.connects, "diagnostics": ws.diagnostics,
        "rss_growth_mb": (after - before) / 1024, "max_gap_s": max(gaps),
    }))

uvloop.run(main(sys.argv[1], sys.argv[2]))
"""

SPEC = f"""
version: 1
scenarios:
  s:
    graceful_stop: 1s
    shape: {{kind: constant, users: {USERS}, duration: {DURATION_S}s}}
    users:
      - kind: ws_stream
        path: /ws/market
        backoff: {{initial: 200ms, max: 200ms}}
"""


async def flood(conn: RawWsConnection) -> None:
    """Ping as fast as the socket takes it; never read what the client sends."""
    burst = encode_frame(b"p" * 125, PING) * 1000
    while True:
        conn.writer.write(burst)
        await conn.writer.drain()


async def test_ping_flood_keeps_memory_bounded_and_is_counted_as_protocol() -> None:
    """Pongs nobody reads stop piling up: RSS stays bounded, the loop turns, reason 'protocol'."""
    async with raw_ws_server(flood) as server:
        started = time.monotonic()
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, server.url, SPEC,
            cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, _ = await asyncio.wait_for(child.communicate(), DEADLINE_S)
        finally:
            if child.returncode is None:
                child.kill()  # by its own handle (PID), never by name
                await child.wait()
        assert time.monotonic() - started < DEADLINE_S
    assert child.returncode == 0
    report = json.loads(out.decode().strip().splitlines()[-1])
    reasons = report["reasons"]
    assert report["connects"] >= USERS
    assert 1 <= reasons["protocol"] <= report["connects"]
    assert reasons["error"] == 0 and reasons["abnormal_close"] == 0
    assert any("ping flood" in d for _, d, _ in report["diagnostics"])
    assert report["rss_growth_mb"] < MAX_RSS_GROWTH_MB, report
    assert report["max_gap_s"] < MAX_LOOP_GAP_S, report
