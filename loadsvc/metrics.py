"""The Prometheus metric contract of loadsvc, as one declarative table.

Names, types and labels here are a public interface: the alert rules, the
dashboards and users' own queries depend on them (see README "Metrics").
:data:`CONTRACT` lists every metric once (name, type, labels, help, buckets,
how ``--workers`` merges it, which series exist from start-up); everything
else is derived from it: :func:`create_metrics` (on a registry the caller
passes; tests pass a fresh ``CollectorRegistry``), :data:`GAUGE_MERGE`, the
series :meth:`loadsvc.recorder.Recorder.declare` creates, and the names that
``loadsvc.render`` writes into rules and dashboards (:data:`NAMES`).

Only :mod:`loadsvc.recorder` and its sinks (:mod:`loadsvc.recorder_sinks`) write these metrics;
everything else hands them events.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from loadsvc import __version__
from loadsvc.config.spec import CONNECT_BUCKETS as _CONNECT_BUCKETS
from loadsvc.config.spec import ScenarioSpec
from loadsvc.protocols import HTTP, WS
from loadsvc.protocols import HTTP_ERROR_OUTCOMES as HTTP_ERROR_OUTCOMES
from loadsvc.protocols import HTTP_OUTCOMES as HTTP_OUTCOMES
from loadsvc.protocols import WS_ERROR_OUTCOMES as WS_ERROR_OUTCOMES
from loadsvc.protocols import WS_OUTCOMES as WS_OUTCOMES

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
# Declared with the thresholds: connect and reconnect time limits must be among them.
CONNECT_BUCKETS: tuple[float, ...] = _CONNECT_BUCKETS
# Fine where the trust limit lies (10 % of the tightest latency threshold: 5-20 ms for the
# seed's): a p99 read from these is the bound of its bucket, and with 10 then 25 ms a lag of
# 11 ms read as 25 (the soak's "lag at a restart" was quantized so).
LOOP_LAG_BUCKETS: tuple[float, ...] = (
    0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04,
    0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

# Small fixed label sets; nothing else ever becomes a label value. The outcomes of each
# protocol are declared in its entry of the protocol table (loadsvc.protocols).
# Sequence numbers that are not the next one: counted as such, never as missed.
WS_SEQUENCE_ANOMALIES: tuple[str, ...] = (
    "duplicate",  # a sequence number already received on the connection
    "reordered",  # a late frame that fills a gap (its number was first thought missed)
    "reset",  # the sequence went backwards beyond the reorder window (the server restarted it)
    "unsequenced",  # a data frame without the configured sequence field: its gaps are unknown
    "untracked",  # a frame of a sequence_key beyond max_sequence_keys: its gaps are unknown
)
WS_ERROR_REASONS: tuple[str, ...] = (
    "refused",  # TCP connect refused or reset before the handshake
    "timeout",  # connect or handshake took longer than connect_timeout
    "handshake",  # the server answered the upgrade with a non-101 status
    "closed",  # the server closed an open connection (close frame)
    "abnormal_close",  # the connection dropped without a close frame
    "tls",  # the TLS handshake failed (certificate, protocol)
    "protocol",  # the server broke the WebSocket protocol; loadsvc failed the connection
    "ack_timeout",  # the conversation's acknowledgement did not come in time
    "error",  # anything else (counted, logged in aggregate)
)
RUN_RESULTS: tuple[str, ...] = ("passed", "failed", "generator_bound", "error")
# What timed an arrival (loadsvc.users.arrival): the socket's kernel stamp, or the event loop.
ARRIVAL_CLOCKS: tuple[str, ...] = ("kernel", "loop")
RELOAD_RESULTS: tuple[str, ...] = ("success", "failure")
THRESHOLD_NAMES: tuple[str, ...] = (
    "http_latency", "ws_delivery_latency", "error_ratio", "clock_skew", "ws_delivery_rate",
    "ws_missed_ratio", "ws_stalled", "ws_connect_time", "ws_reconnect_time",
)  # fmt: skip


MergeMode = Literal[
    "all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum",
    "mostrecent", "livemostrecent",
]  # fmt: skip
MetricType = Literal["counter", "gauge", "histogram"]
BucketKind = Literal["latency", "interval", "connect", "loop_lag"]
# run: created by create_metrics; service: also with service=True (the `serve` process);
# process: one series per process, created on its own (create_build_info).
MetricGroup = Literal["run", "service", "process"]

_BUCKETS: Mapping[BucketKind, tuple[float, ...]] = {
    "latency": LATENCY_BUCKETS,  # thresholds merged in by create_metrics
    "interval": INTERVAL_BUCKETS,
    "connect": CONNECT_BUCKETS,
    "loop_lag": LOOP_LAG_BUCKETS,
}
# Sample-name suffixes prometheus-client exposes per type (counters drop "_total" from the name).
_SUFFIXES: Mapping[MetricType, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the contract.

    ``name`` is the family name given to prometheus-client (a counter is
    exposed as ``name_total``). ``fixed`` gives the small fixed value set of
    each trailing label whose every series is created up front; ``declared``
    says whether :meth:`loadsvc.recorder.Recorder.declare` creates the series
    at start-up (so that a ratio has a denominator before the first error).
    ``merge`` is how ``serve --workers`` merges a gauge across worker processes.
    ``protocol``: the metric is about endpoints of that protocol only (its series are
    declared for those endpoints); None: about every endpoint, or none.
    """

    field: str
    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    buckets: BucketKind | None = None
    merge: MergeMode | None = None
    fixed: tuple[tuple[str, tuple[str, ...]], ...] = ()
    declared: bool = False
    group: MetricGroup = "run"
    protocol: str | None = None

    def sample_names(self) -> tuple[str, ...]:
        """Every sample name this metric exposes (``_bucket``, ``_total``, ...)."""
        return tuple(self.name + suffix for suffix in _SUFFIXES[self.type])


