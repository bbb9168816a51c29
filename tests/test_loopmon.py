"""The loop-lag monitor: the busy gauge is the verdict's definition over the recent span."""

from __future__ import annotations

import asyncio
import math
import time
from array import array

from prometheus_client import CollectorRegistry

from loadsvc.lag import is_busy
from loadsvc.latency import exact_quantiles
from loadsvc.loopmon import LoopLagMonitor, bucket_counts
from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder
from tests.support.timing import wait_for_async

LIMIT_S = 0.03  # wide, so a loaded shared machine does not make the quiet loop busy
SPAN_S = 1.0
INTERVAL_S = 0.005  # 200 samples per span: the p99 is the third largest


def lag_count(registry: CollectorRegistry) -> float:
    """How many lag samples the monitor has reported."""
    return registry.get_sample_value("loadsvc_event_loop_lag_seconds_count") or 0.0


async def samples_after(registry: CollectorRegistry, n: int) -> None:
    """Wait (bounded) until ``n`` more lag samples have arrived."""
    start = lag_count(registry)
    await wait_for_async(lambda: lag_count(registry) >= start + n, 10, f"{n} lag samples")


async def test_one_late_timer_is_not_busy_but_a_sustained_lag_is() -> None:
    """A single 150 ms stall leaves the gauge at 0 (the old rule said busy); a loop blocked
    again and again makes its p99 over the limit, and the gauge, the state and is_busy agree."""
    registry = CollectorRegistry()
    monitor = LoopLagMonitor(
        Recorder(create_metrics(registry)), INTERVAL_S, limit_s=LIMIT_S, span_s=SPAN_S
    )
    monitor.start()
    try:
        await samples_after(registry, 20)
        time.sleep(0.15)  # block the loop once, on purpose
        await samples_after(registry, 150)  # a p99 over >100 samples excludes the largest
        once = monitor.judge_recent()
        assert once.lag_p99_s is not None and once.lag_p99_s < LIMIT_S
        assert not once.busy
        assert registry.get_sample_value("loadsvc_generator_busy") == 0
        assert registry.get_sample_value("loadsvc_generator_lag_limit_seconds") == LIMIT_S

        async def hog() -> None:
            while True:
                time.sleep(0.05)  # the loop blocked 50 ms in every 60 ms
                await asyncio.sleep(0.01)

        hogging = asyncio.get_running_loop().create_task(hog())
        try:
            await samples_after(registry, 40)
            busy = monitor.judge_recent()
        finally:
            hogging.cancel()
        assert busy.lag_p99_s is not None and busy.lag_p99_s > LIMIT_S
        assert busy.busy and is_busy(busy.lag_p99_s, LIMIT_S)
        assert registry.get_sample_value("loadsvc_generator_busy") == 1
        assert registry.get_sample_value("loadsvc_generator_lag_p99_seconds") == busy.lag_p99_s
        assert busy.doc()["busy"] is True and busy.doc()["loop_lag_limit_ms"] == LIMIT_S * 1000
    finally:
        await monitor.stop()


async def test_the_monitor_judges_once_a_second_by_itself() -> None:
    """Without being asked, the gauge's state is refreshed from the recent samples."""
    registry = CollectorRegistry()
    monitor = LoopLagMonitor(Recorder(create_metrics(registry)), 0.01, limit_s=LIMIT_S)
    monitor.start()
    try:
        await wait_for_async(lambda: monitor.state.lag_p99_s is not None, 10, "a judged state")
        assert registry.get_sample_value("loadsvc_generator_lag_p99_seconds") is not None
    finally:
        await monitor.stop()


def test_the_state_without_a_limit_is_never_busy() -> None:
    """No latency threshold configured: no trust limit, so not busy whatever the lag."""
    monitor = LoopLagMonitor(None)
    assert not monitor.state.busy
    assert exact_quantiles  # the same nearest-rank p99 the verdict uses (imported by loopmon)


def test_read_delays_are_binned_as_the_live_histogram_bins_them() -> None:
    """An infinite read delay lands in the last live bucket instead of failing the lag sample."""
    counts = bucket_counts(array("d", [0.001, math.inf, 0.0]))
    assert counts.sum() == 3 and counts[-1] == 1 and counts[0] == 1
    assert bucket_counts(array("d")).sum() == 0
