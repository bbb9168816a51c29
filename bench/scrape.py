"""Scrape cost: how long ``/metrics`` takes to render, and how big it is, with every
default scenario's series present and observed."""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from loadsvc.config import load_default
from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder
from loadsvc.verdict import judge

OBSERVATIONS = 2000  # per endpoint: enough to put counts in every bucket


def _observe(recorder: Recorder, rng: random.Random) -> None:
    """Run every default scenario's sinks through a spread of results, then publish verdicts."""
    config = load_default()
    for spec in config.scenarios:
        stats = recorder.begin(spec)
        for ref in spec.endpoints():
            if ref.kind == "http":
                http = recorder.http_sink(stats, ref)
                for i in range(OBSERVATIONS):
                    http.request(rng.lognormvariate(-3, 1.2), "ok" if i % 50 else "http_error")
                http.request(None, "connection_error")
            else:
                ws = recorder.ws_sink(stats, ref)
                ws.connected(rng.lognormvariate(-6, 1))
                ws.reconnected(rng.lognormvariate(-5, 1))
                for i in range(OBSERVATIONS):
                    ws.frame("ok", rng.lognormvariate(-4, 1.2), rng.gauss(0.5, 0.05), i % 500 == 0)
                ws.status()
                ws.failed("abnormal_close")
        verdict = judge(spec.thresholds, stats.roll(recorder.clock()))
        recorder.publish_verdict(spec.name, verdict, "passed" if verdict.passed else "failed")
    for _ in range(OBSERVATIONS):
        recorder.metrics.event_loop_lag.observe(rng.expovariate(1000))


def scrape_cost(rounds: int) -> dict[str, Any]:
    """Render the registry ``rounds`` times: median and worst time, size and series count."""
    registry = CollectorRegistry()
    config = load_default()
    recorder = Recorder(create_metrics(registry, config.latency_boundaries()))
    _observe(recorder, random.Random(1))
    times = []
    body = b""
    for _ in range(rounds):
        t0 = time.perf_counter()
        body = generate_latest(registry)
        times.append(time.perf_counter() - t0)
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return {
        "scenarios": len(config.scenarios),
        "series": series,
        "bytes": len(body),
        "median_ms": statistics.median(times) * 1000,
        "max_ms": max(times) * 1000,
        "rounds": rounds,
    }