_SE = ("scenario", "endpoint")
_SET = ("scenario", "endpoint", "threshold")


def _c(field: str, name: str, help: str, labels: tuple[str, ...], **kw: Any) -> MetricSpec:
    return MetricSpec(field, name, "counter", help, labels, **kw)


def _g(field: str, name: str, help: str, labels: tuple[str, ...], merge: MergeMode,
       **kw: Any) -> MetricSpec:  # fmt: skip
    return MetricSpec(field, name, "gauge", help, labels, merge=merge, **kw)


def _h(field: str, name: str, help: str, labels: tuple[str, ...], buckets: BucketKind,
       **kw: Any) -> MetricSpec:  # fmt: skip
    return MetricSpec(field, name, "histogram", help, labels, buckets=buckets, **kw)


# The contract. Gauge merge modes: "live" modes drop a dead worker's value (the front calls
# mark_process_dead), so a restarted worker leaves no stale users, connections or breaches
# behind; timestamps keep the latest of all. Counters and histograms just add up.
CONTRACT: tuple[MetricSpec, ...] = (
    _h("http_request_duration", "loadsvc_http_request_duration_seconds",
       "REST latency; for paced users measured from the intended start.",
       ("scenario", "endpoint", "method"), "latency", declared=True, protocol=HTTP.name),
    _c("http_requests", "loadsvc_http_requests", "REST requests by outcome (see HTTP_OUTCOMES).",
       ("scenario", "endpoint", "method", "outcome"), fixed=(("outcome", HTTP_OUTCOMES),),
       declared=True, protocol=HTTP.name),
    _c("http_rate_limit_waits", "loadsvc_http_rate_limit_waits",
       "Waits a 429 imposed on a REST user before its next request to the endpoint "
       "(Retry-After, or a backoff without it).", ("scenario", "endpoint", "method"),
       declared=True, protocol=HTTP.name),
    _c("http_rate_limit_wait_seconds", "loadsvc_http_rate_limit_wait_seconds",
       "Seconds of those waits.", ("scenario", "endpoint", "method"), declared=True,
       protocol=HTTP.name),
    _h("ws_message_latency", "loadsvc_ws_message_latency_seconds",
       "WS delivery latency: receive time minus the publish timestamp in the message.",
       _SE, "latency", declared=True, protocol=WS.name),
    _h("ws_message_interval", "loadsvc_ws_message_interval_seconds",
       "Time between consecutive data messages on one connection.", _SE, "interval",
       declared=True, protocol=WS.name),
    _c("ws_messages", "loadsvc_ws_messages",
       "WS frames received by outcome (ok, status, invalid, malformed, skewed, duplicate).",
       (*_SE, "outcome"), fixed=(("outcome", WS_OUTCOMES),), declared=True, protocol=WS.name),
    _c("ws_messages_missed", "loadsvc_ws_messages_missed",
       "WS messages the server never delivered, from gaps in the sequence field.", _SE,
       declared=True, protocol=WS.name),
    _c("ws_stalls", "loadsvc_ws_stalls",
       "WS connections that went silent (no data frame) for longer than the ws_stall "
       "threshold's `after`: each silence counted once, the connection kept.", _SE,
       declared=True, protocol=WS.name),
    _h("ws_connect_duration", "loadsvc_ws_connect_duration_seconds",
       "Time to open a WS connection (TCP connect plus handshake).", _SE, "connect",
       declared=True, protocol=WS.name),
    _h("ws_reconnect_duration", "loadsvc_ws_reconnect_duration_seconds",
       "Time from losing or closing a connection to the next one being open.", _SE, "connect",
       declared=True, protocol=WS.name),
    _g("ws_connections", "loadsvc_ws_connections", "Open WS connections.", _SE, "livesum",
       declared=True, protocol=WS.name),
    _c("ws_connection_errors", "loadsvc_ws_connection_errors",
       "WS connection failures and unexpected closes by reason.", (*_SE, "reason"),
       fixed=(("reason", WS_ERROR_REASONS),), declared=True, protocol=WS.name),
    _c("ws_sequence_anomalies", "loadsvc_ws_sequence_anomalies",
       "WS frames whose sequence number is not the next one (duplicate, reordered, reset) "
       "or is missing (unsequenced).",
       (*_SE, "kind"), fixed=(("kind", WS_SEQUENCE_ANOMALIES),), declared=True, protocol=WS.name),
    _g("arrival_clock_info", "loadsvc_arrival_clock_info",
       "1 for each clock that has timed the endpoint's arrivals in the run: kernel (the "
       "socket's receive stamps) or loop (when the event loop read the bytes).",
       (*_SE, "clock"), "livemax", fixed=(("clock", ARRIVAL_CLOCKS),)),
    _g("ws_clock_offset", "loadsvc_ws_clock_offset_seconds",
       "Smallest arrival time minus publish stamp over the last window: the clock offset "
       "between the server and loadsvc plus the fastest delivery (negative: server ahead).",
       _SE, "livemin", declared=True, protocol=WS.name),
    _g("scenario_users", "loadsvc_scenario_users", "Running virtual users.", ("scenario",),
       "livesum", declared=True),
    _g("scenario_target_users", "loadsvc_scenario_target_users",
       "Virtual users the load shape asks for now.", ("scenario",), "livesum", declared=True),
    _g("scenario_running", "loadsvc_scenario_running",
       "1 while a run of the scenario is in progress.", ("scenario",), "livemax",
       declared=True),
    _c("scenario_runs", "loadsvc_scenario_runs", "Finished runs (or verdict windows) by result.",
       ("scenario", "result"), fixed=(("result", RUN_RESULTS),), declared=True),
    _c("scenario_late_starts", "loadsvc_scenario_late_starts",
       "Users started more than a tick after the load shape asked for them (the generator "
       "stalled, or could not make users as fast as the shape asked).", ("scenario",),
       declared=True),
    _c("scenario_late_start_seconds", "loadsvc_scenario_late_start_seconds",
       "User-seconds the late starts missed (how late each one was, summed).", ("scenario",),
       declared=True),
    # Not declared: a last-run gauge at 0 before any run would read as "failed".
    _g("scenario_last_run_timestamp", "loadsvc_scenario_last_run_timestamp_seconds",
       "When the last run (or verdict window) of the scenario ended.", ("scenario",), "max"),
    _g("scenario_last_run_passed", "loadsvc_scenario_last_run_passed",
       "1 if the last run's verdict passed, 0 if it failed.", ("scenario",),
       "livemin"),  # failed if any worker's share failed
    _g("scenario_last_run_generator_bound", "loadsvc_scenario_last_run_generator_bound",
       "1 if the last run was generator_bound: it breached only within its generator's lag "
       "(the generator was also busy, so the excess is not certain), or held every threshold "
       "under less load than its shape asked for (users started late, so the pass is not "
       "certain), else 0.",
       ("scenario",), "livemax"),  # said when any worker's share was
    _g("scenario_next_run_timestamp", "loadsvc_scenario_next_run_timestamp_seconds",
       "When the scheduler will next start the scenario.", ("scenario",),
       "livemax"),  # the same on every worker
    _c("scenario_triggers_skipped", "loadsvc_scenario_triggers_skipped",
       "Triggers skipped because a run of the scenario was already in progress.",
       ("scenario",), declared=True),
    _c("run_records_failed", "loadsvc_run_records_failed",
       "Finished runs or verdict windows that could not be judged or recorded "
       "(the run goes on; the log says why).", ("scenario",), declared=True),
    _g("threshold_breached", "loadsvc_threshold_breached",
       "1 if the last verdict breached the threshold, else 0.", _SET, "livemax", declared=True),
    _g("threshold_value", "loadsvc_threshold_value",
       "The value the last verdict measured for the threshold (seconds or ratio).", _SET,
       "livemax"),  # the worst worker's measurement
    _g("threshold_limit", "loadsvc_threshold_limit",
       "The configured limit of the threshold (seconds or ratio).", _SET,
       "livemax", declared=True),  # the same on every worker
    # The live judgement (loadsvc.live): the same thresholds over the last minute of a running
    # scenario, every second; not declared, and 0 once the scenario is not running.
    _g("live_threshold_breached", "loadsvc_live_threshold_breached",
       "1 if the threshold does not hold over the running scenario's last minute (the live "
       "window), else 0.", _SET, "livemax"),
    _g("live_threshold_value", "loadsvc_live_threshold_value",
       "The value of the threshold over the live window (seconds or ratio; live-histogram "
       "resolution, 1 %).", _SET, "livemax"),
    _h("event_loop_lag", "loadsvc_event_loop_lag_seconds",
       "How late the generator's event loop ran a timer: its own queueing delay.", (),
       "loop_lag"),
    _g("generator_busy", "loadsvc_generator_busy",
       "1 while the generator is too busy to measure truthfully: its event-loop lag p99 over "
       "the last 10 s is above loadsvc_generator_lag_limit_seconds (loadsvc.lag.is_busy).", (),
       "livemax"),
    _g("generator_lag_p99", "loadsvc_generator_lag_p99_seconds",
       "The event-loop lag p99 over the last 10 s that loadsvc_generator_busy judges.", (),
       "livemax"),
    _g("generator_read_delay_p99", "loadsvc_generator_read_delay_p99_seconds",
       "Kernel-stamped reads over the last 10 s: the p99 of loop time at the read minus the "
       "kernel's receive stamp (how long data waited in the socket; loadsvc.lag's kernel rule).",
       (), "livemax"),
    _g("generator_frames_sharing_a_read", "loadsvc_generator_frames_sharing_a_read",
       "WS data frames in the last 10 s timed by a later frame's stamp because they shared its "
       "read: above 0 the generator fell behind its frames (busy under the kernel rule).",
       (), "livemax"),
    _g("generator_lag_limit", "loadsvc_generator_lag_limit_seconds",
       "The trust limit: lag p99 above it makes the generator busy (10 % of the tightest "
       "latency threshold configured).", (), "livemin"),
    # Regressions against a baseline of comparable past runs (loadsvc.baseline); not declared:
    # a scenario has no baseline until it has had enough runs.
    _g("baseline_value", "loadsvc_baseline_value",
       "The baseline of a metric: the median of comparable past runs' values (seconds for "
       "p50/p95/p99/reconnect_p95, a ratio, or messages per connection-second).",
       (*_SE, "metric"), "livemax"),  # each worker: its share against its own history
    _g("baseline_runs", "loadsvc_baseline_runs",
       "Comparable past runs in the last run's baseline (below the minimum: no baseline yet).",
       ("scenario",), "livemin"),
    _g("regression_detected", "loadsvc_regression_detected",
       "1 if the last run regressed on the metric against its baseline (beyond the "
       "tolerance and the test on its own samples), else 0.", (*_SE, "metric"),
       "livemax"),  # regressed if any worker's share did
    _g("baseline_compared", "loadsvc_baseline_compared",
       "1 if the last run or window was compared with a baseline, 0 if it could not be "
       "though it was before (baseline lost, nothing comparable); absent while no baseline "
       "has formed yet.", ("scenario",), "livemin"),
    _c("baseline_records_skipped", "loadsvc_baseline_records_skipped",
       "Run history records left out of every baseline because a field is invalid (times "
       "not in seconds, negative or non-finite values); logged once each.", ("scenario",)),
    _c("config_reloads", "loadsvc_config_reloads",
       "Configuration reloads (SIGHUP) by result (success, failure).", ("result",),
       fixed=(("result", RELOAD_RESULTS),), declared=True, group="service"),
    _g("config_last_reload_successful", "loadsvc_config_last_reload_successful",
       "1 if the last configuration reload was accepted (or none was tried), else 0.", (),
       "livemin", group="service"),
    # Read when scraped by loadsvc.selfmon.SelfHealthCollector (serve): loadsvc's own health.
    MetricSpec("asyncio_tasks", "loadsvc_asyncio_tasks", "gauge",
               "asyncio tasks alive in loadsvc's event loop (users, runs, servers).",
               group="process"),
    MetricSpec("open_sockets", "loadsvc_open_sockets", "gauge",
               "Open sockets of the loadsvc process (connections and listeners).",
               group="process"),
    MetricSpec("python_heap_blocks", "loadsvc_python_heap_blocks", "gauge",
               "Memory blocks the interpreter has allocated and not freed: the live Python "
               "heap, which an allocator's high-water mark (RSS) does not raise.",
               group="process"),
    MetricSpec("python_heap_blocks_after_full_gc", "loadsvc_python_heap_blocks_after_full_gc",
               "gauge",
               "The live Python heap in blocks right after the last full (generation 2) "
               "collection: with no cyclic garbage in it (0 before the first).",
               group="process"),
    MetricSpec("python_full_collections", "loadsvc_python_full_collections", "counter",
               "Full (generation 2) collections of the cyclic garbage collector.",
               group="process"),
    MetricSpec("python_cyclic_garbage", "loadsvc_python_cyclic_garbage", "counter",
               "Objects the cyclic garbage collector found unreachable and freed (garbage "
               "that reference counting could not free), every generation.",
               group="process"),
    # Read from loadsvc.collector.FrozenSurvivors: survivors of full collections are frozen,
    # so only a sweep (everything walked) reads a heap with no garbage in it, frozen or not.
    MetricSpec("python_sweeps", "loadsvc_python_sweeps", "counter",
               "Sweeps: full collections over the whole heap, frozen survivors included "
               "(hourly, sooner after one that found a pile, or once the floor of the heap at "
               "full collections' ends grew 2 % since the last).",
               group="process"),
    MetricSpec("python_heap_blocks_at_sweep", "loadsvc_python_heap_blocks_at_sweep", "gauge",
               "The live Python heap in blocks right after the last sweep (or start-up): "
               "with no garbage in it, frozen or not.",
               group="process"),
    MetricSpec("python_sweep_garbage", "loadsvc_python_sweep_garbage", "gauge",
               "Objects the last sweep counted as freed (the collector's own count: not the "
               "cycles a generator's or coroutine's finalizer broke, which reference counting "
               "freed; see loadsvc_python_sweep_freed_blocks).",
               group="process"),
    MetricSpec("python_sweep_freed_blocks", "loadsvc_python_sweep_freed_blocks", "gauge",
               "Blocks of the Python heap the last sweep freed beyond what an ordinary full "
               "collection frees (its fall, start to end, minus "
               "loadsvc_python_full_gc_freed_blocks; at least 0): the garbage that died frozen "
               "and that the heap readings before it held.",
               group="process"),
    MetricSpec("python_full_gc_freed_blocks", "loadsvc_python_full_gc_freed_blocks", "gauge",
               "Blocks of the Python heap an ordinary full collection freed (young garbage and "
               "the free lists it empties; the median fall, start to end, of the last five "
               "before the last sweep), which the sweep's fall was judged against.",
               group="process"),
    MetricSpec("malloc_trims", "loadsvc_malloc_trims", "counter",
               "glibc malloc_trim(0) calls, one at the end of every sweep: the free memory "
               "of its heap given back to the system (none where the C library is not glibc).",
               group="process"),
    MetricSpec("malloc_trim_seconds", "loadsvc_malloc_trim_seconds", "counter",
               "Time the malloc_trim calls took (the event loop's pause), all of them.",
               group="process"),
    MetricSpec("malloc_trim_released_bytes", "loadsvc_malloc_trim_released_bytes", "counter",
               "Resident memory the malloc_trim calls gave back (RSS before - after).",
               group="process"),
    MetricSpec("build_info", "loadsvc_build_info", "gauge",
               "Always 1; the loadsvc version and this replica's shard (INDEX/COUNT) as labels.",
               ("version", "shard"), group="process"),
)  # fmt: skip

