"""The Prometheus metric contract of loadsvc.

Names, types and labels here are a public interface: the alert rules, the
dashboards and users' own queries depend on them (see README "Metrics").
Everything is created by :func:`create_metrics` on a registry the caller
passes; tests pass a fresh ``CollectorRegistry``.

With ``loadsvc serve --workers N`` the worker processes write their values to
files (prometheus-client's multiprocess mode) and the front merges them; how
each gauge merges is :data:`GAUGE_MERGE` (counters and histograms just add up).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from loadsvc import __version__

# Every latency threshold must be a bucket boundary (0.1 s and 0.2 s by default);
# create_metrics() merges the configured thresholds in.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
    0.25, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Around the 500 ms throttle: a conforming stream sits in (0.4, 0.6].
INTERVAL_BUCKETS: tuple[float, ...] = (
    0.1, 0.25, 0.4, 0.45, 0.5, 0.55, 0.6, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
CONNECT_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
LOOP_LAG_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip

# Small fixed label sets; nothing else ever becomes a label value.
HTTP_OUTCOMES: tuple[str, ...] = (
    "ok",
    "http_error",  # a status not in expect_status
    "invalid",  # the body failed validation (not JSON, a required key missing, bad encoding)
    "timeout",  # no complete response within timeout (or still outstanding when the run ended)
    "connection_error",  # refused, reset, or closed before a complete response
    "protocol_error",  # the response is not well-formed HTTP/1.x
    "too_large",  # the body (or its decompressed form) is beyond the configured cap
    "tls",  # the TLS handshake failed (certificate, protocol)
)
HTTP_ERROR_OUTCOMES: tuple[str, ...] = HTTP_OUTCOMES[1:]
WS_OUTCOMES: tuple[str, ...] = (
    "ok",
    "status",  # a frame of a skipped type (heartbeat): counted, neither validated nor timed
    "invalid",  # JSON, but not what the stream promises
    "malformed",  # not JSON
    "skewed",  # a publish stamp later than the arrival: clock skew or a wrong timestamp_unit
)
# Skewed frames are a measurement problem, not the backend's error: they fail a run through
# their own judgement (clock skew), not through the error ratio.
WS_ERROR_OUTCOMES: tuple[str, ...] = ("invalid", "malformed")
# Sequence numbers that are not the next one: counted as such, never as missed.
WS_SEQUENCE_ANOMALIES: tuple[str, ...] = (
    "duplicate",  # a sequence number already received on the connection
    "reordered",  # a late frame that fills a gap (its number was first thought missed)
    "reset",  # the sequence went backwards beyond the reorder window (the server restarted it)
)
WS_ERROR_REASONS: tuple[str, ...] = (
    "refused",  # TCP connect refused or reset before the handshake
    "timeout",  # connect or handshake took longer than connect_timeout
    "handshake",  # the server answered the upgrade with a non-101 status
    "closed",  # the server closed an open connection (close frame)
    "abnormal_close",  # the connection dropped without a close frame
    "tls",  # the TLS handshake failed (certificate, protocol)
    "protocol",  # the server broke the WebSocket protocol; loadsvc failed the connection
    "error",  # anything else (counted, logged in aggregate)
)
RUN_RESULTS: tuple[str, ...] = ("passed", "failed", "generator_bound", "error")
THRESHOLD_NAMES: tuple[str, ...] = ("http_latency", "ws_delivery_latency", "error_ratio")


MergeMode = Literal[
    "all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum",
    "mostrecent", "livemostrecent",
]  # fmt: skip

# How worker processes' gauges merge. "live" modes drop a dead worker's value
# (the front calls mark_process_dead), so a restarted worker leaves no stale
# users, connections or breaches behind; timestamps keep the latest of all.
GAUGE_MERGE: Mapping[str, MergeMode] = {
    "loadsvc_ws_connections": "livesum",
    "loadsvc_ws_clock_offset_seconds": "livemin",
    "loadsvc_scenario_users": "livesum",
    "loadsvc_scenario_target_users": "livesum",
    "loadsvc_scenario_running": "livemax",
    "loadsvc_scenario_last_run_timestamp_seconds": "max",
    "loadsvc_scenario_last_run_passed": "livemin",  # failed if any worker's share failed
    "loadsvc_scenario_next_run_timestamp_seconds": "livemax",  # the same on every worker
    "loadsvc_threshold_breached": "livemax",
    "loadsvc_threshold_value": "livemax",  # the worst worker's measurement
    "loadsvc_threshold_limit": "livemax",  # the same on every worker
    "loadsvc_generator_busy": "livemax",
    "loadsvc_config_last_reload_successful": "livemin",
    "loadsvc_baseline_value": "livemax",  # the same on every worker reading one history
    "loadsvc_baseline_runs": "livemin",
    "loadsvc_regression_detected": "livemax",  # regressed if any worker's share did
}


def multiprocess_enabled() -> bool:
    """True when prometheus-client keeps values in files (``PROMETHEUS_MULTIPROC_DIR`` set)."""
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ


def merge_mode(name: str, multiprocess: bool) -> MergeMode:
    """The ``multiprocess_mode`` of gauge ``name``: prometheus-client's default when single."""
    return GAUGE_MERGE[name] if multiprocess else "all"


