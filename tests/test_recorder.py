"""The recorder: the one writer of metrics, fed events by the runner, service and monitor."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from loadsvc.config.load import load_default
from loadsvc.config.spec import ScenarioSpec
from loadsvc.lag import GeneratorState
from loadsvc.metrics import (
    HTTP_OUTCOMES,
    RUN_RESULTS,
    WS_ERROR_REASONS,
    WS_OUTCOMES,
    create_metrics,
)
from loadsvc.recorder import Recorder
from loadsvc.users.base import EndpointSinks
from loadsvc.verdict import Judgement, Verdict


def _mixed() -> ScenarioSpec:
    """A default scenario with both REST and WS endpoints (or the first with REST)."""
    scenarios = load_default().scenarios
    kinds = {s.name: {r.kind for r in s.endpoints()} for s in scenarios}
    return next(s for s in scenarios if kinds[s.name] == {"http", "ws"} or "http" in kinds[s.name])


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry per test."""
    return CollectorRegistry()


@pytest.fixture
def recorder(registry: CollectorRegistry) -> Recorder:
    """A recorder with the service's metrics too."""
    return Recorder(create_metrics(registry, service=True))


def test_declare_creates_the_denominators_at_zero(
    registry: CollectorRegistry, recorder: Recorder
) -> None:
    """Every outcome, result and reason series of a scenario exists at 0 before any traffic."""
    spec = _mixed()
    recorder.declare(spec)
    s = spec.name
    get = registry.get_sample_value
    for result in RUN_RESULTS:
        assert get("loadsvc_scenario_runs_total", {"scenario": s, "result": result}) == 0
    assert get("loadsvc_scenario_running", {"scenario": s}) == 0
    for ref in spec.endpoints():
        if ref.kind == "http":
            base = {"scenario": s, "endpoint": ref.endpoint, "method": ref.method}
            for o in HTTP_OUTCOMES:
                assert get("loadsvc_http_requests_total", {**base, "outcome": o}) == 0
            assert get("loadsvc_http_request_duration_seconds_count", base) == 0
        else:
            base = {"scenario": s, "endpoint": ref.endpoint}
            for o in WS_OUTCOMES:
                assert get("loadsvc_ws_messages_total", {**base, "outcome": o}) == 0
            for r in WS_ERROR_REASONS:
                assert get("loadsvc_ws_connection_errors_total", {**base, "reason": r}) == 0
        (limits,) = [je.limits for je in spec.judged_endpoints if je.endpoint == ref.endpoint]
        latency = "http_latency" if ref.kind == "http" else "ws_delivery_latency"
        assert {latency, "error_ratio"} <= set(limits)
        for name, limit in limits.items():
            labels = {"scenario": s, "endpoint": ref.endpoint, "threshold": name}
            assert get("loadsvc_threshold_limit", labels) == limit
            assert get("loadsvc_threshold_breached", labels) == 0


def test_declare_leaves_the_last_run_unset(registry: CollectorRegistry, recorder: Recorder) -> None:
    """No last-run or next-run series before a run: a 0 would read as 'failed' on dashboards."""
    spec = _mixed()
    recorder.declare(spec)
    for name in (
        "loadsvc_scenario_last_run_passed",
        "loadsvc_scenario_last_run_timestamp_seconds",
        "loadsvc_scenario_next_run_timestamp_seconds",
    ):
        assert registry.get_sample_value(name, {"scenario": spec.name}) is None


def test_run_lifecycle_events(registry: CollectorRegistry, recorder: Recorder) -> None:
    """run_started, users and run_ended drive the running and users gauges; a crash counts."""
    get = registry.get_sample_value
    lab = {"scenario": "s"}
    recorder.run_started("s")
    recorder.users("s", running=3, target=5)
    assert (get("loadsvc_scenario_running", lab), get("loadsvc_scenario_users", lab)) == (1, 3)
    assert get("loadsvc_scenario_target_users", lab) == 5
    recorder.run_ended("s")
    assert [get(f"loadsvc_scenario_{n}", lab) for n in ("running", "users", "target_users")] == [
        0, 0, 0,
    ]  # fmt: skip
    recorder.run_crashed("s")
    recorder.trigger_skipped("s")
    recorder.record_failed("s")
    assert get("loadsvc_scenario_runs_total", {**lab, "result": "error"}) == 1
    assert get("loadsvc_scenario_last_run_passed", lab) == 0
    assert get("loadsvc_scenario_triggers_skipped_total", lab) == 1
    assert get("loadsvc_run_records_failed_total", lab) == 1