BY_FIELD: Mapping[str, MetricSpec] = {m.field: m for m in CONTRACT}
BY_NAME: Mapping[str, MetricSpec] = {m.name: m for m in CONTRACT}
# How worker processes' gauges merge (see the comment above CONTRACT).
GAUGE_MERGE: Mapping[str, MergeMode] = {m.name: m.merge for m in CONTRACT if m.merge}
# Every sample name the contract exposes: what rules and dashboards may name.
SAMPLE_NAMES: frozenset[str] = frozenset(n for m in CONTRACT for n in m.sample_names())


class _Names:
    """The exposed name of each metric by its field (``NAMES.http_requests`` is
    ``loadsvc_http_requests_total``): what ``loadsvc.render`` writes into PromQL."""

    def __getattr__(self, field: str) -> str:
        try:
            spec = BY_FIELD[field]
        except KeyError:
            raise AttributeError(field) from None
        return spec.name + "_total" if spec.type == "counter" else spec.name


NAMES = _Names()


def multiprocess_enabled() -> bool:
    """True when prometheus-client keeps values in files (``PROMETHEUS_MULTIPROC_DIR`` set)."""
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ


def merge_mode(name: str, multiprocess: bool) -> MergeMode:
    """The ``multiprocess_mode`` of gauge ``name``: prometheus-client's default when single."""
    return GAUGE_MERGE[name] if multiprocess else "all"