def create_build_info(registry: CollectorRegistry, shard: str) -> Gauge:
    """``loadsvc_build_info{version, shard} 1``: tells replicas apart on dashboards.

    Only this one series carries the shard; everything else is summed over
    instances by the scrape's ``instance`` label.
    """
    info = Gauge(
        "loadsvc_build_info",
        "Always 1; the loadsvc version and this replica's shard (INDEX/COUNT) as labels.",
        ["version", "shard"],
        registry=registry,
    )
    info.labels(__version__, shard).set(1)
    return info


def latency_buckets(boundaries: Iterable[float] = ()) -> tuple[float, ...]:
    """The latency buckets with every threshold boundary merged in."""
    return tuple(sorted(set(LATENCY_BUCKETS) | {float(b) for b in boundaries}))


@dataclass(frozen=True)
class Metrics:
    """Every metric loadsvc exports, created on one registry."""

    http_request_duration: Histogram
    http_requests: Counter
    ws_message_latency: Histogram
    ws_message_interval: Histogram
    ws_messages: Counter
    ws_messages_missed: Counter
    ws_connect_duration: Histogram
    ws_reconnect_duration: Histogram
    ws_connections: Gauge
    ws_connection_errors: Counter
    ws_sequence_anomalies: Counter
    ws_clock_offset: Gauge
    scenario_users: Gauge
    scenario_target_users: Gauge
    scenario_running: Gauge
    scenario_runs: Counter
    scenario_last_run_timestamp: Gauge
    scenario_last_run_passed: Gauge
    scenario_next_run_timestamp: Gauge
    scenario_triggers_skipped: Counter
    run_records_failed: Counter
    threshold_breached: Gauge
    threshold_value: Gauge
    threshold_limit: Gauge
    event_loop_lag: Histogram
    generator_busy: Gauge
    baseline_value: Gauge
    baseline_runs: Gauge
    regression_detected: Gauge