def test_publish_verdict(registry: CollectorRegistry, recorder: Recorder) -> None:
    """A verdict sets breaches, values and limits; no data removes the value; an unjudged WS
    endpoint shows no clock-skew breach."""
    get = registry.get_sample_value
    lat = {"scenario": "s", "endpoint": "/api/a", "threshold": "http_latency"}
    err = {"scenario": "s", "endpoint": "/api/a", "threshold": "error_ratio"}
    first = Verdict((
        Judgement("/api/a", "http", "http_latency", 0.2, 0.25, "breached"),
        Judgement("/api/a", "http", "error_ratio", 0.01, 0.0, "passed"),
    ))  # fmt: skip
    recorder.publish_verdict("s", first, "failed", ["/ws/b"])
    assert (get("loadsvc_threshold_breached", lat), get("loadsvc_threshold_value", lat)) == (
        1,
        0.25,
    )
    assert get("loadsvc_threshold_limit", err) == 0.01
    assert get("loadsvc_scenario_runs_total", {"scenario": "s", "result": "failed"}) == 1
    assert get("loadsvc_scenario_last_run_passed", {"scenario": "s"}) == 0
    skew = {"scenario": "s", "endpoint": "/ws/b", "threshold": "clock_skew"}
    assert get("loadsvc_threshold_breached", skew) == 0
    second = Verdict((Judgement("/api/a", "http", "http_latency", 0.2, None, "no_data"),))
    recorder.publish_verdict("s", second, "failed")
    assert get("loadsvc_threshold_value", lat) is None
    assert get("loadsvc_threshold_breached", lat) == 1


def test_the_last_run_says_whether_it_was_generator_bound(
    registry: CollectorRegistry, recorder: Recorder
) -> None:
    """generator_bound sets the last-run gauge the failed-run alert reads; failed clears it."""
    breach = Verdict((Judgement("/api/a", "http", "http_latency", 0.2, 0.21, "breached"),))
    bound = {"scenario": "s"}
    recorder.publish_verdict("s", breach, "generator_bound")
    assert registry.get_sample_value("loadsvc_scenario_last_run_generator_bound", bound) == 1
    assert registry.get_sample_value("loadsvc_scenario_last_run_passed", bound) == 0
    recorder.publish_verdict("s", breach, "failed")
    assert registry.get_sample_value("loadsvc_scenario_last_run_generator_bound", bound) == 0


def test_loop_lag_and_generator_busy(registry: CollectorRegistry, recorder: Recorder) -> None:
    """A lag sample is only observed; busy, lag p99 and limit follow the judged state."""
    recorder.loop_lag(0.5)  # one late timer alone never makes the generator busy
    assert registry.get_sample_value("loadsvc_event_loop_lag_seconds_count") == 1
    assert registry.get_sample_value("loadsvc_generator_busy") in (None, 0)
    recorder.generator_state(GeneratorState(0.012, 0.010))
    assert registry.get_sample_value("loadsvc_generator_busy") == 1
    assert registry.get_sample_value("loadsvc_generator_lag_p99_seconds") == 0.012
    assert registry.get_sample_value("loadsvc_generator_lag_limit_seconds") == 0.010
    recorder.generator_state(GeneratorState(0.010, 0.010))  # at the limit is not over it
    assert registry.get_sample_value("loadsvc_generator_busy") == 0


def test_next_run_and_config_reloads(registry: CollectorRegistry, recorder: Recorder) -> None:
    """next_run sets or removes the series; reloads count by result and set last-successful."""
    get = registry.get_sample_value
    assert get("loadsvc_config_last_reload_successful") == 1  # none tried yet
    assert get("loadsvc_config_reloads_total", {"result": "failure"}) == 0
    recorder.next_run("s", 1700000000.0)
    assert get("loadsvc_scenario_next_run_timestamp_seconds", {"scenario": "s"}) == 1700000000.0
    recorder.next_run("s", None)
    assert get("loadsvc_scenario_next_run_timestamp_seconds", {"scenario": "s"}) is None
    recorder.config_reloaded(False)
    assert get("loadsvc_config_last_reload_successful") == 0
    recorder.config_reloaded(True)
    assert get("loadsvc_config_reloads_total", {"result": "success"}) == 1
    assert get("loadsvc_config_last_reload_successful") == 1


def test_run_sinks_feed_metrics_and_stats(registry: CollectorRegistry, recorder: Recorder) -> None:
    """The sinks a run hands its users count into both the metrics and the run's stats."""
    spec = _mixed()
    stats = recorder.begin(spec)
    sinks: EndpointSinks = recorder.sinks(stats)
    ref = next(r for r in spec.endpoints() if r.kind == "http")
    sinks.http_sink(ref).request(0.05, "ok")
    sinks.http_sink(ref).request(None, "timeout")
    labels = {"scenario": spec.name, "endpoint": ref.endpoint, "method": ref.method}
    get = registry.get_sample_value
    assert get("loadsvc_http_requests_total", {**labels, "outcome": "timeout"}) == 1
    assert get("loadsvc_http_request_duration_seconds_count", labels) == 1
    summary = stats.endpoints[("http", ref.endpoint, ref.method)].summary(0.0)
    assert (summary.count, summary.errors) == (2, 1)
    assert recorder.failures.drain() == {(spec.name, ref.endpoint, "timeout"): 1}