def latency_buckets(boundaries: Iterable[float] = ()) -> tuple[float, ...]:
    """The latency buckets with every threshold boundary merged in."""
    return tuple(sorted(set(LATENCY_BUCKETS) | {float(b) for b in boundaries}))


def build(
    spec: MetricSpec,
    registry: CollectorRegistry,
    latency: tuple[float, ...] = LATENCY_BUCKETS,
    multiprocess: bool = False,
) -> Counter | Gauge | Histogram:
    """Create the metric ``spec`` describes on ``registry``."""
    labels = list(spec.labels)
    if spec.type == "counter":
        return Counter(spec.name, spec.help, labels, registry=registry)
    if spec.type == "histogram":
        assert spec.buckets is not None
        buckets = latency if spec.buckets == "latency" else _BUCKETS[spec.buckets]
        return Histogram(spec.name, spec.help, labels, buckets=buckets, registry=registry)
    if spec.merge is None:
        return Gauge(spec.name, spec.help, labels, registry=registry)
    mode = merge_mode(spec.name, multiprocess)
    return Gauge(spec.name, spec.help, labels, registry=registry, multiprocess_mode=mode)


def declared_series(spec: MetricSpec, scenario: ScenarioSpec) -> Iterable[tuple[str, ...]]:
    """The label values of every series of ``spec`` that exist from start-up for ``scenario``."""
    fixed = dict(spec.fixed)
    tails = list(itertools.product(*(fixed[label] for label in spec.labels if label in fixed)))
    s = scenario.name
    if "endpoint" not in spec.labels:
        heads: list[tuple[str, ...]] = [(s,)]
    elif "threshold" in spec.labels:
        heads = [(s, je.endpoint, name) for je in scenario.judged_endpoints for name in je.limits]
    else:
        refs = [r for r in scenario.endpoints() if spec.protocol in (None, r.kind)]
        with_method = "method" in spec.labels
        heads = [(s, r.endpoint, r.method) if with_method else (s, r.endpoint) for r in refs]
    return [head + tail for head in heads for tail in tails]