def create_metrics(
    registry: CollectorRegistry = REGISTRY,
    latency_boundaries: Iterable[float] = (),
    multiprocess: bool = False,
) -> Metrics:
    """Create the metric contract on ``registry``.

    ``latency_boundaries`` are the configured latency thresholds in seconds;
    each becomes a bucket boundary of the latency histograms. ``multiprocess``
    gives each gauge its merge mode from :data:`GAUGE_MERGE` (a worker process).
    """
    lat = latency_buckets(latency_boundaries)
    r = registry

    def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
        mode = merge_mode(name, multiprocess)
        return Gauge(name, doc, list(labels), registry=r, multiprocess_mode=mode)

    return Metrics(
        http_request_duration=Histogram(
            "loadsvc_http_request_duration_seconds",
            "REST latency; for paced users measured from the intended start.",
            ["scenario", "endpoint", "method"],
            buckets=lat,
            registry=r,
        ),
        http_requests=Counter(
            "loadsvc_http_requests",
            "REST requests by outcome (see HTTP_OUTCOMES).",
            ["scenario", "endpoint", "method", "outcome"],
            registry=r,
        ),
        ws_message_latency=Histogram(
            "loadsvc_ws_message_latency_seconds",
            "WS delivery latency: receive time minus the publish timestamp in the message.",
            ["scenario", "endpoint"],
            buckets=lat,
            registry=r,
        ),
        ws_message_interval=Histogram(
            "loadsvc_ws_message_interval_seconds",
            "Time between consecutive data messages on one connection.",
            ["scenario", "endpoint"],
            buckets=INTERVAL_BUCKETS,
            registry=r,
        ),
        ws_messages=Counter(
            "loadsvc_ws_messages",
            "WS frames received by outcome (ok, status, invalid, malformed, skewed).",
            ["scenario", "endpoint", "outcome"],
            registry=r,
        ),
        ws_messages_missed=Counter(
            "loadsvc_ws_messages_missed",
            "WS messages the server never delivered, from gaps in the sequence field.",
            ["scenario", "endpoint"],
            registry=r,
        ),
        ws_connect_duration=Histogram(
            "loadsvc_ws_connect_duration_seconds",
            "Time to open a WS connection (TCP connect plus handshake).",
            ["scenario", "endpoint"],
            buckets=CONNECT_BUCKETS,
            registry=r,
        ),
        ws_reconnect_duration=Histogram(
            "loadsvc_ws_reconnect_duration_seconds",
            "Time from losing or closing a connection to the next one being open.",
            ["scenario", "endpoint"],
            buckets=CONNECT_BUCKETS,
            registry=r,
        ),
        ws_connections=gauge(
            "loadsvc_ws_connections", "Open WS connections.", ["scenario", "endpoint"]
        ),
        ws_connection_errors=Counter(
            "loadsvc_ws_connection_errors",
            "WS connection failures and unexpected closes by reason.",
            ["scenario", "endpoint", "reason"],
            registry=r,
        ),
        ws_sequence_anomalies=Counter(
            "loadsvc_ws_sequence_anomalies",
            "WS frames whose sequence number is not the next one (duplicate, reordered, reset).",
            ["scenario", "endpoint", "kind"],
            registry=r,
        ),
        ws_clock_offset=gauge(
            "loadsvc_ws_clock_offset_seconds",
            "Smallest arrival time minus publish stamp over the last window: the clock offset "
            "between the server and loadsvc plus the fastest delivery (negative: server ahead).",
            ["scenario", "endpoint"],
        ),
        scenario_users=gauge("loadsvc_scenario_users", "Running virtual users.", ["scenario"]),
        scenario_target_users=gauge(
            "loadsvc_scenario_target_users",
            "Virtual users the load shape asks for now.",
            ["scenario"],
        ),
        scenario_running=gauge(
            "loadsvc_scenario_running",
            "1 while a run of the scenario is in progress.",
            ["scenario"],
        ),
        scenario_runs=Counter(
            "loadsvc_scenario_runs",
            "Finished runs (or verdict windows) by result.",
            ["scenario", "result"],
            registry=r,
        ),
        scenario_last_run_timestamp=gauge(
            "loadsvc_scenario_last_run_timestamp_seconds",
            "When the last run (or verdict window) of the scenario ended.",
            ["scenario"],
        ),
        scenario_last_run_passed=gauge(
            "loadsvc_scenario_last_run_passed",
            "1 if the last run's verdict passed, 0 if it failed.",
            ["scenario"],
        ),
        scenario_next_run_timestamp=gauge(
            "loadsvc_scenario_next_run_timestamp_seconds",
            "When the scheduler will next start the scenario.",
            ["scenario"],
        ),
        scenario_triggers_skipped=Counter(
            "loadsvc_scenario_triggers_skipped",
            "Triggers skipped because a run of the scenario was already in progress.",
            ["scenario"],
            registry=r,
        ),
        run_records_failed=Counter(
            "loadsvc_run_records_failed",
            "Finished runs or verdict windows that could not be judged or recorded "
            "(the run goes on; the log says why).",
            ["scenario"],
            registry=r,
        ),
        threshold_breached=gauge(
            "loadsvc_threshold_breached",
            "1 if the last verdict breached the threshold, else 0.",
            ["scenario", "endpoint", "threshold"],
        ),
        threshold_value=gauge(
            "loadsvc_threshold_value",
            "The value the last verdict measured for the threshold (seconds or ratio).",
            ["scenario", "endpoint", "threshold"],
        ),
        threshold_limit=gauge(
            "loadsvc_threshold_limit",
            "The configured limit of the threshold (seconds or ratio).",
            ["scenario", "endpoint", "threshold"],
        ),
        event_loop_lag=Histogram(
            "loadsvc_event_loop_lag_seconds",
            "How late the generator's event loop ran a timer: its own queueing delay.",
            buckets=LOOP_LAG_BUCKETS,
            registry=r,
        ),
        generator_busy=gauge(
            "loadsvc_generator_busy",
            "1 while the generator is too busy to measure truthfully (event-loop lag).",
        ),
        baseline_value=gauge(
            "loadsvc_baseline_value",
            "The baseline of a metric: the median of comparable past runs' values (seconds for "
            "p50/p95/p99/reconnect_p95, a ratio, or messages per connection-second).",
            ["scenario", "endpoint", "metric"],
        ),
        baseline_runs=gauge(
            "loadsvc_baseline_runs",
            "Comparable past runs in the last run's baseline (below the minimum: no baseline yet).",
            ["scenario"],
        ),
        regression_detected=gauge(
            "loadsvc_regression_detected",
            "1 if the last run regressed on the metric against its baseline (beyond the "
            "tolerance and the test on its own samples), else 0.",
            ["scenario", "endpoint", "metric"],
        ),
    )
