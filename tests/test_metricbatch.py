"""Metric updates batched per sink: the exposition a scrape sees is the one per-update calls give."""

from __future__ import annotations

import asyncio
import math

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from loadsvc.config.load import load_default
from loadsvc.config.spec import EndpointRef
from loadsvc.metricbatch import FLUSH_S, MetricBatches
from loadsvc.metrics import create_metrics
from loadsvc.recorder import Recorder
from loadsvc.recorder_sinks import RecorderWsSink
from tests.support.timing import wait_for_async

BOUNDS = (0.005, 0.01, 0.1, 0.2, 1.0)
# Values on, between and beyond the bounds, negative and infinite ones too.
VALUES = (0.0, 0.005, 0.0050001, 0.01, 0.05, 0.1, 0.2, 0.2000001, 1.0, 3.0, -1.0, math.inf, 0.007)


def _exposition(registry: CollectorRegistry) -> list[bytes]:
    """The exposition's lines but the ``_created`` ones (when each registry was made)."""
    return [line for line in generate_latest(registry).splitlines() if b"_created" not in line]


def _pair() -> tuple[CollectorRegistry, Histogram, Counter]:
    registry = CollectorRegistry()
    h = Histogram("h_seconds", "h", ["a"], buckets=BOUNDS, registry=registry)
    c = Counter("c", "c", ["a"], registry=registry)
    return registry, h, c


def test_a_flushed_batch_exposes_what_observe_and_inc_expose() -> None:
    """Bucket counts, sum and count of a batched histogram, and a batched counter, equal the
    same updates made one by one (values on the bounds land in the same buckets)."""
    direct, h1, c1 = _pair()
    batched, h2, c2 = _pair()
    batches = MetricBatches()
    batch = batches.batch()
    pending_h, pending_c = batch.histogram(h2.labels("x")), batch.counter(c2.labels("x"))
    for v in VALUES * 3:
        h1.labels("x").observe(v)
        c1.labels("x").inc()
        pending_h.observe(v)
        pending_c.inc()
    assert _exposition(batched) != _exposition(direct)  # nothing flushed yet
    batch.flush()
    assert _exposition(batched) == _exposition(direct)
    batch.flush()  # a second flush adds nothing
    assert _exposition(batched) == _exposition(direct)


def _ws_sink(registry: CollectorRegistry) -> tuple[RecorderWsSink, dict[str, str]]:
    spec = next(s for s in load_default().scenarios if any(r.kind == "ws" for r in s.endpoints()))
    recorder = Recorder(create_metrics(registry))
    ref = next(r for r in spec.endpoints() if r.kind == "ws")
    sink = recorder.ws_sink(recorder.begin(spec), EndpointRef(ref.endpoint, "ws", ref.method))
    return sink, {"scenario": spec.name, "endpoint": ref.endpoint}


def test_without_a_running_loop_every_frame_is_exported_at_once() -> None:
    """A synchronous caller sees each frame in the metrics right after reporting it."""
    registry = CollectorRegistry()
    sink, labels = _ws_sink(registry)
    sink.frame("ok", 0.004, 0.5, 2, 0.004)
    get = registry.get_sample_value
    assert get("loadsvc_ws_messages_total", {**labels, "outcome": "ok"}) == 1
    assert get("loadsvc_ws_message_latency_seconds_count", labels) == 1
    assert get("loadsvc_ws_messages_missed_total", labels) == 2


async def test_a_read_on_the_loop_is_exact_before_the_batch_is_due() -> None:
    """On the loop's thread a scrape adds what is pending first: exact without waiting."""
    registry = CollectorRegistry()
    sink, labels = _ws_sink(registry)
    for _ in range(5):
        sink.frame("ok", 0.004, 0.5, 0, 0.004)
    sink.frame("invalid", None, None, 0, None)
    get = registry.get_sample_value
    assert get("loadsvc_ws_messages_total", {**labels, "outcome": "ok"}) == 5
    assert get("loadsvc_ws_messages_total", {**labels, "outcome": "invalid"}) == 1
    assert get("loadsvc_ws_message_latency_seconds_sum", labels) == 5 * 0.004
    assert get("loadsvc_ws_message_interval_seconds_count", labels) == 5


async def test_a_read_from_another_thread_sees_frames_within_flush_s() -> None:
    """A scrape from another thread (``run --metrics-port``) sees a frame once its batch is
    flushed, FLUSH_S after it, with the histogram's count and sum in agreement."""
    registry = CollectorRegistry()
    sink, labels = _ws_sink(registry)
    sink.frame("ok", 0.004, None, 0, 0.004)
    sink.frame("ok", 0.006, 0.5, 0, 0.006)
    loop_t0 = asyncio.get_running_loop().time()

    async def seen() -> bool:
        count = await asyncio.to_thread(
            registry.get_sample_value, "loadsvc_ws_message_latency_seconds_count", labels
        )
        return count == 2

    await wait_for_async(seen, 5.0, "the frames exported to an off-loop reader")
    assert asyncio.get_running_loop().time() - loop_t0 >= FLUSH_S * 0.5
    total = await asyncio.to_thread(
        registry.get_sample_value, "loadsvc_ws_message_latency_seconds_sum", labels
    )
    assert total is not None and math.isclose(total, 0.010)


def test_updates_left_by_a_loop_that_ended_are_exported() -> None:
    """Frames recorded in a loop that ended before its flush ran are not lost."""
    registry = CollectorRegistry()
    sink, labels = _ws_sink(registry)

    async def one_frame() -> None:
        sink.frame("ok", 0.004, None, 0, 0.004)

    asyncio.run(one_frame())
    assert registry.get_sample_value("loadsvc_ws_messages_total", {**labels, "outcome": "ok"}) == 1
    asyncio.run(one_frame())  # and the next loop schedules its own flush
    sink.frame("ok", 0.004, None, 0, 0.004)
    assert registry.get_sample_value("loadsvc_ws_messages_total", {**labels, "outcome": "ok"}) == 3