def create_build_info(registry: CollectorRegistry, shard: str) -> Gauge:
    """``loadsvc_build_info{version, shard} 1``: tells replicas apart on dashboards.

    Only this one series carries the shard; everything else is summed over
    instances by the scrape's ``instance`` label.
    """
    info = build(BY_FIELD["build_info"], registry)
    assert isinstance(info, Gauge)
    info.labels(__version__, shard).set(1)
    return info


@dataclass(frozen=True)
class Metrics:
    """Every metric loadsvc exports, created on one registry (fields: :data:`CONTRACT`)."""

    http_request_duration: Histogram
    http_requests: Counter
    http_rate_limit_waits: Counter
    http_rate_limit_wait_seconds: Counter
    ws_message_latency: Histogram
    ws_message_interval: Histogram
    ws_messages: Counter
    ws_messages_missed: Counter
    ws_stalls: Counter
    ws_connect_duration: Histogram
    ws_reconnect_duration: Histogram
    ws_connections: Gauge
    ws_connection_errors: Counter
    ws_sequence_anomalies: Counter
    ws_clock_offset: Gauge
    arrival_clock_info: Gauge
    scenario_users: Gauge
    scenario_target_users: Gauge
    scenario_running: Gauge
    scenario_runs: Counter
    scenario_last_run_timestamp: Gauge
    scenario_late_starts: Counter
    scenario_late_start_seconds: Counter
    scenario_last_run_passed: Gauge
    scenario_last_run_generator_bound: Gauge
    scenario_next_run_timestamp: Gauge
    scenario_triggers_skipped: Counter
    run_records_failed: Counter
    threshold_breached: Gauge
    threshold_value: Gauge
    threshold_limit: Gauge
    live_threshold_breached: Gauge
    live_threshold_value: Gauge
    event_loop_lag: Histogram
    generator_busy: Gauge
    generator_lag_p99: Gauge
    generator_lag_limit: Gauge
    generator_read_delay_p99: Gauge
    generator_frames_sharing_a_read: Gauge
    baseline_value: Gauge
    baseline_runs: Gauge
    regression_detected: Gauge
    baseline_compared: Gauge
    baseline_records_skipped: Counter
    # The `serve` process's own (create_metrics(service=True)); None elsewhere.
    config_reloads: Counter | None = None
    config_last_reload_successful: Gauge | None = None
    # File-backed values (a worker of `serve --workers`) cannot be removed.
    multiprocess: bool = False


def create_metrics(
    registry: CollectorRegistry = REGISTRY,
    latency_boundaries: Iterable[float] = (),
    multiprocess: bool = False,
    service: bool = False,
) -> Metrics:
    """Create the metric contract on ``registry``.

    ``latency_boundaries`` are the configured latency thresholds in seconds;
    each becomes a bucket boundary of the latency histograms. ``multiprocess``
    gives each gauge its merge mode from :data:`GAUGE_MERGE` (a worker process).
    ``service`` adds the ``serve`` process's own metrics (configuration reloads).
    """
    latency = latency_buckets(latency_boundaries)
    groups = ("run", "service") if service else ("run",)
    made: dict[str, Any] = {
        spec.field: build(spec, registry, latency, multiprocess)
        for spec in CONTRACT
        if spec.group in groups
    }
    return Metrics(**made, multiprocess=multiprocess)
